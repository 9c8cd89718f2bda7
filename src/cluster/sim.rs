//! sim: many `ClusterNode`s in one process over an in-memory network with a virtual clock.
//!
//! The unit tests drive failures through it (crash, partition, loss, a wrong key) without
//! sockets or sleeps, and `examples/cluster_sim.rs` measures convergence of 100 nodes. The
//! network delivers each datagram after `latency`, drops it with probability `loss`, and
//! never delivers to or from a crashed node or across a cut link. Each node's store is a
//! plain map that applies the `Change`s the node emits, as the real store would.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::records::{Change, OwnerKey, Record};

use super::crypto::Keyring;
use super::node::{ClusterNode, NodeSettings};
use super::replication::RecordSet;

/// What one simulated node's store holds: records by owner.
#[derive(Default)]
pub struct SimStore {
    pub owners: HashMap<OwnerKey, Vec<Record>>,
}

impl SimStore {
    pub fn apply(&mut self, c: Change) {
        match c {
            Change::Replace { owner, records } => {
                if records.is_empty() {
                    self.owners.remove(&owner);
                } else {
                    self.owners.insert(owner, records);
                }
            }
            Change::WithdrawNode { node } => self.owners.retain(|k, _| k.node != node),
            Change::Retain { .. } | Change::Barrier(_) => {}
        }
    }

    /// Records asserted by `node`.
    pub fn count_of(&self, node: &str) -> usize {
        self.owners
            .iter()
            .filter(|(k, _)| &*k.node == node)
            .map(|(_, v)| v.len())
            .sum()
    }

    pub fn total(&self) -> usize {
        self.owners.values().map(Vec::len).sum()
    }
}

struct InFlight {
    at: Instant,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

pub struct SimNet {
    pub nodes: Vec<ClusterNode>,
    pub stores: Vec<SimStore>,
    addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    inflight: VecDeque<InFlight>,
    pub now: Instant,
    epoch_ms: u64,
    start: Instant,
    pub latency: Duration,
    pub loss: f64,
    crashed: HashSet<usize>,
    /// Nodes cut off from everyone else (a partition of one side).
    isolated: HashSet<usize>,
    rng: rand::rngs::StdRng,
    pub delivered_bytes: u64,
}

impl SimNet {
    pub fn new() -> SimNet {
        use rand::SeedableRng;
        let now = Instant::now();
        SimNet {
            nodes: Vec::new(),
            stores: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            inflight: VecDeque::new(),
            now,
            start: now,
            epoch_ms: 1_700_000_000_000,
            latency: Duration::from_millis(1),
            loss: 0.0,
            crashed: HashSet::new(),
            isolated: HashSet::new(),
            rng: rand::rngs::StdRng::seed_from_u64(7),
            delivered_bytes: 0,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch_ms + (self.now - self.start).as_millis() as u64
    }

    /// Adds node `name`; `settings` may adjust its tunables. Returns its index.
    pub fn add(
        &mut self,
        name: &str,
        keyring: Keyring,
        adjust: impl FnOnce(&mut NodeSettings),
    ) -> usize {
        let i = self.nodes.len();
        let addr: SocketAddr = format!("10.0.{}.{}:7946", i / 250, i % 250 + 1)
            .parse()
            .expect("addr");
        let mut s = NodeSettings::new(name, addr, "sim");
        adjust(&mut s);
        let node = ClusterNode::new(s, keyring, self.now, self.now_ms());
        self.nodes.push(node);
        self.stores.push(SimStore::default());
        self.addrs.push(addr);
        self.by_addr.insert(addr, i);
        i
    }

    /// Replaces node `i` by a fresh process (same name and address), as after `kill -9` and
    /// a restart.
    pub fn restart(&mut self, i: usize, keyring: Keyring) {
        let s = NodeSettings::new(self.nodes[i].name(), self.addrs[i], "sim");
        self.nodes[i] = ClusterNode::new(s, keyring, self.now, self.now_ms());
        self.stores[i] = SimStore::default();
        self.crashed.remove(&i);
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    pub fn crash(&mut self, i: usize) {
        self.crashed.insert(i);
    }

    pub fn isolate(&mut self, i: usize, cut: bool) {
        if cut {
            self.isolated.insert(i);
        } else {
            self.isolated.remove(&i);
        }
    }

    pub fn set_local(&mut self, i: usize, set: RecordSet) {
        let ms = self.now_ms();
        self.nodes[i].set_local(set, ms);
        self.flush(i);
    }

    /// Node `i` leaves politely and stops.
    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].leave(now);
        self.flush(i);
        self.crashed.insert(i);
    }

    fn flush(&mut self, i: usize) {
        let from = self.addrs[i];
        for (to, bytes) in self.nodes[i].take_output() {
            if self.crashed.contains(&i) || self.rng.random_bool(self.loss.clamp(0.0, 1.0)) {
                continue;
            }
            self.inflight.push_back(InFlight {
                at: self.now + self.latency,
                from,
                to,
                bytes,
            });
        }
        for c in self.nodes[i].take_changes() {
            self.stores[i].apply(c);
        }
    }

