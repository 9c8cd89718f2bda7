//! Test support: the real joyride binary on free loopback ports, a DNS client built on
//! hickory-proto (an independent implementation of the wire format), real dnsmasq upstreams,
//! and waiting for conditions with deadlines instead of sleeps.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
#[allow(unused_imports)]
pub use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

pub const JOYRIDE: &str = env!("CARGO_BIN_EXE_joyride");

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running joyride, killed when dropped. Its stderr goes to a file in `dir`.
pub struct Joyride {
    pub child: Child,
    pub dns: SocketAddr,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Joyride {
    /// Starts joyride on a free loopback port with `args` (which must say `--no-forward` or
    /// `--upstream`), and waits until it answers.
    pub fn start(args: &[&str]) -> Joyride {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Joyride {
        assert!(
            args.iter()
                .any(|a| *a == "--no-forward" || *a == "--upstream"),
            "tests must never forward to /etc/resolv.conf's nameserver"
        );
        let port = free_port();
        let dns: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("joyride.log");
        let mut cmd = Command::new(JOYRIDE);
        cmd.arg("--dns-listen")
            .arg(dns.to_string())
            .args(["--log-level", "debug"]);
        // Cluster tests name their nodes; a flag given twice is an error.
        if !args.contains(&"--node-name") {
            cmd.args(["--node-name", "testnode"]);
        }
        cmd.args(args);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("spawn joyride");
        let mut j = Joyride {
            child,
            dns,
            log,
            dir,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            if let Ok(Some(status)) = j.child.try_wait() {
                panic!("joyride exited early with {status}: {}", j.log_text());
            }
            udp_query_timeout(
                dns,
                &Message::query_for("docker.", RecordType::SOA),
                Duration::from_millis(200),
            )
            .is_ok()
        });
        assert!(ready, "joyride did not answer: {}", j.log_text());
        j
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn query(&self, name: &str, rtype: RecordType) -> Message {
        udp_query(self.dns, &Message::query_for(name, rtype))
    }

    pub fn query_tcp(&self, name: &str, rtype: RecordType) -> Message {
        tcp_query(self.dns, &Message::query_for(name, rtype))
    }

    /// The addresses (A and AAAA) in the answer to `name`, as strings, sorted.
    pub fn addresses(&self, name: &str) -> Vec<String> {
        let mut out = answers(&self.query(name, RecordType::A));
        out.extend(answers(&self.query(name, RecordType::AAAA)));
        out.sort();
        out
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "joyride did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Joyride {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- joyride log ---\n{}", self.log_text());
        }
    }
}

/// Builds queries.
pub trait QueryFor {
    fn query_for(name: &str, rtype: RecordType) -> Message;
}

impl QueryFor for Message {
    fn query_for(name: &str, rtype: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
        m
    }
}

/// The answer section's data as strings (`10.0.0.1`, `web.docker.`, ...).
pub fn answers(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

pub fn udp_query(server: SocketAddr, msg: &Message) -> Message {
    udp_query_timeout(server, msg, Duration::from_secs(3)).expect("udp query")
}

pub fn udp_query_timeout(
    server: SocketAddr,
    msg: &Message,
    timeout: Duration,
) -> std::io::Result<Message> {
    let bytes = msg.to_vec().expect("encode");
    let resp = udp_exchange(server, &bytes, timeout)?;
    Message::from_vec(&resp).map_err(|e| std::io::Error::other(e.to_string()))
}

/// Sends raw bytes over UDP and returns the raw response.
pub fn udp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let local = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let sock = UdpSocket::bind(local)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.send_to(bytes, server)?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

pub fn tcp_query(server: SocketAddr, msg: &Message) -> Message {
    let mut stream =
        TcpStream::connect_timeout(&server, Duration::from_secs(3)).expect("tcp connect");
    let resp = tcp_exchange(&mut stream, &msg.to_vec().unwrap()).expect("tcp exchange");
    Message::from_vec(&resp).expect("decode tcp response")
}

/// One length-prefixed exchange on an open connection.
pub fn tcp_exchange(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut resp)?;
    Ok(resp)
}

/// A dnsmasq on a free loopback port, as an upstream. Killed when dropped.
pub struct Dnsmasq {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Dnsmasq {
    /// `extra` are dnsmasq options such as `--address=/example.org/192.0.2.1`.
    pub fn start(extra: &[&str]) -> Dnsmasq {
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("dnsmasq is not installed: run scripts/test, which installs it");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(bin)
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg("--pid-file=")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dnsmasq");
        let d = Dnsmasq { child, addr };
        let ready = wait_until(Duration::from_secs(10), || {
            udp_query_timeout(
                addr,
                &Message::query_for("ready.invalid.", RecordType::A),
                Duration::from_millis(200),
            )
            .is_ok()
        });
        assert!(ready, "dnsmasq did not start");
        d
    }

    pub fn arg(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
