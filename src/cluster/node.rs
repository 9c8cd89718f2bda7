//! node: one cluster member as a synchronous state machine.
//!
//! `ClusterNode` owns the failure detector (foca, SWIM with suspicion), the replication
//! state and the keyring. It never touches a socket or a clock: callers hand it datagrams,
//! the time and this node's records, and take out datagrams to send (already sealed) and
//! store changes to apply. The daemon's loop (`service`) and the 100-node simulation both
//! drive this same code.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant, SystemTime};

use foca::{
    AccumulatingRuntime, Foca, Member, NoCustomBroadcast, OwnedNotification, PostcardCodec, State,
    Timer,
};
use rand::seq::IteratorRandom;
use rand::SeedableRng;
use tracing::{debug, info, warn};

use crate::records::Change;
use crate::status::ClusterMember;

use super::crypto::{Keyring, OpenError, SEAL_OVERHEAD};
use super::replication::{RecordSet, Replication};
use super::wire::{self, Body, NodeId, Packet, RecordsPart, MAX_DATAGRAM};

/// Tunables of one node.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub name: String,
    /// The gossip address peers reach this node at.
    pub advertise: SocketAddr,
    pub cluster_id: String,
    /// How often the failure detector probes one member.
    pub probe_interval: Duration,
    /// How long a member that stops answering stays suspect before it is declared dead.
    pub failure_timeout: Duration,
    /// How often digests go to `fanout` random members.
    pub sync_interval: Duration,
    pub fanout: usize,
    /// How often seeds are announced to while this node knows no live member.
    pub rejoin_interval: Duration,
    /// A set held for a node that has not been alive for this long is dropped (the failure
    /// detector forgets dead members after the same time), so the dead are not relayed
    /// forever.
    pub forget_after: Duration,
}

impl NodeSettings {
    pub fn new(name: &str, advertise: SocketAddr, cluster_id: &str) -> NodeSettings {
        NodeSettings {
            name: name.to_string(),
            advertise,
            cluster_id: cluster_id.to_string(),
            probe_interval: Duration::from_millis(1000),
            failure_timeout: Duration::from_secs(4),
            sync_interval: Duration::from_millis(250),
            fanout: 3,
            rejoin_interval: Duration::from_secs(1),
            forget_after: Duration::from_secs(3600),
        }
    }
}

/// Monotonic counters, exported as metrics.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    pub gossip_bytes_sent: u64,
    pub gossip_bytes_received: u64,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    /// Failed authentication (wrong key, tampered, unkeyed): dropped unparsed.
    pub datagrams_rejected: u64,
    /// Authenticated but not decodable, or of another cluster id.
    pub datagrams_malformed: u64,
    pub record_parts_received: u64,
    pub members_joined: u64,
    pub members_failed: u64,
    pub members_left: u64,
}

/// Foca keeps at most this many bytes for its own payload, leaving room for our envelope
/// (cluster id and node name, 63 bytes each at most) and the seal.
const SWIM_BUDGET: usize = MAX_DATAGRAM - SEAL_OVERHEAD - 160;
/// How often held sets are checked for pruning.
const PRUNE_CHECK: Duration = Duration::from_secs(10);

/// How often seeds are announced to while the node has live members (a seed that restarted
/// alone, or a second cluster to merge with).
const PERIODIC_REJOIN: Duration = Duration::from_secs(30);

type Swim = Foca<NodeId, PostcardCodec, rand_foca::rngs::StdRng, NoCustomBroadcast>;

