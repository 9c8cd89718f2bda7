//! The DNS server as a resolver or dig sees it: authoritative answers from static records
//! and hosts files, negative answers, wildcards, EDNS and TCP.

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use crate::support::*;

const STATIC: &str = r#"
[[records]]
name = "db"
type = "A"
value = "10.9.0.1"
[[records]]
name = "db"
type = "AAAA"
value = "fd00::9:1"
[[records]]
name = "alias.docker"
type = "CNAME"
value = "db.docker"
[[records]]
name = "alias2.docker"
type = "CNAME"
value = "alias.docker"
[[records]]
name = "note.docker"
type = "TXT"
value = "hello world"
ttl = 60
[[records]]
name = "_pg._tcp.db.docker"
type = "SRV"
value = "0 5 5432 db.docker"
[[records]]
name = "mail.docker"
type = "MX"
value = "10 db.docker"
[[records]]
name = "api.proj.docker"
type = "A"
value = "10.9.0.2"
[[records]]
name = "web.proj.docker"
type = "A"
value = "10.9.0.3"
[[records]]
name = "app.example.com"
type = "A"
value = "10.9.0.4"
"#;

fn start_static(extra: &[&str]) -> Joyride {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("joyride.toml");
    std::fs::write(&cfg, STATIC).unwrap();
    let mut args = vec!["--no-forward", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    let j = Joyride::start(&args);
    drop(dir);
    j
}

#[test]
fn serves_static_record_over_udp_and_tcp() {
    let j = start_static(&[]);
    let udp = j.query("db.docker.", RecordType::A);
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError);
    assert!(udp.metadata.authoritative);
    assert_eq!(answers(&udp), vec!["10.9.0.1"]);
    assert_eq!(
        answers(&j.query_tcp("DB.Docker.", RecordType::A)),
        vec!["10.9.0.1"]
    );
}

#[test]
fn every_record_type() {
    let j = start_static(&[]);
    assert_eq!(
        answers(&j.query("db.docker.", RecordType::AAAA)),
        vec!["fd00::9:1"]
    );

    let txt = j.query("note.docker.", RecordType::TXT);
    assert_eq!(answers(&txt), vec!["hello world"]);
    assert_eq!(txt.answers[0].ttl, 60);

    // CNAME chased inside our data, two links deep.
    let chased = j.query("alias2.docker.", RecordType::A);
    assert_eq!(
        answers(&chased),
        vec!["alias.docker.", "db.docker.", "10.9.0.1"]
    );
    assert_eq!(chased.answers[2].name.to_string(), "db.docker.");
    assert_eq!(
        answers(&j.query("alias.docker.", RecordType::CNAME)),
        vec!["db.docker."]
    );

    // SRV with the target's addresses in the additional section.
    let srv = j.query("_pg._tcp.db.docker.", RecordType::SRV);
    assert_eq!(answers(&srv), vec!["0 5 5432 db.docker."]);
    let mut extra: Vec<String> = srv
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    extra.sort();
    assert_eq!(extra, vec!["db.docker. 10.9.0.1", "db.docker. fd00::9:1"]);

    let mx = j.query("mail.docker.", RecordType::MX);
    assert_eq!(answers(&mx), vec!["10 db.docker."]);
    assert_eq!(mx.additionals.len(), 2);

    // PTR derived from the A and AAAA records.
    assert_eq!(
        answers(&j.query("1.0.9.10.in-addr.arpa.", RecordType::PTR)),
        vec!["db.docker."]
    );
    let v6 = "1.0.0.0.9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(answers(&j.query(v6, RecordType::PTR)), vec!["db.docker."]);

    // The apex.
    let soa = j.query("docker.", RecordType::SOA);
    assert_eq!(soa.answers.len(), 1);
    assert!(soa.answers[0]
        .data
        .to_string()
        .starts_with("ns.docker. hostmaster.docker."));
    assert_eq!(
        answers(&j.query("docker.", RecordType::NS)),
        vec!["ns.docker."]
    );

    // A published name outside the zone is ours too.
    let out = j.query("app.example.com.", RecordType::A);
    assert!(out.metadata.authoritative);
    assert_eq!(answers(&out), vec!["10.9.0.4"]);
}

