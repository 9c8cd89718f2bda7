//! ops: `joyride health`, `records`, `cluster` (over the daemon's HTTP API) and `query`
//! (over DNS), printing tables for people or, with `--json`, JSON for scripts.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Args;
use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use serde_json::{json, Value};

use super::http::{self, Reply};
use super::{daemon_config, reachable, CliError};
use crate::config::{parse_listen, Cli};

/// How long `health` waits: it runs as a container's HEALTHCHECK, so it must be quick.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the listing commands wait for each read.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Which daemon to ask over HTTP.
#[derive(Args, Debug, Clone, Default)]
pub struct HttpTarget {
    /// The daemon's web server [default: its --http-listen, as configured by the same
    /// flags, environment and file, on loopback when it listens on all addresses;
    /// 127.0.0.1:5380].
    #[arg(long, env = "JOYRIDE_HTTP", value_name = "ADDR:PORT")]
    pub http: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Check a running daemon's health: one line, exit 0 when healthy, 1 otherwise.
#[derive(Args, Debug, Clone, Default)]
pub struct HealthArgs {
    #[command(flatten)]
    pub target: HttpTarget,
}

/// List the records a running daemon serves.
#[derive(Args, Debug, Clone, Default)]
pub struct RecordsArgs {
    #[command(flatten)]
    pub target: HttpTarget,
    /// Only records with every one of these words in some field (name, value, owner...).
    #[arg(long, short = 'f', value_name = "WORDS")]
    pub filter: Option<String>,
    /// Only records of this type (A, AAAA, CNAME, TXT, SRV, MX, PTR).
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub rtype: Option<String>,
    /// Only records from this source (static, hosts, docker, zone).
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Only records asserted by this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
}

/// List a running daemon's cluster members (this node alone without clustering).
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub target: HttpTarget,
}

/// Ask a running daemon a DNS question and print the answer, like a terse dig. Exit 0 for
/// NOERROR, 1 for any other response code or no response.
#[derive(Args, Debug, Clone, Default)]
pub struct QueryArgs {
    /// The name to look up (an IP address looks up its PTR record).
    pub name: String,
    /// The record type [default: A, or PTR for an address].
    #[arg(value_name = "TYPE")]
    pub rtype: Option<String>,
    /// The daemon's DNS address [default: its first --dns-listen address, on loopback
    /// when it listens on all addresses; 127.0.0.1:5353].
    #[arg(long, short = 's', env = "JOYRIDE_SERVER", value_name = "ADDR:PORT")]
    pub server: Option<String>,
    /// Ask over TCP (UDP answers with the TC bit are retried over TCP anyway).
    #[arg(long)]
    pub tcp: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value = "2", value_name = "SECONDS")]
    pub timeout: f64,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The daemon's HTTP address: the flag, else the daemon's own configuration.
fn http_addr(target: &HttpTarget, cli: &Cli) -> Result<SocketAddr, CliError> {
    if let Some(v) = &target.http {
        return Ok(parse_listen("--http", v)?);
    }
    match daemon_config(cli)?.http_listen {
        Some(addr) => Ok(reachable(addr)),
        None => Err(CliError::Usage(
            "the daemon is configured without its web server (--no-http): give --http ADDR:PORT"
                .into(),
        )),
    }
}

/// GETs a JSON document, failing on anything but 200.
fn get_json(addr: SocketAddr, target: &str) -> Result<Value, CliError> {
    let reply = http::get(addr, target, API_TIMEOUT)?;
    let value = parse_json(addr, &reply)?;
    if reply.status != 200 {
        let why = value["error"].as_str().unwrap_or("no reason given");
        return Err(CliError::Failed(format!(
            "joyride at {addr} answered {}: {why}",
            reply.status
        )));
    }
    Ok(value)
}

