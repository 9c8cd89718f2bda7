//! The store: the one writer of records.
//!
//! `Store` is plain synchronous state (unit-tested directly); `run` is the task around it
//! that takes `Change`s from a bounded channel, applies each batch and publishes a new
//! `Snapshot` through an `ArcSwap`, so readers never lock. Sources never see each other's
//! records: each `Change` names its owner, and an owner's records are replaced as a whole.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::snapshot::{Snapshot, ZoneInfo};
use super::wire::{self, NameEntry};
use super::{Name, OwnerKey, RData, RType, Record, SourceKind};

/// How many changes the channel holds before senders wait. Sources `await` a full channel
/// (backpressure), so nothing is ever dropped.
pub const CHANGE_CHANNEL_CAPACITY: usize = 4096;
/// Most changes applied before one publication, so a flood still publishes regularly.
const MAX_BATCH: usize = 4096;

/// What a source asks of the store.
#[derive(Debug)]
pub enum Change {
    /// `owner` now asserts exactly `records` (empty: withdraw all of them).
    Replace {
        owner: OwnerKey,
        records: Vec<Record>,
    },
    /// Withdraw every owner of `node` and `source` whose id is not in `keep`: a source's
    /// full resync after it lists what really exists.
    Retain {
        node: Arc<str>,
        source: SourceKind,
        keep: HashSet<Arc<str>>,
    },
    /// Withdraw every record asserted by `node` (a peer declared dead or gone).
    WithdrawNode { node: Arc<str> },
    /// Answered with the generation of the first snapshot that includes every change sent
    /// before it.
    Barrier(oneshot::Sender<u64>),
}

/// Settings the store needs to build the zone.
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    pub apex: Name,
    pub default_ttl: u32,
    pub negative_ttl: u32,
    pub node: Arc<str>,
    /// Addresses published for the zone's name server `ns.<apex>`.
    pub ns_addresses: Vec<IpAddr>,
    /// Put this node's own records first in each RRset (`--prefer-local`): a name that
    /// peers publish too answers with the local addresses first.
    pub prefer_local: bool,
}

/// One record's contribution to a name: who asserted it, with which TTL.
#[derive(Clone, Debug)]
struct Contribution {
    owner: OwnerKey,
    ttl: Option<u32>,
    data: RData,
}

/// The mutable state behind the snapshots.
pub struct Store {
    zone: Arc<ZoneInfo>,
    /// See `ZoneConfig::prefer_local`.
    prefer_local: bool,
    /// Records as each owner asserted them (without derived PTRs).
    owners: HashMap<OwnerKey, Arc<[Record]>>,
    /// Every contribution to each name, derived PTRs included.
    by_name: HashMap<Name, Vec<Contribution>>,
    /// The wire-format entry of each name in `by_name`.
    entries: HashMap<Arc<[u8]>, Arc<NameEntry>>,
    /// For each name inside the zone that is an ancestor of a name with records: how many
    /// such names it has below it.
    ancestors: HashMap<Arc<[u8]>, u32>,
    /// SOA record (owner `0xC00C`) appended to the apex entry.
    apex_soa: Vec<u8>,
    generation: u64,
}

impl Store {
    pub fn new(cfg: ZoneConfig) -> Store {
        let ns = cfg.apex.child("ns").unwrap_or_else(|_| cfg.apex.clone());
        let hostmaster = cfg
            .apex
            .child("hostmaster")
            .unwrap_or_else(|_| cfg.apex.clone());
        let serial = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let soa_rdata = wire::soa_rdata(&ns, &hostmaster, serial, cfg.negative_ttl);
        let mut apex_soa = Vec::new();
        wire::write_rr(&mut apex_soa, RType::SOA, cfg.default_ttl, |out| {
            out.extend_from_slice(&soa_rdata)
        });
        let zone = Arc::new(ZoneInfo {
            apex_wire: cfg.apex.to_wire().into_boxed_slice(),
            apex: cfg.apex.clone(),
            default_ttl: cfg.default_ttl,
            negative_ttl: cfg.negative_ttl,
            soa_rdata: soa_rdata.into_boxed_slice(),
            node: cfg.node.clone(),
        });
        let mut store = Store {
            zone,
            prefer_local: cfg.prefer_local,
            owners: HashMap::new(),
            by_name: HashMap::new(),
            entries: HashMap::new(),
            ancestors: HashMap::new(),
            apex_soa,
            generation: 0,
        };
        // The name server's addresses; its NS and the SOA are added by `rebuild` at the apex.
        let zone_records = cfg
            .ns_addresses
            .iter()
            .map(|ip| Record::new(ns.clone(), RData::address(*ip)))
            .collect();
        let owner = OwnerKey::new(&cfg.node, SourceKind::Zone, "zone");
        store.replace(owner, zone_records);
        store.rebuild(&cfg.apex);
        store
    }