pub struct ClusterNode {
    settings: NodeSettings,
    id: NodeId,
    keyring: Keyring,
    swim: Swim,
    runtime: AccumulatingRuntime<NodeId>,
    repl: Replication,
    /// Foca's timers, by due time (and a sequence number for equal times).
    timers: BTreeMap<(Instant, u64), Timer<NodeId>>,
    timer_seq: u64,
    /// Members that said goodbye (shown as `left`, not `dead`).
    left: HashSet<String>,
    /// When a datagram last came from each node.
    last_seen: HashMap<String, SystemTime>,
    seeds: Vec<SocketAddr>,
    next_sync: Instant,
    next_rejoin: Instant,
    /// When the seeds are next announced to while joined.
    next_seed_announce: Instant,
    /// Sealed datagrams to send.
    out: Vec<(SocketAddr, Vec<u8>)>,
    /// Changes for the store.
    changes: Vec<Change>,
    pub counters: Counters,
    rng: rand::rngs::StdRng,
    /// Origins of sets we hold but whose node foca did not know, and when we last
    /// introduced ourselves to them.
    introduced: HashMap<String, Instant>,
    /// Since when each held peer set has had no live member behind it.
    inactive_since: HashMap<String, Instant>,
    next_prune: Instant,
    /// Set by `leave`: foca then calls itself dead, which is expected.
    leaving: bool,
}

impl ClusterNode {
    /// `boot_ms` is the process start time in ms since the epoch (a restart is a new
    /// identity, and its record versions are newer).
    pub fn new(
        settings: NodeSettings,
        keyring: Keyring,
        now: Instant,
        boot_ms: u64,
    ) -> ClusterNode {
        let id = NodeId {
            name: settings.name.clone(),
            addr: settings.advertise,
            boot: boot_ms,
            renewal: 0,
        };
        let swim = Foca::new(
            id.clone(),
            swim_config(&settings),
            <rand_foca::rngs::StdRng as rand_foca::SeedableRng>::seed_from_u64(rand::random()),
            PostcardCodec,
        );
        let mut repl = Replication::new(&settings.name, boot_ms);
        repl.set_local_addr(settings.advertise);
        ClusterNode {
            repl,
            introduced: HashMap::new(),
            inactive_since: HashMap::new(),
            next_prune: now + PRUNE_CHECK,
            id,
            keyring,
            swim,
            runtime: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            left: HashSet::new(),
            last_seen: HashMap::new(),
            seeds: Vec::new(),
            next_sync: now,
            next_rejoin: now,
            next_seed_announce: now,
            out: Vec::new(),
            changes: Vec::new(),
            counters: Counters::default(),
            rng: rand::rngs::StdRng::from_os_rng(),
            leaving: false,
            settings,
        }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Addresses to announce to (resolved `--join` and SRV seeds). Announcing starts at once.
    pub fn set_seeds(&mut self, seeds: Vec<SocketAddr>, now: Instant) {
        let seeds: Vec<SocketAddr> = seeds
            .into_iter()
            .filter(|s| *s != self.settings.advertise)
            .collect();
        if seeds != self.seeds {
            self.seeds = seeds;
            self.next_rejoin = now;
            self.next_seed_announce = now;
        }
    }

    /// This node's own records. A change moves the version and is pushed to a few members
    /// at once; digests carry it to the rest.
    pub fn set_local(&mut self, set: RecordSet, now_ms: u64) {
        if !self.repl.set_local(set, now_ms) {
            return;
        }
        debug!(
            version = self.repl.local_version(),
            records = self.repl.local_record_count(),
            "local records changed"
        );
        let parts: Vec<RecordsPart> = self.repl.local_parts().to_vec();
        for to in self.random_members(self.settings.fanout) {
            for p in &parts {
                self.send(to, Body::Records(p.clone()));
            }
        }
    }

    /// The datagram to send to the multicast group (and seeds): "here I am".
    pub fn announcement(&mut self) -> Vec<u8> {
        self.seal(Body::Announce {
            id: self.id.clone(),
        })
    }

    /// Records held for a peer (in the store or not), `None` when nothing is held.
    pub fn held_records(&self, node: &str) -> Option<usize> {
        self.repl.peer_record_count(node)
    }

    /// Number of live members besides this node.
    pub fn live_members(&self) -> usize {
        self.swim.num_members()
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
        now_ms: u64,
    ) {
        self.counters.datagrams_received += 1;
        self.counters.gossip_bytes_received += datagram.len() as u64;
        let plain = match self.keyring.open(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.counters.datagrams_rejected += 1;
                if e != OpenError::Truncated {
                    debug!(%from, error = %e, "gossip datagram rejected");
                }
                return;
            }
        };
        let packet = match wire::decode(&plain) {
            Ok(p) if p.cluster == self.settings.cluster_id => p,
            Ok(p) => {
                self.counters.datagrams_malformed += 1;
                debug!(%from, cluster = %p.cluster, "datagram of another cluster ignored");
                return;
            }
            Err(e) => {
                self.counters.datagrams_malformed += 1;
                debug!(%from, error = %e, "undecodable gossip datagram");
                return;
            }
        };
        if packet.from == self.settings.name {
            return; // our own multicast announcement, looped back
        }
        self.last_seen
            .insert(packet.from.clone(), SystemTime::now());
        match packet.body {
            Body::Swim(data) => {
                if let Err(e) = self.swim.handle_data(&data, &mut self.runtime) {
                    debug!(%from, error = %e, "swim message refused");
                }
                self.drain(now);
            }
            Body::Digest { entries, complete } => {
                let reply = self
                    .repl
                    .on_digest(&packet.from, &entries, complete, now_ms);
                if !reply.request.is_empty() {
                    self.send(
                        from,
                        Body::Request {
                            nodes: reply.request,
                        },
                    );
                }
                for p in reply.parts {
                    self.send(from, Body::Records(p));
                }
            }
            Body::Request { nodes } => {
                for p in self.repl.on_request(&nodes) {
                    self.send(from, Body::Records(p));
                }
            }
            Body::Records(part) => {
                self.counters.record_parts_received += 1;
                if let Some(origin) = part.origin {
                    self.introduce(&part.node, origin, now);
                }
                let changes = self.repl.on_part(part);
                self.changes.extend(changes);
            }
            Body::Announce { id } => {
                if id.name != self.settings.name && !self.swim.iter_members().any(|m| *m.id() == id)
                {
                    debug!(peer = %id.name, addr = %id.addr, "announced; introducing ourselves");
                    if let Err(e) = self.swim.announce(id, &mut self.runtime) {
                        debug!(error = %e, "cannot announce");
                    }
                    self.drain(now);
                }
            }
            Body::Leave { id } => {
                if self.swim.iter_members().any(|m| *m.id() == id) {
                    info!(peer = %id.name, "member is leaving");
                    self.left.insert(id.name.clone());
                    let down = Member::new(id, 0, State::Down);
                    if let Err(e) =
                        self.swim
                            .apply_many(std::iter::once(down), true, &mut self.runtime)
                    {
                        debug!(error = %e, "cannot apply leave");
                    }
                    self.drain(now);
                }
            }
        }
    }

