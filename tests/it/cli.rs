//! The command line: help, version, configuration errors, exit codes, signals.

use std::net::UdpSocket;
use std::process::Command;

use crate::support::*;

#[test]
fn help_documents_every_option_with_its_env_var() {
    let out = run_joyride(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--config", "JOYRIDE_CONFIG"),
        ("--dns-listen", "JOYRIDE_DNS_LISTEN"),
        ("--domain", "JOYRIDE_DOMAIN"),
        ("--ttl", "JOYRIDE_TTL"),
        ("--negative-ttl", "JOYRIDE_NEGATIVE_TTL"),
        ("--upstream", "JOYRIDE_UPSTREAM"),
        ("--no-forward", "JOYRIDE_NO_FORWARD"),
        ("--hosts-dir", "JOYRIDE_HOSTS_DIR"),
        ("--log-level", "JOYRIDE_LOG_LEVEL"),
        ("--log-format", "JOYRIDE_LOG_FORMAT"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env} missing from --help"
        );
    }
    assert!(help.contains("default"), "defaults are documented");
    let v = run_joyride(&["--version"], &[]);
    assert!(String::from_utf8(v.stdout)
        .unwrap()
        .contains(env!("CARGO_PKG_VERSION")));
}

/// Runs joyride expecting a start-up failure: exit 2 and one line naming `want`.
fn fails_with(args: &[&str], env: &[(&str, &str)], want: &str) {
    let out = run_joyride(args, env);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.contains(want)),
        "{args:?}: expected {want:?} in {err}"
    );
}

#[test]
fn bad_configuration_exits_2_with_one_clear_line() {
    fails_with(
        &["--no-forward", "--ttl", "ten"],
        &[],
        "invalid value \"ten\" for --ttl",
    );
    fails_with(
        &["--no-forward", "--dns-listen", "localhost"],
        &[],
        "--dns-listen",
    );
    fails_with(&["--no-forward", "--domain", "a..b"], &[], "--domain");
    fails_with(&["--no-forward", "--upstream", "x.y"], &[], "--upstream");
    fails_with(&["--no-forward", "--bogus-flag"], &[], "--bogus-flag");
    fails_with(&["--no-forward"], &[("JOYRIDE_TTL", "-5")], "--ttl");
    fails_with(&["--no-forward"], &[("DNS_PORT", "70000")], "DNS_PORT");
    fails_with(
        &["--no-forward", "--config", "/nonexistent/joyride.toml"],
        &[],
        "cannot read config file /nonexistent/joyride.toml",
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "domian = \"docker\"\n").unwrap();
    fails_with(
        &["--no-forward", "--config", cfg.to_str().unwrap()],
        &[],
        "unknown field `domian`",
    );
    std::fs::write(
        &cfg,
        "[[records]]\nname = \"x\"\ntype = \"SRV\"\nvalue = \"1 2\"\n",
    )
    .unwrap();
    fails_with(
        &["--no-forward", "--config", cfg.to_str().unwrap()],
        &[],
        "records[0].value",
    );
}

#[test]
fn a_port_already_taken_exits_2_naming_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    fails_with(
        &["--no-forward", "--dns-listen", &addr],
        &[],
        &format!("cannot listen for DNS on udp {addr}"),
    );
}

#[test]
fn environment_and_legacy_names_configure_it() {
    let port = free_port();
    let j = Joyride::start_with_env(
        &["--no-forward"],
        &[("JOYRIDE_DOMAIN", "envzone"), ("JOYRIDE_TTL", "42")],
    );
    assert_eq!(j.query("envzone.", RecordType::SOA).answers[0].ttl, 42);
    drop(j);
    // DNS_BIND_ADDRESS/DNS_PORT: the earlier Joyride's listen address. The harness also
    // passes --dns-listen, which wins, so run the binary directly here (without its web
    // server, whose default port 5380 another joyride on this machine may hold).
    let mut child = Command::new(JOYRIDE)
        .args(["--no-forward", "--no-http"])
        .env_clear()
        .env("DNS_BIND_ADDRESS", "127.0.0.1")
        .env("DNS_PORT", port.to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let ok = wait_until(std::time::Duration::from_secs(10), || {
        udp_query_timeout(
            addr,
            &Message::query_for("docker.", RecordType::SOA),
            std::time::Duration::from_millis(200),
        )
        .is_ok()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ok,
        "legacy DNS_BIND_ADDRESS/DNS_PORT listen address answers"
    );
}

#[test]
fn sigterm_stops_it_cleanly() {
    let mut j = Joyride::start(&["--no-forward"]);
    let status = j.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(j.log_text().contains("shutting down"));
}

/// A host without IPv6 loopback (many containers): the defaults still start, on IPv4 alone.
/// Runs in a network namespace of its own with IPv6 disabled.
#[test]
fn default_addresses_skip_a_missing_ipv6_loopback() {
    let ns = format!("jr-noip6-{}", std::process::id());
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .expect("ip")
            .success()
    };
    assert!(
        ip(&["netns", "add", &ns]),
        "cannot create a network namespace (run as root)"
    );
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }
    let _cleanup = Cleanup(ns.clone());
    assert!(ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]));
    assert!(ip(&[
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1"
    ]));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "timeout",
            "3",
            JOYRIDE,
            "--no-forward",
            "--no-http",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // `timeout` ends it with SIGTERM after 3 s: a clean stop, not a start-up failure.
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(err.contains("skipping a default DNS address"), "{err}");
    assert!(
        err.contains("dns listening (udp) addr=127.0.0.1:5353"),
        "{err}"
    );
}