#[test]
fn negative_answers_carry_the_soa() {
    let j = start_static(&["--negative-ttl", "7"]);
    // NODATA: the name exists, not with this type.
    let nodata = j.query("note.docker.", RecordType::A);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities.len(), 1);
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(nodata.authorities[0].name.to_string(), "docker.");
    assert_eq!(nodata.authorities[0].ttl, 7);

    // NXDOMAIN under the zone.
    let nx = j.query("nope.docker.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);

    // An empty non-terminal is not NXDOMAIN.
    let ent = j.query("proj.docker.", RecordType::A);
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);
    assert!(ent.answers.is_empty());
    assert_eq!(ent.authorities.len(), 1);

    // A name below an existing one that does not exist.
    let below = j.query("x.db.docker.", RecordType::A);
    assert_eq!(below.metadata.response_code, ResponseCode::NXDomain);

    // Out-of-zone published name without that type: NODATA with an SOA of its own.
    let out = j.query("app.example.com.", RecordType::AAAA);
    assert_eq!(out.metadata.response_code, ResponseCode::NoError);
    assert!(out.answers.is_empty());
    assert_eq!(out.authorities[0].name.to_string(), "app.example.com.");

    // Not ours, not forwarding: REFUSED.
    let refused = j.query("example.org.", RecordType::A);
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn answers_echo_the_question_case() {
    let j = start_static(&[]);
    // Raw bytes: the decoder of a client library may normalise case.
    let query = |name: &[u8]| {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(name);
        p.extend_from_slice(&[0, 1, 0, 1]);
        udp_exchange(j.dns, &p, std::time::Duration::from_secs(3)).unwrap()
    };
    let resp = query(b"\x02dB\x06DoCkEr\x00");
    assert_eq!(&resp[12..23], b"\x02dB\x06DoCkEr\x00", "question echoed");
    // The answer's owner is a pointer to the question name (offset 12).
    assert_eq!(&resp[27..29], &[0xC0, 0x0C]);
    let m = Message::from_vec(&resp).unwrap();
    assert_eq!(answers(&m), vec!["10.9.0.1"]);
    let nx = query(b"\x04NoPe\x06DOCKER\x00");
    assert_eq!(nx[3] & 0x0f, 3, "NXDOMAIN");
    // The SOA owner points at the zone part of the question: offset 12 + 5.
    let authority = 12 + 13 + 4;
    assert_eq!(&nx[authority..authority + 2], &[0xC0, 12 + 5]);
}

#[test]
fn wildcard_queries_match_one_label() {
    let j = start_static(&[]);
    let mut all = answers(&j.query("*.proj.docker.", RecordType::A));
    all.sort();
    assert_eq!(all, vec!["10.9.0.2", "10.9.0.3"]);
    assert_eq!(
        answers(&j.query("api.*.docker.", RecordType::A)),
        vec!["10.9.0.2"]
    );
    let none = j.query("*.nothing.docker.", RecordType::A);
    assert_eq!(none.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn any_gets_a_minimal_answer() {
    let j = start_static(&[]);
    let m = j.query("db.docker.", RecordType::ANY);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1, "RFC 8482: one RRset");
}

#[test]
fn two_hosts_files_share_a_name_and_one_withdraws() {
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join("a"), "10.1.0.1 shared\n").unwrap();
    std::fs::write(hosts.path().join("b"), "10.1.0.2 shared\n").unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    assert!(wait_until(Duration::from_secs(5), || j
        .addresses("shared.docker.")
        .len()
        == 2));
    std::fs::remove_file(hosts.path().join("a")).unwrap();
    assert!(wait_until(Duration::from_secs(2), || j
        .addresses("shared.docker.")
        == vec!["10.1.0.2"]));
}

/// A hosts file giving one name `n` addresses.
fn many_addresses(n: usize) -> (tempfile::TempDir, String) {
    let hosts = tempfile::tempdir().unwrap();
    let text: String = (0..n)
        .map(|i| format!("10.2.{}.{} big\n", i / 250, i % 250 + 1))
        .collect();
    std::fs::write(hosts.path().join("big"), text).unwrap();
    let dir = hosts.path().to_str().unwrap().to_string();
    (hosts, dir)
}

