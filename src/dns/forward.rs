//! Forwarding: a raw relay of queries for names that are not ours to the upstreams.
//!
//! The upstream's response comes back byte for byte (every record type, its rcode, flags
//! and EDNS data) except the id, which is rewritten: each query goes out with a fresh random
//! id, and a response is accepted only from the upstream it was sent to, with that id and
//! the same question. Upstreams are tried one after another, starting with the one that
//! answered last, each for at most `attempt_timeout`; SERVFAIL only when all fail.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::query::{self, HEADER_LEN};

/// Why one attempt at one upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
}

type Waiter = oneshot::Sender<Result<Vec<u8>, ()>>;

/// A query waiting for an upstream's response.
struct Pending {
    /// Tells this attempt's entry from a later one that drew the same id after this one was
    /// answered: an attempt removes only its own entry.
    token: u64,
    /// The lowercase question the response must carry.
    question: Vec<u8>,
    waiter: Waiter,
}

/// Outstanding queries of one upstream by the id they were sent with.
#[derive(Default)]
struct PendingMap(HashMap<u16, Pending>);

impl PendingMap {
    /// Registers a query under a fresh random id not in use; returns the id.
    fn insert(&mut self, token: u64, question: &[u8], waiter: Waiter) -> u16 {
        let mut id = rand::random::<u16>();
        while self.0.contains_key(&id) {
            id = rand::random::<u16>();
        }
        let question = question.to_vec();
        self.0.insert(
            id,
            Pending {
                token,
                question,
                waiter,
            },
        );
        id
    }

    /// Removes the entry under `id` only if it is still the attempt `token`'s.
    fn remove_own(&mut self, id: u16, token: u64) {
        if self.0.get(&id).is_some_and(|p| p.token == token) {
            self.0.remove(&id);
        }
    }

    /// Takes the waiter of `id` when `question` matches what was asked.
    fn take_matching(&mut self, id: u16, question: Option<&[u8]>) -> Option<Waiter> {
        match (self.0.get(&id), question) {
            (Some(p), Some(q)) if p.question == q => self.0.remove(&id).map(|p| p.waiter),
            _ => None,
        }
    }
}

/// One upstream: its address, a connected UDP socket and the queries waiting on it.
struct Upstream {
    addr: SocketAddr,
    socket: UdpSocket,
    pending: Mutex<PendingMap>,
}

/// The forwarder, shared by every listener.
pub struct Forwarder {
    upstreams: Vec<Upstream>,
    /// Index of the upstream to try first: the last one that answered.
    preferred: AtomicUsize,
    /// Numbers the attempts (see `Pending::token`).
    next_token: AtomicU64,
    attempt_timeout: Duration,
}

