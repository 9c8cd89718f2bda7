//! The Docker source: every running container's names, from a real engine, live.
//!
//! Owns the connection to the engine and the records of `SourceKind::Docker` owners (one
//! owner per container id). It may not read the snapshot or touch other sources' records.
//!
//! One session, repeated with capped exponential backoff after any failure:
//! 1. connect and negotiate the API version;
//! 2. subscribe to the event stream (a pump task forwards it into a channel), asking the
//!    engine to replay the last seconds (`since`) so that nothing between the subscription
//!    and the list is lost;
//! 3. list the running containers, publish the names of those not published yet from the
//!    list alone (one request, however many containers), and withdraw every other
//!    container's (`Change::Retain`): the reconcile. Then inspect every listed container,
//!    as after an event, which adds what only an inspection tells (hostname, environment,
//!    network aliases) and refreshes names published before the reconnection;
//! 4. apply events. Each event only names a container to look at again: the source
//!    re-inspects it and publishes what the engine says *now* (running: records; anything
//!    else, or gone: none). A late or reordered event therefore cannot leave a stale record.
//!    Inspections run concurrently, at most one per container at a time; an event for a
//!    container being inspected marks it to be inspected once more afterwards.
//!
//! While the engine is unreachable the last known records stay served; the reconcile after
//! the reconnection corrects them.

pub mod naming;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bollard::models::{
    ContainerInspectResponse, ContainerSummary, EventMessage, EventMessageTypeEnum,
};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::records::store::StoreClosed;
use crate::records::{Change, Record, SourceKind, StoreHandle};
use crate::status::ComponentStatus;

pub use naming::{container_records, ContainerInfo, NamingContext, Schemes};
use naming::{Endpoint, Health, Port, Protocol, RunState};

/// First wait before reconnecting; doubled after each failure up to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Seconds for the engine to answer one request (not the event stream, which stays open).
const REQUEST_TIMEOUT_SECS: u64 = 10;
/// Events buffered between the pump and the loop. Full (the loop is far behind): the
/// session restarts with a reconcile rather than losing an event.
const EVENT_CHANNEL_CAPACITY: usize = 16_384;
/// Inspections in flight at once (a reconcile queues one per running container).
const INSPECT_CONCURRENCY: usize = 32;
/// How far back, by the engine's clock, the engine replays events to a new subscription.
/// Covers the moment between subscribing and listing; a replay only costs an inspection.
const REPLAY_SECONDS: i64 = 5;
/// Events that may change a container's names. Others (exec, attach...) are not asked for.
const EVENTS: [&str; 13] = [
    "start",
    "restart",
    "die",
    "stop",
    "kill",
    "destroy",
    "pause",
    "unpause",
    "rename",
    "update",
    "health_status",
    "connect",
    "disconnect",
];

/// How to reach the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineAddress {
    /// `unix:///path`, `tcp://host:port`, `http://...` or `https://...`.
    pub host: String,
    /// Use TLS and verify the engine with the certificates of `cert_path` (as the docker
    /// CLI does with `DOCKER_TLS_VERIFY`).
    pub tls_verify: bool,
    /// Directory with `ca.pem`, `cert.pem` and `key.pem`.
    pub cert_path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine at {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("Docker engine request failed: {0}")]
    Engine(#[from] bollard::errors::Error),
    #[error("the Docker event stream ended")]
    StreamEnded,
    #[error("events arrived faster than they could be applied")]
    Overflow,
    #[error(transparent)]
    Store(#[from] StoreClosed),
}

/// Opens a client for `addr` and negotiates the API version with the engine.
pub async fn connect(addr: &EngineAddress) -> Result<Docker, DockerError> {
    let err = |source| DockerError::Connect {
        host: addr.host.clone(),
        source,
    };
    let host = addr.host.as_str();
    let version = bollard::API_DEFAULT_VERSION;
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
    } else if addr.tls_verify || host.starts_with("https://") {
        let p = &addr.cert_path;
        Docker::connect_with_ssl(
            host,
            &p.join("key.pem"),
            &p.join("cert.pem"),
            &p.join("ca.pem"),
            REQUEST_TIMEOUT_SECS,
            version,
        )
    } else {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, version)
    }
    .map_err(err)?;
    docker.negotiate_version().await.map_err(err)
}

