//! The web server as an operator, a monitoring system and a browser without JavaScript see
//! it: the real binary, real HTTP over loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// A joyride with a hosts directory holding `web` and `www` (and one bad line), and a
/// static CNAME `db` from its config file. Keep both directories while it runs.
fn with_hosts() -> (Joyride, tempfile::TempDir, tempfile::TempDir) {
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(
        hosts.path().join("demo"),
        "10.0.0.7 web www\nnot-an-address bad\n",
    )
    .unwrap();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("joyride.toml");
    std::fs::write(
        &cfg,
        "[[records]]\nname = \"db\"\ntype = \"CNAME\"\nvalue = \"web.docker\"\nttl = 60\n",
    )
    .unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    (j, hosts, cfg_dir)
}

fn names(body: &serde_json::Value) -> Vec<String> {
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["hostname"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn web_health_is_healthy_while_dns_runs() {
    let j = Joyride::start(&["--no-forward"]);
    let r = j.get("/health");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let h = r.json();
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["service"], "joyride");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let ts = h["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
}

#[test]
fn web_records_lists_owners_records_with_filters() {
    let (j, hosts, _cfg) = with_hosts();
    let all = j.get_json("/dns/records");
    assert_eq!(all["status"], "success");
    assert_eq!(
        names(&all),
        ["db.docker", "ns.docker", "web.docker", "www.docker"],
        "sorted, derived PTRs not listed"
    );
    assert_eq!(all["total_records"], 4);
    let web = &all["records"][2];
    let path = hosts.path().join("demo");
    assert_eq!(web["hostname"], "web.docker");
    assert_eq!(web["ip_address"], "10.0.0.7");
    assert_eq!(web["type"], "A");
    assert_eq!(web["ttl"], 10);
    assert_eq!(web["source"], "hosts");
    assert_eq!(web["owner"], path.to_str().unwrap());
    assert_eq!(web["node"], "testnode");
    let db = &all["records"][0];
    assert_eq!(
        (
            &db["type"],
            &db["ip_address"],
            &db["ttl"],
            &db["source"],
            &db["owner"]
        ),
        (
            &"CNAME".into(),
            &"web.docker".into(),
            &60.into(),
            &"static".into(),
            &"config".into()
        )
    );

    for (query, want) in [
        ("?name=WW", vec!["www.docker"]),
        ("?type=cname", vec!["db.docker"]),
        ("?source=zone", vec!["ns.docker"]),
        ("?source=hosts&name=web", vec!["web.docker"]),
        ("?q=10.0.0.7%20www", vec!["www.docker"]),
        ("?node=othernode", vec![]),
        (
            "?name=",
            vec!["db.docker", "ns.docker", "web.docker", "www.docker"],
        ),
    ] {
        let body = j.get_json(&format!("/dns/records{query}"));
        assert_eq!(names(&body), want, "{query}");
        assert_eq!(body["total_records"], want.len(), "{query}");
    }

    // A new hosts file shows up.
    std::fs::write(hosts.path().join("more"), "10.0.0.8 api\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || names(
            &j.get_json("/dns/records?name=api")
        ) == ["api.docker"]),
        "new hosts file not listed"
    );
}

