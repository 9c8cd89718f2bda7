//! The DNS sockets: UDP worker threads and TCP connection tasks around `answer`.
//!
//! UDP is served by plain blocking threads (several per socket, taking turns to receive):
//! one `recvmmsg`, answers from the current snapshot, one `sendmmsg`, with no executor in
//! between; under load a worker lets queries gather (`Pacer`). TCP connections are tokio
//! tasks. Queries for names that are not ours go to the `Forwarder` as tasks, so
//! a slow upstream never holds up a worker.

use std::io::{self, ErrorKind, IoSlice, IoSliceMut};
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use rustix::net::sockopt::Ipv4PathMtuDiscovery;
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use smallvec::SmallVec;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::answer::{self, AnswerContext, Outcome, Transport};
use super::forward::Forwarder;
use super::stats::{DnsStats, WorkerStats};
use crate::records::SnapshotReader;

/// How often a blocked UDP worker wakes to check for shutdown.
const UDP_WAKE: Duration = Duration::from_millis(200);
/// Datagrams received (and replies sent) per system call.
const UDP_BATCH: usize = 32;
// `UdpWorker::send` marks replies in a u32.
const _: () = assert!(UDP_BATCH <= 32);
/// Fewest queries in one batch that let a UDP worker pause to gather more (`Pacer`).
const MIN_GATHERED: usize = 3;
/// Largest query read; a longer datagram is cut there (and then fails to parse: FORMERR).
const MAX_UDP_QUERY: usize = 4096;
/// Most forwarded queries in flight at once; past that a query gets SERVFAIL at once.
const MAX_FORWARDS_IN_FLIGHT: usize = 2048;

/// A listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for DNS on {proto} {addr}: {source}")]
pub struct BindError {
    pub proto: &'static str,
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Sockets bound before anything starts, so a taken port fails start-up cleanly.
pub struct BoundListeners {
    udp: Vec<Arc<StdUdpSocket>>,
    tcp: Vec<StdTcpListener>,
}

impl BoundListeners {
    /// Binds UDP and TCP on every address. Port 0 picks one free port for both. With
    /// `skip_unavailable` (the default addresses), an address the host does not have is
    /// skipped with a warning, as long as another one binds.
    pub fn bind(addrs: &[SocketAddr], skip_unavailable: bool) -> Result<BoundListeners, BindError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut skipped = None;
        for &addr in addrs {
            let err = |proto, source| BindError {
                proto,
                addr,
                source,
            };
            let u = match bind_udp(addr) {
                Err(e) if skip_unavailable && e.kind() == ErrorKind::AddrNotAvailable => {
                    warn!(%addr, error = %e, "skipping a default DNS address this host does not have");
                    skipped = Some(err("udp", e));
                    continue;
                }
                r => r.map_err(|e| err("udp", e))?,
            };
            let port = u.local_addr().map_err(|e| err("udp", e))?.port();
            let t = bind_tcp(SocketAddr::new(addr.ip(), port)).map_err(|e| err("tcp", e))?;
            udp.push(Arc::new(u));
            tcp.push(t);
        }
        match skipped {
            Some(e) if udp.is_empty() => Err(e),
            _ => Ok(BoundListeners { udp, tcp }),
        }
    }

    /// The addresses actually bound (with the ports chosen for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<StdUdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // A deeper queue absorbs bursts; the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    if addr.is_ipv4() {
        // Replies go out with DF set and are never fragmented (RFC 9715; BIND does the
        // same); PROBE ignores path-MTU updates from ICMP, which anyone can forge. A reply
        // too large for the interface fails with EMSGSIZE and is sent truncated instead.
        // It also spares the kernel a hashed IP ID per reply (about 1% of the CPU).
        if let Err(e) =
            rustix::net::sockopt::set_ip_mtu_discover(&socket, Ipv4PathMtuDiscovery::PROBE)
        {
            warn!(%addr, error = %e, "cannot set DF on UDP replies; large ones may be fragmented");
        }
    }
    socket.bind(&addr.into())?;
    let socket: StdUdpSocket = socket.into();
    socket.set_read_timeout(Some(UDP_WAKE))?;
    // A full send buffer must not stall a worker (or a tokio task replying to a forward).
    socket.set_write_timeout(Some(Duration::from_millis(100)))?;
    Ok(socket)
}