    pub fn zone(&self) -> &Arc<ZoneInfo> {
        &self.zone
    }

    /// Applies one change. Returns the barrier to answer once published, if it was one.
    pub fn apply(&mut self, change: Change) -> Option<oneshot::Sender<u64>> {
        match change {
            Change::Replace { owner, records } => self.replace(owner, records),
            Change::Retain { node, source, keep } => {
                let gone: Vec<OwnerKey> = self
                    .owners
                    .keys()
                    .filter(|k| k.node == node && k.source == source && !keep.contains(&k.owner))
                    .cloned()
                    .collect();
                for owner in gone {
                    self.replace(owner, Vec::new());
                }
            }
            Change::WithdrawNode { node } => {
                let gone: Vec<OwnerKey> = self
                    .owners
                    .keys()
                    .filter(|k| k.node == node && k.source != SourceKind::Zone)
                    .cloned()
                    .collect();
                for owner in gone {
                    self.replace(owner, Vec::new());
                }
            }
            Change::Barrier(tx) => return Some(tx),
        }
        None
    }

    fn replace(&mut self, owner: OwnerKey, records: Vec<Record>) {
        let mut touched: HashSet<Name> = HashSet::new();
        if let Some(old) = self.owners.remove(&owner) {
            for (name, _, _) in expand(&old) {
                if let Some(contribs) = self.by_name.get_mut(&name) {
                    contribs.retain(|c| c.owner != owner);
                }
                touched.insert(name);
            }
        }
        if !records.is_empty() {
            for (name, ttl, data) in expand(&records) {
                self.by_name
                    .entry(name.clone())
                    .or_default()
                    .push(Contribution {
                        owner: owner.clone(),
                        ttl,
                        data,
                    });
                touched.insert(name);
            }
            self.owners.insert(owner, records.into());
        }
        for name in touched {
            self.rebuild(&name);
        }
    }

    /// Recomputes one name's wire entry (and the zone's empty non-terminals) from its
    /// contributions.
    fn rebuild(&mut self, name: &Name) {
        let key: Arc<[u8]> = name.to_wire().into();
        let contribs = self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let is_apex = *name == self.zone.apex;
        if contribs.is_empty() && !is_apex {
            self.by_name.remove(name);
            if self.entries.remove(&key).is_some() {
                self.count_ancestors(name, false);
            }
            return;
        }
        let default_ttl = self.zone.default_ttl;
        let mut data: Vec<(bool, RData, u32)> = contribs
            .iter()
            .map(|c| {
                let local = c.owner.node == self.zone.node;
                (local, c.data.clone(), c.ttl.unwrap_or(default_ttl))
            })
            .collect();
        if self.prefer_local {
            // Stable: local records first, each group in its own order.
            data.sort_by_key(|d| !d.0);
        }
        let data: Vec<(RData, u32)> = data.into_iter().map(|(_, d, t)| (d, t)).collect();
        if is_apex {
            let ns = self.zone.apex.child("ns").unwrap_or_else(|_| name.clone());
            // NS and SOA are not types sources assert; the zone's own are written here.
            let mut entry_wire = Vec::new();
            wire::write_rr(&mut entry_wire, RType::NS, default_ttl, |out| {
                ns.write_wire(out)
            });
            let entry = NameEntry::build(data)
                .with_rrset(RType::NS, 1, &entry_wire)
                .with_rrset(RType::SOA, 1, &self.apex_soa);
            self.entries.insert(key, Arc::new(entry));
            return;
        }
        let entry = Arc::new(NameEntry::build(data));
        if self.entries.insert(key, entry).is_none() {
            self.count_ancestors(name, true);
        }
    }

    /// Adds or removes `name` from the count of each of its ancestors inside the zone.
    fn count_ancestors(&mut self, name: &Name, add: bool) {
        if !name.is_within(&self.zone.apex) {
            return;
        }
        let mut cur = name.parent();
        while let Some(anc) = cur {
            if anc == self.zone.apex || !anc.is_within(&self.zone.apex) {
                break;
            }
            let key: Arc<[u8]> = anc.to_wire().into();
            if add {
                *self.ancestors.entry(key).or_insert(0) += 1;
            } else if let Some(n) = self.ancestors.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.ancestors.remove(&key);
                }
            }
            cur = anc.parent();
        }
    }

    /// A new immutable snapshot of the current state.
    pub fn snapshot(&mut self) -> Snapshot {
        self.generation += 1;
        Snapshot {
            generation: self.generation,
            zone: self.zone.clone(),
            published: SystemTime::now(),
            names: self.entries.clone(),
            empty_non_terminals: self.ancestors.keys().cloned().collect(),
            owners: Arc::new(self.owners.clone()),
        }
    }
}

