//! app: wiring and shutdown of the components.
//!
//! Start-up binds every socket before any task starts, so a bad address or a taken port
//! fails with nothing half-started. Shutdown (a signal, or any component failing) stops the
//! sources first, then the store, and DNS last, so queries are answered to the end.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cluster::service::{self as cluster, ClusterError, ClusterService};
use crate::config::Config;
use crate::dns::forward::Forwarder;
use crate::dns::server::{BindError, BoundListeners, DnsServer, ServerConfig};
use crate::dns::stats::DnsStats;
use crate::records::store::{self, ZoneConfig};
use crate::records::{SnapshotReader, SourceKind};
use crate::sources::docker::{self, DockerSource, NamingContext};
use crate::sources::hosts::HostsSource;
use crate::status::{ComponentStatus, StatusBoard};
use crate::web::WebServer;

/// How long the sources get to stop before DNS is stopped anyway.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Failures that mean the configuration or the environment is wrong (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot open a socket to the upstreams: {0}")]
    Upstream(std::io::Error),
    #[error(transparent)]
    Http(#[from] crate::web::HttpBindError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// What the running components share with readers such as the web UI.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub reader: SnapshotReader,
    pub dns_stats: Arc<DnsStats>,
    /// DNS addresses actually bound.
    pub dns_addrs: Vec<SocketAddr>,
    /// Every component's self-reported status.
    pub status: Arc<StatusBoard>,
    pub started: SystemTime,
}