/// The host's address on the default route: the source address the kernel picks to reach
/// the default gateway (from /proc/net/route), else to reach an address outside every local
/// network. A UDP `connect` only selects a route; it sends no packet.
pub fn detect_host_ip() -> Option<IpAddr> {
    let probe = |bind: &str, dest: SocketAddr| -> Option<IpAddr> {
        let s = UdpSocket::bind(bind).ok()?;
        s.connect(dest).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    };
    let gateway = std::fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|t| default_gateway(&t));
    gateway
        .and_then(|gw| probe("0.0.0.0:0", SocketAddr::new(gw.into(), 53)))
        .or_else(|| probe("[::]:0", "[2001:db8::1]:53".parse().ok()?))
}

/// The gateway of the IPv4 default route in /proc/net/route text.
fn default_gateway(route: &str) -> Option<Ipv4Addr> {
    route.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        // The kernel prints the address in host (little-endian) byte order.
        (gw != 0).then(|| Ipv4Addr::from(gw.swap_bytes()))
    })
}

/// Nanoseconds since the Unix epoch of an RFC 3339 timestamp as the engine writes them
/// (`2026-11-21T23:44:54.007776478Z`).
fn rfc3339_nanos(text: &str) -> Option<i64> {
    let (date, rest) = text.trim().split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let hms = rest.get(..8)?;
    let mut h = hms.splitn(3, ':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (h.next()?.ok()?, h.next()?.ok()?, h.next()?.ok()?);
    let after = &rest[8..];
    let (nanos, tz) = match after.strip_prefix('.') {
        Some(f) => {
            let digits = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            let frac = &f[..digits.min(9)];
            let n = format!("{frac:0<9}").parse::<i64>().ok()?;
            (n, &f[digits..])
        }
        None => (0, after),
    };
    let offset = match tz {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let (oh, om) = tz.get(1..)?.split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Converts the engine's inspect answer into what naming needs.
pub fn container_info(resp: ContainerInspectResponse) -> ContainerInfo {
    let config = resp.config.unwrap_or_default();
    let state = resp.state.unwrap_or_default();
    let settings = resp.network_settings.unwrap_or_default();
    let network_mode = resp
        .host_config
        .and_then(|h| h.network_mode)
        .unwrap_or_default();
    let run = if state.restarting == Some(true) || state.running != Some(true) {
        RunState::Stopped
    } else if state.paused == Some(true) {
        RunState::Paused
    } else {
        RunState::Running
    };
    let health = match state.health.and_then(|h| h.status) {
        Some(bollard::models::HealthStatusEnum::STARTING) => Health::Starting,
        Some(bollard::models::HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(bollard::models::HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        _ => Health::None,
    };
    let mut networks: Vec<Endpoint> = settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(network, ep)| Endpoint {
            network,
            ipv4: ep.ip_address.and_then(|s| s.parse().ok()),
            ipv6: ep.global_ipv6_address.and_then(|s| s.parse().ok()),
            aliases: ep.aliases.unwrap_or_default(),
        })
        .collect();
    networks.sort_by(|a, b| a.network.cmp(&b.network));
    let published = settings.ports.unwrap_or_default();
    let mut ports: Vec<Port> = config
        .exposed_ports
        .unwrap_or_default()
        .iter()
        .chain(published.keys())
        .filter_map(|spec| {
            let (num, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
            let protocol = match proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => return None,
            };
            let host_port = published
                .get(spec)
                .and_then(|b| b.as_ref())
                .and_then(|b| b.iter().find_map(|b| b.host_port.as_deref()?.parse().ok()));
            Some(Port {
                port: num.parse().ok()?,
                protocol,
                host_port,
            })
        })
        .collect();
    ports.sort();
    ports.dedup();
    ContainerInfo {
        id: resp.id.unwrap_or_default(),
        name: resp
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        hostname: config.hostname.unwrap_or_default(),
        domainname: config.domainname.unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        env: config
            .env
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        networks,
        host_network: network_mode == "host",
        ports,
        state: run,
        health,
        started_at: state.started_at.as_deref().and_then(rfc3339_nanos),
    }
}

/// Whether an event means the container no longer runs (its names go at once, before the
/// inspection confirms it: the engine answers inspections only after its clean-up).
fn ends_names(typ: Option<EventMessageTypeEnum>, action: &str) -> bool {
    typ == Some(EventMessageTypeEnum::CONTAINER)
        && matches!(action, "die" | "stop" | "pause" | "destroy")
}

/// Converts an entry of the container list: what naming needs except the hostname, the
/// environment, the network aliases and the start time, which only an inspection tells.
pub fn summary_info(c: ContainerSummary) -> ContainerInfo {
    use bollard::models::{ContainerSummaryStateEnum as S, PortSummaryTypeEnum as T};
    let status = c.status.unwrap_or_default();
    let health = if status.contains("(healthy)") {
        Health::Healthy
    } else if status.contains("(unhealthy)") {
        Health::Unhealthy
    } else if status.contains("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    };
    let mut networks: Vec<Endpoint> = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(network, ep)| Endpoint {
            network,
            ipv4: ep.ip_address.and_then(|s| s.parse().ok()),
            ipv6: ep.global_ipv6_address.and_then(|s| s.parse().ok()),
            aliases: Vec::new(),
        })
        .collect();
    networks.sort_by(|a, b| a.network.cmp(&b.network));
    let mut ports: Vec<Port> = c
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let protocol = match p.typ? {
                T::TCP => Protocol::Tcp,
                T::UDP => Protocol::Udp,
                _ => return None,
            };
            Some(Port {
                port: p.private_port,
                protocol,
                host_port: p.public_port,
            })
        })
        .collect();
    ports.sort();
    // One entry per host address of a published port: keep the first.
    ports.dedup_by_key(|p| (p.port, p.protocol));
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .names
            .and_then(|n| n.into_iter().next())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: c.image.unwrap_or_default(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        networks,
        host_network: c.host_config.and_then(|h| h.network_mode).as_deref() == Some("host"),
        ports,
        state: match c.state {
            Some(S::RUNNING) => RunState::Running,
            Some(S::PAUSED) => RunState::Paused,
            _ => RunState::Stopped,
        },
        health,
        ..Default::default()
    }
}

/// The container an event is about, if it may change names.
fn event_container(ev: &EventMessage) -> Option<&str> {
    let actor = ev.actor.as_ref()?;
    match ev.typ? {
        EventMessageTypeEnum::CONTAINER => actor.id.as_deref(),
        EventMessageTypeEnum::NETWORK => match ev.action.as_deref()? {
            "connect" | "disconnect" => actor.attributes.as_ref()?.get("container").map(|s| &**s),
            _ => None,
        },
        _ => None,
    }
}

/// What the source shows on the status board.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    docker_host: String,
    /// The API version negotiated with the engine.
    api_version: Option<String>,
    engine_version: Option<String>,
    host_ip: Option<IpAddr>,
    /// Containers that have records now.
    containers: usize,
    last_event: Option<SystemTime>,
    last_reconcile_ms: Option<u64>,
    last_error: Option<String>,
}

/// The result of inspecting one container: its id and what the engine said.
type Inspected = (
    Arc<str>,
    Result<Option<ContainerInfo>, bollard::errors::Error>,
);

/// The running source.
pub struct DockerSource {
    addr: EngineAddress,
    naming: NamingContext,
    store: StoreHandle,
    /// Where the source reports itself (web page, API, metrics).
    status: watch::Sender<ComponentStatus>,
    report: Report,
    connected: bool,
    /// Events received since start (a metric).
    events_total: u64,
    /// Sessions that ended and were retried (a metric).
    reconnects_total: u64,
    /// What each container publishes now: to skip unchanged re-publications, and to tell
    /// a late `die` from a current one.
    published: HashMap<Arc<str>, Published>,
    /// The last problems logged per container, so each is logged once.
    problems: HashMap<Arc<str>, Vec<String>>,
}

/// One container's published records.
struct Published {
    records: Vec<Record>,
    /// When the container last started, by the engine's clock (Unix nanoseconds): an event
    /// older than this is about an earlier run.
    started_at: i64,
}

/// What an inspection is for: each kind has its own limit (`Inflight`).
#[derive(Clone, Copy)]
enum Why {
    Event,
    Reconcile,
}

/// Per-session bookkeeping of inspections in flight.
struct Inflight {
    /// Containers being inspected; `true` when another event came meanwhile.
    pending: HashMap<Arc<str>, bool>,
    tasks: JoinSet<Inspected>,
    /// Bounds the requests open at once for events (and the engine's work).
    limit: Arc<tokio::sync::Semaphore>,
    /// The same for the inspections after a reconcile, apart: a container started while
    /// a thousand listed ones are being inspected is not queued behind them.
    reconcile_limit: Arc<tokio::sync::Semaphore>,
}

impl Inflight {
    fn new() -> Inflight {
        Inflight {
            pending: HashMap::new(),
            tasks: JoinSet::new(),
            limit: Arc::new(tokio::sync::Semaphore::new(INSPECT_CONCURRENCY)),
            reconcile_limit: Arc::new(tokio::sync::Semaphore::new(INSPECT_CONCURRENCY)),
        }
    }
}

impl DockerSource {
    pub fn new(
        addr: EngineAddress,
        naming: NamingContext,
        store: StoreHandle,
        status: watch::Sender<ComponentStatus>,
    ) -> DockerSource {
        let source = DockerSource {
            report: Report {
                docker_host: addr.host.clone(),
                host_ip: naming.host_ip,
                ..Default::default()
            },
            addr,
            naming,
            store,
            status,
            connected: false,
            events_total: 0,
            reconnects_total: 0,
            published: HashMap::new(),
            problems: HashMap::new(),
        };
        source.publish_status();
        source
    }

    fn publish_status(&self) {
        self.status.send_replace(ComponentStatus {
            healthy: self.connected,
            critical: false,
            state: if self.connected {
                "connected"
            } else {
                "disconnected"
            }
            .to_string(),
            details: serde_json::to_value(&self.report).unwrap_or_default(),
            counters: [
                ("events".to_string(), self.events_total),
                ("reconnects".to_string(), self.reconnects_total),
            ]
            .into_iter()
            .collect(),
        });
    }

    /// Runs sessions until cancelled; fails only when the store has stopped.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), DockerError> {
        let mut backoff = BACKOFF_MIN;
        loop {
            let result = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = self.session(&mut backoff) => r,
            };
            let e = match result {
                Ok(()) => return Ok(()),
                Err(DockerError::Store(e)) => return Err(e.into()),
                Err(e) => e,
            };
            let message = e.to_string();
            if self.connected || self.report.last_error.as_deref() != Some(&message) {
                warn!(error = %message, retry_in_ms = backoff.as_millis() as u64, "Docker source disconnected; retrying");
            } else {
                debug!(error = %message, "Docker engine still unreachable");
            }
            self.connected = false;
            self.reconnects_total += 1;
            self.report.last_error = Some(message);
            self.publish_status();
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: subscribe, reconcile, apply events until something breaks.
    async fn session(&mut self, backoff: &mut Duration) -> Result<(), DockerError> {
        let docker = connect(&self.addr).await?;
        let info = docker.info().await?;
        // The engine's clock, so that a remote engine's skew does not matter.
        let engine_now = info
            .system_time
            .as_deref()
            .and_then(rfc3339_nanos)
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i64)
            });
        let since = (engine_now / 1_000_000_000 - REPLAY_SECONDS).to_string();

        // Subscribe first; the pump task ends (dropping its sender) when the stream does.
        let filters: HashMap<&str, Vec<&str>> = [
            ("type", vec!["container", "network"]),
            ("event", EVENTS.to_vec()),
        ]
        .into_iter()
        .collect();
        let options = EventsOptionsBuilder::new()
            .since(&since)
            .filters(&filters)
            .build();
        let mut stream = docker.events(Some(options));
        let (tx, mut events) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let pump = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                let stop = ev.is_err();
                if tx.try_send(ev.map_err(DockerError::from)).is_err() {
                    let _ = tx.try_send(Err(DockerError::Overflow));
                    return;
                }
                if stop {
                    return;
                }
            }
        });
        let _abort_pump = AbortOnDrop(pump);

        let listed = self.reconcile(&docker).await?;
        *backoff = BACKOFF_MIN;
        self.connected = true;
        self.report.api_version = Some(docker.client_version().to_string());
        self.report.engine_version = info.server_version;
        self.report.last_error = None;
        info!(
            host = %self.addr.host,
            api_version = %docker.client_version(),
            engine = self.report.engine_version.as_deref().unwrap_or("?"),
            containers = self.report.containers,
            reconcile_ms = self.report.last_reconcile_ms.unwrap_or(0),
            "Docker source connected"
        );
        self.publish_status();

        let mut inflight = Inflight::new();
        for id in listed {
            self.inspect(&docker, &mut inflight, id, Why::Reconcile);
        }
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let ev = ev.unwrap_or(Err(DockerError::StreamEnded))?;
                    self.events_total += 1;
                    self.report.last_event = Some(SystemTime::now());
                    if let Some(id) = event_container(&ev) {
                        let id: Arc<str> = Arc::from(id);
                        let action = ev.action.as_deref().unwrap_or("");
                        debug!(id = %id, action, "Docker event");
                        let time = ev.time_nano.unwrap_or(0);
                        if ends_names(ev.typ, action) && time > engine_now {
                            self.withdraw_if_older(&id, time).await?;
                        }
                        self.inspect(&docker, &mut inflight, id, Why::Event);
                    }
                }
                Some(done) = inflight.tasks.join_next() => {
                    let Ok((id, result)) = done else { continue };
                    let outdated = inflight.pending.remove(&id).unwrap_or(false);
                    if outdated {
                        // An event came during the inspection: its answer may predate it.
                        self.inspect(&docker, &mut inflight, id, Why::Event);
                        continue;
                    }
                    self.apply(&id, result?.as_ref()).await?;
                    self.publish_status();
                }
            }
        }
    }

    /// Starts inspecting `id`, or marks it for another look if an inspection is running.
    fn inspect(&self, docker: &Docker, inflight: &mut Inflight, id: Arc<str>, why: Why) {
        if let Some(again) = inflight.pending.get_mut(&id) {
            *again = true;
            return;
        }
        inflight.pending.insert(id.clone(), false);
        let docker = docker.clone();
        let limit = match why {
            Why::Event => inflight.limit.clone(),
            Why::Reconcile => inflight.reconcile_limit.clone(),
        };
        inflight.tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (id.clone(), inspect(&docker, &id).await)
        });
    }

    /// Lists the running containers, publishes the names of those not published yet from
    /// the list alone, and withdraws every other container's. Returns the listed ids: each
    /// is then inspected (like after an event), which adds what the list does not tell
    /// (hostname, environment, aliases) and refreshes what was published before.
    async fn reconcile(&mut self, docker: &Docker) -> Result<Vec<Arc<str>>, DockerError> {
        let started = Instant::now();
        let list = docker
            .list_containers(Some(ListContainersOptionsBuilder::new().all(false).build()))
            .await?;
        let mut ids: Vec<Arc<str>> = Vec::with_capacity(list.len());
        for summary in list {
            let Some(id) = summary.id.clone().map(Arc::<str>::from) else {
                continue;
            };
            if !self.published.contains_key(&id) {
                self.apply(&id, Some(&summary_info(summary))).await?;
            }
            ids.push(id);
        }
        let keep: HashSet<Arc<str>> = ids.iter().cloned().collect();
        self.published.retain(|id, _| keep.contains(id));
        self.problems.retain(|id, _| keep.contains(id));
        self.store
            .send(Change::Retain {
                node: self.store.node().clone(),
                source: SourceKind::Docker,
                keep,
            })
            .await?;
        self.store.flush().await?;
        let ms = started.elapsed().as_millis() as u64;
        self.report.last_reconcile_ms = Some(ms);
        self.report.containers = self.published.len();
        debug!(
            containers = self.published.len(),
            reconcile_ms = ms,
            "Docker reconcile done"
        );
        Ok(ids)
    }

    /// Withdraws a container's names after an event (at engine time `time`) that says it
    /// stopped, unless what is published comes from a later start.
    async fn withdraw_if_older(&mut self, id: &Arc<str>, time: i64) -> Result<(), DockerError> {
        match self.published.get(id) {
            Some(p) if p.started_at < time => {}
            _ => return Ok(()),
        }
        debug!(id = %id, "withdrawing container names (stop event)");
        self.published.remove(id);
        self.report.containers = self.published.len();
        self.store
            .replace(SourceKind::Docker, id.clone(), Vec::new())
            .await?;
        Ok(())
    }

    /// Publishes what one container should have now (`None`: it is gone).
    async fn apply(
        &mut self,
        id: &Arc<str>,
        info: Option<&ContainerInfo>,
    ) -> Result<(), DockerError> {
        let built = info
            .map(|c| container_records(c, &self.naming))
            .unwrap_or_default();
        let name = info.map_or("", |c| c.name.as_str());
        if !built.problems.is_empty() && self.problems.get(id) != Some(&built.problems) {
            for p in &built.problems {
                warn!(container = name, problem = %p, "container label problem");
            }
            self.problems.insert(id.clone(), built.problems);
        }
        let records = built.records;
        let unchanged = match self.published.get(id) {
            Some(old) => old.records == records,
            None => records.is_empty(),
        };
        if unchanged {
            return Ok(());
        }
        if records.is_empty() {
            debug!(id = %id, container = name, "withdrawing container names");
            self.published.remove(id);
            self.problems.remove(id);
        } else {
            debug!(id = %id, container = name, records = records.len(), "publishing container names");
            let started_at = info.and_then(|c| c.started_at).unwrap_or(0);
            self.published.insert(
                id.clone(),
                Published {
                    records: records.clone(),
                    started_at,
                },
            );
        }
        self.report.containers = self.published.len();
        self.store
            .replace(SourceKind::Docker, id.clone(), records)
            .await?;
        Ok(())
    }
}