fn bind_tcp(addr: SocketAddr) -> io::Result<StdTcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Limits and sizes of the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest UDP response and the EDNS size we advertise.
    pub max_udp_size: u16,
    /// Worker threads per UDP socket.
    pub udp_threads: usize,
    /// How long a UDP worker that finds its queue empty lets queries gather while they
    /// come several at a time (see `Pacer`); zero: never.
    pub udp_coalesce: Duration,
    /// A TCP connection with no query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Most TCP connections open at once; more are closed on accept.
    pub max_tcp_connections: usize,
}

/// The DNS server: answers from the snapshot, forwards the rest.
pub struct DnsServer {
    pub listeners: BoundListeners,
    pub reader: SnapshotReader,
    pub forwarder: Option<Arc<Forwarder>>,
    pub stats: Arc<DnsStats>,
    pub config: ServerConfig,
}

impl DnsServer {
    pub async fn run(self, cancel: CancellationToken) -> io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let forward_slots = Arc::new(Semaphore::new(MAX_FORWARDS_IN_FLIGHT));
        let mut threads = Vec::new();
        for socket in &self.listeners.udp {
            info!(addr = %socket.local_addr()?, "dns listening (udp)");
            let turn = Arc::new(Mutex::new(Pacer::new(self.config.udp_coalesce)));
            for n in 0..self.config.udp_threads.max(1) {
                let worker = UdpWorker {
                    socket: socket.clone(),
                    turn: turn.clone(),
                    reader: self.reader.clone(),
                    ctx: AnswerContext {
                        transport: Transport::Udp,
                        max_udp_size: self.config.max_udp_size,
                        forwarding: self.forwarder.is_some(),
                    },
                    forwarder: self.forwarder.clone(),
                    forward_slots: forward_slots.clone(),
                    runtime: runtime.clone(),
                    stats: self.stats.worker(),
                    stop: stop.clone(),
                };
                let name = format!("dns-udp-{n}");
                threads.push(
                    std::thread::Builder::new()
                        .name(name)
                        .spawn(move || worker.run())?,
                );
            }
        }
        let tcp_slots = Arc::new(Semaphore::new(self.config.max_tcp_connections));
        let tcp_stats = self.stats.worker();
        let mut tcp_tasks = tokio::task::JoinSet::new();
        for listener in self.listeners.tcp {
            let listener = TcpListener::from_std(listener)?;
            info!(addr = %listener.local_addr()?, "dns listening (tcp)");
            let tcp = TcpServer {
                reader: self.reader.clone(),
                forwarder: self.forwarder.clone(),
                stats: tcp_stats.clone(),
                slots: tcp_slots.clone(),
                config: self.config.clone(),
            };
            tcp_tasks.spawn(tcp.accept_loop(listener, cancel.clone()));
        }
        cancel.cancelled().await;
        stop.store(true, Ordering::Relaxed);
        while tcp_tasks.join_next().await.is_some() {}
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await
        .map_err(io::Error::other)?;
        Ok(())
    }
}

/// One UDP worker thread.
struct UdpWorker {
    socket: Arc<StdUdpSocket>,
    /// The turn to receive on `socket`, shared by its workers, with the gathering state.
    turn: Arc<Mutex<Pacer>>,
    reader: SnapshotReader,
    ctx: AnswerContext,
    forwarder: Option<Arc<Forwarder>>,
    forward_slots: Arc<Semaphore>,
    runtime: tokio::runtime::Handle,
    stats: Arc<WorkerStats>,
    stop: Arc<AtomicBool>,
}