#[test]
fn web_bad_requests_get_json_errors_and_never_a_panic() {
    let j = Joyride::start(&["--no-forward"]);
    let long = format!("/dns/records?name={}", "a".repeat(5000));
    let huge = format!("/dns/records?q={}", "x".repeat(100_000));
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("GET", "/nope", 404, "no such endpoint: /nope"),
        ("GET", "/dns/records/x", 404, "no such endpoint"),
        ("GET", "/assets/nope.js", 404, "no such asset"),
        ("GET", "/dns/records?type=HINFO", 400, "for type"),
        ("GET", "/dns/records?source=etcd", 400, "for source"),
        (
            "GET",
            "/dns/records?colour=red",
            400,
            "unknown query parameter",
        ),
        ("GET", "/dns/records?name=a&name=b", 400, "more than once"),
        ("GET", "/dns/records?name=%zz", 400, "percent-encoding"),
        ("GET", "/dns/records?name=%ff%fe", 400, "UTF-8"),
        ("GET", "/dns/records?name=%", 400, "percent-encoding"),
        ("GET", &long, 400, "at most 1024"),
        ("GET", "/health?verbose=1", 400, "takes none"),
        ("GET", "/?q=%zz", 400, "percent-encoding"),
        ("POST", "/dns/records", 405, "read-only"),
        ("DELETE", "/health", 405, "read-only"),
    ];
    for (method, target, status, want) in cases {
        let r = http_request(j.http_addr(), method, target, None);
        assert_eq!(
            r.status,
            status,
            "{method} {}: {}",
            &target[..target.len().min(60)],
            r.body
        );
        let body = r.json();
        assert_eq!(body["status"], "error", "{target}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(want), "{target}: {msg}");
    }
    // Far past any sane size: refused by the HTTP layer or by us, never a crash.
    let r = http_get(j.http_addr(), &huge);
    assert!(matches!(r.status, 400 | 414 | 431), "{}", r.status);
    // Garbage instead of HTTP.
    let mut s = TcpStream::connect(j.http_addr()).unwrap();
    let _ = s.write_all(b"\x00\x01garbage\r\n\r\n");
    drop(s);
    assert_eq!(j.get("/health").status, 200, "still serving");
    assert!(!j.log_text().contains("panicked"), "{}", j.log_text());
}

#[test]
fn web_status_reports_components_counts_and_queries() {
    let (j, _hosts, _cfg) = with_hosts();
    j.query("web.docker.", RecordType::A);
    j.query("missing.docker.", RecordType::A);
    let s = j.get_json("/status");
    assert_eq!(s["status"], "healthy");
    assert_eq!(s["node"], "testnode");
    assert_eq!(s["domain"], "docker");
    assert_eq!(s["listeners"]["dns"][0], j.dns.to_string());
    assert_eq!(s["listeners"]["http"], j.http_addr().to_string());
    assert!(s["uptime_seconds"].as_u64().is_some());
    let dns = &s["components"]["dns"];
    assert_eq!(
        (&dns["healthy"], &dns["state"]),
        (&true.into(), &"listening".into())
    );
    let hosts = &s["components"]["hosts"];
    assert_eq!(hosts["state"], "watching");
    let files = hosts["details"]["files"].as_object().unwrap();
    assert_eq!(files.len(), 1);
    let file = files.values().next().unwrap();
    assert_eq!(file["records"], 2);
    assert_eq!(file["bad_lines"].as_array().unwrap().len(), 1);
    let by_source = &s["records"]["by_source"];
    assert_eq!(
        (
            &by_source["hosts"],
            &by_source["static"],
            &by_source["docker"],
            &by_source["zone"]
        ),
        (&2.into(), &1.into(), &0.into(), &1.into())
    );
    assert_eq!(s["records"]["total"], 4);
    // The harness's readiness probes (SOA) are answered NOERROR too.
    assert!(s["queries"]["by_rcode"]["NOERROR"].as_u64().unwrap() >= 2);
    assert_eq!(s["queries"]["by_rcode"]["NXDOMAIN"], 1);
    assert_eq!(s["queries"]["by_type"]["A"], 2);
    assert_eq!(s["cluster"]["enabled"], false);
}

