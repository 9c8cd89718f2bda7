//! The Docker source against a real engine: every naming scheme, every event, sharing,
//! renames, networks, health gating, an engine that is missing, and an engine killed and
//! restarted under a running joyride (a private dockerd, so the machine's engine is never
//! touched).
//!
//! Without a reachable engine these tests pass with a note, unless
//! `JOYRIDE_REQUIRE_DOCKER=1` (scripts/test sets it), which makes them fail. Every
//! container, network and engine they make has a unique `jrt-` name and is removed on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::support::*;

const IMAGE: &str = "joyride-test/busybox:latest";
const MAIN_ENGINE: &str = "unix:///var/run/docker.sock";
/// What `--host-ip` says in these tests: an address nothing is ever sent to.
const HOST_IP: &str = "127.0.0.2";
/// How long a change may take to show; far above the target, to be safe on a busy machine.
const SHOW: Duration = Duration::from_secs(10);

/// A Docker engine reached with the docker CLI.
#[derive(Clone)]
struct Engine {
    host: String,
}

impl Engine {
    /// The machine's engine, or `None` (the test returns) when none answers and
    /// `JOYRIDE_REQUIRE_DOCKER` is not `1`.
    fn main() -> Option<Engine> {
        let e = Engine {
            host: MAIN_ENGINE.into(),
        };
        if e.try_docker(&["info", "--format", "{{.ServerVersion}}"])
            .is_ok()
        {
            return Some(e);
        }
        if std::env::var("JOYRIDE_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("JOYRIDE_REQUIRE_DOCKER=1 but no Docker engine answers at {MAIN_ENGINE}");
        }
        eprintln!("no Docker engine at {MAIN_ENGINE}: test skipped");
        None
    }