#[test]
fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let (_hosts, dir) = many_addresses(100); // 100 A records: about 1.6 kB
    let j = Joyride::start(&["--no-forward", "--hosts-dir", &dir]);
    assert!(wait_until(Duration::from_secs(5), || j
        .query_tcp("big.docker.", RecordType::A)
        .answers
        .len()
        == 100));

    // No EDNS: 512 bytes at most, so TC.
    let plain = j.query("big.docker.", RecordType::A);
    assert!(plain.metadata.truncation);
    assert!(plain.answers.is_empty());

    // EDNS 4096 asked, but our limit is 1232: still TC, and the OPT advertises 1232.
    let mut q = Message::query_for("big.docker.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.edns = Some(edns);
    let resp = udp_query(j.dns, &q);
    assert!(resp.metadata.truncation);
    assert_eq!(resp.edns.as_ref().map(|e| e.max_payload()), Some(1232));

    // Small answers fit and carry OPT.
    let mut small = Message::query_for("ns.docker.", RecordType::A);
    small.edns = Some(Edns::new());
    let resp = udp_query(j.dns, &small);
    assert!(!resp.metadata.truncation);
    assert!(resp.edns.is_some());
}

#[test]
fn edns_size_raised_by_flag_lets_larger_answers_through() {
    let (_hosts, dir) = many_addresses(100);
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        &dir,
        "--edns-udp-size",
        "4096",
    ]);
    assert!(wait_until(Duration::from_secs(5), || j
        .query_tcp("big.docker.", RecordType::A)
        .answers
        .len()
        == 100));
    let mut q = Message::query_for("big.docker.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    q.edns = Some(edns);
    let resp = udp_query(j.dns, &q);
    assert!(!resp.metadata.truncation);
    assert_eq!(resp.answers.len(), 100);
}

#[test]
fn edns_version_other_than_zero_gets_badvers() {
    let j = start_static(&[]);
    let mut q = Message::query_for("db.docker.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    q.edns = Some(edns);
    let resp = udp_query(j.dns, &q);
    // Extended rcode 16 (hickory names it BADSIG, which shares the value).
    assert_eq!(u16::from(resp.metadata.response_code), 16);
    assert!(resp.edns.is_some());
}

#[test]
fn tcp_serves_several_queries_per_connection_and_closes_idle_ones() {
    let j = start_static(&["--tcp-idle-timeout", "0.5"]);
    let mut stream = TcpStream::connect(j.dns).unwrap();
    for name in ["db.docker.", "api.proj.docker.", "web.proj.docker."] {
        let resp = tcp_exchange(
            &mut stream,
            &Message::query_for(name, RecordType::A).to_vec().unwrap(),
        )
        .unwrap();
        assert_eq!(Message::from_vec(&resp).unwrap().answers.len(), 1);
    }
    // Idle: the server closes the connection (read returns 0) well before our own timeout.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(stream.read(&mut buf).unwrap_or(0), 0);
}

#[test]
fn tcp_connection_cap_closes_extra_connections() {
    let j = start_static(&["--max-tcp-connections", "2"]);
    let _a = TcpStream::connect(j.dns).unwrap();
    let _b = TcpStream::connect(j.dns).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut c = TcpStream::connect(j.dns).unwrap();
    let q = Message::query_for("db.docker.", RecordType::A)
        .to_vec()
        .unwrap();
    assert!(
        tcp_exchange(&mut c, &q).is_err(),
        "third connection must be closed"
    );
    drop(_a);
    // A slot is free again.
    assert!(wait_until(Duration::from_secs(3), || {
        let mut d = TcpStream::connect(j.dns).unwrap();
        tcp_exchange(&mut d, &q).is_ok()
    }));
}

#[test]
fn serves_ipv6_listeners() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        panic!("this machine has no IPv6 loopback; the IPv6 listener cannot be tested");
    }
    let port = free_port();
    let v6 = format!("[::1]:{port}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("joyride.toml");
    std::fs::write(&cfg, STATIC).unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--config",
        cfg.to_str().unwrap(),
        "--dns-listen",
        &v6,
    ]);
    let addr = v6.parse().unwrap();
    assert_eq!(
        answers(&udp_query(
            addr,
            &Message::query_for("db.docker.", RecordType::A)
        )),
        vec!["10.9.0.1"]
    );
    assert_eq!(
        answers(&tcp_query(
            addr,
            &Message::query_for("db.docker.", RecordType::AAAA)
        )),
        vec!["fd00::9:1"]
    );
    drop(j);
}