#[test]
fn web_cluster_of_one_reports_this_node() {
    let (j, _hosts, _cfg) = with_hosts();
    let c = j.get_json("/dns/cluster");
    assert_eq!(c["status"], "success");
    assert_eq!(c["enabled"], false);
    assert_eq!(c["node"], "testnode");
    assert_eq!(c["total_members"], 1);
    let m = &c["members"][0];
    assert_eq!(m["name"], "testnode");
    assert_eq!(m["state"], "alive");
    assert_eq!(m["records"], 4);
    assert_eq!(m["local"], true);
    assert!(m["last_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["by_state"]["alive"], 1);
}

/// Without the Docker source only the lookups' validation and empty answers can be
/// checked: hosts and static records are not containers.
#[test]
fn web_console_lookups_validate_and_skip_non_containers() {
    let (j, _hosts, _cfg) = with_hosts();
    for target in [
        "/console/name/web",
        "/console/hostname/web.docker",
        "/console/image/nginx",
        "/console/id/abc123",
        "/console/ip/10.0.0.7",
    ] {
        let body = j.get_json(target);
        assert_eq!(body["status"], "success", "{target}");
        assert_eq!(
            body["total"], 0,
            "{target}: hosts records are not containers"
        );
        assert_eq!(body["containers"], serde_json::json!([]), "{target}");
    }
    let body = j.get_json("/console/ip/10.0.0.7");
    assert_eq!(
        body["query"],
        serde_json::json!({"by": "ip", "key": "10.0.0.7"})
    );
    for (target, status, want) in [
        ("/console/names/web", 404, "no such console lookup"),
        ("/console/ip/not-an-ip", 400, "not an IP address"),
        ("/console/id/zz", 400, "hexadecimal"),
        ("/console/name", 404, "no such endpoint"),
    ] {
        let r = j.get(target);
        assert_eq!(r.status, status, "{target}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(want),
            "{target}"
        );
    }
}

#[test]
fn web_metrics_in_prometheus_format() {
    let (j, _hosts, _cfg) = with_hosts();
    j.query("web.docker.", RecordType::A);
    j.query("web.docker.", RecordType::AAAA);
    j.query("missing.docker.", RecordType::A);
    let r = j.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = &r.body;
    for want in [
        "joyride_dns_queries_total{type=\"A\"} 2",
        "joyride_dns_queries_total{type=\"AAAA\"} 1",
        "joyride_dns_responses_total{rcode=\"NXDOMAIN\"} 1",
        "joyride_dns_forwarded_total 0",
        "joyride_dns_upstream_failures_total 0",
        "joyride_records{source=\"hosts\"} 2",
        "joyride_records{source=\"static\"} 1",
        "joyride_records{source=\"docker\"} 0",
        "joyride_hosts_bad_lines_total 1",
        "joyride_cluster_members{state=\"alive\"} 1",
        "joyride_component_healthy{component=\"dns\"} 1",
        "# TYPE joyride_dns_answer_duration_seconds histogram",
        "# TYPE joyride_dns_queries_total counter",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    let sample = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name}"))
    };
    // Readiness probes (SOA) count too.
    assert!(sample("joyride_dns_responses_total{rcode=\"NOERROR\"}") >= 2.0);
    let count = sample("joyride_dns_answer_duration_seconds_count");
    assert!(count >= 3.0);
    assert_eq!(
        sample("joyride_dns_answer_duration_seconds_bucket{le=\"+Inf\"}"),
        count
    );
    // Every sample line is `joyride_name{labels} number`.
    for line in m.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(name.starts_with("joyride_"), "{line}");
        assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "{line}");
    }
}