    /// Advances the virtual clock by `d` in steps of 1 ms.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Runs until `cond` holds (checked every 10 ms) or `limit` passes; returns the time
    /// it took, or None.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&SimNet) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let mut n = 0u32;
        loop {
            if n.is_multiple_of(10) && cond(self) {
                return Some(self.now - start);
            }
            if self.now - start > limit {
                return None;
            }
            self.step();
            n += 1;
        }
    }

    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        let now = self.now;
        let ms = self.now_ms();
        while self.inflight.front().is_some_and(|f| f.at <= now) {
            let f = self.inflight.pop_front().expect("front");
            let Some(&to) = self.by_addr.get(&f.to) else {
                continue;
            };
            let from = self.by_addr.get(&f.from).copied();
            if self.crashed.contains(&to)
                || self.isolated.contains(&to) != from.is_some_and(|x| self.isolated.contains(&x))
            {
                continue;
            }
            self.delivered_bytes += f.bytes.len() as u64;
            self.nodes[to].handle_datagram(f.from, &f.bytes, now, ms);
            self.flush(to);
        }
        for i in 0..self.nodes.len() {
            if self.crashed.contains(&i) || self.nodes[i].next_wakeup() > now {
                continue;
            }
            self.nodes[i].tick(now);
            self.flush(i);
        }
    }

    /// Joins every node through node 0.
    pub fn join_all(&mut self) {
        let seed = self.addrs[0];
        let now = self.now;
        for i in 1..self.nodes.len() {
            self.nodes[i].set_seeds(vec![seed], now);
        }
    }
}

impl Default for SimNet {
    fn default() -> Self {
        SimNet::new()
    }
}

