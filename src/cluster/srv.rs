//! srv: finding seeds by a DNS SRV name (`--join-srv _joyride._udp.example.com`).
//!
//! A small stub resolver: one SRV question over UDP to the upstreams (or the nameservers of
//! /etc/resolv.conf), answers parsed by hand (names may be compressed). Targets come back
//! as `HOST:PORT` in priority order, then resolved like `--join` seeds.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::records::Name;

const SRV: u16 = 33;
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrvError {
    #[error("no nameserver to ask")]
    NoServer,
    #[error("no answer from {0}")]
    NoAnswer(String),
    #[error("malformed answer")]
    Malformed,
    #[error("answer code {0}")]
    Rcode(u8),
}

/// The SRV query for `name` with `id`.
pub fn query(name: &Name, id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    name.write_wire(&mut q);
    q.extend_from_slice(&SRV.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

fn u16_at(m: &[u8], i: usize) -> Result<u16, SrvError> {
    m.get(i..i + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(SrvError::Malformed)
}

/// Reads a (possibly compressed) name at `pos`: the name and where the record goes on.
fn read_name(m: &[u8], mut pos: usize) -> Result<(String, usize), SrvError> {
    let mut labels: Vec<String> = Vec::new();
    let mut end: Option<usize> = None;
    for _ in 0..128 {
        let len = *m.get(pos).ok_or(SrvError::Malformed)? as usize;
        if len & 0xC0 == 0xC0 {
            let ptr = (u16_at(m, pos)? & 0x3FFF) as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        if len == 0 {
            return Ok((labels.join("."), end.unwrap_or(pos + 1)));
        }
        let label = m.get(pos + 1..pos + 1 + len).ok_or(SrvError::Malformed)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    Err(SrvError::Malformed)
}

/// The SRV targets of a response to query `id`, as `HOST:PORT`, by priority then weight
/// (heaviest first).
pub fn parse(m: &[u8], id: u16) -> Result<Vec<String>, SrvError> {
    if m.len() < 12 || u16_at(m, 0)? != id || m[2] & 0x80 == 0 {
        return Err(SrvError::Malformed);
    }
    let rcode = m[3] & 0x0F;
    if rcode != 0 {
        return Err(SrvError::Rcode(rcode));
    }
    let (qd, an) = (u16_at(m, 4)?, u16_at(m, 6)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(m, pos)?.1 + 4;
    }
    let mut out: Vec<(u16, u16, String)> = Vec::new();
    for _ in 0..an {
        let next = read_name(m, pos)?.1;
        let rtype = u16_at(m, next)?;
        let rdlen = u16_at(m, next + 8)? as usize;
        let rdata = next + 10;
        if m.len() < rdata + rdlen {
            return Err(SrvError::Malformed);
        }
        if rtype == SRV && rdlen >= 7 {
            let (prio, weight, port) = (
                u16_at(m, rdata)?,
                u16_at(m, rdata + 2)?,
                u16_at(m, rdata + 4)?,
            );
            let (target, _) = read_name(m, rdata + 6)?;
            if !target.is_empty() {
                out.push((prio, u16::MAX - weight, format!("{target}:{port}")));
            }
        }
        pos = rdata + rdlen;
    }
    out.sort();
    Ok(out.into_iter().map(|(_, _, t)| t).collect())
}

/// Asks each server in turn until one answers.
pub async fn lookup(name: &Name, servers: &[SocketAddr]) -> Result<Vec<String>, SrvError> {
    let mut last = SrvError::NoServer;
    for server in servers {
        let id: u16 = rand::random();
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.send_to(&query(name, id), server).await.is_err() {
            last = SrvError::NoAnswer(server.to_string());
            continue;
        }
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == *server => return parse(&buf[..n], id),
            _ => last = SrvError::NoAnswer(server.to_string()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `query(name, 7)` with two SRV answers, the second target compressed.
    fn response() -> Vec<u8> {
        let name = Name::parse("_joyride._udp.example.com").unwrap();
        let mut m = query(&name, 7);
        m[2] |= 0x80;
        m[7] = 2; // ANCOUNT
        let srv = |m: &mut Vec<u8>, prio: u16, weight: u16, port: u16, target: &[u8]| {
            m.extend_from_slice(&[0xC0, 12]);
            m.extend_from_slice(&SRV.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&((6 + target.len()) as u16).to_be_bytes());
            m.extend_from_slice(&prio.to_be_bytes());
            m.extend_from_slice(&weight.to_be_bytes());
            m.extend_from_slice(&port.to_be_bytes());
            m.extend_from_slice(target);
        };
        srv(&mut m, 20, 0, 7001, b"\x02n2\x07example\x03com\x00");
        // "n1" then a pointer to "example.com" inside the question (offset 12 + 14 + 5 = 31).
        let q_example = 12 + "\x08_joyride\x04_udp".len();
        let mut t = b"\x02n1".to_vec();
        t.extend_from_slice(&[0xC0, q_example as u8]);
        srv(&mut m, 10, 5, 7000, &t);
        m
    }

    #[test]
    fn parses_srv_answers_in_priority_order() {
        assert_eq!(
            parse(&response(), 7).unwrap(),
            vec![
                "n1.example.com:7000".to_string(),
                "n2.example.com:7001".to_string()
            ]
        );
        assert_eq!(parse(&response(), 8), Err(SrvError::Malformed), "wrong id");
        let mut nx = response();
        nx[3] |= 3;
        assert_eq!(parse(&nx, 7), Err(SrvError::Rcode(3)));
        let r = response();
        for cut in [5, 20, r.len() - 3] {
            assert!(parse(&r[..cut], 7).is_err(), "truncated at {cut}");
        }
        // A pointer loop is refused, not followed forever.
        assert_eq!(read_name(&[0xC0, 0], 0), Err(SrvError::Malformed));
    }
}
