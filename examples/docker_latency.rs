//! Bench harness (not a test): how fast container names appear and disappear, and how long
//! joyride takes to reconcile many running containers, against the real Docker engine.
//!
//! For each of `--count` containers (on the default bridge): create it, start it, and poll
//! joyride over UDP until `NAME.docker` answers; then kill it and poll until it no longer
//! does. Latency is measured from the engine's own event time (`timeNano` of the `start` and
//! `die` events) to the first DNS answer that shows the change. Then `--reconcile`
//! containers (`--network none`, named by a `joyride.host.name` label) are started, a fresh
//! joyride is started, and the time until every name resolves is measured (and the source's
//! own `reconcile_ms` read from its log).
//!
//! Prints one line: `docker-latency: start_p50_ms=... reconcile_1000_ms=...`.
//! Run through `scripts/bench-docker-latency`. Containers are labelled `jrt-bench=<run id>`
//! and removed at the end.
//!
//! Options: `--count N` (0 skips the start/die part), `--reconcile M`, `--runs K` (K fresh
//! joyrides against the same M containers; the line gives the median and every run), and
//! `--keep`: the M containers get stable names (`jrt-bench-keep-rI`, label
//! `jrt-bench-keep`), those already there are reused (kept ones beyond M are stopped) and
//! all are left at the end, so that repeated measurements need not create 1,000 containers
//! each time. Remove them
//! with `docker rm -f $(docker ps -aq --filter label=jrt-bench-keep)`.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::Mutex;

const IMAGE: &str = "joyride-test/busybox:latest";

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// A minimal DNS query for `name` A; returns (rcode, answer count).
fn query(sock: &UdpSocket, server: SocketAddr, name: &str, id: u16) -> Option<(u8, u16)> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, server).ok()?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        if n >= 12 && buf[..2] == id.to_be_bytes() {
            return Some((buf[3] & 0x0f, u16::from_be_bytes([buf[6], buf[7]])));
        }
    }
}