fn parse_json(addr: SocketAddr, reply: &Reply) -> Result<Value, CliError> {
    serde_json::from_str(&reply.body).map_err(|e| {
        CliError::Failed(format!(
            "joyride at {addr} answered {} with no JSON ({e})",
            reply.status
        ))
    })
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub fn health(args: &HealthArgs, cli: &Cli) -> Result<ExitCode, CliError> {
    let addr = http_addr(&args.target, cli)?;
    let (healthy, line, value) = match http::get(addr, "/health", HEALTH_TIMEOUT) {
        Ok(reply) => {
            let value = parse_json(addr, &reply)?;
            let (healthy, line) = health_line(addr, reply.status, &value);
            (healthy, line, value)
        }
        Err(e @ CliError::Unreachable { .. }) => {
            let line = format!("unhealthy: {e}");
            let value = json!({"status": "unreachable", "error": e.to_string()});
            (false, line, value)
        }
        Err(e) => return Err(e),
    };
    if args.target.json {
        print_json(&value);
    } else {
        println!("{line}");
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The one line `health` prints, and whether the daemon is healthy.
fn health_line(addr: SocketAddr, status: u16, v: &Value) -> (bool, String) {
    let version = v["version"].as_str().unwrap_or("?");
    if status == 200 && v["status"] == "healthy" {
        return (true, format!("healthy: joyride {version} at {addr}"));
    }
    let failing: Vec<String> = v["failing"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "{} ({})",
                f["component"].as_str().unwrap_or("?"),
                f["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let what = if failing.is_empty() {
        format!("HTTP {status}")
    } else {
        failing.join(", ")
    };
    (
        false,
        format!("unhealthy: joyride {version} at {addr}: {what}"),
    )
}

pub fn records(args: &RecordsArgs, cli: &Cli) -> Result<ExitCode, CliError> {
    let addr = http_addr(&args.target, cli)?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("q", &args.filter),
        ("type", &args.rtype.as_ref().map(|t| t.to_ascii_uppercase())),
        ("source", &args.source),
        ("node", &args.node),
    ] {
        if let Some(v) = value {
            query.append_pair(key, v);
        }
    }
    let query = query.finish();
    let target = if query.is_empty() {
        "/dns/records".to_string()
    } else {
        format!("/dns/records?{query}")
    };
    let value = get_json(addr, &target)?;
    if args.target.json {
        print_json(&value);
    } else {
        print!("{}", records_table(&value));
    }
    Ok(ExitCode::SUCCESS)
}

fn records_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                text(&r["hostname"]),
                text(&r["type"]),
                text(&r["ip_address"]),
                text(&r["ttl"]),
                text(&r["source"]),
                short_owner(&text(&r["owner"])),
                text(&r["node"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no records\n".into();
    }
    table(
        &["NAME", "TYPE", "VALUE", "TTL", "SOURCE", "OWNER", "NODE"],
        &rows,
    )
}

pub fn cluster(args: &ClusterArgs, cli: &Cli) -> Result<ExitCode, CliError> {
    let addr = http_addr(&args.target, cli)?;
    let value = get_json(addr, "/dns/cluster")?;
    if args.target.json {
        print_json(&value);
    } else {
        print!("{}", cluster_table(&value));
    }
    Ok(ExitCode::SUCCESS)
}

fn cluster_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut name = text(&m["name"]);
            if m["local"] == true {
                name.push_str(" (this node)");
            }
            vec![
                name,
                text(&m["address"]),
                text(&m["state"]),
                text(&m["records"]),
                text(&m["last_seen"]),
            ]
        })
        .collect();
    let enabled = if v["enabled"] == true {
        "enabled"
    } else {
        "not enabled: this node alone"
    };
    let mut out = format!(
        "cluster {enabled}, {} member(s)\n",
        v["total_members"].as_u64().unwrap_or(rows.len() as u64)
    );
    out.push_str(&table(
        &["NODE", "ADDRESS", "STATE", "RECORDS", "LAST SEEN"],
        &rows,
    ));
    out
}

