//! Bad input: every kind of malformed packet gets the right reply (or none), and the server
//! keeps answering everyone else.

use std::net::UdpSocket;
use std::time::Duration;

use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// No reply at all.
    Silence,
    /// A reply with this rcode (and the query's id).
    Rcode(u8),
}
use Expect::*;

/// A valid query for `web.docker A IN`, id 0xABCD, RD set.
fn base() -> Vec<u8> {
    let mut p = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(b"\x03web\x06docker\x00\x00\x01\x00\x01");
    p
}

fn with(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut p = base();
    f(&mut p);
    p
}

fn header(flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut p = vec![0xAB, 0xCD];
    for v in [flags, qd, an, ns, ar] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    p
}

fn opt(owner_root: bool, rdlen: u16, rdata: &[u8]) -> Vec<u8> {
    let mut o = if owner_root {
        vec![0]
    } else {
        b"\x01x\x00".to_vec()
    };
    o.extend_from_slice(&[0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    o.extend_from_slice(&rdlen.to_be_bytes());
    o.extend_from_slice(rdata);
    o
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let long_name = {
        let mut p = header(0x0100, 1, 0, 0, 0);
        for _ in 0..5 {
            p.push(63);
            p.extend_from_slice(&[b'a'; 63]);
        }
        p.extend_from_slice(&[0, 0, 1, 0, 1]);
        p
    };
    vec![
        ("empty packet", vec![], Silence),
        ("one byte", vec![0xAB], Silence),
        ("eleven bytes", vec![0; 11], Silence),
        ("a response (QR set)", with(|p| p[2] |= 0x80), Silence),
        (
            "header only, no question",
            header(0x0100, 0, 0, 0, 0),
            Rcode(1),
        ),
        (
            "qdcount 1 but no question",
            header(0x0100, 1, 0, 0, 0),
            Rcode(1),
        ),
        ("two questions", with(|p| p[5] = 2), Rcode(1)),
        (
            "qdcount 65535",
            with(|p| {
                p[4] = 0xff;
                p[5] = 0xff;
            }),
            Rcode(1),
        ),
        ("opcode IQUERY", with(|p| p[2] |= 1 << 3), Rcode(4)),
        ("opcode STATUS", with(|p| p[2] |= 2 << 3), Rcode(4)),
        ("opcode NOTIFY", with(|p| p[2] |= 4 << 3), Rcode(4)),
        ("opcode UPDATE", with(|p| p[2] |= 5 << 3), Rcode(4)),
        (
            "label runs past the end",
            {
                let mut p = header(0x0100, 1, 0, 0, 0);
                p.extend_from_slice(b"\x3fabc");
                p
            },
            Rcode(1),
        ),
        (
            "compression pointer in the question",
            {
                let mut p = header(0x0100, 1, 0, 0, 0);
                p.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
                p
            },
            Rcode(1),
        ),
        (
            "extended label type 0x40",
            {
                let mut p = header(0x0100, 1, 0, 0, 0);
                p.extend_from_slice(&[0x41, b'x', 0, 0, 1, 0, 1]);
                p
            },
            Rcode(1),
        ),
        ("name longer than 255 bytes", long_name, Rcode(1)),
        (
            "question without type and class",
            with(|p| p.truncate(p.len() - 4)),
            Rcode(1),
        ),
        (
            "question with half a type",
            with(|p| p.truncate(p.len() - 3)),
            Rcode(1),
        ),
        (
            "class CH",
            with(|p| {
                let n = p.len();
                p[n - 1] = 3;
            }),
            Rcode(5),
        ),
        (
            "class HS",
            with(|p| {
                let n = p.len();
                p[n - 1] = 4;
            }),
            Rcode(5),
        ),
        ("arcount 1 but no record", with(|p| p[11] = 1), Rcode(1)),
        (
            "OPT whose data runs past the end",
            with(|p| {
                p[11] = 1;
                p.extend_from_slice(&opt(true, 20, &[0, 0]));
            }),
            Rcode(1),
        ),
        (
            "two OPT records",
            with(|p| {
                p[11] = 2;
                p.extend_from_slice(&opt(true, 0, &[]));
                p.extend_from_slice(&opt(true, 0, &[]));
            }),
            Rcode(1),
        ),
        (
            "OPT not owned by the root",
            with(|p| {
                p[11] = 1;
                p.extend_from_slice(&opt(false, 0, &[]));
            }),
            Rcode(1),
        ),
        (
            "answer count with garbage",
            with(|p| {
                p[7] = 1;
                p.extend_from_slice(&[0xff, 0xff, 0xff]);
            }),
            Rcode(1),
        ),
        (
            "AXFR of the zone",
            with(|p| {
                let n = p.len();
                p[n - 3] = 252;
            }),
            Rcode(5),
        ),
        (
            "trailing bytes after a good query",
            with(|p| p.extend_from_slice(b"junk")),
            Rcode(0),
        ),
    ]
}

#[test]
fn malformed_packets_get_the_right_reply_and_harm_no_one() {
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join("h"), "10.5.0.1 web\n").unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    assert!(wait_until(Duration::from_secs(5), || j
        .addresses("web.docker.")
        == vec!["10.5.0.1"]));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let table = cases();
    assert!(table.len() >= 20);
    for (what, packet, expect) in table {
        sock.send_to(&packet, j.dns).unwrap();
        let mut buf = [0u8; 4096];
        let got = match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let r = &buf[..n];
                assert!(n >= 12, "{what}: reply shorter than a header");
                assert_eq!(&r[..2], &[0xAB, 0xCD], "{what}: reply keeps the id");
                assert!(r[2] & 0x80 != 0, "{what}: reply has QR set");
                Rcode(r[3] & 0x0f)
            }
            Err(_) => Silence,
        };
        assert_eq!(got, expect, "{what}");
        // Everyone else is still served.
        assert_eq!(j.addresses("web.docker."), vec!["10.5.0.1"], "after {what}");
    }
}

#[test]
fn random_garbage_never_stops_the_server() {
    let j = Joyride::start(&["--no-forward"]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..2000 {
        let len = (next() % 600) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && p.len() > 12 {
            // Half of them look like queries with one question, to get past the header.
            p[2] &= 0x07;
            p[4] = 0;
            p[5] = 1;
        }
        sock.send_to(&p, j.dns).unwrap();
    }
    // TCP too: garbage framed as a message, then a good query on a fresh connection.
    let mut stream = std::net::TcpStream::connect(j.dns).unwrap();
    let _ = tcp_exchange(&mut stream, &[0xde, 0xad, 0xbe, 0xef, 0x00]);
    assert!(wait_until(Duration::from_secs(5), || {
        udp_query_timeout(
            j.dns,
            &Message::query_for("docker.", RecordType::SOA),
            Duration::from_millis(300),
        )
        .is_ok()
    }));
    assert_eq!(j.query_tcp("docker.", RecordType::SOA).answers.len(), 1);
}