/// A set of `n` hosts-file records for node `node`, owned by one file.
pub fn sample_set(node: &str, n: usize, tag: u8) -> RecordSet {
    use crate::records::{Name, RData, SourceKind};
    let recs = (0..n)
        .map(|i| {
            Record::new(
                Name::parse(&format!("r{i}.{node}.docker")).expect("name"),
                RData::A(std::net::Ipv4Addr::new(
                    10,
                    tag,
                    (i / 250) as u8,
                    (i % 250) as u8 + 1,
                )),
            )
        })
        .collect();
    [(
        (SourceKind::Hosts, Arc::from("/etc/joyride/hosts.d/all")),
        recs,
    )]
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::crypto::ClusterKey;

    fn key() -> ClusterKey {
        ClusterKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap()
    }
    fn ring() -> Keyring {
        Keyring::new(&[key()], "sim")
    }
    /// Three nodes with 5 records each, joined and converged.
    fn three() -> SimNet {
        let mut net = SimNet::new();
        for (i, n) in ["h1", "h2", "h3"].iter().enumerate() {
            net.add(n, ring(), |_| {});
            net.set_local(i, sample_set(n, 5, i as u8));
        }
        net.join_all();
        let t = net.run_until(Duration::from_secs(5), |n| {
            n.stores.iter().all(|s| s.total() == 10)
        });
        assert!(t.is_some(), "three nodes did not converge");
        net
    }

    #[test]
    fn records_spread_to_every_node_and_changes_follow() {
        let mut net = three();
        assert_eq!(net.stores[1].count_of("h1"), 5);
        assert_eq!(
            net.stores[0].count_of("h1"),
            0,
            "own records are never re-inserted"
        );
        net.set_local(0, sample_set("h1", 8, 0));
        let t = net
            .run_until(Duration::from_secs(2), |n| {
                n.stores[1].count_of("h1") == 8 && n.stores[2].count_of("h1") == 8
            })
            .expect("change spreads");
        assert!(t < Duration::from_millis(600), "{t:?}");
    }

    #[test]
    fn crash_withdraws_within_the_failure_timeout_and_restart_restores() {
        let mut net = three();
        net.crash(0);
        let t = net
            .run_until(Duration::from_secs(15), |n| {
                n.stores[1].count_of("h1") == 0 && n.stores[2].count_of("h1") == 0
            })
            .expect("withdrawn");
        assert!(t < Duration::from_secs(10), "withdraw took {t:?}");
        assert!(
            t > Duration::from_secs(3),
            "suspicion holds records for a while: {t:?}"
        );
        assert!(net.nodes[1]
            .members()
            .iter()
            .any(|m| m.name == "h1" && m.state == "dead"));
        net.restart(0, ring());
        net.set_local(0, sample_set("h1", 3, 0));
        // Like `--join h2`: the restarted node announces itself at once.
        let (seed, now) = (net.addr(1), net.now);
        net.nodes[0].set_seeds(vec![seed], now);
        let t = net
            .run_until(Duration::from_secs(5), |n| {
                n.stores[1].count_of("h1") == 3
                    && n.stores[2].count_of("h1") == 3
                    && n.stores[0].total() == 10
            })
            .expect("restored");
        assert!(t < Duration::from_secs(2), "restore took {t:?}");
    }

    #[test]
    fn leave_withdraws_at_once() {
        let mut net = three();
        net.leave(2);
        let t = net
            .run_until(Duration::from_secs(5), |n| {
                n.stores[0].count_of("h3") == 0 && n.stores[1].count_of("h3") == 0
            })
            .expect("withdrawn");
        assert!(t < Duration::from_millis(100), "{t:?}");
        assert!(net.nodes[0]
            .members()
            .iter()
            .any(|m| m.name == "h3" && m.state == "left"));
    }

    #[test]
    fn partition_heals_and_converges() {
        let mut net = three();
        net.isolate(2, true);
        net.run_until(Duration::from_secs(15), |n| {
            n.stores[0].count_of("h3") == 0 && n.stores[2].count_of("h1") == 0
        })
        .expect("both sides see the other dead");
        // Changes on both sides while apart.
        net.set_local(0, sample_set("h1", 7, 0));
        net.set_local(2, sample_set("h3", 2, 2));
        net.isolate(2, false);
        let t = net
            .run_until(Duration::from_secs(10), |n| {
                n.stores[0].count_of("h3") == 2
                    && n.stores[1].count_of("h3") == 2
                    && n.stores[2].count_of("h1") == 7
                    && n.stores[2].count_of("h2") == 5
            })
            .expect("healed");
        assert!(t < Duration::from_secs(5), "heal took {t:?}");
    }

    #[test]
    fn converges_under_ten_percent_loss() {
        let mut net = SimNet::new();
        net.loss = 0.1;
        for (i, n) in ["h1", "h2", "h3", "h4", "h5"].iter().enumerate() {
            net.add(n, ring(), |_| {});
            net.set_local(i, sample_set(n, 60, i as u8));
        }
        net.join_all();
        net.run_until(Duration::from_secs(10), |n| {
            n.stores.iter().all(|s| s.total() == 240)
        })
        .expect("converged despite loss");
        net.run_for(Duration::from_secs(10));
        assert!(
            net.stores.iter().all(|s| s.total() == 240),
            "no false deaths under 10% loss"
        );
    }

    #[test]
    fn a_dead_nodes_set_is_forgotten_in_time() {
        let mut net = SimNet::new();
        for (i, n) in ["h1", "h2", "h3"].iter().enumerate() {
            net.add(n, ring(), |s| s.forget_after = Duration::from_secs(60));
            net.set_local(i, sample_set(n, 5, i as u8));
        }
        net.join_all();
        net.run_until(Duration::from_secs(5), |n| {
            n.stores.iter().all(|s| s.total() == 10)
        })
        .expect("converged");
        net.crash(0);
        net.run_until(Duration::from_secs(15), |n| n.stores[1].count_of("h1") == 0)
            .expect("withdrawn");
        assert!(net.nodes[1]
            .members()
            .iter()
            .any(|m| m.name == "h1" && m.records == 5));
        net.run_for(Duration::from_secs(80));
        for i in [1, 2] {
            let m = net.nodes[i].members();
            assert!(m.iter().all(|m| m.name != "h1" || m.records == 0), "{m:?}");
        }
    }

    #[test]
    fn wrong_key_neither_joins_nor_injects() {
        let mut net = three();
        let bad = Keyring::new(&[ClusterKey::generate()], "sim");
        let m = net.add("intruder", bad, |_| {});
        net.set_local(m, sample_set("intruder", 3, 9));
        let seed = net.addr(0);
        let now = net.now;
        net.nodes[m].set_seeds(vec![seed], now);
        net.run_for(Duration::from_secs(5));
        for i in 0..3 {
            assert_eq!(net.stores[i].count_of("intruder"), 0);
            assert!(net.nodes[i].members().iter().all(|x| x.name != "intruder"));
            assert_eq!(net.stores[i].total(), 10);
        }
        assert!(net.nodes[0].counters.datagrams_rejected > 0);
        assert_eq!(net.nodes[m].live_members(), 0);
    }

    #[test]
    fn key_rotation_keeps_the_cluster_whole() {
        let mut net = three();
        let new = ClusterKey::generate();
        // Rotation step one: a node accepts the new key too but still seals with the old
        // one, so nodes that know only the old key keep hearing it.
        net.restart(0, Keyring::new(&[key(), new.clone()], "sim"));
        net.set_local(0, sample_set("h1", 5, 0));
        let (seed, now) = (net.addr(2), net.now);
        net.nodes[0].set_seeds(vec![seed], now);
        net.run_until(Duration::from_secs(5), |n| {
            n.stores[0].total() == 10 && n.stores[2].count_of("h1") == 5
        })
        .expect("old key first: everyone understands");
    }
}