/// A JSON value as a table cell: strings bare, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Container ids shortened as `docker ps` does; other owners (paths, `config`) as they are.
fn short_owner(owner: &str) -> String {
    if owner.len() == 64 && owner.bytes().all(|b| b.is_ascii_hexdigit()) {
        owner[..12].to_string()
    } else {
        owner.to_string()
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn query(args: &QueryArgs, cli: &Cli) -> Result<ExitCode, CliError> {
    let server = match &args.server {
        Some(v) => parse_listen("--server", v)?,
        None => reachable(daemon_config(cli)?.dns_listen[0]),
    };
    if !(args.timeout > 0.0 && args.timeout <= 60.0) {
        return Err(CliError::Usage(format!(
            "invalid value {:?} for --timeout: must be more than 0 and at most 60 seconds",
            args.timeout
        )));
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let (name, rtype) = question(&args.name, args.rtype.as_deref())?;
    let mut msg = Message::query();
    msg.metadata.id = rand::random();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    let bytes = msg
        .to_vec()
        .map_err(|e| CliError::Failed(format!("cannot encode the query: {e}")))?;

    let started = Instant::now();
    let failed = |source: std::io::Error| CliError::Unreachable {
        addr: server,
        source,
    };
    let mut protocol = "udp";
    let mut raw = if args.tcp {
        protocol = "tcp";
        tcp_exchange(server, &bytes, timeout).map_err(failed)?
    } else {
        udp_exchange(server, &bytes, msg.metadata.id, timeout).map_err(failed)?
    };
    let mut reply = decode(server, &raw)?;
    if reply.metadata.truncation && !args.tcp {
        protocol = "udp, truncated, then tcp";
        raw = tcp_exchange(server, &bytes, timeout).map_err(failed)?;
        reply = decode(server, &raw)?;
    }
    let elapsed = started.elapsed();
    if reply.metadata.id != msg.metadata.id
        || reply.metadata.message_type != MessageType::Response
        || reply.queries != msg.queries
    {
        return Err(CliError::Failed(format!(
            "the response from {server} does not match the question"
        )));
    }
    let ok = u16::from(reply.metadata.response_code) == 0;
    if args.json {
        print_json(&answer_json(&reply, server, protocol, elapsed));
    } else {
        print!("{}", answer_text(&reply, server, protocol, elapsed));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The question: a name (made absolute) or an address (its reverse name, PTR by default).
fn question(name: &str, rtype: Option<&str>) -> Result<(Name, RecordType), CliError> {
    let rtype = rtype
        .map(|t| {
            RecordType::from_str(&t.to_ascii_uppercase())
                .map_err(|_| CliError::Usage(format!("unknown record type {t:?}")))
        })
        .transpose()?;
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok((Name::from(ip), rtype.unwrap_or(RecordType::PTR)));
    }
    let absolute = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let name = Name::from_ascii(&absolute)
        .map_err(|e| CliError::Usage(format!("invalid name {name:?}: {e}")))?;
    Ok((name, rtype.unwrap_or(RecordType::A)))
}

fn decode(server: SocketAddr, raw: &[u8]) -> Result<Message, CliError> {
    Message::from_vec(raw)
        .map_err(|e| CliError::Failed(format!("malformed response from {server}: {e}")))
}

/// Sends the query and waits for a datagram with its id from the server.
fn udp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let local = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(server)?;
    sock.send(bytes)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer",
            ));
        }
        sock.set_read_timeout(Some(left))?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

fn tcp_exchange(server: SocketAddr, bytes: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut resp)?;
    Ok(resp)
}

/// dig's names for response codes.
fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

fn flags(m: &Message) -> Vec<&'static str> {
    let md = &m.metadata;
    [
        (md.message_type == MessageType::Response, "qr"),
        (md.authoritative, "aa"),
        (md.truncation, "tc"),
        (md.recursion_desired, "rd"),
        (md.recursion_available, "ra"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

fn record_line(r: &Record) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        r.name,
        r.ttl,
        r.dns_class,
        r.record_type(),
        r.data
    )
}