#[test]
fn custom_domain() {
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join("h"), "10.3.0.1 web\n").unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--domain",
        "Lan.Example",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    assert!(wait_until(Duration::from_secs(5), || j
        .addresses("web.lan.example.")
        == vec!["10.3.0.1"]));
    assert_eq!(j.query("lan.example.", RecordType::SOA).answers.len(), 1);
    assert_eq!(
        j.query("web.docker.", RecordType::A).metadata.response_code,
        ResponseCode::Refused
    );
}

/// Many clients asking in bursts, as a busy network does: the UDP worker gathers queries
/// (`--udp-coalesce-us`), holding the few it found across its pause, and still every query
/// gets its own answer, sent to the client that asked.
#[test]
fn udp_bursts_from_many_clients_are_all_answered_while_the_worker_gathers() {
    let (j, _hosts) = start_many_names(1);
    let pauses = || {
        j.get_json("/status")["queries"]["udp_pauses"]
            .as_u64()
            .unwrap()
    };
    let before = pauses();
    // Pauses need a queue found empty between bursts; a very busy machine may not give one
    // at first, so run rounds until one happened (every round checks every answer).
    for rounds in 1.. {
        assert!(
            rounds <= 10,
            "the worker never gathered queries: {}",
            j.log_text()
        );
        ask_in_bursts(&j, 8, 4, 200);
        if pauses() > before {
            break;
        }
    }
}

/// Several workers on one socket take turns to receive. Small bursts are served by one
/// worker alone, with its batches (the others wait for the turn and never run); bursts
/// larger than a batch (32) make the worker holding the turn pass it on, and every query
/// still gets its own answer.
#[test]
fn udp_workers_take_turns_one_serves_small_bursts_and_large_ones_pass_the_turn() {
    let (j, _hosts) = start_many_names(4);
    ask_in_bursts(&j, 2, 4, 20);
    let before = udp_worker_switches(&j);
    assert_eq!(before.len(), 4, "{before:?}");
    // At most 8 queries outstanding: never a full batch.
    ask_in_bursts(&j, 2, 4, 200);
    let after = udp_worker_switches(&j);
    let ran = |a: &[u64], b: &[u64]| a.iter().zip(b).filter(|(a, b)| b > a).count();
    assert_eq!(ran(&before, &after), 1, "{before:?} {after:?}");
    for rounds in 1.. {
        ask_in_bursts(&j, 8, 16, 50);
        let now = udp_worker_switches(&j);
        if ran(&after, &now) >= 2 {
            break;
        }
        assert!(rounds < 10, "the turn never passed on: {after:?} {now:?}");
    }
}

const MANY_NAMES: usize = 64;

/// joyride with `udp_threads` UDP workers, a 1 ms gathering window and MANY_NAMES names
/// `hN.docker` (10.77.0.N+1), read from the directory returned with it.
fn start_many_names(udp_threads: usize) -> (Joyride, tempfile::TempDir) {
    let hosts = tempfile::tempdir().unwrap();
    let text: String = (0..MANY_NAMES)
        .map(|i| format!("10.77.0.{} h{i}\n", i + 1))
        .collect();
    std::fs::write(hosts.path().join("many"), text).unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
        "--udp-threads",
        &udp_threads.to_string(),
        "--udp-coalesce-us",
        "1000",
    ]);
    assert!(wait_until(Duration::from_secs(5), || j
        .addresses(&format!("h{}.docker.", MANY_NAMES - 1))
        == vec![format!("10.77.0.{MANY_NAMES}")]));
    (j, hosts)
}