    /// When `tick` next has something to do.
    pub fn next_wakeup(&self) -> Instant {
        let timer = self.timers.keys().next().map(|(t, _)| *t);
        let mut next = self.next_sync.min(self.next_rejoin);
        if let Some(t) = timer {
            next = next.min(t);
        }
        next
    }

    /// Runs what is due at `now`: foca's timers, a digest round, announcements to seeds.
    pub fn tick(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            if let Err(e) = self.swim.handle_timer(timer, &mut self.runtime) {
                debug!(error = %e, "swim timer");
            }
            self.drain(now);
        }
        if now >= self.next_sync {
            self.next_sync = now + self.settings.sync_interval;
            // While something changed recently, spread it to `fanout` members; at rest one
            // digest per round is enough to catch anything missed.
            let fanout = if self.repl.has_hot() {
                self.settings.fanout
            } else {
                1
            };
            for to in self.random_members(fanout) {
                let d = self.repl.digest();
                self.send(
                    to,
                    Body::Digest {
                        entries: d.entries,
                        complete: d.complete,
                    },
                );
            }
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_CHECK;
            self.prune(now);
        }
        if now >= self.next_rejoin {
            // Foca announces to dead members only while it has live ones, and a healed
            // partition can leave every side idle: so we announce ourselves too, to a few
            // dead members (they may be back) and to the seeds, often while alone.
            let idle = self.swim.num_members() == 0;
            self.next_rejoin = now
                + if idle {
                    self.settings.rejoin_interval
                } else {
                    self.settings.rejoin_interval * 2
                };
            let mut targets: Vec<SocketAddr> = self
                .swim
                .iter_membership_state()
                .filter(|m| m.state() == State::Down && !self.left.contains(&m.id().name))
                .map(|m| m.id().addr)
                .choose_multiple(&mut self.rng, 2);
            if idle || now >= self.next_seed_announce {
                self.next_seed_announce = now + PERIODIC_REJOIN;
                targets.extend(self.seeds.iter().copied());
            }
            targets.sort();
            targets.dedup();
            if !targets.is_empty() {
                let a = self.announcement();
                for t in targets {
                    self.push(t, a.clone());
                }
            }
        }
    }

    /// Drops the sets of nodes that have not been alive for `forget_after`.
    fn prune(&mut self, now: Instant) {
        let held = self.repl.held_peers();
        self.inactive_since
            .retain(|n, _| held.iter().any(|(h, active)| h == n && !active));
        for (name, active) in held {
            if active {
                continue;
            }
            let since = *self.inactive_since.entry(name.clone()).or_insert(now);
            if now.duration_since(since) >= self.settings.forget_after {
                debug!(peer = %name, "forgetting the records of a node long gone");
                self.inactive_since.remove(&name);
                self.introduced.remove(&name);
                let c = self.repl.forget(&name);
                self.changes.extend(c);
            }
        }
    }

    /// Says goodbye: every live member withdraws our records at once.
    pub fn leave(&mut self, now: Instant) {
        self.leaving = true;
        let members: Vec<SocketAddr> = self.swim.iter_members().map(|m| m.id().addr).collect();
        for to in members {
            self.send(
                to,
                Body::Leave {
                    id: self.id.clone(),
                },
            );
        }
        if let Err(e) = self.swim.leave_cluster(&mut self.runtime) {
            debug!(error = %e, "leave");
        }
        self.drain(now);
    }

    pub fn take_output(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.out)
    }

    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Every member the failure detector knows, and this node, for the status page.
    pub fn members(&self) -> Vec<ClusterMember> {
        let mut out = vec![ClusterMember {
            name: self.settings.name.clone(),
            address: Some(self.settings.advertise),
            state: "alive".into(),
            records: self.repl.local_record_count(),
            last_seen: Some(SystemTime::now()),
            local: true,
        }];
        for m in self.swim.iter_membership_state() {
            let name = &m.id().name;
            let state = match m.state() {
                State::Alive => "alive",
                State::Suspect => "suspect",
                State::Down if self.left.contains(name) => "left",
                State::Down => "dead",
            };
            out.push(ClusterMember {
                name: name.clone(),
                address: Some(m.id().addr),
                state: state.into(),
                records: self.repl.peer_record_count(name).unwrap_or(0),
                last_seen: self.last_seen.get(name).copied(),
                local: false,
            });
        }
        out.sort_by(|a, b| (!a.local, &a.name).cmp(&(!b.local, &b.name)));
        out
    }

    /// Announces ourselves to the origin of a set if the failure detector has never heard
    /// of it (at most every few seconds): its records enter the store only once it is a
    /// live member, and this makes it one without waiting for membership gossip.
    fn introduce(&mut self, node: &str, origin: SocketAddr, now: Instant) {
        if node == self.settings.name
            || self
                .swim
                .iter_membership_state()
                .any(|m| m.id().name == node)
            || self
                .introduced
                .get(node)
                .is_some_and(|t| now < *t + Duration::from_secs(5))
        {
            return;
        }
        self.introduced.insert(node.to_string(), now);
        let a = self.announcement();
        self.push(origin, a);
    }

    fn random_members(&mut self, n: usize) -> Vec<SocketAddr> {
        self.swim
            .iter_members()
            .map(|m| m.id().addr)
            .choose_multiple(&mut self.rng, n)
    }

    fn seal(&mut self, body: Body) -> Vec<u8> {
        let bytes = wire::encode(&Packet {
            cluster: self.settings.cluster_id.clone(),
            from: self.settings.name.clone(),
            body,
        });
        if bytes.len() + SEAL_OVERHEAD > MAX_DATAGRAM {
            warn!(bytes = bytes.len(), "gossip datagram larger than planned");
        }
        self.keyring.seal(&bytes)
    }

    fn send(&mut self, to: SocketAddr, body: Body) {
        let d = self.seal(body);
        self.push(to, d);
    }

    fn push(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        self.counters.datagrams_sent += 1;
        self.counters.gossip_bytes_sent += datagram.len() as u64;
        self.out.push((to, datagram));
    }

    /// Moves what foca asked for into our queues, and acts on its notifications.
    fn drain(&mut self, now: Instant) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.send(to.addr, Body::Swim(data.to_vec()));
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        while let Some(n) = self.runtime.to_notify() {
            self.on_notification(n);
        }
    }

    fn on_notification(&mut self, n: OwnedNotification<NodeId>) {
        match n {
            OwnedNotification::MemberUp(id) => {
                info!(peer = %id.name, addr = %id.addr, "member up");
                self.counters.members_joined += 1;
                self.left.remove(&id.name);
                let c = self.repl.set_active(&id.name, true);
                self.changes.extend(c);
            }
            OwnedNotification::MemberDown(id) => {
                if self.left.contains(&id.name) {
                    info!(peer = %id.name, "member left; records withdrawn");
                    self.counters.members_left += 1;
                } else {
                    warn!(peer = %id.name, "member declared dead; records withdrawn");
                    self.counters.members_failed += 1;
                }
                let c = self.repl.set_active(&id.name, false);
                self.changes.extend(c);
            }
            OwnedNotification::Rename(old, new) => {
                debug!(peer = %new.name, "member has a new identity");
                if old.boot != new.boot {
                    // The process restarted: what it published before is void.
                    let c = self.repl.forget(&new.name);
                    self.changes.extend(c);
                }
            }
            OwnedNotification::Active => info!("joined the cluster"),
            OwnedNotification::Idle if self.leaving => {}
            OwnedNotification::Idle => warn!("no live cluster member left"),
            OwnedNotification::Rejoin(id) => {
                info!(
                    renewal = id.renewal,
                    "declared dead by the cluster; rejoined"
                );
                self.id = id;
            }
            OwnedNotification::Defunct if self.leaving => {}
            OwnedNotification::Defunct => warn!("declared dead by the cluster"),
        }
    }
}

/// Foca's settings: memberlist's LAN profile with our probe interval and failure timeout,
/// faster re-announcement to dead members (a healed partition merges within seconds), and
/// room in each datagram for our envelope.
fn swim_config(s: &NodeSettings) -> foca::Config {
    // Sized for clusters up to a few hundred nodes: more retransmissions of membership
    // updates, so a burst of joins reaches everyone.
    let mut c = foca::Config::new_lan(NonZeroU32::new(256).expect("non-zero"));
    c.probe_period = s.probe_interval;
    c.probe_rtt = s.probe_interval / 2;
    c.suspect_to_down_after = s.failure_timeout;
    c.max_packet_size = NonZeroUsize::new(SWIM_BUDGET).expect("non-zero");
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(1),
        num_members: NonZeroUsize::new(2).expect("non-zero"),
    });
    c.remove_down_after = Some(s.forget_after);
    // Ask a random member for its member list every few seconds, so a member that missed
    // an update (loss, a burst of joins) still learns everyone soon.
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(1).expect("non-zero"),
    });
    c
}
