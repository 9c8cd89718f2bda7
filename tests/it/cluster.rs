//! The cluster across "hosts": network namespaces on a test bridge (see `testbed`), one
//! joyride each, records from hosts files (Docker adds nothing to what crosses the wire).
//! Queries are made with dig inside each namespace.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, wait_until, JOYRIDE};
use crate::testbed::{self, Testbed};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=";
const DNS_PORT: u16 = 5353;

/// Skips (with a note) where namespaces cannot be made; scripts/test runs as root.
macro_rules! need_netns {
    () => {
        if !testbed::available() {
            eprintln!("skipped: network namespaces need root and iproute2");
            return;
        }
    };
}

/// One joyride inside a namespace, killed when dropped.
struct Node {
    child: Option<Child>,
    ns: String,
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    hosts: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
    started: Instant,
}

impl Node {
    /// Starts joyride in `host` with gossip on its address, records from its own hosts dir.
    fn start(host: &testbed::Host, name: &str, extra: &[&str], key: Option<&str>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts.d");
        std::fs::create_dir(&hosts).unwrap();
        let mut args: Vec<String> = vec![
            "--no-forward".into(),
            "--dns-listen".into(),
            format!("127.0.0.1:{DNS_PORT}"),
            "--node-name".into(),
            name.into(),
            "--hosts-dir".into(),
            hosts.display().to_string(),
            "--log-level".into(),
            "info,joyride::cluster=debug".into(),
        ];
        if !extra.contains(&"--gossip-listen") {
            args.extend(["--gossip-listen".into(), format!("{}:7946", host.ip)]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let env = key
            .map(|k| vec![("JOYRIDE_CLUSTER_KEY".to_string(), k.to_string())])
            .unwrap_or_default();
        let mut n = Node {
            child: None,
            ns: host.ns.clone(),
            name: name.into(),
            args,
            env,
            log: dir.path().join("joyride.log"),
            hosts,
            dir,
            started: Instant::now(),
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, JOYRIDE])
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn joyride in namespace"));
        self.started = Instant::now();
        let ready = wait_until(Duration::from_secs(20), || {
            if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited early with {s}: {}", self.name, self.log_text());
            }
            self.dig("docker", "SOA").len() == 1
        });
        assert!(ready, "{} did not answer: {}", self.name, self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `dig +short` inside the namespace.
    fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.ns))
            .args([
                "dig",
                "+short",
                "+time=1",
                "+tries=1",
                "-p",
                &DNS_PORT.to_string(),
                "@127.0.0.1",
                name,
                rtype,
            ])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(';') && !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `/dns/cluster` of the web API inside the namespace: each member's name and state.
    fn members(&self) -> Vec<(String, String)> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.ns))
            .args([
                "curl",
                "-s",
                "--max-time",
                "2",
                "http://127.0.0.1:5380/dns/cluster",
            ])
            .output()
            .expect("curl");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut m: Vec<(String, String)> = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or("").to_string(),
                    m["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        m.sort();
        m
    }

    /// Addresses of `name` in answer order.
    fn a(&self, name: &str) -> Vec<String> {
        self.dig(&format!("{name}.docker"), "A")
    }

    /// Writes one hosts file (atomically).
    fn write_hosts(&self, file: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.hosts.join(file)).unwrap();
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log_text());
        }
    }
}

/// Waits until `cond` holds; returns how long it took, or panics with `what`.
fn within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    assert!(wait_until(limit, &mut cond), "{what}: not within {limit:?}");
    start.elapsed()
}

fn seed(bed: &Testbed) -> String {
    format!("{}:7946", bed.hosts[0].ip)
}

