//! The cluster with real containers: three namespace "hosts" on a test bridge (see
//! `testbed`), each with its own Docker engine (a dockerd inside that host's namespace, its
//! own data, sockets and container subnet 172.31.N.0/24) and its own joyride following that
//! engine, all in one encrypted cluster. A container started on one host must resolve on
//! the others, and go when it stops. Queries are made with dig inside each namespace.
//!
//! Without root, iproute2, dockerd or the local test image these tests pass with a note,
//! unless `JOYRIDE_REQUIRE_DOCKER=1` (scripts/test sets it), which makes them fail.
//! Everything made here (engines, their containers, namespaces, the bridge) is removed on
//! drop, also when the test fails.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{reap_engine_leftovers, tail, unique_name, wait_until, JOYRIDE};
use crate::testbed::{self, Testbed};

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const IMAGE: &str = "joyride-test/busybox:latest";
const MAIN_ENGINE: &str = "unix:///var/run/docker.sock";
const DNS_PORT: u16 = 5353;
/// How long a change may take to show on the other hosts before the test fails: far above
/// what it takes (well under a second), to be safe on a busy machine.
const SHOW: Duration = Duration::from_secs(10);

/// What this test needs, or why it cannot run.
fn missing() -> Option<String> {
    if !testbed::available() {
        return Some("network namespaces need root and iproute2".into());
    }
    for tool in ["dockerd", "nsenter", "dig", "curl"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (scripts/test installs it)"
            ));
        }
    }
    let image = Command::new("docker")
        .args(["-H", MAIN_ENGINE, "image", "inspect", IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !image {
        return Some(format!(
            "no {IMAGE} on the engine at {MAIN_ENGINE} (scripts/test builds it)"
        ));
    }
    None
}

/// Returns from the test (with a note) when something is missing, or fails it when
/// `JOYRIDE_REQUIRE_DOCKER=1`.
macro_rules! need_engines {
    () => {
        if let Some(why) = missing() {
            if std::env::var("JOYRIDE_REQUIRE_DOCKER").as_deref() == Ok("1") {
                panic!("JOYRIDE_REQUIRE_DOCKER=1 but {why}");
            }
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Runs `docker -H host args...`.
fn docker(host: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .arg("-H")
        .arg(host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker -H {host} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A dockerd inside one host's namespace: its own data root, exec root, socket and pid file
/// under `dir`, its default bridge at `bip` (inside the namespace only), and no iptables
/// rules. Stopped, with its containers and helpers, when dropped.
struct HostEngine {
    dir: PathBuf,
    /// `unix:///.../docker.sock`, for `docker -H` and joyride's `--docker-host`.
    host: String,
    child: Option<Child>,
    stopping: bool,
}

impl HostEngine {
    /// Starts dockerd in `host`'s namespace; does not wait for it (see `wait_ready`).
    fn spawn(host: &testbed::Host, dir: PathBuf, bip: &str) -> HostEngine {
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let sock = format!("unix://{}/docker.sock", dir.display());
        // nsenter, not `ip netns exec`: that remounts /sys and dockerd then fails.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", host.ns))
            .arg("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(&sock)
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--bip", bip, "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        HostEngine {
            dir,
            host: sock,
            child: Some(child),
            stopping: false,
        }
    }

    fn wait_ready(&mut self, limit: Duration) {
        let up = wait_until(limit, || {
            if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("dockerd exited early with {s}: {}", tail(&self.log(), 30));
            }
            self.try_docker(&["info", "--format", "{{.ServerVersion}}"])
                .is_ok()
        });
        assert!(
            up,
            "dockerd in {} did not answer: {}",
            self.dir.display(),
            tail(&self.log(), 30)
        );
    }

    /// `docker load` of an image saved with `docker save`.
    fn load(&self, tar: &Path) {
        let out = Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .arg("load")
            .arg("-i")
            .arg(tar)
            .output()
            .expect("docker load");
        assert!(out.status.success(), "docker load: {out:?}");
    }

    fn try_docker(&self, args: &[&str]) -> Result<String, String> {
        docker(&self.host, args)
    }

    fn docker(&self, args: &[&str]) -> String {
        self.try_docker(args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Removes its containers and asks dockerd to stop (SIGTERM), without waiting; once.
    fn begin_stop(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(c) = &self.child {
            if let Ok(ids) = self.try_docker(&["ps", "-aq"]) {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids);
                    let _ = self.try_docker(&args);
                }
            }
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
    }
}

impl Drop for HostEngine {
    fn drop(&mut self) {
        self.begin_stop();
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        reap_engine_leftovers(&self.dir);
        if std::thread::panicking() {
            eprintln!(
                "--- dockerd {} (tail) ---\n{}",
                self.dir.display(),
                tail(&self.log(), 20)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The engines of all hosts. Dropping stops them all at once (each takes a second or more).
struct Engines {
    dir: PathBuf,
    engines: Vec<HostEngine>,
}

impl Engines {
    /// One engine per host of `bed` (bridge 172.31.N.1/24 on host N), started in parallel,
    /// each with the test image loaded.
    fn start(bed: &Testbed) -> Engines {
        let dir = PathBuf::from(format!("/tmp/{}", unique_name("jrcd")));
        std::fs::create_dir_all(&dir).unwrap();
        let tar = dir.join("image.tar");
        let saved = Command::new("docker")
            .args(["-H", MAIN_ENGINE, "save", "-o"])
            .arg(&tar)
            .arg(IMAGE)
            .output()
            .expect("docker save");
        assert!(saved.status.success(), "docker save {IMAGE}: {saved:?}");
        let mut all = Engines {
            dir: dir.clone(),
            engines: Vec::new(),
        };
        for (i, h) in bed.hosts.iter().enumerate() {
            let bip = format!("172.31.{}.1/24", i + 1);
            all.engines
                .push(HostEngine::spawn(h, dir.join(format!("h{}", i + 1)), &bip));
        }
        let started = Instant::now();
        std::thread::scope(|s| {
            for e in all.engines.iter_mut() {
                let tar = &tar;
                s.spawn(move || {
                    e.wait_ready(Duration::from_secs(60));
                    e.load(tar);
                });
            }
        });
        eprintln!(
            "{} engines up with the image after {:?}",
            all.engines.len(),
            started.elapsed()
        );
        all
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        for e in self.engines.iter_mut() {
            e.begin_stop();
        }
        // Each engine's own drop waits for it and cleans up what is left.
        self.engines.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One joyride inside a host's namespace, following that host's engine; killed when
/// dropped.
struct Node {
    child: Child,
    ns: String,
    name: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(host: &testbed::Host, name: &str, engine: &HostEngine, join: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("joyride.log");
        let ip = host.ip.to_string();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", host.ns))
            .arg(JOYRIDE)
            .args(["--no-forward", "--dns-listen"])
            .arg(format!("127.0.0.1:{DNS_PORT}"))
            .args(["--http-listen", "127.0.0.1:5380"])
            .args(["--node-name", name])
            .args(["--gossip-listen", &format!("{ip}:7946")])
            .args(["--join", join])
            .args(["--docker-host", &engine.host])
            .args(["--host-ip", &ip])
            .args([
                "--log-level",
                "info,joyride::cluster=debug,joyride::sources::docker=debug",
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JOYRIDE_CLUSTER_KEY", KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn joyride in namespace");
        let mut n = Node {
            child,
            ns: host.ns.clone(),
            name: name.into(),
            log,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            if let Ok(Some(s)) = n.child.try_wait() {
                panic!("{} exited early with {s}: {}", n.name, n.log_text());
            }
            n.dig("docker", "SOA").len() == 1
        });
        assert!(ready, "{} did not answer: {}", n.name, n.log_text());
        n
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `dig +short` inside the namespace.
    fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.ns))
            .args(["dig", "+short", "+time=1", "+tries=1", "-p"])
            .arg(DNS_PORT.to_string())
            .args(["@127.0.0.1", name, rtype])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(';') && !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn a(&self, name: &str) -> Vec<String> {
        let mut got = self.dig(name, "A");
        got.sort();
        got
    }

    /// Members of `/dns/cluster` that are alive.
    fn alive(&self) -> usize {
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
        v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["state"] == "alive")
            .count()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log_text());
        }
    }
}

/// Polls `name` on every node of `nodes` at once until it is `want` (sorted) on each;
/// returns how long after `since` the last of them showed it, or panics with what was seen.
fn until_everywhere(nodes: &[&Node], name: &str, want: &[&str], since: Instant) -> Duration {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let results: Vec<Result<Duration, Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| {
                let want = &want;
                s.spawn(move || {
                    let mut seen = Vec::new();
                    let ok = wait_until(SHOW, || {
                        seen = n.a(name);
                        seen == *want
                    });
                    if ok {
                        Ok(since.elapsed())
                    } else {
                        Err(seen)
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut last = Duration::ZERO;
    for (n, r) in nodes.iter().zip(results) {
        match r {
            Ok(t) => last = last.max(t),
            Err(seen) => panic!(
                "{name} on {}: want {want:?} within {SHOW:?}, last seen {seen:?}",
                n.name
            ),
        }
    }
    last
}

#[test]
fn cluster_docker_containers_resolve_on_every_host() {
    need_engines!();
    let t_total = Instant::now();
    // Dropped last to first: nodes, engines, then the namespaces and bridge.
    let bed = Testbed::new(3);
    let engines = Engines::start(&bed);
    let e = &engines.engines;
    let join = format!("{}:7946", bed.hosts[0].ip);
    let h1 = Node::start(&bed.hosts[0], "h1", &e[0], &join);
    let h2 = Node::start(&bed.hosts[1], "h2", &e[1], &join);
    let h3 = Node::start(&bed.hosts[2], "h3", &e[2], &join);
    // Measure replication, not joining: wait until everyone sees everyone.
    let t = Instant::now();
    assert!(
        wait_until(SHOW, || [&h1, &h2, &h3].iter().all(|n| n.alive() == 3)),
        "the cluster did not form"
    );
    eprintln!("cluster of 3 formed after {:?}", t.elapsed());

    // A container on host 1 resolves on hosts 2 and 3 to its address on host 1's engine.
    let web = unique_name("web");
    e[0].docker(&["run", "-d", "--name", &web, IMAGE, "sleep", "3600"]);
    let started = Instant::now();
    let ip = e[0].docker(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.IPAddress}}",
        &web,
    ]);
    assert!(
        ip.parse::<Ipv4Addr>()
            .is_ok_and(|a| a.octets()[..3] == [172, 31, 1]),
        "{web} on host 1's engine has address {ip:?}"
    );
    let fqdn = format!("{web}.docker");
    let resolved = until_everywhere(&[&h2, &h3], &fqdn, &[&ip], started);
    eprintln!("cluster-docker: docker run returned -> {fqdn} resolves on h2 and h3: {resolved:?}");
    assert!(resolved < Duration::from_secs(3), "took {resolved:?}");
    assert_eq!(h1.a(&fqdn), [ip.as_str()], "and on its own host");
    // Every node derives the reverse record of a peer's address too.
    let reverse = format!(
        "{}.in-addr.arpa",
        ip.split('.').rev().collect::<Vec<_>>().join(".")
    );
    for n in [&h2, &h3] {
        let ptr = n.dig(&reverse, "PTR");
        assert_eq!(ptr.first(), Some(&format!("{fqdn}.")), "PTR on {}", n.name);
    }

    // Stopped: gone on the other hosts.
    e[0].docker(&["stop", "-t", "0", &web]);
    let stopped = Instant::now();
    let gone = until_everywhere(&[&h2, &h3], &fqdn, &[], stopped);
    eprintln!("cluster-docker: docker stop returned -> {fqdn} gone on h2 and h3: {gone:?}");
    assert!(h1.a(&fqdn).is_empty(), "and on its own host");

    // `joyride.host.name` on host 2 points at host 2's address, on hosts 1 and 3.
    let app = unique_name("app");
    let label = format!("joyride.host.name={app}.example.com");
    e[1].docker(&[
        "run", "-d", "--name", &app, "-l", &label, "-p", "18080:80", IMAGE, "sleep", "3600",
    ]);
    let started = Instant::now();
    let host2 = bed.hosts[1].ip.to_string();
    let name = format!("{app}.example.com");
    let resolved = until_everywhere(&[&h1, &h3], &name, &[&host2], started);
    eprintln!("cluster-docker: docker run returned -> {name} resolves on h1 and h3: {resolved:?}");
    // Its own container name points at the container on host 2's engine.
    let ip2 = e[1].docker(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.IPAddress}}",
        &app,
    ]);
    until_everywhere(&[&h1, &h3], &format!("{app}.docker"), &[&ip2], started);
    // Its published port: an SRV record whose target is host 2's node name, at host 2's
    // address.
    for n in [&h1, &h3] {
        assert_eq!(
            n.dig(&format!("_80._tcp.{app}.docker"), "SRV"),
            ["0 0 18080 h2.node.docker."],
            "SRV on {}",
            n.name
        );
        assert_eq!(n.a("h2.node.docker"), [host2.as_str()], "on {}", n.name);
    }

    e[1].docker(&["rm", "-f", &app]);
    let removed = Instant::now();
    let gone = until_everywhere(&[&h1, &h3], &name, &[], removed);
    eprintln!("cluster-docker: docker rm returned -> {name} gone on h1 and h3: {gone:?}");
    eprintln!(
        "cluster-docker: whole test (set-up included) {:?}",
        t_total.elapsed()
    );
}