impl UdpWorker {
    /// Receives up to `UDP_BATCH` datagrams per system call (`recvmmsg`, returning as soon as
    /// one is there), answers each from one snapshot load, and sends the replies with one
    /// `sendmmsg`. Under load this halves the system calls per answer or better; with one
    /// datagram at a time it costs what `recvfrom`/`sendto` would. Nothing is allocated per
    /// query or per batch.
    ///
    /// The workers of a socket take turns to receive (leader and followers): the one that
    /// holds the turn keeps it while it answers, so at most loads one worker serves the
    /// socket and the others sleep, and batches stay as large as a lone worker's (several
    /// workers all blocked in `recvmmsg` would each wake for a datagram or two, and
    /// gathering could not work). A full batch means more is probably queued: the worker
    /// gives up the turn before answering it, and the next worker receives meanwhile.
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut bufs = vec![[0u8; MAX_UDP_QUERY]; UDP_BATCH];
        let mut outs: Vec<Vec<u8>> = (0..UDP_BATCH).map(|_| Vec::with_capacity(1232)).collect();
        let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
        let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(UDP_BATCH);
        let mut reply_to: Vec<SocketAddrAny> = Vec::with_capacity(UDP_BATCH);
        // Sleep for the gathering window asked (and wake for UDP_WAKE), not the default
        // 50 us slack on top of it.
        let _ = nix::sys::prctl::set_timerslack(1_000);
        let mut held: Option<MutexGuard<Pacer>> = None;
        let mut idle_since = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let mut pacer = match held.take() {
                Some(pacer) => pacer,
                None => {
                    // A worker panicking mid-batch leaves the pacer consistent.
                    let pacer = self.turn.lock().unwrap_or_else(|e| e.into_inner());
                    if self.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    idle_since = Instant::now();
                    pacer
                }
            };
            received.clear();
            let mut wait_from = idle_since;
            // While gathering, look without blocking first: queries already queued (a client
            // sending as fast as it is answered) are answered at once. Only when fewer than
            // MIN_GATHERED are there does the worker sleep for the window, keeping those
            // few, and then take what came meanwhile (an error or EAGAIN with some held
            // falls through to answering them).
            let gathering = pacer.gathering();
            let first = if gathering {
                MsgFlags::MSG_DONTWAIT
            } else {
                MsgFlags::MSG_WAITFORONE
            };
            let mut outcome = receive(fd, &mut recv_headers, &mut bufs, &mut received, first);
            if gathering {
                outcome = ignore_eagain(outcome);
                if outcome.is_ok() && received.len() < MIN_GATHERED {
                    std::thread::sleep(pacer.window());
                    self.stats.udp_pauses.fetch_add(1, Ordering::Relaxed);
                    wait_from = Instant::now();
                    let then = if received.is_empty() {
                        MsgFlags::MSG_WAITFORONE
                    } else {
                        MsgFlags::MSG_DONTWAIT
                    };
                    outcome = receive(fd, &mut recv_headers, &mut bufs, &mut received, then);
                }
            }
            match outcome {
                Err(Errno::EAGAIN | Errno::EINTR) if received.is_empty() => {
                    // Nothing came within UDP_WAKE: the stream is over.
                    pacer.received(0, UDP_WAKE);
                    held = Some(pacer);
                    continue;
                }
                // ICMP errors from earlier sends (ECONNREFUSED) and the like: the socket is
                // still good.
                Err(e) if received.is_empty() => {
                    debug!(error = %e, "udp receive error");
                    // Block on the next receive: a lasting error must not spin a probe loop.
                    pacer.received(0, UDP_WAKE);
                    held = Some(pacer);
                    continue;
                }
                _ => {}
            }
            let started = Instant::now();
            pacer.received(received.len(), started.duration_since(wait_from));
            if received.len() < UDP_BATCH {
                held = Some(pacer);
            } else {
                drop(pacer);
            }
            let snapshot = self.reader.load();
            reply_to.clear();
            let mut answered = 0u64;
            for (i, (len, addr)) in received.iter().enumerate() {
                let Some(peer) = addr.as_ref().and_then(to_socket_addr) else {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let packet = &bufs[i][..*len];
                let out = &mut outs[reply_to.len()];
                match answer::answer(packet, &snapshot, &self.ctx, out) {
                    Outcome::Reply { rcode, qtype } => {
                        reply_to.push(SocketAddrAny::from(peer));
                        self.stats.answered(rcode, qtype);
                        answered += 1;
                    }
                    Outcome::Forward => self.forward(packet, peer),
                    Outcome::Drop => {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            drop(snapshot);
            // One clock read per batch: each answer is counted with the batch's mean.
            self.stats
                .latency_batch(answered, started.elapsed().as_nanos() as u64);
            if !reply_to.is_empty() {
                let too_large = self.send(&outs, &reply_to);
                // Too large for the interface: sent truncated.
                for i in (0..reply_to.len()).filter(|i| too_large & (1 << i) != 0) {
                    if !send_truncated(&self.socket, &mut outs[i], &reply_to[i]) {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            idle_since = Instant::now();
        }
    }

    /// Sends `outs[i]` to `to[i]` with as few `sendmmsg` calls as it takes. sendmmsg stops
    /// at the first reply it cannot send (a client with no route back, a firewall rule):
    /// that one is skipped and counted, and the rest sent; a send buffer still full after
    /// the socket's write timeout drops the rest of the batch. Returns the replies refused
    /// as too large (EMSGSIZE), as bits.
    fn send(&self, outs: &[Vec<u8>], to: &[SocketAddrAny]) -> u32 {
        let iovs: [[IoSlice; 1]; UDP_BATCH] = std::array::from_fn(|i| [IoSlice::new(&outs[i][..])]);
        let mut controls: [SendAncillaryBuffer; UDP_BATCH] =
            std::array::from_fn(|_| SendAncillaryBuffer::default());
        let mut msgs: SmallVec<[MMsgHdr; UDP_BATCH]> = to
            .iter()
            .zip(&iovs)
            .zip(controls.iter_mut())
            .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, &iov[..], control))
            .collect();
        let mut too_large = 0u32;
        let mut sent = 0;
        while sent < msgs.len() {
            match rustix::net::sendmmsg(&*self.socket, &mut msgs[sent..], SendFlags::empty()) {
                Ok(n) if n > 0 => sent += n,
                Err(rustix::io::Errno::MSGSIZE) => {
                    too_large |= 1 << sent;
                    sent += 1;
                }
                Err(e) if e != rustix::io::Errno::AGAIN => {
                    debug!(error = %e, "udp send error");
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    sent += 1;
                }
                other => {
                    debug!(result = ?other, unsent = msgs.len() - sent, "udp send buffer full");
                    let unsent = (msgs.len() - sent) as u64;
                    self.stats.dropped.fetch_add(unsent, Ordering::Relaxed);
                    break;
                }
            }
        }
        too_large
    }

    /// Hands a query to the forwarder as a task; SERVFAIL at once when too many are in flight.
    fn forward(&self, packet: &[u8], peer: SocketAddr) {
        let (Some(fwd), Ok(slot)) = (
            self.forwarder.clone(),
            self.forward_slots.clone().try_acquire_owned(),
        ) else {
            let mut out = Vec::new();
            answer::servfail(packet, &self.ctx, &mut out);
            send_reply(&self.socket, out, peer, &self.stats);
            self.stats.forward_failures.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let packet = packet.to_vec();
        let socket = self.socket.clone();
        let stats = self.stats.clone();
        let ctx = self.ctx;
        self.runtime.spawn(async move {
            let _slot = slot;
            let resp = match fwd.forward_udp(&packet).await {
                Some(resp) => resp,
                None => {
                    stats.forward_failures.fetch_add(1, Ordering::Relaxed);
                    let mut out = Vec::new();
                    answer::servfail(&packet, &ctx, &mut out);
                    out
                }
            };
            send_reply(&socket, resp, peer, &stats);
        });
    }
}

/// Accepts TCP connections and serves each in a task.
#[derive(Clone)]
struct TcpServer {
    reader: SnapshotReader,
    forwarder: Option<Arc<Forwarder>>,
    stats: Arc<WorkerStats>,
    slots: Arc<Semaphore>,
    config: ServerConfig,
}

impl TcpServer {
    async fn accept_loop(self, listener: TcpListener, cancel: CancellationToken) {
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(error = %e, "tcp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                debug!(%peer, "too many tcp connections; closing a new one");
                continue;
            };
            let server = self.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let _permit = permit;
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    r = server.serve(stream) => if let Err(e) = r {
                        debug!(%peer, error = %e, "tcp connection ended");
                    }
                }
            });
        }
    }

