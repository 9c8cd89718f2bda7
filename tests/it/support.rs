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
    /// The web server's address; `None` with `--no-http`.
    pub http: Option<SocketAddr>,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Joyride {
    /// Starts joyride on a free loopback port with `args` (which must say `--no-forward` or
    /// `--upstream`), and waits until it answers.
    pub fn start(args: &[&str]) -> Joyride {
        Self::start_with_env(args, &[])
    }

    /// Unless `args` or `env` place the web server (`--http-listen`, `--no-http`,
    /// `FLASK_PORT`), it listens on a free loopback port (never the shared default 5380).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Joyride {
        assert!(
            args.iter()
                .any(|a| *a == "--no-forward" || *a == "--upstream"),
            "tests must never forward to /etc/resolv.conf's nameserver"
        );
        let env_var = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        let mut http_args: Vec<String> = Vec::new();
        let http: Option<SocketAddr> = if args.contains(&"--no-http") {
            None
        } else if let Some(i) = args.iter().position(|a| *a == "--http-listen") {
            args.get(i + 1).and_then(|a| a.parse().ok())
        } else if let Some(port) = env_var("FLASK_PORT") {
            let host = env_var("FLASK_HOST").unwrap_or("127.0.0.1");
            format!("{host}:{port}").parse().ok()
        } else {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            http_args = vec!["--http-listen".into(), addr.to_string()];
            Some(addr)
        };
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
        cmd.args(&http_args);
        // The Docker source only where a test names an engine: others must not see the
        // shared engine's containers (tests run in parallel).
        if !args
            .iter()
            .any(|a| *a == "--docker-host" || *a == "--no-docker")
            && env_var("DOCKER_HOST").is_none()
        {
            cmd.arg("--no-docker");
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
            http,
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

    /// The web server's address (panics with `--no-http`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("this joyride runs without its web server")
    }

    /// `GET target` (path and query, sent as given) from the web server.
    pub fn get(&self, target: &str) -> HttpResponse {
        http_get(self.http_addr(), target)
    }

    /// `GET target` expecting 200 and a JSON body.
    pub fn get_json(&self, target: &str) -> serde_json::Value {
        let r = self.get(target);
        assert_eq!(r.status, 200, "GET {target}: {}", r.body);
        r.json()
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

/// An HTTP response as the tests look at it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET target` over a fresh connection (`Connection: close`). The target is sent byte for
/// byte, so tests can send what a careful client would not.
pub fn http_get(addr: SocketAddr, target: &str) -> HttpResponse {
    http_request(addr, "GET", target, None)
}

/// One HTTP/1.1 request with an optional JSON body; reads the response to the end.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: Option<&str>,
) -> HttpResponse {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("http connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n"
    );
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    stream.write_all(req.as_bytes()).expect("http send");
    // Read until the body is complete (by Content-Length, or the end of the chunks), or the
    // server closes: some servers (chromedriver) keep the connection open regardless.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = stream.read(&mut buf).expect("http read");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if response_complete(&raw) {
            break;
        }
    }
    parse_http_response(&raw)
}

fn response_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n")
}

pub fn parse_http_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]).to_string();
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// Runs the joyride binary with only `env` (and PATH) in its environment.
pub fn run_joyride(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(JOYRIDE);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run joyride")
}

/// The last `lines` lines of `text` (for logs printed when a test fails).
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Ids of processes whose command line mentions `dir` (a test's own engines and helpers).
pub fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != me)
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// After a private dockerd under `dir` stopped (or was killed): kills what is left of it
/// (containerd, shims: they name `dir` on their command lines) and unmounts its data root,
/// which dockerd bind-mounts onto itself.
pub fn reap_engine_leftovers(dir: &Path) {
    for pid in processes_mentioning(dir) {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
    }
    let _ = Command::new("umount")
        .arg("-l")
        .arg(dir.join("data"))
        .stderr(Stdio::null())
        .status();
}

/// A name no other test, run or engineer uses: `tag-<pid>-<n>-<random>`.
pub fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}-{}-{}-{:04x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 0xffff
    )
}