#[test]
fn web_page_is_complete_without_javascript() {
    let (j, _hosts, _cfg) = with_hosts();
    let r = j.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let page = &r.body;
    for want in [
        "<td data-label=\"Name\" class=\"name\">web.docker</td>",
        "10.0.0.7",
        "testnode",
        env!("CARGO_PKG_VERSION"),
        &j.dns.to_string(),
        &j.http_addr().to_string(),
        "data-component=\"dns\"",
        "data-component=\"hosts\"",
        "single node",
    ] {
        assert!(page.contains(want), "page lacks {want:?}");
    }
    assert!(!page.contains("{{"), "unfilled placeholder");
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("//fonts"),
        "the page must not load anything from elsewhere"
    );
    // The filter form works without JavaScript: non-matching rows are hidden.
    let filtered = j.get("/?q=www").body;
    assert!(filtered.contains("value=\"www\""));
    assert!(filtered.contains("1 of 4"), "count shows the filter");
    let hidden = filtered.matches(" hidden><td").count();
    assert_eq!(hidden, 3, "three rows hidden");
    // Assets are embedded and served.
    for (path, ct) in [
        ("/assets/app.css", "text/css"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/theme.js", "text/javascript"),
        ("/assets/favicon.svg", "image/svg+xml"),
        ("/openapi.yaml", "application/yaml"),
    ] {
        let a = j.get(path);
        assert_eq!(a.status, 200, "{path}");
        assert!(a.header("content-type").unwrap().starts_with(ct), "{path}");
        assert!(!a.body.is_empty());
    }
    assert!(j.get("/openapi.yaml").body.contains("/dns/records:"));
}

#[test]
fn web_events_push_new_records() {
    let (j, hosts, _cfg) = with_hosts();
    let mut stream = TcpStream::connect(j.http_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut next_event = || -> serde_json::Value {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                return serde_json::from_str(data).unwrap();
            }
        }
    };
    let first = next_event();
    assert!(first["records"].as_str().unwrap().contains("web.docker"));
    assert_eq!(first["records_total"], 4);
    assert!(first["components"].as_str().unwrap().contains("hosts"));
    std::fs::write(hosts.path().join("late"), "10.0.0.9 late\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = next_event();
        if ev["records"]
            .as_str()
            .is_some_and(|r| r.contains("late.docker"))
        {
            assert_eq!(ev["records_total"], 5);
            break;
        }
        assert!(Instant::now() < deadline, "no event with the new record");
    }
}

#[test]
fn web_legacy_flask_variables_place_the_server() {
    let port = free_port().to_string();
    let j = Joyride::start_with_env(
        &["--no-forward"],
        &[("FLASK_HOST", "127.0.0.1"), ("FLASK_PORT", &port)],
    );
    assert_eq!(j.http_addr().port().to_string(), port);
    assert_eq!(j.get("/health").status, 200);
}

#[test]
fn web_no_http_serves_no_page() {
    let j = Joyride::start(&["--no-forward", "--no-http"]);
    assert!(j.http.is_none());
    assert!(!j.log_text().contains("web page, API and metrics listening"));
}

#[test]
fn web_http_port_taken_exits_2_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(JOYRIDE)
        .args(["--no-forward", "--dns-listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--http-listen")
        .arg(addr.to_string())
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("joyride: cannot listen for HTTP on {addr}: ");
    assert!(err.contains(&want), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn web_sigterm_with_an_open_event_stream_exits_promptly() {
    let mut j = Joyride::start(&["--no-forward"]);
    let mut stream = TcpStream::connect(j.http_addr()).unwrap();
    write!(stream, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = String::new();
    BufReader::new(&stream).read_line(&mut first).unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let started = Instant::now();
    let status = j.terminate();
    assert!(status.success(), "{status}: {}", j.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?} to stop",
        started.elapsed()
    );
}

/// Idle HTTP connections are capped (256), so they cannot use up the file descriptors DNS
/// over TCP needs; past the cap, new connections wait until one closes.
#[test]
fn web_connections_are_capped_and_dns_keeps_answering() {
    let j = Joyride::start(&["--no-forward"]);
    let mut idle: Vec<TcpStream> = (0..256)
        .map(|_| TcpStream::connect(j.http_addr()).unwrap())
        .collect();
    // A request behind them waits; DNS over TCP answers meanwhile.
    let addr = j.http_addr();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(http_get(addr, "/health").status);
    });
    assert_eq!(
        j.query_tcp("docker.", RecordType::SOA)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "the 257th connection should wait"
    );
    idle.truncate(255);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(200));
}