#[test]
fn cluster_records_cross_hosts_crash_withdraws_restart_restores_leave_withdraws() {
    need_netns!();
    let bed = Testbed::new(3);
    let join = seed(&bed);
    let mut h1 = Node::start(&bed.hosts[0], "h1", &["--join", &join], Some(KEY));
    let h2 = Node::start(
        &bed.hosts[1],
        "h2",
        &["--join", &join, "--prefer-local"],
        Some(KEY),
    );
    let mut h3 = Node::start(&bed.hosts[2], "h3", &["--join", &join], Some(KEY));

    // A record written on host 1 resolves on hosts 2 and 3.
    h1.write_hosts("web", "10.1.0.10 web\n10.1.0.11 shared\n");
    let t = within(Duration::from_secs(10), "web.docker on h2 and h3", || {
        h2.a("web") == ["10.1.0.10"] && h3.a("web") == ["10.1.0.10"]
    });
    eprintln!("new record resolved on h2 and h3 after {t:?}");
    assert!(t < Duration::from_secs(5), "first replication took {t:?}");
    // Once joined, a change crosses quickly.
    h1.write_hosts("db", "10.1.0.20 db\n");
    let t = within(Duration::from_secs(5), "db.docker", || {
        h2.a("db") == ["10.1.0.20"] && h3.a("db") == ["10.1.0.20"]
    });
    eprintln!("change resolved on h2 and h3 after {t:?}");
    assert!(t < Duration::from_secs(2), "a change took {t:?}");

    let states = |s: &[(&str, &str)]| {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    within(
        Duration::from_secs(5),
        "/dns/cluster lists everyone alive",
        || h2.members() == states(&[("h1", "alive"), ("h2", "alive"), ("h3", "alive")]),
    );

    // One name on two hosts answers with both; --prefer-local puts h2's own first on h2.
    h2.write_hosts("shared", "10.2.0.11 shared\n");
    within(Duration::from_secs(5), "shared on h3", || {
        let mut got = h3.a("shared");
        got.sort();
        got == ["10.1.0.11", "10.2.0.11"]
    });
    within(Duration::from_secs(5), "shared local first on h2", || {
        h2.a("shared") == ["10.2.0.11", "10.1.0.11"]
    });
    // The store keeps peers' records owned by the peer: h2's own answer is unaffected by
    // h1 being gone, below.

    // kill -9 of host 1: its records go within the failure bound (default: dead in < 10 s).
    let killed = Instant::now();
    h1.kill9();
    within(Duration::from_secs(12), "h1's records withdrawn", || {
        h2.a("web").is_empty() && h3.a("web").is_empty()
    });
    let t = killed.elapsed();
    eprintln!("records of the killed node withdrawn after {t:?}");
    assert!(t < Duration::from_secs(10), "withdraw took {t:?}");
    assert_eq!(h2.a("shared"), ["10.2.0.11"], "h2's own record stays");
    within(Duration::from_secs(2), "/dns/cluster shows h1 dead", || {
        h3.members().contains(&("h1".into(), "dead".into()))
    });

    // Restart: its records are back within 2 s of it answering again.
    h1.spawn();
    let t = within(Duration::from_secs(5), "h1's records restored", || {
        h2.a("web") == ["10.1.0.10"] && h3.a("db") == ["10.1.0.20"]
    });
    eprintln!("records of the restarted node back after {t:?}");
    assert!(t < Duration::from_secs(2), "restore took {t:?}");
    within(
        Duration::from_secs(5),
        "restarted h1 has its peers' records",
        || h1.a("shared").len() == 2,
    );

    // SIGTERM: leaves politely, withdrawn at once.
    h3.write_hosts("cache", "10.3.0.30 cache\n");
    within(Duration::from_secs(5), "cache on h1", || {
        h1.a("cache") == ["10.3.0.30"]
    });
    let left = Instant::now();
    h3.terminate();
    within(
        Duration::from_secs(3),
        "h3's records withdrawn on leave",
        || h1.a("cache").is_empty() && h2.a("cache").is_empty(),
    );
    let t = left.elapsed();
    eprintln!("records of the leaving node withdrawn after {t:?}");
    assert!(t < Duration::from_secs(1), "leave withdraw took {t:?}");
    within(Duration::from_secs(2), "/dns/cluster shows h3 left", || {
        h1.members() == states(&[("h1", "alive"), ("h2", "alive"), ("h3", "left")])
    });
}

#[test]
fn cluster_partition_heals_and_converges() {
    need_netns!();
    let bed = Testbed::new(3);
    let join = seed(&bed);
    let ft = ["--join", &join, "--failure-timeout", "2"];
    let h1 = Node::start(&bed.hosts[0], "h1", &ft, Some(KEY));
    let h2 = Node::start(&bed.hosts[1], "h2", &ft, Some(KEY));
    let h3 = Node::start(&bed.hosts[2], "h3", &ft, Some(KEY));
    h1.write_hosts("a", "10.1.0.1 one\n");
    h3.write_hosts("a", "10.3.0.1 three\n");
    within(Duration::from_secs(10), "converged", || {
        h3.a("one").len() == 1 && h1.a("three").len() == 1 && h2.a("three").len() == 1
    });

    bed.hosts[2].set_link(false);
    within(
        Duration::from_secs(15),
        "both sides withdraw the other",
        || h1.a("three").is_empty() && h3.a("one").is_empty(),
    );
    // Both sides change while apart.
    h1.write_hosts("b", "10.1.0.2 one-b\n");
    h3.write_hosts("a", "10.3.0.9 three\n");
    std::thread::sleep(Duration::from_millis(300));

    let healed = Instant::now();
    bed.hosts[2].set_link(true);
    within(Duration::from_secs(15), "healed and converged", || {
        h1.a("three") == ["10.3.0.9"]
            && h2.a("three") == ["10.3.0.9"]
            && h3.a("one-b") == ["10.1.0.2"]
            && h3.a("one") == ["10.1.0.1"]
    });
    eprintln!(
        "partition healed and converged after {:?}",
        healed.elapsed()
    );
}

#[test]
fn cluster_converges_with_ten_percent_loss() {
    need_netns!();
    let bed = Testbed::new(3);
    let join = seed(&bed);
    for h in &bed.hosts {
        h.set_loss(0.1);
    }
    let h1 = Node::start(&bed.hosts[0], "h1", &["--join", &join], Some(KEY));
    let h2 = Node::start(&bed.hosts[1], "h2", &["--join", &join], Some(KEY));
    let h3 = Node::start(&bed.hosts[2], "h3", &["--join", &join], Some(KEY));
    // Enough records that each set spans several datagrams.
    let many: String = (0..150)
        .map(|i| format!("10.1.{}.{} n{i}\n", i / 200, i % 200 + 1))
        .collect();
    h1.write_hosts("many", &many);
    h3.write_hosts("x", "10.3.0.1 three\n");
    let t = within(Duration::from_secs(15), "converged under loss", || {
        h2.a("n149").len() == 1
            && h3.a("n0").len() == 1
            && h1.a("three").len() == 1
            && h2.a("three").len() == 1
    });
    eprintln!("converged under 10% loss after {t:?}");
    // No false deaths: records stay for a while under loss.
    let stable = wait_until(Duration::from_secs(8), || {
        h2.a("n7").is_empty() || h1.a("three").is_empty()
    });
    assert!(!stable, "a record disappeared under 10% loss");
}

#[test]
fn cluster_wrong_key_can_neither_join_nor_inject() {
    need_netns!();
    let bed = Testbed::new(4);
    let join = seed(&bed);
    let h1 = Node::start(&bed.hosts[0], "h1", &["--join", &join], Some(KEY));
    let h2 = Node::start(&bed.hosts[1], "h2", &["--join", &join], Some(KEY));
    h1.write_hosts("a", "10.1.0.1 good\n");
    within(Duration::from_secs(10), "good on h2", || {
        h2.a("good").len() == 1
    });

    // An intruder with another key, and one without any key, both pointed at h1.
    let bad = Node::start(&bed.hosts[2], "bad", &["--join", &join], Some(OTHER_KEY));
    bad.write_hosts("evil", "10.6.6.6 evil\n10.6.6.7 good\n");
    let plain = Node::start(
        &bed.hosts[3],
        "plain",
        &["--join", &join, "--insecure-gossip"],
        None,
    );
    plain.write_hosts("evil", "10.6.6.8 evil2\n");
    let injected = wait_until(Duration::from_secs(6), || {
        !h1.a("evil").is_empty()
            || !h2.a("evil").is_empty()
            || !h1.a("evil2").is_empty()
            || h1.a("good").len() != 1
    });
    assert!(!injected, "a record from a node without our key got in");
    assert!(
        bad.a("good").is_empty() || bad.a("good") == ["10.6.6.7"],
        "the intruder learned nothing"
    );
    assert!(
        plain.a("good").is_empty(),
        "the unkeyed node learned nothing"
    );
    assert!(
        h1.log_text().contains("gossip datagram rejected"),
        "rejections are seen"
    );
    assert!(
        !h1.log_text().contains("peer=bad") && !h1.log_text().contains("peer=plain"),
        "neither joined"
    );
}

#[test]
fn cluster_multicast_discovery_finds_peers_without_seeds() {
    need_netns!();
    let bed = Testbed::new(3);
    let group = "239.1.1.1:4790";
    let args = ["--discovery", "multicast", "--discovery-group", group];
    // h2 and h3 listen on the wildcard: they advertise the address of the interface that
    // leads to the group.
    let wild = [&args[..], &["--gossip-listen", "0.0.0.0:7946"]].concat();
    let h1 = Node::start(&bed.hosts[0], "h1", &args, Some(KEY));
    let h2 = Node::start(&bed.hosts[1], "h2", &wild, Some(KEY));
    let h3 = Node::start(&bed.hosts[2], "h3", &wild, Some(KEY));
    h1.write_hosts("a", "10.1.0.1 one\n");
    h3.write_hosts("a", "10.3.0.1 three\n");
    let t = within(Duration::from_secs(10), "found by multicast", || {
        h2.a("one").len() == 1
            && h3.a("one").len() == 1
            && h1.a("three").len() == 1
            && h2.a("three").len() == 1
    });
    eprintln!("multicast discovery converged after {t:?}");
    assert!(
        h2.log_text().contains("advertise=10.210.0.2:7946"),
        "{}",
        h2.log_text()
    );
}

#[test]
fn cluster_refuses_keyless_gossip_on_a_network_address() {
    let out = Command::new(JOYRIDE)
        .args([
            "--no-forward",
            "--dns-listen",
            "127.0.0.1:0",
            "--gossip-listen",
            "0.0.0.0:0",
        ])
        .env_remove("JOYRIDE_CLUSTER_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not loopback")
            && err.contains("joyride keygen")
            && err.contains("--insecure-gossip"),
        "{err}"
    );

    let out = Command::new(JOYRIDE).arg("keygen").output().unwrap();
    assert!(out.status.success());
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        joyride::cluster::crypto::ClusterKey::parse(&key).is_ok(),
        "{key}"
    );
    let again = Command::new(JOYRIDE).arg("keygen").output().unwrap();
    assert_ne!(
        String::from_utf8_lossy(&again.stdout).trim(),
        key,
        "keys are random"
    );
}