/// Polls until `name` resolves (`want = true`) or not; returns the wall-clock time of the
/// first answer showing it.
fn poll_until(server: SocketAddr, name: String, want: bool, limit: Duration) -> Option<SystemTime> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let end = Instant::now() + limit;
    let mut id: u16 = 1;
    while Instant::now() < end {
        id = id.wrapping_add(1);
        if let Some((rcode, an)) = query(&sock, server, &name, id) {
            let resolves = rcode == 0 && an > 0;
            if resolves == want {
                return Some(SystemTime::now());
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

struct Joyride {
    child: Child,
    server: SocketAddr,
    log: std::path::PathBuf,
}

impl Joyride {
    fn start(bin: &str, tag: &str) -> Joyride {
        let port = free_port();
        let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::env::temp_dir().join(format!("{tag}-joyride.log"));
        let child = Command::new(bin)
            .args(["--no-forward", "--dns-listen", &server.to_string()])
            // Any free port: another joyride may hold the default one.
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--docker-host", "unix:///var/run/docker.sock"])
            .args(["--host-ip", "127.0.0.2", "--log-level", "info"])
            .args(["--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn joyride");
        Joyride { child, server, log }
    }

    fn reconcile_ms(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text
            .lines()
            .find(|l| l.contains("Docker source connected"))?;
        let at = line.find("\"reconcile_ms\":")? + "\"reconcile_ms\":".len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Joyride {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::main]
async fn main() {
    let bin = arg("--joyride", "target/release/joyride");
    let count: usize = arg("--count", "200").parse().unwrap();
    let many: usize = arg("--reconcile", "1000").parse().unwrap();
    let runs: usize = arg("--runs", "1").parse::<usize>().unwrap().max(1);
    let keep = flag("--keep");
    let run = format!("jrt-bench-{}", std::process::id());
    let docker =
        Docker::connect_with_unix("/var/run/docker.sock", 120, bollard::API_DEFAULT_VERSION)
            .unwrap()
            .negotiate_version()
            .await
            .expect("a Docker engine at /var/run/docker.sock");

    // The engine's event times, by container name and action.
    let times: Arc<Mutex<HashMap<(String, String), i64>>> = Arc::default();
    {
        let label = format!("jrt-bench={run}");
        let filters: HashMap<&str, Vec<&str>> = [
            ("type", vec!["container"]),
            ("event", vec!["start", "die"]),
            ("label", vec![label.as_str()]),
        ]
        .into_iter()
        .collect();
        let mut stream = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
        let times = times.clone();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let name = ev
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|a| a.get("name").cloned())
                    .unwrap_or_default();
                let action = ev.action.unwrap_or_default();
                if let Some(t) = ev.time_nano {
                    times.lock().await.insert((name, action), t);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let labels: HashMap<String, String> = [("jrt-bench".to_string(), run.clone())].into();
    let create = |name: String, network: &'static str, extra: Vec<(String, String)>| {
        let docker = docker.clone();
        let mut labels = labels.clone();
        labels.extend(extra);
        async move {
            docker
                .create_container(
                    Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                    ContainerCreateBody {
                        image: Some(IMAGE.into()),
                        cmd: Some(vec!["sleep".into(), "86400".into()]),
                        labels: Some(labels),
                        host_config: Some(HostConfig {
                            network_mode: Some(network.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
                .await
                .expect("create container");
            name
        }
    };
    let remove = |name: String| {
        let docker = docker.clone();
        async move {
            let _ = docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await;
        }
    };

    // 1. Start and die latency, one container at a time.
    let j = Joyride::start(&bin, &run);
    let ready = tokio::task::spawn_blocking({
        let server = j.server;
        move || poll_until(server, "docker".into(), false, Duration::from_secs(20))
    });
    ready.await.unwrap().expect("joyride answers");
    let mut start_ms = Vec::new();
    let mut die_ms = Vec::new();
    for i in 0..count {
        let name = create(format!("{run}-l{i}"), "bridge", Vec::new()).await;
        let dns = format!("{name}.docker");
        let server = j.server;
        let poll = tokio::task::spawn_blocking({
            let dns = dns.clone();
            move || poll_until(server, dns, true, Duration::from_secs(10))
        });
        docker.start_container(&name, None).await.expect("start");
        let seen = poll.await.unwrap().expect("name never appeared");
        let poll = tokio::task::spawn_blocking({
            let dns = dns.clone();
            move || poll_until(server, dns, false, Duration::from_secs(10))
        });
        docker
            .kill_container(&name, None::<KillContainerOptions>)
            .await
            .expect("kill");
        let gone = poll.await.unwrap().expect("name never went");
        // The events may trail the API answer a little.
        let mut t = None;
        for _ in 0..200 {
            let m = times.lock().await;
            let s = m.get(&(name.clone(), "start".into())).copied();
            let d = m.get(&(name.clone(), "die".into())).copied();
            drop(m);
            if let (Some(s), Some(d)) = (s, d) {
                t = Some((s, d));
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (ts, td) = t.expect("start and die events");
        start_ms.push((nanos(seen) - ts) as f64 / 1e6);
        die_ms.push((nanos(gone) - td) as f64 / 1e6);
        remove(name).await;
    }
    drop(j);
    start_ms.sort_by(f64::total_cmp);
    die_ms.sort_by(f64::total_cmp);

    // 2. Reconcile of many running containers.
    let prefix = if keep {
        "jrt-bench-keep".to_string()
    } else {
        run.clone()
    };
    let names: Vec<String> = (0..many).map(|i| format!("{prefix}-r{i}")).collect();
    let running: std::collections::HashSet<String> = if keep {
        let filters: HashMap<&str, Vec<&str>> = [("label", vec!["jrt-bench-keep"])].into();
        docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(false)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .expect("list containers")
            .into_iter()
            .filter_map(|c| c.names?.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect()
    } else {
        Default::default()
    };
    // Kept containers beyond this run's count are stopped (a later run starts them again),
    // one at a time: many kills at once deadlocked engine 20.10 (libnetwork's
    // unWatchSvcRecord) on this machine.
    let wanted: std::collections::HashSet<&String> = names.iter().collect();
    futures_util::stream::iter(running.iter().filter(|n| !wanted.contains(n)))
        .map(|name| {
            let docker = docker.clone();
            async move {
                let _ = docker
                    .kill_container(name, None::<KillContainerOptions>)
                    .await;
            }
        })
        .buffer_unordered(1)
        .collect::<Vec<()>>()
        .await;
    let started = Instant::now();
    futures_util::stream::iter(names.iter().filter(|n| !running.contains(*n)).cloned())
        .map(|name| {
            let docker = docker.clone();
            let mut extra = vec![(
                "joyride.host.name".to_string(),
                format!("{name}.bench.test"),
            )];
            if keep {
                extra.push(("jrt-bench-keep".to_string(), "1".to_string()));
            }
            let fut = create(name.clone(), "none", extra);
            let remove = remove(name.clone());
            async move {
                // A kept container that was stopped only needs starting; one that does not
                // start (an engine restart can leave its old task behind) is made anew.
                if keep {
                    if docker.start_container(&name, None).await.is_ok() {
                        return;
                    }
                    remove.await;
                }
                let name = fut.await;
                docker.start_container(&name, None).await.expect("start");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "docker-latency: {many} containers running ({} reused), started in {:.1} s",
        names.iter().filter(|n| running.contains(*n)).count(),
        started.elapsed().as_secs_f64()
    );
    let mut all_ms: Vec<Option<u128>> = Vec::new();
    let mut source_ms: Vec<Option<u64>> = Vec::new();
    for r in 0..runs {
        let t0 = Instant::now();
        let j = Joyride::start(&bin, &format!("{run}-r{r}"));
        let server = j.server;
        let names = names.clone();
        let all = tokio::task::spawn_blocking(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            // Short: a query sent before joyride has bound its socket is lost, and waiting
            // 500 ms for its answer added half a second to the figure whenever the first
            // query won that race.
            sock.set_read_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            let mut id = 0u16;
            for name in &names {
                let dns = format!("{name}.bench.test");
                loop {
                    id = id.wrapping_add(1);
                    if let Some((0, an)) = query(&sock, server, &dns, id) {
                        if an > 0 {
                            break;
                        }
                    }
                    if t0.elapsed() > Duration::from_secs(120) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            Some(t0.elapsed())
        })
        .await
        .unwrap();
        // The source logs its reconcile time when connected, which may trail the names.
        let mut reconcile_log = j.reconcile_ms();
        for _ in 0..100 {
            if reconcile_log.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            reconcile_log = j.reconcile_ms();
        }
        drop(j);
        eprintln!(
            "docker-latency: run {}: all {many} names in {} ms, source reconcile {} ms",
            r + 1,
            all.map_or("timeout".into(), |d| d.as_millis().to_string()),
            reconcile_log.map_or("?".into(), |m| m.to_string()),
        );
        all_ms.push(all.map(|d| d.as_millis()));
        source_ms.push(reconcile_log);
    }
    if !keep {
        futures_util::stream::iter(names)
            .map(remove)
            .buffer_unordered(8)
            .collect::<Vec<()>>()
            .await;
    }

    let f = |v: f64| format!("{v:.2}");
    println!(
        "docker-latency: containers={count} start_p50_ms={} start_p99_ms={} start_max_ms={} die_p50_ms={} die_p99_ms={} die_max_ms={} reconcile_{many}_ms={} source_reconcile_ms={}",
        f(percentile(&start_ms, 50.0)),
        f(percentile(&start_ms, 99.0)),
        f(percentile(&start_ms, 100.0)),
        f(percentile(&die_ms, 50.0)),
        f(percentile(&die_ms, 99.0)),
        f(percentile(&die_ms, 100.0)),
        median(&all_ms).map_or("timeout".into(), |m| m.to_string()),
        median(&source_ms).map_or("?".into(), |m| m.to_string()),
    );
    if runs > 1 {
        let list = |v: Vec<String>| v.join(",");
        println!(
            "docker-latency: runs={runs} reconcile_{many}_runs_ms={} source_reconcile_runs_ms={}",
            list(
                all_ms
                    .iter()
                    .map(|m| m.map_or("timeout".into(), |m| m.to_string()))
                    .collect()
            ),
            list(
                source_ms
                    .iter()
                    .map(|m| m.map_or("?".into(), |m| m.to_string()))
                    .collect()
            ),
        );
    }
}

/// The median of the runs, `None` if any run failed to give a figure.
fn median<T: Copy + Ord>(runs: &[Option<T>]) -> Option<T> {
    let mut v: Vec<T> = runs.iter().copied().collect::<Option<_>>()?;
    v.sort();
    v.get(v.len() / 2).copied()
}