/// The answer section, then authority and additional sections when present, then one
/// comment line with the response code, flags, server and time.
fn answer_text(m: &Message, server: SocketAddr, protocol: &str, elapsed: Duration) -> String {
    let mut out = String::new();
    for r in &m.answers {
        out.push_str(&record_line(r));
        out.push('\n');
    }
    for (label, section) in [
        ("AUTHORITY", &m.authorities),
        ("ADDITIONAL", &m.additionals),
    ] {
        if !section.is_empty() {
            let _ = writeln!(out, ";; {label}:");
            for r in section {
                let _ = writeln!(out, ";{}", record_line(r));
            }
        }
    }
    let _ = writeln!(
        out,
        ";; {}, flags: {}; answers: {}; from {server} ({protocol}) in {:.1} ms",
        rcode_name(u16::from(m.metadata.response_code)),
        flags(m).join(" "),
        m.answers.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    out
}

fn answer_json(m: &Message, server: SocketAddr, protocol: &str, elapsed: Duration) -> Value {
    let records = |section: &[Record]| -> Vec<Value> {
        section
            .iter()
            .map(|r| {
                json!({
                    "name": r.name.to_string(),
                    "ttl": r.ttl,
                    "class": r.dns_class.to_string(),
                    "type": r.record_type().to_string(),
                    "data": r.data.to_string(),
                })
            })
            .collect()
    };
    let q = m.queries.first();
    json!({
        "server": server.to_string(),
        "protocol": protocol,
        "time_ms": elapsed.as_secs_f64() * 1000.0,
        "id": m.metadata.id,
        "rcode": rcode_name(u16::from(m.metadata.response_code)),
        "flags": flags(m),
        "question": {
            "name": q.map(|q| q.name().to_string()),
            "type": q.map(|q| q.query_type().to_string()),
        },
        "answers": records(&m.answers),
        "authority": records(&m.authorities),
        "additional": records(&m.additionals),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_shorten_container_ids() {
        let v = json!({"records": [
            {"hostname": "web.docker", "type": "A", "ip_address": "10.0.0.7", "ttl": 10,
             "source": "docker", "owner": "a".repeat(64), "node": "n1"},
            {"hostname": "db.docker", "type": "AAAA", "ip_address": "fd00::5", "ttl": 300,
             "source": "hosts", "owner": "/etc/hosts.d/x", "node": "n1"}]});
        let t = records_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME        TYPE  VALUE     TTL  SOURCE  OWNER"));
        assert!(lines[1].contains(&format!("  {}  ", "a".repeat(12))));
        assert!(!lines[1].contains(&"a".repeat(13)));
        assert_eq!(lines[1].find("10.0.0.7"), lines[0].find("VALUE"));
        assert_eq!(records_table(&json!({"records": []})), "no records\n");
    }

    #[test]
    fn cluster_table_marks_this_node() {
        let v = json!({"enabled": false, "total_members": 1, "members": [
            {"name": "n1", "address": null, "state": "alive", "records": 3,
             "last_seen": null, "local": true}]});
        let t = cluster_table(&v);
        assert!(t.starts_with("cluster not enabled: this node alone, 1 member(s)\n"));
        assert!(
            t.contains("n1 (this node)  -        alive  3        -"),
            "{t}"
        );
    }

    #[test]
    fn health_line_names_failing_components() {
        let addr: SocketAddr = "127.0.0.1:5380".parse().unwrap();
        let ok = json!({"status": "healthy", "version": "1.2.3"});
        assert_eq!(
            health_line(addr, 200, &ok),
            (true, "healthy: joyride 1.2.3 at 127.0.0.1:5380".into())
        );
        let bad = json!({"status": "unhealthy", "version": "1.2.3",
            "failing": [{"component": "dns", "state": "stopped"}]});
        let (healthy, line) = health_line(addr, 503, &bad);
        assert!(!healthy);
        assert!(line.ends_with(": dns (stopped)"), "{line}");
    }

    #[test]
    fn questions_from_names_and_addresses() {
        let (n, t) = question("web.docker", None).unwrap();
        assert_eq!((n.to_string().as_str(), t), ("web.docker.", RecordType::A));
        let (n, t) = question("10.0.0.7", None).unwrap();
        assert_eq!(
            (n.to_string().as_str(), t),
            ("7.0.0.10.in-addr.arpa.", RecordType::PTR)
        );
        let (_, t) = question("x.docker.", Some("srv")).unwrap();
        assert_eq!(t, RecordType::SRV);
        assert!(question("x", Some("BOGUS")).is_err());
    }
}