/// `clients` clients at once, each sending `bursts` bursts of `per_burst` queries back to
/// back and then reading the replies: each must answer a query that client asked, once,
/// correctly.
fn ask_in_bursts(j: &Joyride, clients: usize, per_burst: usize, bursts: u16) {
    let server = j.dns;
    let clients: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut buf = [0u8; 512];
                for burst in 0..bursts {
                    let mut asked = std::collections::HashMap::new();
                    for k in 0..per_burst {
                        let id = burst * per_burst as u16 + k as u16;
                        let n = (c * 7 + id as usize) % MANY_NAMES;
                        let mut m = Message::query_for(&format!("h{n}.docker."), RecordType::A);
                        m.metadata.id = id;
                        sock.send_to(&m.to_vec().unwrap(), server).unwrap();
                        asked.insert(id, n);
                    }
                    for _ in 0..per_burst {
                        let (len, from) = sock
                            .recv_from(&mut buf)
                            .unwrap_or_else(|e| panic!("client {c} burst {burst}: {e}"));
                        assert_eq!(from, server);
                        let reply = Message::from_vec(&buf[..len]).unwrap();
                        let n = asked
                            .remove(&reply.metadata.id)
                            .expect("a reply to a query this client asked, once");
                        assert_eq!(answers(&reply), vec![format!("10.77.0.{}", n + 1)]);
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

/// Context switches (voluntary and not) of each of joyride's UDP worker threads, by thread
/// id: a thread that ran since the last look has switched at least once more; one blocked
/// throughout has not.
fn udp_worker_switches(j: &Joyride) -> Vec<u64> {
    let tasks = format!("/proc/{}/task", j.child.id());
    let mut threads: Vec<(u32, u64)> = std::fs::read_dir(&tasks)
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if !comm.starts_with("dns-udp-") {
                return None;
            }
            let tid = dir.file_name()?.to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let switches = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            Some((tid, switches))
        })
        .collect();
    threads.sort();
    threads.into_iter().map(|(_, n)| n).collect()
}

/// `dig` from inside a test namespace; its whole output.
fn dig_in(ns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{ns}"))
        .arg("dig")
        .args(args)
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A reply larger than the sending interface's MTU is never fragmented (DF is set, RFC
/// 9715): it goes out truncated, so the client asks again over TCP and gets it whole.
#[test]
fn udp_replies_too_large_for_the_interface_come_truncated_not_fragmented() {
    use crate::testbed::{self, Testbed};
    if !testbed::available() {
        eprintln!("skipped: network namespaces need root and iproute2");
        return;
    }
    let bed = Testbed::new(2);
    let (server, client) = (&bed.hosts[0], &bed.hosts[1]);
    server.exec(&["ip", "link", "set", "eth0", "mtu", "1280"]);
    let (_hosts, dir) = many_addresses(100); // about 1.6 kB of A records
    let listen = format!("{}:5353", server.ip);
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _joyride = KillOnDrop(
        std::process::Command::new("ip")
            .args(["netns", "exec", &server.ns, JOYRIDE])
            .args([
                "--dns-listen",
                &listen,
                "--no-forward",
                "--no-docker",
                "--no-http",
            ])
            .args([
                "--node-name",
                "mtu",
                "--edns-udp-size",
                "4096",
                "--hosts-dir",
                &dir,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn joyride in namespace"),
    );
    let at = format!("@{}", server.ip);
    let query = [
        "+bufsize=4096",
        "+time=2",
        "+tries=1",
        "-p",
        "5353",
        &at,
        "big.docker",
        "A",
    ];
    let udp_only = [&["+ignore", "+notcp"], &query[..]].concat();
    let ready = wait_until(Duration::from_secs(20), || {
        dig_in(&client.ns, &udp_only).contains("status: NOERROR")
    });
    let udp = dig_in(&client.ns, &udp_only);
    let tcp_fallback = dig_in(&client.ns, &query);
    assert!(ready, "joyride in a namespace did not answer: {udp}");
    assert!(udp.contains(" tc") && udp.contains("ANSWER: 0,"), "{udp}");
    assert!(
        udp.contains("; EDNS: version: 0"),
        "the OPT record is kept: {udp}"
    );
    assert!(tcp_fallback.contains("ANSWER: 100,"), "{tcp_fallback}");
}