impl Forwarder {
    /// Binds one UDP socket per upstream and starts their receive tasks.
    pub async fn start(
        upstreams: &[SocketAddr],
        attempt_timeout: Duration,
        cancel: CancellationToken,
    ) -> io::Result<Arc<Forwarder>> {
        let mut list = Vec::with_capacity(upstreams.len());
        for &addr in upstreams {
            let local: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            list.push(Upstream {
                addr,
                socket,
                pending: Mutex::new(PendingMap::default()),
            });
        }
        let fwd = Arc::new(Forwarder {
            upstreams: list,
            preferred: AtomicUsize::new(0),
            next_token: AtomicU64::new(0),
            attempt_timeout,
        });
        for i in 0..fwd.upstreams.len() {
            let fwd = fwd.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = fwd.receive(i) => {}
                }
            });
        }
        Ok(fwd)
    }

    pub fn upstreams(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.upstreams.iter().map(|u| u.addr)
    }

    /// The upstreams in the order to try them now.
    fn order(&self) -> impl Iterator<Item = usize> {
        let n = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |i| (first + i) % n)
    }

    /// Relays a query over UDP; `None` when no upstream answered.
    pub async fn forward_udp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let question = question_key(packet)?;
        for i in self.order() {
            match self.attempt_udp(i, packet, &question).await {
                Ok(resp) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Some(resp);
                }
                Err(e) => debug!(upstream = %self.upstreams[i].addr, error = %e, "upstream failed"),
            }
        }
        None
    }

    async fn attempt_udp(
        &self,
        i: usize,
        packet: &[u8],
        question: &[u8],
    ) -> Result<Vec<u8>, AttemptError> {
        let up = &self.upstreams[i];
        let (tx, rx) = oneshot::channel();
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let id = up
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, question, tx);
        let mut out = packet.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        let result = async {
            up.socket.send(&out).await?;
            match tokio::time::timeout(self.attempt_timeout, rx).await {
                Ok(Ok(Ok(mut resp))) => {
                    resp[..2].copy_from_slice(&packet[..2]);
                    Ok(resp)
                }
                Ok(_) => Err(AttemptError::Io(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "upstream refused the connection",
                ))),
                Err(_) => Err(AttemptError::Timeout(self.attempt_timeout)),
            }
        }
        .await;
        up.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_own(id, token);
        result
    }

    /// Receives responses from upstream `i` and hands each to the query that waits for it.
    async fn receive(&self, i: usize) {
        let up = &self.upstreams[i];
        let mut buf = vec![0u8; 65535];
        loop {
            let n = match up.socket.recv(&mut buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable: nothing listens there. Fail whoever waits at
                    // once instead of letting them time out.
                    let waiting: Vec<_> = up
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                        .drain()
                        .collect();
                    for (_, p) in waiting {
                        let _ = p.waiter.send(Err(()));
                    }
                    continue;
                }
                Err(e) => {
                    warn!(upstream = %up.addr, error = %e, "upstream socket failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let resp = &buf[..n];
            if n < HEADER_LEN || resp[2] & 0x80 == 0 {
                continue;
            }
            let id = u16::from_be_bytes([resp[0], resp[1]]);
            let question = response_question_key(resp);
            let waiter = up
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take_matching(id, question.as_deref());
            match waiter {
                Some(tx) => {
                    let _ = tx.send(Ok(resp.to_vec()));
                }
                None => debug!(upstream = %up.addr, id, "dropped a response that matches no query"),
            }
        }
    }

    /// Relays a query over TCP (for clients that asked over TCP); `None` when no upstream
    /// answered.
    pub async fn forward_tcp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        for i in self.order() {
            let addr = self.upstreams[i].addr;
            match tokio::time::timeout(self.attempt_timeout, tcp_exchange(addr, packet)).await {
                Ok(Ok(resp)) if resp.len() >= HEADER_LEN && resp[..2] == packet[..2] => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Some(resp);
                }
                Ok(Ok(_)) => debug!(upstream = %addr, "tcp response does not match the query"),
                Ok(Err(e)) => debug!(upstream = %addr, error = %e, "tcp upstream failed"),
                Err(_) => debug!(upstream = %addr, "tcp upstream timed out"),
            }
        }
        None
    }
}

async fn tcp_exchange(addr: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut msg = Vec::with_capacity(packet.len() + 2);
    msg.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    msg.extend_from_slice(packet);
    stream.write_all(&msg).await?;
    let len = stream.read_u16().await? as usize;
    let mut resp = vec![0; len];
    stream.read_exact(&mut resp).await?;
    Ok(resp)
}

/// The question of a query, lowercase, as the key a response must match.
fn question_key(packet: &[u8]) -> Option<Vec<u8>> {
    let q = query::parse(packet).ok()?;
    let mut key = q.lower_name().to_vec();
    key.extend_from_slice(&packet[q.question_end - 4..q.question_end]);
    Some(key)
}

/// The same key read from a response (QR set, so `query::parse` would refuse it).
fn response_question_key(resp: &[u8]) -> Option<Vec<u8>> {
    let mut copy = resp.to_vec();
    copy[2] &= 0x7f;
    // Only the header and question are read; ignore the answer sections.
    copy[6..12].fill(0);
    question_key(&copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_removes_only_its_own_entry() {
        let mut map = PendingMap::default();
        let (tx1, _rx1) = oneshot::channel();
        let id = map.insert(1, b"q", tx1);
        // Answered: the receiver takes the entry...
        assert!(map.take_matching(id, Some(b"q")).is_some());
        // ...and a newer attempt happens to draw the same id before the first cleans up.
        let (tx2, _rx2) = oneshot::channel();
        map.0.insert(
            id,
            Pending {
                token: 2,
                question: b"q".to_vec(),
                waiter: tx2,
            },
        );
        map.remove_own(id, 1);
        assert!(
            map.0.contains_key(&id),
            "the newer attempt's entry survives"
        );
        map.remove_own(id, 2);
        assert!(map.0.is_empty());
    }

    #[test]
    fn a_response_with_another_question_is_not_taken() {
        let mut map = PendingMap::default();
        let (tx, _rx) = oneshot::channel();
        let id = map.insert(1, b"q1", tx);
        assert!(map.take_matching(id, Some(b"q2")).is_none());
        assert!(map.take_matching(id, None).is_none());
        assert!(map.take_matching(id.wrapping_add(1), Some(b"q1")).is_none());
        assert!(map.take_matching(id, Some(b"q1")).is_some());
    }
}
