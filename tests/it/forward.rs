//! Forwarding: names that are not ours are relayed to a real upstream (dnsmasq) unchanged.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::support::*;

fn upstream() -> Dnsmasq {
    Dnsmasq::start(&[
        "--address=/fwd.test/192.0.2.1",
        "--address=/nx.test/",
        "--txt-record=txt.fwd.test,relayed text",
        "--mx-host=mx.fwd.test,mail.fwd.test,10",
        "--srv-host=_svc._tcp.fwd.test,target.fwd.test,8080,1,2",
        "--cname=alias.fwd.test,a.fwd.test",
    ])
}

/// A UDP socket that receives queries and never answers: a hung upstream.
fn black_hole() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

#[test]
fn relays_every_type_byte_for_byte() {
    let up = upstream();
    let j = Joyride::start(&["--upstream", &up.arg()]);
    let cases = [
        ("a.fwd.test.", RecordType::A),
        ("txt.fwd.test.", RecordType::TXT),
        ("mx.fwd.test.", RecordType::MX),
        ("_svc._tcp.fwd.test.", RecordType::SRV),
        ("alias.fwd.test.", RecordType::CNAME),
        ("x.nx.test.", RecordType::A),
        ("a.fwd.test.", RecordType::AAAA),
    ];
    for (name, rtype) in cases {
        for with_edns in [false, true] {
            let mut q = Message::query_for(name, rtype);
            if with_edns {
                let mut e = Edns::new();
                e.set_max_payload(1400);
                e.set_dnssec_ok(true);
                q.edns = Some(e);
            }
            let bytes = q.to_vec().unwrap();
            let direct = udp_exchange(up.addr, &bytes, Duration::from_secs(3)).unwrap();
            let relayed = udp_exchange(j.dns, &bytes, Duration::from_secs(3)).unwrap();
            assert_eq!(
                relayed, direct,
                "{name} {rtype:?} edns={with_edns}: the relay changed the response"
            );
        }
    }
    let nx = j.query("x.nx.test.", RecordType::A);
    assert_eq!(
        nx.metadata.response_code,
        ResponseCode::NXDomain,
        "upstream's rcode"
    );
    assert_eq!(
        answers(&j.query("a.fwd.test.", RecordType::A)),
        vec!["192.0.2.1"]
    );
}

#[test]
fn forwards_over_tcp_too() {
    let up = upstream();
    let j = Joyride::start(&["--upstream", &up.arg()]);
    assert_eq!(
        answers(&j.query_tcp("b.fwd.test.", RecordType::A)),
        vec!["192.0.2.1"]
    );
    assert_eq!(
        answers(&j.query_tcp("txt.fwd.test.", RecordType::TXT)),
        vec!["relayed text"]
    );
}

#[test]
fn rewrites_query_ids() {
    let hole = black_hole();
    let up = upstream();
    let j = Joyride::start(&[
        "--upstream",
        &hole.local_addr().unwrap().to_string(),
        "--upstream",
        &up.arg(),
    ]);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let q = Message::query_for("a.fwd.test.", RecordType::A);
        let id = q.metadata.id;
        let resp = udp_query(j.dns, &q);
        assert_eq!(resp.metadata.id, id, "the client gets its own id back");
        let mut buf = [0u8; 512];
        if let Ok((n, _)) = hole.recv_from(&mut buf) {
            assert!(n >= 12);
            seen.push((id, u16::from_be_bytes([buf[0], buf[1]])));
        }
    }
    assert!(!seen.is_empty(), "the first upstream saw the queries");
    assert!(
        seen.iter().any(|(ours, sent)| ours != sent),
        "ids are rewritten: {seen:?}"
    );
}

#[test]
fn a_hung_upstream_fails_over_within_the_bound() {
    let hole = black_hole();
    let up = upstream();
    let j = Joyride::start(&[
        "--upstream",
        &hole.local_addr().unwrap().to_string(),
        "--upstream",
        &up.arg(),
    ]);
    let started = Instant::now();
    let resp = udp_query(j.dns, &Message::query_for("c.fwd.test.", RecordType::A));
    let took = started.elapsed();
    assert_eq!(answers(&resp), vec!["192.0.2.1"]);
    assert!(took < Duration::from_millis(2500), "failover took {took:?}");
    // The working upstream is now preferred: the next query does not wait.
    let started = Instant::now();
    udp_query(j.dns, &Message::query_for("d.fwd.test.", RecordType::A));
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[test]
fn a_dead_upstream_fails_over_at_once() {
    let dead = free_port(); // nothing listens: ICMP port unreachable
    let up = upstream();
    let j = Joyride::start(&[
        "--upstream",
        &format!("127.0.0.1:{dead}"),
        "--upstream",
        &up.arg(),
    ]);
    let resp = udp_query(j.dns, &Message::query_for("e.fwd.test.", RecordType::A));
    assert_eq!(answers(&resp), vec!["192.0.2.1"]);
}

#[test]
fn servfail_only_when_every_upstream_fails() {
    let h1 = black_hole();
    let h2 = black_hole();
    let j = Joyride::start(&[
        "--upstream",
        &h1.local_addr().unwrap().to_string(),
        "--upstream",
        &h2.local_addr().unwrap().to_string(),
        "--upstream-timeout",
        "0.3",
    ]);
    let resp = udp_query(j.dns, &Message::query_for("f.fwd.test.", RecordType::A));
    assert_eq!(resp.metadata.response_code, ResponseCode::ServFail);
    let tcp = j.query_tcp("g.fwd.test.", RecordType::A);
    assert_eq!(tcp.metadata.response_code, ResponseCode::ServFail);
    // Our own names still answer meanwhile.
    assert_eq!(j.query("docker.", RecordType::SOA).answers.len(), 1);
}

#[test]
fn own_names_are_not_forwarded() {
    let up = Dnsmasq::start(&["--address=/docker/192.0.2.99"]);
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join("h"), "10.4.0.1 web\n").unwrap();
    let j = Joyride::start(&[
        "--upstream",
        &up.arg(),
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    assert!(wait_until(Duration::from_secs(5), || j
        .addresses("web.docker.")
        == vec!["10.4.0.1"]));
    let nx = j.query("missing.docker.", RecordType::A);
    assert_eq!(
        nx.metadata.response_code,
        ResponseCode::NXDomain,
        "the zone is ours, never the upstream's"
    );
    assert!(nx.metadata.recursion_available);
}