/// Inspects one container: `None` when the engine no longer knows it.
async fn inspect(
    docker: &Docker,
    id: &str,
) -> Result<Option<ContainerInfo>, bollard::errors::Error> {
    match docker.inspect_container(id, None).await {
        Ok(resp) => Ok(Some(container_info(resp))),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Aborts a task when dropped (the event pump of a session that ended).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_an_engine_20_10_inspect_answer() {
        let text = include_str!("testdata/inspect-engine-20.10.json");
        let resp: ContainerInspectResponse = serde_json::from_str(text).expect("parses");
        let c = container_info(resp);
        assert_eq!(c.name, "jrt-fixture-15719");
        assert!(c.id.starts_with("f8cd79d2b540"));
        assert_eq!(c.hostname, "myhost");
        assert_eq!(c.image, "joyride-test/busybox:latest");
        assert_eq!(c.state, RunState::Running);
        assert_eq!(c.health, Health::Healthy);
        assert_eq!(c.env.get("DNSDOCK_NAME").map(String::as_str), Some("dn"));
        assert_eq!(
            c.labels
                .get("com.docker.compose.service")
                .map(String::as_str),
            Some("web")
        );
        assert_eq!(c.networks.len(), 1);
        let ep = &c.networks[0];
        assert_eq!(ep.network, "jrt-fixture-15719-net");
        assert_eq!(ep.ipv4, Some("172.18.0.2".parse().unwrap()));
        assert_eq!(ep.ipv6, Some("fd00:dead:beef::2".parse().unwrap()));
        assert_eq!(ep.aliases, vec!["db", "cache", "f8cd79d2b540", "myhost"]);
        assert_eq!(
            c.ports,
            vec![
                Port {
                    port: 53,
                    protocol: Protocol::Udp,
                    host_port: None
                },
                Port {
                    port: 80,
                    protocol: Protocol::Tcp,
                    host_port: Some(18080)
                },
            ]
        );
        assert!(!c.host_network);
    }

    #[test]
    fn engine_timestamps() {
        assert_eq!(
            rfc3339_nanos("2026-11-21T23:44:54.007776478Z"),
            Some(1_795_304_694_007_776_478)
        );
        assert_eq!(
            rfc3339_nanos("2026-11-22T00:44:54.5+01:00"),
            Some(1_795_304_694_500_000_000)
        );
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_nanos("0001-01-01T00:00:00Z"), None, "out of range");
        assert_eq!(rfc3339_nanos("yesterday"), None);
    }

    #[test]
    fn default_gateway_from_proc_net_route() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(text), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(default_gateway("Iface\n"), None);
    }

    #[test]
    fn converts_an_engine_20_10_list_entry() {
        let text = r#"{"Id":"512f0533d102","Names":["/jrt-list"],"Image":"joyride-test/busybox:latest",
            "Ports":[{"PrivatePort":53,"Type":"udp"},{"IP":"127.0.0.1","PrivatePort":80,"PublicPort":32770,"Type":"tcp"},
                     {"IP":"::1","PrivatePort":80,"PublicPort":32770,"Type":"tcp"}],
            "Labels":{"a":"b"},"State":"running","Status":"Up 3 seconds (health: starting)",
            "HostConfig":{"NetworkMode":"default"},
            "NetworkSettings":{"Networks":{"bridge":{"Aliases":null,"IPAddress":"172.17.0.2","GlobalIPv6Address":""}}}}"#;
        let summary: ContainerSummary = serde_json::from_str(text).expect("parses");
        let c = summary_info(summary);
        assert_eq!(c.name, "jrt-list");
        assert_eq!(c.state, RunState::Running);
        assert_eq!(c.health, Health::Starting);
        assert_eq!(c.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(c.networks[0].ipv4, Some("172.17.0.2".parse().unwrap()));
        assert_eq!(c.networks[0].ipv6, None);
        assert_eq!(
            c.ports,
            vec![
                Port {
                    port: 53,
                    protocol: Protocol::Udp,
                    host_port: None
                },
                Port {
                    port: 80,
                    protocol: Protocol::Tcp,
                    host_port: Some(32770)
                },
            ]
        );
    }

    #[test]
    fn events_name_their_container() {
        let ev = |typ, action: &str, id: &str, attrs: &[(&str, &str)]| EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(bollard::models::EventActor {
                id: Some(id.into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        };
        use EventMessageTypeEnum::*;
        assert_eq!(
            event_container(&ev(CONTAINER, "start", "c1", &[])),
            Some("c1")
        );
        assert_eq!(
            event_container(&ev(CONTAINER, "health_status: healthy", "c1", &[])),
            Some("c1")
        );
        assert_eq!(
            event_container(&ev(NETWORK, "connect", "n1", &[("container", "c2")])),
            Some("c2")
        );
        assert_eq!(event_container(&ev(NETWORK, "create", "n1", &[])), None);
        assert_eq!(event_container(&ev(IMAGE, "pull", "i1", &[])), None);
    }
}