    fn try_docker(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn docker(&self, args: &[&str]) -> String {
        self.try_docker(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `docker run -d --name NAME OPTS... IMAGE sleep 3600`, removed on drop.
    fn run(&self, name: &str, opts: &[&str]) -> Container {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[IMAGE, "sleep", "3600"]);
        let c = Container {
            engine: self.clone(),
            name: name.to_string(),
        };
        self.docker(&args);
        c
    }

    /// A user-defined network with IPv6, removed on drop.
    fn network(&self, name: &str) -> Network {
        let r = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let subnet = format!(
            "fd42:{:x}:{:x}::/64",
            (r >> 16) & 0xffff,
            (r ^ std::process::id()) & 0xffff
        );
        self.docker(&["network", "create", "--ipv6", "--subnet", &subnet, name]);
        Network {
            engine: self.clone(),
            name: name.to_string(),
        }
    }
}

struct Container {
    engine: Engine,
    name: String,
}

impl Container {
    fn inspect(&self, format: &str) -> String {
        self.engine
            .docker(&["inspect", "--format", format, &self.name])
    }

    /// The container's address on `network`.
    fn ip(&self, network: &str) -> String {
        self.inspect(&format!(
            "{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"
        ))
    }

    fn ipv6(&self, network: &str) -> String {
        self.inspect(&format!(
            "{{{{(index .NetworkSettings.Networks \"{network}\").GlobalIPv6Address}}}}"
        ))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.engine.try_docker(&["rm", "-f", "-v", &self.name]);
    }
}

struct Network {
    engine: Engine,
    name: String,
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.engine.try_docker(&["network", "rm", &self.name]);
    }
}

/// Joyride with the Docker source on `engine`.
fn joyride(engine: &Engine, extra: &[&str]) -> Joyride {
    let mut args = vec![
        "--no-forward",
        "--docker-host",
        engine.host.as_str(),
        "--host-ip",
        HOST_IP,
    ];
    args.extend_from_slice(extra);
    Joyride::start(&args)
}

/// Waits until `name`'s addresses are `want` (sorted); panics with what was seen otherwise.
fn expect_addresses(j: &Joyride, name: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut seen = Vec::new();
    let ok = wait_until(SHOW, || {
        seen = j.addresses(name);
        seen == want
    });
    assert!(ok, "{name}: want {want:?}, last seen {seen:?}");
}

/// Asserts `name` stays without addresses for `d`.
fn expect_absent_for(j: &Joyride, name: &str, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let seen = j.addresses(name);
        assert!(
            seen.is_empty(),
            "{name} should have no address, has {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn srv(j: &Joyride, name: &str) -> Message {
    j.query(name, RecordType::SRV)
}

#[test]
fn docker_every_naming_scheme_for_a_container_started_before_joyride() {
    let Some(engine) = Engine::main() else { return };
    let n = unique_name("jrt");
    let net = engine.network(&format!("{n}-net"));
    let c = engine.run(
        &n,
        &[
            "--hostname",
            &format!("{n}-h"),
            "--network",
            &net.name,
            "--network-alias",
            &format!("{n}-al"),
            "-p",
            "127.0.0.1::80",
            "--expose",
            "53/udp",
            "-l",
            "com.docker.compose.service=svc",
            "-l",
            &format!("com.docker.compose.project={n}-proj"),
            "-l",
            &format!("joyride.alias={n}-x.example.test"),
            "-l",
            &format!("joyride.host.name={n}-proxy.example.test"),
            "-e",
            &format!("DNSDOCK_ALIAS={n}-dd.example.test"),
        ],
    );
    let v4 = c.ip(&net.name);
    let v6 = c.ipv6(&net.name);
    assert!(!v4.is_empty() && !v6.is_empty(), "{v4:?} {v6:?}");
    let both = [v4.as_str(), v6.as_str()];
    let host_port = c.inspect("{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}");

    let j = joyride(&engine, &[]);
    for name in [
        format!("{n}.docker"),
        format!("{n}-h.docker"),
        format!("svc.{n}-proj.docker"),
        format!("{n}-al.docker"),
        format!("{n}.busybox.docker"),
        format!("{n}-x.example.test"),
        format!("{n}-dd.example.test"),
    ] {
        expect_addresses(&j, &name, &both);
    }
    expect_addresses(&j, &format!("{n}-proxy.example.test"), &[HOST_IP]);
    // Every busybox container answers `busybox.docker` and `*.busybox.docker`.
    for name in ["busybox.docker", "*.busybox.docker"] {
        let got = answers(&j.query(name, RecordType::A));
        assert!(got.contains(&v4), "{name}: {got:?} lacks {v4}");
    }

    let published = srv(&j, &format!("_80._tcp.{n}.docker"));
    assert_eq!(
        answers(&published),
        vec![format!("0 0 {host_port} testnode.node.docker.")]
    );
    let additional: Vec<String> = published
        .additionals
        .iter()
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(additional, vec![HOST_IP.to_string()]);
    assert_eq!(
        answers(&srv(&j, &format!("_53._udp.{n}.docker"))),
        vec![format!("0 0 53 {n}.docker.")]
    );

    let reverse = format!(
        "{}.in-addr.arpa.",
        v4.split('.').rev().collect::<Vec<_>>().join(".")
    );
    let ptr = answers(&j.query(&reverse, RecordType::PTR));
    assert_eq!(ptr.first(), Some(&format!("{n}.docker.")), "{ptr:?}");

    // The dnsdock scheme with an environment.
    let qa = joyride(&engine, &["--environment", "qa"]);
    expect_addresses(&qa, &format!("{n}.busybox.qa.docker"), &both);
    let got = answers(&qa.query("busybox.qa.docker", RecordType::A));
    assert!(got.contains(&v4), "{got:?}");
    assert!(qa.addresses(&format!("{n}.busybox.docker")).is_empty());
}

#[test]
fn docker_labels_ttl_ignore_and_network_choice() {
    let Some(engine) = Engine::main() else { return };
    let n = unique_name("jrt");
    let net = engine.network(&format!("{n}-net"));
    let on_two = |name: &str, labels: &[&str]| {
        let mut opts = vec!["--network", net.name.as_str()];
        for l in labels {
            opts.extend_from_slice(&["-l", l]);
        }
        let c = engine.run(name, &opts);
        engine.docker(&["network", "connect", "bridge", name]);
        c
    };
    let plain = on_two(&format!("{n}-plain"), &["joyride.ttl=77"]);
    let picked = on_two(&format!("{n}-picked"), &["joyride.network=bridge"]);
    let _ignored = on_two(&format!("{n}-ignored"), &["joyride.ignore=true"]);
    let (p4, p6, pb) = (
        plain.ip(&net.name),
        plain.ipv6(&net.name),
        plain.ip("bridge"),
    );

    let j = joyride(&engine, &[]);
    expect_addresses(&j, &format!("{n}-plain.docker"), &[&p4, &p6, &pb]);
    let ttls: Vec<u32> = j
        .query(&format!("{n}-plain.docker"), RecordType::A)
        .answers
        .iter()
        .map(|r| r.ttl)
        .collect();
    assert_eq!(ttls, vec![77, 77]);
    expect_addresses(&j, &format!("{n}-picked.docker"), &[&picked.ip("bridge")]);
    let r = j.query(&format!("{n}-ignored.docker"), RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let only = joyride(&engine, &["--network", &net.name]);
    expect_addresses(&only, &format!("{n}-plain.docker"), &[&p4, &p6]);
    // Its label picks a network that `--network` excludes: nothing.
    assert!(only.addresses(&format!("{n}-picked.docker")).is_empty());
}

#[test]
fn docker_lifecycle_events() {
    let Some(engine) = Engine::main() else { return };
    let j = joyride(&engine, &[]);
    let n = unique_name("jrt");
    let name = format!("{n}.docker");
    let c = engine.run(&n, &[]);
    expect_addresses(&j, &name, &[&c.ip("bridge")]);

    engine.docker(&["pause", &n]);
    expect_addresses(&j, &name, &[]);
    engine.docker(&["unpause", &n]);
    expect_addresses(&j, &name, &[&c.ip("bridge")]);

    engine.docker(&["kill", &n]);
    expect_addresses(&j, &name, &[]);
    engine.docker(&["start", &n]);
    expect_addresses(&j, &name, &[&c.ip("bridge")]);

    engine.docker(&["restart", "-t", "0", &n]);
    expect_addresses(&j, &name, &[&c.ip("bridge")]);

    engine.docker(&["stop", "-t", "0", &n]);
    expect_addresses(&j, &name, &[]);
    engine.docker(&["start", &n]);
    expect_addresses(&j, &name, &[&c.ip("bridge")]);

    engine.docker(&["rm", "-f", &n]);
    expect_addresses(&j, &name, &[]);
    let reverse = j.query("docker.", RecordType::SOA);
    assert_eq!(reverse.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn docker_two_containers_share_a_name() {
    let Some(engine) = Engine::main() else { return };
    let j = joyride(&engine, &[]);
    let n = unique_name("jrt");
    let labels = [
        "-l",
        "com.docker.compose.service=api",
        "-l",
        &format!("com.docker.compose.project={n}"),
    ];
    let a = engine.run(&format!("{n}-1"), &labels);
    let b = engine.run(&format!("{n}-2"), &labels);
    let name = format!("api.{n}.docker");
    expect_addresses(&j, &name, &[&a.ip("bridge"), &b.ip("bridge")]);
    engine.docker(&["kill", &a.name]);
    expect_addresses(&j, &name, &[&b.ip("bridge")]);
    expect_addresses(&j, &format!("{}.docker", b.name), &[&b.ip("bridge")]);
}

#[test]
fn docker_rename() {
    let Some(engine) = Engine::main() else { return };
    let j = joyride(&engine, &[]);
    let n = unique_name("jrt");
    let mut c = engine.run(&n, &[]);
    let ip = c.ip("bridge");
    expect_addresses(&j, &format!("{n}.docker"), &[&ip]);
    let renamed = format!("{n}-renamed");
    engine.docker(&["rename", &n, &renamed]);
    c.name = renamed.clone();
    expect_addresses(&j, &format!("{renamed}.docker"), &[&ip]);
    expect_addresses(&j, &format!("{n}.docker"), &[]);
}

#[test]
fn docker_network_connect_and_disconnect() {
    let Some(engine) = Engine::main() else { return };
    let j = joyride(&engine, &[]);
    let n = unique_name("jrt");
    let net = engine.network(&format!("{n}-net"));
    let c = engine.run(&n, &[]);
    let bridge = c.ip("bridge");
    expect_addresses(&j, &format!("{n}.docker"), &[&bridge]);

    let alias = format!("{n}-al");
    engine.docker(&["network", "connect", "--alias", &alias, &net.name, &n]);
    let (v4, v6) = (c.ip(&net.name), c.ipv6(&net.name));
    expect_addresses(&j, &format!("{n}.docker"), &[&bridge, &v4, &v6]);
    expect_addresses(&j, &format!("{alias}.docker"), &[&v4, &v6]);

    engine.docker(&["network", "disconnect", &net.name, &n]);
    expect_addresses(&j, &format!("{n}.docker"), &[&bridge]);
    expect_addresses(&j, &format!("{alias}.docker"), &[]);
}

#[test]
fn docker_healthy_only_gating() {
    let Some(engine) = Engine::main() else { return };
    let j = joyride(&engine, &[]);
    let n = unique_name("jrt");
    let c = engine.run(
        &n,
        &[
            "-l",
            "joyride.healthy-only=true",
            "--health-cmd",
            "[ -s /ok ]",
            "--health-interval",
            "200ms",
            "--health-retries",
            "1",
        ],
    );
    let name = format!("{n}.docker");
    expect_absent_for(&j, &name, Duration::from_millis(1500));
    engine.docker(&["exec", &n, "sh", "-c", "echo ok > /ok"]);
    expect_addresses(&j, &name, &[&c.ip("bridge")]);
    engine.docker(&["exec", &n, "sh", "-c", ": > /ok"]);
    expect_addresses(&j, &name, &[]);
}

#[test]
fn docker_events_during_the_initial_list() {
    let Some(engine) = Engine::main() else { return };
    let n = unique_name("jrt");
    let count = 12;
    let names: Vec<String> = (0..count).map(|i| format!("{n}-{i}")).collect();
    // Containers start while joyride starts, subscribes and lists.
    let starter = {
        let engine = engine.clone();
        let names = names.clone();
        std::thread::spawn(move || {
            names
                .iter()
                .map(|name| engine.run(name, &[]))
                .collect::<Vec<Container>>()
        })
    };
    let j = joyride(&engine, &[]);
    let containers = starter.join().unwrap();
    for c in &containers {
        expect_addresses(&j, &format!("{}.docker", c.name), &[&c.ip("bridge")]);
    }
    drop(containers);
    for name in &names {
        expect_addresses(&j, &format!("{name}.docker"), &[]);
    }
}

#[test]
fn docker_engine_unreachable_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("joyride.toml");
    std::fs::write(
        &cfg,
        "[[records]]\nname = \"db\"\ntype = \"A\"\nvalue = \"10.9.0.1\"\n",
    )
    .unwrap();
    let sock = format!("unix://{}/no-engine.sock", dir.path().display());
    let j = Joyride::start(&[
        "--no-forward",
        "--docker-host",
        &sock,
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(
        answers(&j.query("db.docker.", RecordType::A)),
        vec!["10.9.0.1"]
    );
    assert!(wait_until(SHOW, || j
        .log_text()
        .contains("Docker source disconnected")));
    // Logged once per state change, not at every retry.
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        j.log_text().matches("Docker source disconnected").count(),
        1,
        "{}",
        j.log_text()
    );
    assert_eq!(
        answers(&j.query("db.docker.", RecordType::A)),
        vec!["10.9.0.1"]
    );
}

/// A dockerd of the test's own: its own data, sockets and network namespace (where
/// `--bridge none` cannot remove the host's docker0), so it can be killed without touching
/// anyone else's containers. Its containers use `--network none`.
struct PrivateEngine {
    dir: PathBuf,
    netns: String,
    engine: Engine,
    child: Option<std::process::Child>,
}

impl PrivateEngine {
    fn start() -> PrivateEngine {
        let id = unique_name("jrt");
        let dir = PathBuf::from(format!("/tmp/{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let engine = Engine {
            host: format!("unix://{}/docker.sock", dir.display()),
        };
        let ok = Command::new("ip")
            .args(["netns", "add", &id])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot create network namespace {id} (root needed)");
        let mut e = PrivateEngine {
            dir,
            netns: id,
            engine,
            child: None,
        };
        e.launch();
        let image = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {IMAGE} | docker -H {} load",
                e.engine.host
            ))
            .output()
            .unwrap();
        assert!(image.status.success(), "{image:?}");
        e
    }

    fn launch(&mut self) {
        let d = &self.dir;
        let _ = std::fs::remove_file(d.join("docker.pid"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        // nsenter, not `ip netns exec`: that remounts /sys and dockerd then fails.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("-H")
            .arg(&self.engine.host)
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(60), || {
            self.engine.try_docker(&["info"]).is_ok()
        });
        assert!(up, "private dockerd did not start: {}", self.log());
    }

    /// Kills the engine (SIGKILL) and waits for its containerd to go too, so that the next
    /// launch does not try to reuse a dying one.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pid_file = self.dir.join("exec/containerd/containerd.pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
            assert!(
                wait_until(Duration::from_secs(20), || !proc.exists()),
                "the killed engine's containerd did not exit"
            );
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Ok(ids) = self.engine.try_docker(&["ps", "-aq"]) {
                for id in ids.split_whitespace() {
                    let _ = self.engine.try_docker(&["rm", "-f", id]);
                }
            }
            if let Some(mut c) = self.child.take() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(c.id().to_string())
                    .status();
                let deadline = Instant::now() + Duration::from_secs(20);
                while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        reap_engine_leftovers(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        if std::thread::panicking() {
            eprintln!(
                "--- private dockerd log (tail) ---\n{}",
                tail(&self.log(), 30)
            );
        }
    }
}

#[test]
fn docker_engine_killed_and_restarted_under_a_running_joyride() {
    if Engine::main().is_none() {
        return;
    }
    let mut pe = PrivateEngine::start();
    let engine = pe.engine.clone();
    let n = unique_name("jrt");
    let label = |suffix: &str| format!("joyride.host.name={n}-{suffix}.example.test");
    let opts = |suffix: &str, restart: &str| -> Vec<String> {
        vec![
            "--network".into(),
            "none".into(),
            "--restart".into(),
            restart.into(),
            "-l".into(),
            label(suffix),
        ]
    };
    let run = |name: &str, opts: Vec<String>| {
        let o: Vec<&str> = opts.iter().map(String::as_str).collect();
        engine.run(name, &o)
    };
    // Survives the restart (restart policy), dies with the engine, and appears only after.
    let _always = run(&format!("{n}-always"), opts("always", "always"));
    let _once = run(&format!("{n}-once"), opts("once", "no"));
    let name = |s: &str| format!("{n}-{s}.example.test");

    let j = joyride(&engine, &[]);
    expect_addresses(&j, &name("always"), &[HOST_IP]);
    expect_addresses(&j, &name("once"), &[HOST_IP]);

    pe.kill();
    assert!(wait_until(SHOW, || j
        .log_text()
        .contains("Docker source disconnected")));
    // Disconnected: the last known names are still served.
    expect_addresses(&j, &name("always"), &[HOST_IP]);

    pe.launch();
    let _later = run(&format!("{n}-later"), opts("later", "no"));
    expect_addresses(&j, &name("later"), &[HOST_IP]);
    expect_addresses(&j, &name("always"), &[HOST_IP]);
    // The engine killed `once` when it came back: its name must not linger.
    expect_addresses(&j, &name("once"), &[]);
    let connected = j.log_text().matches("Docker source connected").count();
    assert!(connected >= 2, "{}", j.log_text());

    // Still following events after the reconnection.
    engine.docker(&["rm", "-f", &format!("{n}-later")]);
    expect_addresses(&j, &name("later"), &[]);
}

#[test]
fn docker_host_with_an_unknown_scheme_is_refused_at_start() {
    let out = Command::new(JOYRIDE)
        .args(["--no-forward", "--docker-host", "ssh://nowhere"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--docker-host"), "{err}");
}
