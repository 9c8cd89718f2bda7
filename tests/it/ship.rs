//! Shipping: the operator commands (`health`, `records`, `cluster`, `query`) against the
//! real daemon, `resolver` on temporary paths (never the real /etc), completions and man.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::*;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn explain(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A joyride serving `hosts` (hosts-file text) as `demo`, once the records are in, and
/// the hosts directory (removed when dropped).
fn daemon_with_hosts(hosts: &str, extra: &[&str]) -> (Joyride, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo"), hosts).unwrap();
    let hosts_dir = dir.path().to_str().unwrap().to_string();
    let mut args = vec!["--no-forward", "--hosts-dir", &hosts_dir];
    args.extend_from_slice(extra);
    let j = Joyride::start(&args);
    let ready = wait_until(Duration::from_secs(10), || {
        !answers(&j.query("web.docker.", RecordType::A)).is_empty()
    });
    assert!(ready, "hosts file not served: {}", j.log_text());
    (j, dir)
}

#[test]
fn health_records_and_cluster_talk_to_the_daemon() {
    let (j, _hosts) = daemon_with_hosts("10.0.0.7 web\nfd00::7 web6\n10.0.0.8 db\n", &[]);
    let http = j.http_addr().to_string();

    let o = run_joyride(&["health", "--http", &http], &[]);
    assert!(o.status.success(), "{}", explain(&o));
    assert_eq!(
        stdout(&o),
        format!("healthy: joyride {} at {http}\n", env!("CARGO_PKG_VERSION"))
    );
    // Without --http, health finds the daemon from its own configuration (here the env
    // var a container would set, with a wildcard address).
    let port = j.http_addr().port().to_string();
    let o = run_joyride(
        &["health"],
        &[("JOYRIDE_HTTP_LISTEN", &format!("0.0.0.0:{port}"))],
    );
    assert!(o.status.success(), "{}", explain(&o));
    let o = run_joyride(&["health", "--json"], &[("JOYRIDE_HTTP", &http)]);
    assert!(o.status.success(), "{}", explain(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "healthy");

    let o = run_joyride(&["records", "--http", &http], &[]);
    assert!(o.status.success(), "{}", explain(&o));
    let table = stdout(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].ends_with("NODE"),
        "{table}"
    );
    let web = lines
        .iter()
        .find(|l| l.starts_with("web.docker "))
        .expect(&table);
    for cell in ["A", "10.0.0.7", "hosts", "testnode"] {
        assert!(web.split_whitespace().any(|c| c == cell), "{cell}: {web}");
    }
    assert_eq!(lines[0].find("VALUE"), web.find("10.0.0.7"), "{table}");

    let o = run_joyride(
        &["records", "--http", &http, "--filter", "web6", "--json"],
        &[],
    );
    assert!(o.status.success(), "{}", explain(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["total_records"], 1, "{v}");
    assert_eq!(v["records"][0]["ip_address"], "fd00::7");
    let o = run_joyride(&["records", "--http", &http, "-t", "aaaa"], &[]);
    assert!(stdout(&o).contains("fd00::7") && !stdout(&o).contains("10.0.0.7"));
    let o = run_joyride(
        &["records", "--http", &http, "--filter", "nothing-matches"],
        &[],
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o), "no records\n");
    // The API's 400 becomes one line and exit 1.
    let o = run_joyride(&["records", "--http", &http, "--source", "bogus"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("answered 400") && err.lines().count() == 1,
        "{err}"
    );

    let o = run_joyride(&["cluster", "--http", &http], &[]);
    assert!(o.status.success(), "{}", explain(&o));
    let table = stdout(&o);
    assert!(table.starts_with("cluster not enabled"), "{table}");
    assert!(
        table.contains("testnode (this node)") && table.contains("alive"),
        "{table}"
    );
    let o = run_joyride(&["cluster", "--http", &http, "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["members"][0]["name"], "testnode");
}

#[test]
fn health_fails_quickly_in_one_line_when_nothing_answers() {
    let addr = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let o = run_joyride(&["health", "--http", &addr], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    assert!(started.elapsed() < Duration::from_secs(3));
    let out = stdout(&o);
    assert!(
        out.starts_with("unhealthy: cannot reach joyride at"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1);
    let o = run_joyride(&["records", "--http", &addr], &[]);
    assert_eq!(o.status.code(), Some(1));
    let o = run_joyride(&["health", "--http", "localhost:1"], &[]);
    assert_eq!(o.status.code(), Some(2), "a bad address is a usage error");
    let o = run_joyride(&["health", "--no-http"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", explain(&o));
}

#[test]
fn query_prints_answers_like_a_terse_dig() {
    let mut hosts = String::from("10.0.0.7 web\n");
    for i in 1..=60 {
        hosts.push_str(&format!("10.1.0.{i} many\n"));
    }
    let (j, _hosts) = daemon_with_hosts(&hosts, &["--edns-udp-size", "512"]);
    let server = j.dns.to_string();

    let o = run_joyride(&["query", "web.docker", "--server", &server], &[]);
    assert!(o.status.success(), "{}", explain(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "web.docker.\t10\tIN\tA\t10.0.0.7", "{out}");
    assert!(
        lines[1].starts_with(";; NOERROR, flags: qr aa rd; answers: 1; from ")
            && lines[1].contains("(udp)"),
        "{out}"
    );

    let o = run_joyride(&["query", "10.0.0.7", "--server", &server, "--tcp"], &[]);
    assert!(o.status.success(), "{}", explain(&o));
    assert!(
        stdout(&o).starts_with("7.0.0.10.in-addr.arpa.\t10\tIN\tPTR\tweb.docker.\n"),
        "{}",
        explain(&o)
    );
    assert!(stdout(&o).contains("(tcp)"));

    let o = run_joyride(&["query", "nope.docker", "AAAA", "--server", &server], &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "NXDOMAIN exits 1: {}",
        explain(&o)
    );
    let out = stdout(&o);
    assert!(out.starts_with(";; AUTHORITY:\n;docker.\t"), "{out}");
    assert!(
        out.contains(";; NXDOMAIN, flags: qr aa rd; answers: 0"),
        "{out}"
    );

    // 60 addresses do not fit in 512 bytes: TC over UDP, then the whole answer over TCP.
    let o = run_joyride(
        &["query", "many.docker", "--server", &server, "--json"],
        &[],
    );
    assert!(o.status.success(), "{}", explain(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["protocol"], "udp, truncated, then tcp", "{v}");
    assert_eq!(v["rcode"], "NOERROR");
    assert_eq!(v["answers"].as_array().unwrap().len(), 60);
    assert_eq!(v["question"]["type"], "A");

    // Without --server: the daemon's first --dns-listen address, wildcard made loopback.
    let o = run_joyride(
        &["query", "web.docker"],
        &[("JOYRIDE_DNS_LISTEN", &format!("0.0.0.0:{}", j.dns.port()))],
    );
    assert!(o.status.success(), "{}", explain(&o));

    let o = run_joyride(&["query", "web.docker", "BOGUS", "--server", &server], &[]);
    assert_eq!(o.status.code(), Some(2));
    let nobody = format!("127.0.0.1:{}", free_port());
    let o = run_joyride(
        &[
            "query",
            "web.docker",
            "--server",
            &nobody,
            "--timeout",
            "0.3",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
}

#[test]
fn resolver_install_and_uninstall_a_drop_in_on_a_temp_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolved.conf.d/joyride.conf");
    let p = path.to_str().unwrap();
    let install = ["resolver", "install", "--systemd-resolved", "--path", p];

    let o = run_joyride(&[&install[..], &["--dry-run"]].concat(), &[]);
    assert!(o.status.success(), "{}", explain(&o));
    assert!(stdout(&o).contains("DNS=127.0.0.1:5353 [::1]:5353\nDomains=~docker\n"));
    assert!(!path.exists(), "--dry-run writes nothing");

    let o = run_joyride(
        &[
            "--domain",
            "lan.test",
            "--dns-listen",
            "127.0.0.1:53",
            "resolver",
            "install",
            "--systemd-resolved",
        ],
        &[("JOYRIDE_RESOLVED_DROPIN", p)],
    );
    assert!(o.status.success(), "{}", explain(&o));
    assert!(stdout(&o).contains("systemctl restart systemd-resolved"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("[Resolve]\nDNS=127.0.0.1\nDomains=~lan.test\n"),
        "{text}"
    );
    let o = run_joyride(
        &[
            "--domain",
            "lan.test",
            "--dns-listen",
            "127.0.0.1:53",
            "resolver",
            "install",
            "--systemd-resolved",
            "--path",
            p,
        ],
        &[],
    );
    assert!(stdout(&o).contains("already installed"), "{}", explain(&o));
    let o = run_joyride(&install, &[]);
    assert!(o.status.success(), "{}", explain(&o));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("DNS=127.0.0.1:5353"),
        "replaced"
    );

    let o = run_joyride(&["resolver", "uninstall", "--path", p, "--dry-run"], &[]);
    assert!(o.status.success() && path.exists(), "{}", explain(&o));
    // Uninstalling needs no valid configuration.
    let o = run_joyride(
        &["resolver", "uninstall", "--path", p],
        &[("JOYRIDE_TTL", "ten")],
    );
    assert!(o.status.success() && !path.exists(), "{}", explain(&o));
    let o = run_joyride(&["resolver", "uninstall", "--path", p], &[]);
    assert!(o.status.success() && stdout(&o).contains("nothing to remove"));

    // A file joyride did not write is never replaced nor removed.
    std::fs::write(&path, "[Resolve]\nDNS=192.0.2.1\n").unwrap();
    let o = run_joyride(&install, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    let o = run_joyride(&["resolver", "uninstall", "--path", p], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", explain(&o));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "[Resolve]\nDNS=192.0.2.1\n"
    );
    let o = run_joyride(&["resolver", "install", "--path", p], &[]);
    assert_eq!(o.status.code(), Some(2), "a kind of resolver is required");
}

#[test]
fn resolver_print_follows_the_configuration() {
    let o = run_joyride(
        &[
            "--domain",
            "lan.test",
            "--dns-listen",
            "0.0.0.0:53",
            "--no-forward",
            "resolver",
            "print",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", explain(&o));
    let out = stdout(&o);
    for want in [
        "Joyride answers for lan.test. on 127.0.0.1:53",
        "    DNS=127.0.0.1\n    Domains=~lan.test\n",
        "joyride listens on 127.0.0.1:53; put this line first in /etc/resolv.conf",
        "printf 'nameserver 127.0.0.1\\nport 53\\n' | sudo tee /etc/resolver/lan.test",
        "/etc/docker/daemon.json",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("systemd 246"), "no port, no version note");
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run_joyride(&["completions", shell], &[]);
        assert!(o.status.success(), "{shell}: {}", explain(&o));
        let out = stdout(&o);
        for word in ["records", "hosts-dir", "resolver"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    assert_eq!(
        run_joyride(&["completions", "tcsh"], &[]).status.code(),
        Some(2)
    );

    let o = run_joyride(&["man"], &[]);
    assert!(o.status.success(), "{}", explain(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie") || page.contains(".TH joyride"),
        "{page}"
    );
    for word in ["hosts\\-dir", "JOYRIDE_DOMAIN", "resolver"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let o = run_joyride(&["man", "--dir", dir.path().to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", explain(&o));
    for page in [
        "joyride.1",
        "joyride-records.1",
        "joyride-resolver-install.1",
    ] {
        assert!(Path::new(&dir.path().join(page)).exists(), "{page} missing");
    }
}