/// Each record as (name, ttl, data), followed by the PTR derived from each address record.
fn expand(records: &[Record]) -> impl Iterator<Item = (Name, Option<u32>, RData)> + '_ {
    records.iter().flat_map(|r| {
        let derived = match r.data {
            RData::A(ip) => Some(IpAddr::V4(ip)),
            RData::Aaaa(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        }
        .map(|ip| (Name::reverse(ip), r.ttl, RData::Ptr(r.name.clone())));
        std::iter::once((r.name.clone(), r.ttl, r.data.clone())).chain(derived)
    })
}

/// The readers' side: the latest snapshot, loaded without a lock.
#[derive(Clone)]
pub struct SnapshotReader {
    current: Arc<ArcSwap<Snapshot>>,
    generation: watch::Receiver<u64>,
}

impl SnapshotReader {
    /// The snapshot in force now.
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A receiver that changes whenever a new snapshot is published (web pushes, cluster
    /// publishing).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }
}

/// The senders' side: cloned into every source.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Change>,
    node: Arc<str>,
}

/// The store task has stopped (the daemon is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the record store has stopped")]
pub struct StoreClosed;

impl StoreHandle {
    /// This node's name, for building `OwnerKey`s.
    pub fn node(&self) -> &Arc<str> {
        &self.node
    }

    pub async fn send(&self, change: Change) -> Result<(), StoreClosed> {
        self.tx.send(change).await.map_err(|_| StoreClosed)
    }

    /// Replaces one local owner's records.
    pub async fn replace(
        &self,
        source: SourceKind,
        owner: impl Into<Arc<str>>,
        records: Vec<Record>,
    ) -> Result<(), StoreClosed> {
        self.send(Change::Replace {
            owner: OwnerKey::new(&self.node, source, owner),
            records,
        })
        .await
    }

    /// Waits until everything sent so far is visible in a published snapshot.
    pub async fn flush(&self) -> Result<u64, StoreClosed> {
        let (tx, rx) = oneshot::channel();
        self.send(Change::Barrier(tx)).await?;
        rx.await.map_err(|_| StoreClosed)
    }
}

/// Creates the store: the handle for sources, the reader for everyone else, and the task
/// to run.
pub fn channel(cfg: ZoneConfig) -> (StoreHandle, SnapshotReader, StoreTask) {
    let mut store = Store::new(cfg.clone());
    let first = Arc::new(store.snapshot());
    let (gen_tx, gen_rx) = watch::channel(first.generation);
    let current = Arc::new(ArcSwap::new(first));
    let (tx, rx) = mpsc::channel(CHANGE_CHANNEL_CAPACITY);
    (
        StoreHandle { tx, node: cfg.node },
        SnapshotReader {
            current: current.clone(),
            generation: gen_rx,
        },
        StoreTask {
            store,
            rx,
            current,
            generation: gen_tx,
        },
    )
}

/// The writer task: owns the `Store`.
pub struct StoreTask {
    store: Store,
    rx: mpsc::Receiver<Change>,
    current: Arc<ArcSwap<Snapshot>>,
    generation: watch::Sender<u64>,
}