#[test]
fn cluster_join_srv_finds_seeds_on_loopback() {
    // Two nodes on loopback: the second finds the first only through an SRV record served
    // by a real dnsmasq.
    let gossip1 = support::free_port();
    let srv = format!("--srv-host=_joyride._udp.cluster.test,localhost,{gossip1}");
    let dnsmasq = support::Dnsmasq::start(&[&srv, "--host-record=localhost,127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let (hosts1, hosts2) = (dir.path().join("h1"), dir.path().join("h2"));
    std::fs::create_dir(&hosts1).unwrap();
    std::fs::create_dir(&hosts2).unwrap();
    std::fs::write(hosts1.join("a"), "10.1.0.1 one\n").unwrap();
    let g1 = format!("127.0.0.1:{gossip1}");
    let j1 = support::Joyride::start_with_env(
        &[
            "--no-forward",
            "--node-name",
            "n1",
            "--hosts-dir",
            hosts1.to_str().unwrap(),
            "--gossip-listen",
            &g1,
        ],
        &[("JOYRIDE_CLUSTER_KEY", KEY)],
    );
    let g2 = format!("127.0.0.1:{}", support::free_port());
    let j2 = support::Joyride::start_with_env(
        &[
            "--upstream",
            &dnsmasq.arg(),
            "--node-name",
            "n2",
            "--hosts-dir",
            hosts2.to_str().unwrap(),
            "--gossip-listen",
            &g2,
            "--join-srv",
            "_joyride._udp.cluster.test",
            "--failure-timeout",
            "2",
        ],
        &[("JOYRIDE_CLUSTER_KEY", KEY)],
    );
    let _ = &j1;
    within(Duration::from_secs(10), "one.docker via SRV seed", || {
        j2.addresses("one.docker.") == ["10.1.0.1"]
    });
}
