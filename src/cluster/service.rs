//! service: the cluster's async loop. It only moves bytes: datagrams between the sockets
//! and `ClusterNode`, this node's records from the snapshot into it, and its changes into
//! the store. Sockets are bound by `bind` before any task starts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ClusterConfig;
use crate::records::{Snapshot, SnapshotReader, SourceKind, StoreHandle};
use crate::status::{ClusterMember, ComponentStatus};

use super::crypto::Keyring;
use super::node::{ClusterNode, NodeSettings};
use super::replication::RecordSet;
use super::srv;
use super::wire::MAX_DATAGRAM;

/// How often status and members are published, seeds re-resolved while alone, and the
/// multicast announcement sent.
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// Multicast announcements: this often while alone, `ANNOUNCE_JOINED` once joined.
const ANNOUNCE_ALONE: Duration = Duration::from_secs(1);
const ANNOUNCE_JOINED: Duration = Duration::from_secs(5);
/// Seeds are resolved again this often while this node knows no live member.
const RESOLVE_ALONE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot bind gossip address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot join multicast group {group} on {iface}: {source}")]
    Multicast {
        group: SocketAddrV4,
        iface: Ipv4Addr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot tell which address peers reach this node at (gossip listens on {0}): give --gossip-advertise")]
    Advertise(SocketAddr),
    #[error("multicast discovery needs an IPv4 gossip address, not {0}")]
    MulticastV6(SocketAddr),
    #[error(transparent)]
    Store(#[from] crate::records::store::StoreClosed),
    #[error("gossip socket failed: {0}")]
    Socket(std::io::Error),
}

/// The cluster with its sockets bound, ready to run.
pub struct ClusterService {
    node: ClusterNode,
    socket: UdpSocket,
    multicast: Option<(UdpSocket, SocketAddrV4)>,
    joins: Vec<String>,
    join_srv: Vec<crate::records::Name>,
    publish: Vec<SourceKind>,
    local: Arc<str>,
    reader: SnapshotReader,
    store: StoreHandle,
    status: watch::Sender<ComponentStatus>,
    members: watch::Sender<Vec<ClusterMember>>,
    cluster_id: String,
    encrypted: bool,
    /// Sends that the kernel refused (unreachable peer...).
    send_errors: u64,
    /// Nameservers asked for `--join-srv`.
    srv_servers: Vec<SocketAddr>,
}

/// Sockets bound for the cluster.
pub struct BoundCluster {
    socket: UdpSocket,
    multicast: Option<(UdpSocket, SocketAddrV4)>,
    pub advertise: SocketAddr,
}

/// Binds the gossip socket (and the multicast one) and settles the advertised address.
pub async fn bind(cfg: &ClusterConfig) -> Result<BoundCluster, ClusterError> {
    let socket = UdpSocket::bind(cfg.gossip_listen)
        .await
        .map_err(|source| ClusterError::Bind {
            addr: cfg.gossip_listen,
            source,
        })?;
    let local = socket.local_addr().map_err(ClusterError::Socket)?;
    let advertise = match cfg.gossip_advertise {
        Some(a) => a,
        None if !local.ip().is_unspecified() => local,
        None => {
            // Ask the routing table (no packet is sent) which address leads to the first
            // seed or to the multicast group.
            let mut toward: Option<SocketAddr> = cfg.multicast.map(SocketAddr::V4);
            if let Some(j) = cfg.join.first() {
                if let Ok(mut it) = tokio::net::lookup_host(j.as_str()).await {
                    toward = it.next().or(toward);
                }
            }
            let ip = match toward {
                Some(t) => route_source(t).await,
                None => None,
            }
            .ok_or(ClusterError::Advertise(local))?;
            SocketAddr::new(ip, local.port())
        }
    };
    let multicast = match cfg.multicast {
        None => None,
        Some(group) => {
            let IpAddr::V4(iface) = advertise.ip() else {
                return Err(ClusterError::MulticastV6(advertise));
            };
            let s = multicast_socket(group, iface).map_err(|source| ClusterError::Multicast {
                group,
                iface,
                source,
            })?;
            Some((s, group))
        }
    };
    Ok(BoundCluster {
        socket,
        multicast,
        advertise,
    })
}

async fn route_source(toward: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if toward.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = UdpSocket::bind(any).await.ok()?;
    s.connect(toward).await.ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// A socket bound to the group, member of it on `iface`, sending through `iface` with TTL 1
/// (announcements never leave the segment).
fn multicast_socket(group: SocketAddrV4, iface: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::V4(group).into())?;
    s.join_multicast_v4(group.ip(), &iface)?;
    s.set_multicast_if_v4(&iface)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// This node's own records of the published sources, as the snapshot holds them (never the
/// zone's derived records: every node makes its own).
pub fn local_set(snap: &Snapshot, node: &str, publish: &[SourceKind]) -> RecordSet {
    snap.owners
        .iter()
        .filter(|(k, _)| {
            &*k.node == node && k.source != SourceKind::Zone && publish.contains(&k.source)
        })
        .map(|(k, v)| ((k.source, k.owner.clone()), v.to_vec()))
        .collect()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What woke the loop.
enum Event {
    Gossip(std::io::Result<(usize, SocketAddr)>),
    Multicast(std::io::Result<(usize, SocketAddr)>),
    Snapshot,
    Timer,
    Housekeeping,
    Stop,
}

impl ClusterService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &ClusterConfig,
        bound: BoundCluster,
        node_name: &str,
        reader: SnapshotReader,
        store: StoreHandle,
        status: watch::Sender<ComponentStatus>,
        members: watch::Sender<Vec<ClusterMember>>,
        srv_servers: Vec<SocketAddr>,
    ) -> ClusterService {
        let mut settings = NodeSettings::new(node_name, bound.advertise, &cfg.cluster_id);
        settings.failure_timeout = cfg.failure_timeout;
        let keyring = Keyring::new(&cfg.keys, &cfg.cluster_id);
        let node = ClusterNode::new(settings, keyring, Instant::now(), unix_ms());
        ClusterService {
            node,
            socket: bound.socket,
            multicast: bound.multicast,
            joins: cfg.join.clone(),
            join_srv: cfg.join_srv.clone(),
            publish: cfg.publish.clone(),
            local: Arc::from(node_name),
            reader,
            store,
            status,
            members,
            cluster_id: cfg.cluster_id.clone(),
            encrypted: !cfg.keys.is_empty(),
            send_errors: 0,
            srv_servers,
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), ClusterError> {
        info!(advertise = %self.node_advertise(), cluster = %self.cluster_id, encrypted = self.encrypted,
              multicast = ?self.multicast.as_ref().map(|m| m.1), "cluster gossip started");
        let mut snapshots = self.reader.subscribe();
        snapshots.mark_changed();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gossip_buf = vec![0u8; MAX_DATAGRAM * 2];
        let mut mcast_buf = vec![0u8; MAX_DATAGRAM * 2];
        let mut next_announce = tokio::time::Instant::now();
        let mut next_resolve = tokio::time::Instant::now();
        loop {
            let wake = tokio::time::Instant::from_std(self.node.next_wakeup());
            let event = tokio::select! {
                _ = cancel.cancelled() => Event::Stop,
                r = self.socket.recv_from(&mut gossip_buf) => Event::Gossip(r),
                r = recv_multicast(&self.multicast, &mut mcast_buf) => Event::Multicast(r),
                r = snapshots.changed() => match r {
                    Ok(()) => Event::Snapshot,
                    Err(_) => Event::Stop,
                },
                _ = tokio::time::sleep_until(wake) => Event::Timer,
                _ = housekeeping.tick() => Event::Housekeeping,
            };
            let now = Instant::now();
            match event {
                Event::Stop => {
                    self.node.leave(now);
                    self.flush().await?;
                    info!("left the cluster");
                    return Ok(());
                }
                Event::Gossip(Ok((n, from))) => {
                    self.node
                        .handle_datagram(from, &gossip_buf[..n], now, unix_ms())
                }
                Event::Multicast(Ok((n, from))) => {
                    self.node
                        .handle_datagram(from, &mcast_buf[..n], now, unix_ms())
                }
                Event::Gossip(Err(e)) | Event::Multicast(Err(e)) => {
                    // ICMP errors surface here on Linux (a peer's port closed): not fatal.
                    debug!(error = %e, "gossip receive error");
                }
                Event::Snapshot => {
                    let snap = self.reader.load_full();
                    let set = local_set(&snap, &self.local, &self.publish);
                    self.node.set_local(set, unix_ms());
                }
                Event::Timer => self.node.tick(now),
                Event::Housekeeping => {
                    let tnow = tokio::time::Instant::now();
                    let alone = self.node.live_members() == 0;
                    if tnow >= next_resolve && (!self.joins.is_empty() || !self.join_srv.is_empty())
                    {
                        next_resolve = tnow
                            + if alone {
                                RESOLVE_ALONE
                            } else {
                                Duration::from_secs(60)
                            };
                        let seeds = self.resolve_seeds().await;
                        self.node.set_seeds(seeds, Instant::now());
                    }
                    if tnow >= next_announce {
                        if let Some((sock, group)) = &self.multicast {
                            let a = self.node.announcement();
                            if let Err(e) = sock.send_to(&a, SocketAddr::V4(*group)).await {
                                debug!(error = %e, "multicast announcement failed");
                                self.send_errors += 1;
                            }
                        }
                        next_announce = tnow
                            + if alone {
                                ANNOUNCE_ALONE
                            } else {
                                ANNOUNCE_JOINED
                            };
                    }
                    self.publish_status();
                }
            }
            self.flush().await?;
        }
    }

    fn node_advertise(&self) -> String {
        self.node
            .members()
            .first()
            .and_then(|m| m.address)
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// Sends what the node queued and hands its changes to the store.
    async fn flush(&mut self) -> Result<(), ClusterError> {
        for (to, bytes) in self.node.take_output() {
            if let Err(e) = self.socket.send_to(&bytes, to).await {
                self.send_errors += 1;
                debug!(%to, error = %e, "gossip send failed");
            }
        }
        for c in self.node.take_changes() {
            self.store.send(c).await?;
        }
        Ok(())
    }

    async fn resolve_seeds(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        let mut names: Vec<String> = self.joins.clone();
        for name in &self.join_srv {
            match srv::lookup(name, &self.srv_servers).await {
                Ok(targets) => names.extend(targets),
                Err(e) => warn!(name = %name, error = %e, "cannot look up seeds by SRV"),
            }
        }
        for j in &names {
            match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(j.as_str()))
                .await
            {
                Ok(Ok(addrs)) => out.extend(addrs),
                Ok(Err(e)) => warn!(seed = %j, error = %e, "cannot resolve seed; will retry"),
                Err(_) => warn!(seed = %j, "resolving seed timed out; will retry"),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn publish_status(&mut self) {
        let members = self.node.members();
        let live = members
            .iter()
            .filter(|m| !m.local && (m.state == "alive" || m.state == "suspect"))
            .count();
        let c = &self.node.counters;
        let counters = [
            ("gossip_bytes_sent", c.gossip_bytes_sent),
            ("gossip_bytes_received", c.gossip_bytes_received),
            ("datagrams_sent", c.datagrams_sent),
            ("datagrams_received", c.datagrams_received),
            ("datagrams_rejected", c.datagrams_rejected),
            ("datagrams_malformed", c.datagrams_malformed),
            ("record_parts_received", c.record_parts_received),
            ("members_joined", c.members_joined),
            ("members_failed", c.members_failed),
            ("members_left", c.members_left),
            ("send_errors", self.send_errors),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.status.send_replace(ComponentStatus {
            healthy: true,
            critical: false,
            state: if live == 0 {
                "alone".into()
            } else {
                format!("joined, {live} live peers")
            },
            details: serde_json::json!({
                "node": &*self.local,
                "advertise": members.first().and_then(|m| m.address),
                "cluster_id": self.cluster_id,
                "encrypted": self.encrypted,
                "multicast": self.multicast.as_ref().map(|m| m.1),
                "seeds": self.joins,
                "members": members.len(),
            }),
            counters,
        });
        self.members.send_replace(members);
    }
}

async fn recv_multicast(
    m: &Option<(UdpSocket, SocketAddrV4)>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match m {
        Some((s, _)) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::store::{Store, ZoneConfig};
    use crate::records::{Change, Name, OwnerKey, RData, Record};

    #[test]
    fn local_set_takes_only_our_published_sources() {
        let mut store = Store::new(ZoneConfig {
            apex: Name::parse("docker").unwrap(),
            default_ttl: 10,
            negative_ttl: 5,
            node: "me".into(),
            ns_addresses: vec!["127.0.0.1".parse().unwrap()],
            prefer_local: false,
        });
        let rec = |n: &str| {
            Record::new(
                Name::parse(n).unwrap(),
                RData::A("10.0.0.1".parse().unwrap()),
            )
        };
        let me: Arc<str> = Arc::from("me");
        let peer: Arc<str> = Arc::from("peer");
        for (node, source, owner, name) in [
            (&me, SourceKind::Hosts, "/h", "a.docker"),
            (&me, SourceKind::Docker, "c1", "b.docker"),
            (&me, SourceKind::Static, "config", "c.docker"),
            (&peer, SourceKind::Hosts, "/h", "p.docker"),
        ] {
            store.apply(Change::Replace {
                owner: OwnerKey::new(node, source, owner),
                records: vec![rec(name)],
            });
        }
        let snap = store.snapshot();
        let set = local_set(&snap, "me", &[SourceKind::Hosts, SourceKind::Docker]);
        let keys: Vec<(SourceKind, &str)> = set.keys().map(|(s, o)| (*s, &**o)).collect();
        assert_eq!(
            keys,
            vec![(SourceKind::Hosts, "/h"), (SourceKind::Docker, "c1")]
        );
        // The zone's own records (ns.docker) and peers' records are never published.
        assert!(local_set(&snap, "me", &[SourceKind::Zone]).is_empty());
    }
}