/// Runs the daemon until `shutdown` completes or a component fails.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listeners = BoundListeners::bind(&config.dns_listen, config.dns_listen_is_default)
        .map_err(StartError::from)?;
    let dns_addrs = listeners.local_addrs();
    let http_listener = match config.http_listen {
        Some(addr) => Some(crate::web::bind(addr).map_err(StartError::from)?),
        None => None,
    };
    let cluster_bound = match &config.cluster {
        Some(c) => Some(cluster::bind(c).await.map_err(StartError::from)?),
        None => None,
    };
    let config = Arc::new(config);

    let dns_cancel = CancellationToken::new();
    let forwarder = if config.forward && !config.upstreams.is_empty() {
        let fwd = Forwarder::start(
            &config.upstreams,
            config.upstream_timeout,
            dns_cancel.clone(),
        )
        .await
        .map_err(StartError::Upstream)?;
        info!(upstreams = ?config.upstreams, "forwarding names that are not ours");
        Some(fwd)
    } else {
        if config.forward {
            warn!("no upstream nameserver (none given, none usable in /etc/resolv.conf): names that are not ours get REFUSED");
        }
        None
    };

    let (store, reader, store_task) = store::channel(ZoneConfig {
        apex: config.domain.clone(),
        default_ttl: config.ttl,
        negative_ttl: config.negative_ttl,
        node: Arc::from(config.node_name.as_str()),
        ns_addresses: ns_addresses(&dns_addrs),
        prefer_local: config.prefer_local,
    });
    let store_cancel = CancellationToken::new();
    let store_join = tokio::spawn(store_task.run(store_cancel.clone()));

    let sources_cancel = CancellationToken::new();
    // Sources and the web server: named tasks stopped together, before the store and DNS.
    let mut sources: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    if !config.static_records.is_empty() {
        store
            .replace(SourceKind::Static, "config", config.static_records.clone())
            .await
            .context("store stopped")?;
    }
    let status = Arc::new(StatusBoard::default());
    let dns_status = status.register(
        "dns",
        ComponentStatus {
            healthy: true,
            critical: true,
            state: "listening".into(),
            details: serde_json::json!({ "listen": dns_addrs, "upstreams": config.upstreams }),
            ..Default::default()
        },
    );
    if let Some(dir) = &config.hosts_dir {
        let tx = status.register("hosts", ComponentStatus::default());
        let source = HostsSource::new(dir.clone(), config.domain.clone(), store.clone(), tx);
        let cancel = sources_cancel.clone();
        sources
            .spawn(async move { ("hosts source", source.run(cancel).await.map_err(Into::into)) });
    }
    if let Some(dc) = &config.docker {
        let host_ip = config.host_ip.or_else(|| {
            let ip = docker::detect_host_ip();
            match ip {
                Some(ip) => info!(%ip, "host address detected from the default route (--host-ip to set it)"),
                None => warn!("no default route to detect the host address from: joyride.host.name labels and published SRV ports are skipped (set --host-ip)"),
            }
            ip
        });
        let naming = NamingContext {
            domain: config.domain.clone(),
            environment: dc.environment.clone(),
            host_ip,
            host_node: config
                .domain
                .child(&format!("{}.node", config.node_name))
                .ok(),
            network: dc.network.clone(),
            schemes: dc.schemes,
        };
        let tx = status.register("docker", ComponentStatus::default());
        let source = DockerSource::new(dc.address.clone(), naming, store.clone(), tx);
        let cancel = sources_cancel.clone();
        sources.spawn(async move {
            (
                "docker source",
                source.run(cancel).await.map_err(Into::into),
            )
        });
    }
    if let (Some(cc), Some(bound)) = (&config.cluster, cluster_bound) {
        let tx = status.register("cluster", ComponentStatus::default());
        let (members_tx, members_rx) = tokio::sync::watch::channel(Vec::new());
        status.set_members(members_rx);
        // `--join-srv` asks the upstreams, or without them the system's nameservers.
        let srv_servers = if config.upstreams.is_empty() {
            std::fs::read_to_string("/etc/resolv.conf")
                .map(|t| crate::config::resolv_conf_nameservers(&t))
                .unwrap_or_default()
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 53))
                .collect()
        } else {
            config.upstreams.clone()
        };
        let service = ClusterService::new(
            cc,
            bound,
            &config.node_name,
            reader.clone(),
            store.clone(),
            tx,
            members_tx,
            srv_servers,
        );
        let cancel = sources_cancel.clone();
        sources.spawn(async move { ("cluster", service.run(cancel).await.map_err(Into::into)) });
    }
    store.flush().await.context("store stopped")?;

    let dns_stats = Arc::new(DnsStats::default());
    let shared = Shared {
        config: config.clone(),
        reader: reader.clone(),
        dns_stats: dns_stats.clone(),
        dns_addrs: dns_addrs.clone(),
        status: status.clone(),
        started: SystemTime::now(),
    };
    // The web server stops with the sources, before DNS.
    if let Some(listener) = http_listener {
        let web = WebServer::new(listener, shared);
        let cancel = sources_cancel.clone();
        sources.spawn(async move { ("web server", web.run(cancel).await.map_err(Into::into)) });
    }
    let server = DnsServer {
        listeners,
        reader,
        forwarder,
        stats: dns_stats,
        config: ServerConfig {
            max_udp_size: config.edns_udp_size,
            udp_threads: config.udp_threads,
            udp_coalesce: config.udp_coalesce,
            tcp_idle_timeout: config.tcp_idle_timeout,
            max_tcp_connections: config.max_tcp_connections,
        },
    };
    let mut dns = tokio::spawn(server.run(dns_cancel.clone()));
    info!(version = env!("CARGO_PKG_VERSION"), node = %config.node_name, domain = %config.domain, "joyride started");

    let mut failure: Option<anyhow::Error> = None;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => info!("shutting down"),
        Some(done) = sources.join_next() => {
            let (name, result) = done.unwrap_or(("source", Err(anyhow::anyhow!("task panicked"))));
            let e = result.err().unwrap_or_else(|| anyhow::anyhow!("stopped unexpectedly"));
            error!(error = %e, "{name} stopped");
            failure = Some(e.context(format!("{name} stopped")));
        }
        r = &mut dns => {
            dns_status.send_modify(|s| {
                s.healthy = false;
                s.state = "stopped".into();
            });
            let e = match r {
                Ok(Ok(())) => anyhow::anyhow!("stopped unexpectedly"),
                Ok(Err(e)) => e.into(),
                Err(e) => e.into(),
            };
            error!(error = %e, "dns server stopped");
            return Err(e.context("dns server stopped"));
        }
    }

    sources_cancel.cancel();
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while sources.join_next().await.is_some() {}
    })
    .await;
    store_cancel.cancel();
    let _ = store_join.await;
    dns_cancel.cancel();
    match tokio::time::timeout(STOP_GRACE, dns).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "dns server stopped with an error"),
        Ok(_) => {}
        Err(_) => warn!("dns server did not stop in time"),
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The addresses published for `ns.<domain>`: the specific listen addresses, or loopback
/// when joyride listens on a wildcard address.
fn ns_addresses(listen: &[SocketAddr]) -> Vec<std::net::IpAddr> {
    let mut out: Vec<std::net::IpAddr> = Vec::new();
    for a in listen {
        let ip = if a.ip().is_unspecified() {
            if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            }
        } else {
            a.ip()
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