impl StoreTask {
    /// Applies changes in batches and publishes a snapshot after each batch, until cancelled
    /// or every handle is dropped.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut batch = Vec::with_capacity(64);
        loop {
            let n = tokio::select! {
                _ = cancel.cancelled() => return,
                n = self.rx.recv_many(&mut batch, MAX_BATCH) => n,
            };
            if n == 0 {
                return;
            }
            let mut barriers = Vec::new();
            for change in batch.drain(..) {
                if let Some(b) = self.store.apply(change) {
                    barriers.push(b);
                }
            }
            let snap = Arc::new(self.store.snapshot());
            let generation = snap.generation;
            self.current.store(snap);
            self.generation.send_replace(generation);
            for b in barriers {
                let _ = b.send(generation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RType;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }
    fn a(name: &str, ip: &str) -> Record {
        Record::new(n(name), RData::A(ip.parse().unwrap()))
    }
    fn store() -> Store {
        Store::new(ZoneConfig {
            apex: n("docker"),
            default_ttl: 10,
            negative_ttl: 5,
            node: "n1".into(),
            ns_addresses: vec!["127.0.0.1".parse().unwrap()],
            prefer_local: false,
        })
    }
    fn owner(id: &str) -> OwnerKey {
        OwnerKey::new(&Arc::from("n1"), SourceKind::Docker, id)
    }
    fn count(snap: &Snapshot, name: &str, t: RType) -> u16 {
        snap.lookup(&n(name).to_wire())
            .and_then(|e| e.rrset(t))
            .map_or(0, |s| s.count)
    }

    #[test]
    fn two_owners_one_name_then_one_withdraws() {
        let mut s = store();
        s.apply(Change::Replace {
            owner: owner("c1"),
            records: vec![a("web.docker", "10.0.0.1")],
        });
        s.apply(Change::Replace {
            owner: owner("c2"),
            records: vec![a("web.docker", "10.0.0.2")],
        });
        let snap = s.snapshot();
        assert_eq!(count(&snap, "web.docker", RType::A), 2);
        assert_eq!(count(&snap, "1.0.0.10.in-addr.arpa", RType::PTR), 1);
        s.apply(Change::Replace {
            owner: owner("c1"),
            records: vec![],
        });
        let snap = s.snapshot();
        assert_eq!(count(&snap, "web.docker", RType::A), 1);
        assert_eq!(count(&snap, "1.0.0.10.in-addr.arpa", RType::PTR), 0);
        assert_eq!(count(&snap, "2.0.0.10.in-addr.arpa", RType::PTR), 1);
        assert_eq!(snap.records().count(), 2, "zone's ns record and c2's");
    }

    #[test]
    fn empty_non_terminals_follow_names() {
        let mut s = store();
        s.apply(Change::Replace {
            owner: owner("c1"),
            records: vec![a("api.proj.docker", "10.0.0.1")],
        });
        let snap = s.snapshot();
        assert!(snap.is_empty_non_terminal(&n("proj.docker").to_wire()));
        assert!(!snap.is_empty_non_terminal(&n("docker").to_wire()));
        s.apply(Change::Replace {
            owner: owner("c1"),
            records: vec![],
        });
        let snap = s.snapshot();
        assert!(!snap.is_empty_non_terminal(&n("proj.docker").to_wire()));
        assert!(snap.lookup(&n("api.proj.docker").to_wire()).is_none());
    }

    #[test]
    fn apex_has_soa_and_ns_always() {
        let mut s = store();
        let snap = s.snapshot();
        assert_eq!(count(&snap, "docker", RType::SOA), 1);
        assert_eq!(count(&snap, "docker", RType::NS), 1);
        assert_eq!(count(&snap, "ns.docker", RType::A), 1);
    }

    #[test]
    fn prefer_local_puts_own_records_first() {
        for prefer in [false, true] {
            let mut s = Store::new(ZoneConfig {
                apex: n("docker"),
                default_ttl: 10,
                negative_ttl: 5,
                node: "n1".into(),
                ns_addresses: vec![],
                prefer_local: prefer,
            });
            s.apply(Change::Replace {
                owner: OwnerKey::new(&Arc::from("n2"), SourceKind::Hosts, "f"),
                records: vec![a("web.docker", "10.0.0.2")],
            });
            s.apply(Change::Replace {
                owner: owner("c1"),
                records: vec![a("web.docker", "10.0.0.1")],
            });
            let snap = s.snapshot();
            let set = snap
                .lookup(&n("web.docker").to_wire())
                .unwrap()
                .rrset(RType::A)
                .unwrap();
            assert_eq!(set.count, 2);
            // The last 4 bytes of the first record's RDATA are its address.
            let first = &set.wire[12..16];
            let want: [u8; 4] = if prefer { [10, 0, 0, 1] } else { [10, 0, 0, 2] };
            assert_eq!(first, want, "prefer_local={prefer}");
        }
    }

    #[test]
    fn retain_and_withdraw_node() {
        let mut s = store();
        for id in ["c1", "c2", "c3"] {
            s.apply(Change::Replace {
                owner: owner(id),
                records: vec![a(&format!("{id}.docker"), "10.0.0.9")],
            });
        }
        let peer = OwnerKey::new(&Arc::from("n2"), SourceKind::Docker, "p1");
        s.apply(Change::Replace {
            owner: peer,
            records: vec![a("p1.docker", "10.0.1.1")],
        });
        s.apply(Change::Retain {
            node: "n1".into(),
            source: SourceKind::Docker,
            keep: [Arc::from("c2")].into_iter().collect(),
        });
        let snap = s.snapshot();
        assert_eq!(count(&snap, "c1.docker", RType::A), 0);
        assert_eq!(count(&snap, "c2.docker", RType::A), 1);
        assert_eq!(count(&snap, "p1.docker", RType::A), 1);
        s.apply(Change::WithdrawNode { node: "n2".into() });
        let snap = s.snapshot();
        assert_eq!(count(&snap, "p1.docker", RType::A), 0);
        assert_eq!(count(&snap, "9.0.0.10.in-addr.arpa", RType::PTR), 1);
    }
}