    /// Serves queries on one connection until the client closes it or stays idle.
    async fn serve(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let ctx = AnswerContext {
            transport: Transport::Tcp,
            max_udp_size: self.config.max_udp_size,
            forwarding: self.forwarder.is_some(),
        };
        let idle = self.config.tcp_idle_timeout;
        let mut packet = Vec::with_capacity(512);
        let mut out = Vec::with_capacity(4096);
        loop {
            let len = match tokio::time::timeout(idle, stream.read_u16()).await {
                Err(_) => return Ok(()), // idle
                Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                Ok(r) => r? as usize,
            };
            packet.resize(len, 0);
            tokio::time::timeout(idle, stream.read_exact(&mut packet))
                .await
                .map_err(|_| io::Error::new(ErrorKind::TimedOut, "query not received in time"))??;
            let started = Instant::now();
            match answer::answer(&packet, &self.reader.load(), &ctx, &mut out) {
                Outcome::Reply { rcode, qtype } => {
                    self.stats.answered(rcode, qtype);
                    self.stats.latency(started.elapsed().as_nanos() as u64);
                }
                Outcome::Forward => {
                    self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    let fwd = self
                        .forwarder
                        .as_ref()
                        .expect("forward only when forwarding");
                    match fwd.forward_tcp(&packet).await {
                        Some(resp) => out = resp,
                        None => {
                            self.stats.forward_failures.fetch_add(1, Ordering::Relaxed);
                            answer::servfail(&packet, &ctx, &mut out);
                        }
                    }
                }
                Outcome::Drop => {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            let mut framed = Vec::with_capacity(out.len() + 2);
            framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
            framed.extend_from_slice(&out);
            stream.write_all(&framed).await?;
        }
    }
}

/// Decides when a UDP worker lets queries gather before its next receive.
///
/// At a steady moderate rate (tens of thousands of queries a second on one core) a worker
/// that blocks for the next query is woken for almost every query, and each of its small
/// batches of replies wakes the client's thread again; perf shows those wake-ups, not the
/// answering, as the largest cost that a server can avoid. So, like NIC interrupt moderation
/// or the kernel's `napi_defer_hard_irqs`: while queries come several at a time
/// (`MIN_GATHERED` or more per batch, and the last wait shorter than the window), the worker
/// first looks without blocking. Queries already queued are answered at once; only when the
/// queue is empty does it sleep for the window, then take what came in one `recvmmsg` and
/// answer it with one `sendmmsg`. A query waits at most the window longer.
///
/// It never pauses below one query per window (a quiet home network), for a lone client
/// asking one query at a time or an A and AAAA pair however fast, or while queries are
/// already waiting (a client that sends as fast as it is answered).
struct Pacer {
    window: Duration,
    gathering: bool,
}

impl Pacer {
    fn new(window: Duration) -> Pacer {
        Pacer {
            window,
            gathering: false,
        }
    }

    /// `n` datagrams came after waiting `waited` for the first.
    fn received(&mut self, n: usize, waited: Duration) {
        self.gathering = !self.window.is_zero() && n >= MIN_GATHERED && waited < self.window;
    }

    /// Whether the next receive gathers: looks without blocking and, finding fewer than
    /// `MIN_GATHERED` queries, sleeps for the window before taking more.
    fn gathering(&self) -> bool {
        self.gathering
    }

    fn window(&self) -> Duration {
        self.window
    }
}

/// Receives into the free part of `bufs` (from `received.len()` on), appending each
/// datagram's length and sender to `received`.
fn receive(
    fd: RawFd,
    headers: &mut MultiHeaders<SockaddrStorage>,
    bufs: &mut [[u8; MAX_UDP_QUERY]],
    received: &mut Vec<(usize, Option<SockaddrStorage>)>,
    flags: MsgFlags,
) -> nix::Result<()> {
    let free = &mut bufs[received.len()..];
    let n = free.len().min(UDP_BATCH);
    let mut iovs: [[IoSliceMut; 1]; UDP_BATCH] =
        std::array::from_fn(|_| [IoSliceMut::new(&mut [])]);
    for (iov, buf) in iovs.iter_mut().zip(free.iter_mut()) {
        *iov = [IoSliceMut::new(&mut buf[..])];
    }
    let msgs = recvmmsg(fd, headers, iovs[..n].iter_mut(), flags, None)?;
    received.extend(msgs.map(|m| (m.bytes, m.address)));
    Ok(())
}

/// A non-blocking receive that found nothing is not an error.
fn ignore_eagain(result: nix::Result<()>) -> nix::Result<()> {
    match result {
        Err(Errno::EAGAIN) => Ok(()),
        other => other,
    }
}

/// Sends one reply from the listening socket (forwarded answers, SERVFAIL); one too large
/// for the interface goes out truncated, like the worker's own.
fn send_reply(socket: &StdUdpSocket, mut reply: Vec<u8>, peer: SocketAddr, stats: &WorkerStats) {
    let to = SocketAddrAny::from(peer);
    let sent = match rustix::net::sendto(socket, &reply, SendFlags::empty(), &to) {
        Ok(_) => true,
        Err(rustix::io::Errno::MSGSIZE) => send_truncated(socket, &mut reply, &to),
        Err(e) => {
            debug!(error = %e, "udp send error");
            false
        }
    };
    if !sent {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends a reply the kernel refused as too large for the interface (EMSGSIZE; replies are
/// never fragmented, see `bind_udp`) cut to header and question with TC set, so the client
/// retries over TCP. False when that cannot be done either.
fn send_truncated(socket: &StdUdpSocket, reply: &mut Vec<u8>, to: &SocketAddrAny) -> bool {
    answer::truncate_reply(reply)
        && rustix::net::sendto(socket, reply, SendFlags::empty(), to).is_ok()
}

fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_micros(50);

    #[test]
    fn pacer_gathers_only_while_queries_come_several_at_a_time_and_fast() {
        let mut p = Pacer::new(W);
        assert!(!p.gathering(), "never before the first query");
        assert_eq!(p.window(), W);
        // A quiet network: the first query after a long wait is answered at once.
        p.received(1, Duration::from_millis(3));
        assert!(!p.gathering());
        // Three queries came 20 us after the worker went idle: a steady stream.
        p.received(3, Duration::from_micros(20));
        assert!(p.gathering());
        // What was queued, or what the pause gathered, was several: keep gathering.
        p.received(4, Duration::ZERO);
        assert!(p.gathering());
        p.received(UDP_BATCH, Duration::ZERO);
        assert!(p.gathering());
        // The stream thinned out: fewer than MIN_GATHERED in a window; block for the next.
        p.received(2, Duration::ZERO);
        assert!(!p.gathering());
        // The stream stopped: the next queries waited long; answer without pausing.
        p.received(5, Duration::from_millis(1));
        assert!(!p.gathering());
        p.received(0, UDP_WAKE);
        assert!(!p.gathering());
    }

    #[test]
    fn pacer_never_delays_a_lone_client_asking_in_turn() {
        let mut p = Pacer::new(W);
        // One query at a time, the next sent as soon as the answer came back (a script
        // resolving names in a loop); or getaddrinfo's A and AAAA pair.
        for n in [1, 2, 1, 2, 2, 1] {
            p.received(n, Duration::from_micros(15));
            assert!(!p.gathering(), "{n} queries");
        }
    }

    #[test]
    fn pacer_off_never_gathers() {
        let mut off = Pacer::new(Duration::ZERO);
        off.received(UDP_BATCH, Duration::ZERO);
        assert!(!off.gathering());
        off.received(5, Duration::ZERO);
        assert!(!off.gathering());
    }
}
