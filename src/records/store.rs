//! The store: the one writer of records.
//!
//! `Store` is plain synchronous state (unit-tested directly); `run` is the task around it
//! that takes `Change`s from a bounded channel, applies each batch and publishes a new
//! `Snapshot` through an `ArcSwap`, so readers never lock. Sources never see each other's
//! records: each `Change` names its owner, and an owner's records are replaced as a whole.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::snapshot::{shard_of, Keyed, NameMap, Snapshot, ZoneInfo, SHARDS};
use super::wire::{self, Contribution, NameEntry};
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

const DERIVED: u32 = Contribution::DERIVED;
/// Most records one owner may assert (a record's index is packed in 30 bits in `Work`).
const MAX_OWNER_RECORDS: usize = 1 << 30;

/// An owner and its records, as asserted.
struct OwnerSlot {
    key: OwnerKey,
    records: Arc<Vec<Record>>,
}

/// The mutable state behind the snapshots.
pub struct Store {
    zone: Arc<ZoneInfo>,
    /// See `ZoneConfig::prefer_local`.
    prefer_local: bool,
    /// Owner ids, so that contributions are eight bytes.
    owner_ids: FxHashMap<OwnerKey, u32>,
    /// Owners by id (`None`: a free id, listed in `free_ids`).
    owners: Vec<Option<OwnerSlot>>,
    free_ids: Vec<u32>,
    /// The wire-format entries, shared with published snapshots shard by shard: a shard is
    /// copied on its first change after a publication (`Arc::make_mut`). Each entry also
    /// holds its name's contributions (derived PTRs included), so the store keeps no other
    /// map of names.
    shards: Vec<Arc<NameMap>>,
    /// For each name inside the zone that is an ancestor of a name with records: how many
    /// such names it has below it.
    ancestors: FxHashMap<Arc<[u8]>, u32>,
    /// The published set of `ancestors`' keys, rebuilt only when that set changes.
    empty_non_terminals: Arc<FxHashSet<Arc<[u8]>>>,
    ancestors_changed: bool,
    /// The published owner listing, rebuilt only when an owner changed.
    listing: Arc<HashMap<OwnerKey, Arc<Vec<Record>>>>,
    listing_changed: bool,
    /// The apex's NS and SOA records (owner `0xC00C`), added to its entry.
    apex_ns: Vec<u8>,
    apex_soa: Vec<u8>,
    generation: u64,
    /// Reused buffer for building entries.
    scratch: Vec<u8>,
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
        let mut apex_ns = Vec::new();
        wire::write_rr(&mut apex_ns, RType::NS, cfg.default_ttl, |out| {
            ns.write_wire(out)
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
            owner_ids: FxHashMap::default(),
            owners: Vec::new(),
            free_ids: Vec::new(),
            shards: (0..SHARDS).map(|_| Arc::new(NameMap::default())).collect(),
            ancestors: FxHashMap::default(),
            empty_non_terminals: Arc::default(),
            ancestors_changed: false,
            listing: Arc::default(),
            listing_changed: false,
            apex_ns,
            apex_soa,
            generation: 0,
            scratch: Vec::with_capacity(512),
        };
        // The name server's addresses; its NS and the SOA are added by `rebuild` at the apex.
        let zone_records = cfg
            .ns_addresses
            .iter()
            .map(|ip| Record::new(ns.clone(), RData::address(*ip)))
            .collect();
        let owner = OwnerKey::new(&cfg.node, SourceKind::Zone, "zone");
        store.replace(owner, zone_records);
        let apex = store.zone.apex_wire.clone();
        let contribs: SmallVec<[Contribution; 4]> = store
            .lookup(&apex)
            .map(|e| e.contributions().collect())
            .unwrap_or_default();
        store.rebuild(&apex, &contribs);
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
                    .owner_ids
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
                    .owner_ids
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

    fn replace(&mut self, owner: OwnerKey, mut records: Vec<Record>) {
        if records.len() > MAX_OWNER_RECORDS {
            tracing::warn!(owner = %owner.owner, records = records.len(), kept = MAX_OWNER_RECORDS,
                "too many records for one owner; the rest are ignored");
            records.truncate(MAX_OWNER_RECORDS);
        }
        let id = match self.owner_ids.get(&owner) {
            Some(&id) => id,
            None if records.is_empty() => return,
            None => {
                let id = self.free_ids.pop().unwrap_or_else(|| {
                    self.owners.push(None);
                    (self.owners.len() - 1) as u32
                });
                self.owner_ids.insert(owner.clone(), id);
                id
            }
        };
        let old = self.owners[id as usize].take().map(|o| o.records);
        let new = (!records.is_empty()).then(|| {
            records.shrink_to_fit();
            Arc::new(records)
        });
        // Every name the old or the new records touch, once each: (hash, which record).
        // Sorted by shard and hash, so equal names are adjacent and each shard is worked
        // on in one go; a sort instead of a map of names keeps a large load's peak low.
        let mut work: Vec<Work> = Vec::with_capacity(
            2 * (old.as_ref().map_or(0, |r| r.len()) + new.as_ref().map_or(0, |r| r.len())),
        );
        let mut key = Vec::with_capacity(256);
        for (records, is_old) in [(&old, true), (&new, false)] {
            for (i, r) in records.iter().flat_map(|r| r.iter()).enumerate() {
                for derived in [false, true] {
                    key.clear();
                    if !write_key(r, derived, &mut key) {
                        continue;
                    }
                    let hash = FxBuildHasher.hash_one(&key[..]);
                    work.push(Work::new(hash, i, derived, is_old));
                }
            }
        }
        work.sort_unstable();
        let record_of = |w: &Work| -> &Record {
            let records = if w.is_old() { &old } else { &new };
            &records.as_deref().expect("work only for present records")[w.index()]
        };
        match &new {
            Some(records) => {
                self.owners[id as usize] = Some(OwnerSlot {
                    key: owner,
                    records: records.clone(),
                })
            }
            None => {
                self.owner_ids.remove(&owner);
                self.free_ids.push(id);
            }
        }
        // Names in one run of equal (shortened) hashes, when a run has several items.
        let mut names: Vec<(Vec<u8>, SmallVec<[Contribution; 4]>)> = Vec::new();
        let mut run_start = 0;
        while run_start < work.len() {
            let order = work[run_start].order();
            let run_end = run_start
                + work[run_start..]
                    .iter()
                    .take_while(|w| w.order() == order)
                    .count();
            if run_end - run_start == 1 {
                // The usual case: one record's name, nothing to tell apart.
                let w = work[run_start];
                key.clear();
                write_key(record_of(&w), w.is_derived(), &mut key);
                let added: SmallVec<[Contribution; 1]> = w.contribution(id).into_iter().collect();
                self.update_name(&key, id, &added);
                run_start = run_end;
                continue;
            }
            names.clear();
            for w in &work[run_start..run_end] {
                key.clear();
                write_key(record_of(w), w.is_derived(), &mut key);
                let at = match names.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        names.push((key.clone(), SmallVec::new()));
                        names.len() - 1
                    }
                };
                names[at].1.extend(w.contribution(id));
            }
            for (key, added) in &names {
                self.update_name(key, id, added);
            }
            run_start = run_end;
        }
        self.listing_changed = true;
    }

    /// Rebuilds the name `key` after owner `id` was replaced: the name's other owners'
    /// contributions stay, in their order; `id`'s are now `added`, after them.
    fn update_name(&mut self, key: &[u8], id: u32, added: &[Contribution]) {
        let mut contribs: SmallVec<[Contribution; 4]> = self
            .lookup(key)
            .map(|e| e.contributions().filter(|c| c.owner != id).collect())
            .unwrap_or_default();
        contribs.extend_from_slice(added);
        self.rebuild(key, &contribs);
    }

    /// The entry of `key` (lowercase wire name), if it has one.
    fn lookup(&self, key: &[u8]) -> Option<&NameEntry> {
        self.shards[shard_of(key)].get(key).map(|k| &k.0)
    }

    /// The data and TTL of one contribution.
    fn resolve(&self, c: Contribution) -> Option<(RData, u32)> {
        let slot = self.owners.get(c.owner as usize)?.as_ref()?;
        let record = slot.records.get((c.index & !DERIVED) as usize)?;
        let ttl = record.ttl.unwrap_or(self.zone.default_ttl);
        if c.index & DERIVED != 0 {
            Some((RData::Ptr(record.name.clone()), ttl))
        } else {
            Some((record.data.clone(), ttl))
        }
    }

    fn is_local(&self, c: Contribution) -> bool {
        self.owners
            .get(c.owner as usize)
            .and_then(Option::as_ref)
            .is_some_and(|slot| slot.key.node == self.zone.node)
    }

    #[inline]
    fn shard_mut(&mut self, key: &[u8]) -> &mut NameMap {
        Arc::make_mut(&mut self.shards[shard_of(key)])
    }

    /// Recomputes one name's wire entry (and the zone's empty non-terminals) from its
    /// contributions.
    fn rebuild(&mut self, key: &[u8], contribs: &[Contribution]) {
        let is_apex = *key == *self.zone.apex_wire;
        let mut data: SmallVec<[(RData, u32); 2]> = if self.prefer_local {
            // Stable: this node's records first, each group in its own order.
            let mut v: SmallVec<[(bool, (RData, u32)); 2]> = contribs
                .iter()
                .filter_map(|c| Some((!self.is_local(*c), self.resolve(*c)?)))
                .collect();
            v.sort_by_key(|x| x.0);
            v.into_iter().map(|x| x.1).collect()
        } else {
            contribs.iter().filter_map(|c| self.resolve(*c)).collect()
        };
        if data.is_empty() && !is_apex {
            if self.shard_mut(key).remove(key) {
                self.count_ancestors(key, false);
            }
            return;
        }
        // NS and SOA are not types sources assert; the zone's own are written here.
        let apex_sets = [
            (RType::NS, 1, &self.apex_ns[..]),
            (RType::SOA, 1, &self.apex_soa[..]),
        ];
        let extra = if is_apex { &apex_sets[..] } else { &[] };
        NameEntry::encode(&mut self.scratch, key, contribs, &mut data, extra);
        // An unchanged entry stays as it is: a reloaded file whose records kept their places
        // allocates nothing for them and leaves their shards shared with the last snapshot.
        if self.lookup(key).is_some_and(|e| e.same_as(&self.scratch)) {
            return;
        }
        let entry = NameEntry::from_encoded(&self.scratch);
        if self.shard_mut(key).replace(Keyed(entry)).is_none() && !is_apex {
            self.count_ancestors(key, true);
        }
    }

    /// Adds or removes the name `key` from the count of each of its ancestors strictly
    /// between it and the zone apex.
    fn count_ancestors(&mut self, key: &[u8], add: bool) {
        let Some(apex_at) = wire::zone_offset(key, &self.zone.apex_wire) else {
            return;
        };
        let mut at = 1 + key[0] as usize;
        while at < apex_at {
            let anc = &key[at..];
            if add {
                if let Some(n) = self.ancestors.get_mut(anc) {
                    *n += 1;
                } else {
                    self.ancestors.insert(anc.into(), 1);
                    self.ancestors_changed = true;
                }
            } else if let Some(n) = self.ancestors.get_mut(anc) {
                *n -= 1;
                if *n == 0 {
                    self.ancestors.remove(anc);
                    self.ancestors_changed = true;
                }
            }
            at += 1 + key[at] as usize;
        }
    }

    /// A new immutable snapshot of the current state. Shares every unchanged shard (and
    /// the listing and empty non-terminals, when unchanged) with the previous one.
    pub fn snapshot(&mut self) -> Snapshot {
        self.generation += 1;
        if self.ancestors_changed {
            self.empty_non_terminals = Arc::new(self.ancestors.keys().cloned().collect());
            self.ancestors_changed = false;
        }
        if self.listing_changed {
            self.listing = Arc::new(
                self.owners
                    .iter()
                    .flatten()
                    .map(|o| (o.key.clone(), o.records.clone()))
                    .collect(),
            );
            self.listing_changed = false;
        }
        Snapshot {
            generation: self.generation,
            zone: self.zone.clone(),
            published: SystemTime::now(),
            names: self.shards.clone(),
            empty_non_terminals: self.empty_non_terminals.clone(),
            owners: self.listing.clone(),
        }
    }
}

/// One name a change touches, packed in eight bytes (a million records make four million
/// of these when replaced): from the top, the shard (the hash bits `shard_of` takes), 24
/// more bits of the name's hash, then the record's index, whether this is the PTR derived
/// from it, and whether it is one of the owner's old records. Sorted, equal names are
/// adjacent (names that only share these hash bits too, which the key comparison tells
/// apart) and a name's new contributions come in record order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Work(u64);

impl Work {
    fn new(hash: u64, index: usize, derived: bool, is_old: bool) -> Work {
        let shard = (hash >> 32) & 0xff;
        let order = shard << 24 | (hash & 0xff_ffff);
        Work(order << 32 | (index as u64) << 2 | (derived as u64) << 1 | is_old as u64)
    }
    fn order(self) -> u32 {
        (self.0 >> 32) as u32
    }
    fn index(self) -> usize {
        (self.0 as u32 >> 2) as usize
    }
    fn is_derived(self) -> bool {
        self.0 & 2 != 0
    }
    fn is_old(self) -> bool {
        self.0 & 1 != 0
    }
    /// The contribution this item adds for owner `id`: none for an old record.
    fn contribution(self, id: u32) -> Option<Contribution> {
        let derived = if self.is_derived() { DERIVED } else { 0 };
        (!self.is_old()).then(|| Contribution {
            owner: id,
            index: self.index() as u32 | derived,
        })
    }
}

/// Writes the lowercase wire name that `record` contributes to: its own name, or with
/// `derived` the reverse name of its address. False when it has no such name (derived, for
/// a record that is not an address).
fn write_key(record: &Record, derived: bool, key: &mut Vec<u8>) -> bool {
    if !derived {
        record.name.write_wire(key);
        return true;
    }
    match address_of(&record.data) {
        Some(ip) => {
            wire::write_reverse_name(ip, key);
            true
        }
        None => false,
    }
}

fn address_of(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(ip) => Some(IpAddr::V4(*ip)),
        RData::Aaaa(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
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
            let started = std::time::Instant::now();
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
            tracing::debug!(
                changes = n,
                generation,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "published a snapshot"
            );
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
    use std::net::Ipv4Addr;

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
            let entry = snap.lookup(&n("web.docker").to_wire()).unwrap();
            let set = entry.rrset(RType::A).unwrap();
            assert_eq!(set.count, 2);
            // Owner pointer, type, class, TTL, RDLENGTH: 12 bytes; then the address.
            let want: [u8; 4] = if prefer { [10, 0, 0, 1] } else { [10, 0, 0, 2] };
            assert_eq!(&set.wire[12..16], want, "prefer_local={prefer}");
        }
    }

    /// Random replacements against a plain model: each name's records are its owners'
    /// (in the order the owners were last replaced), each owner's in its own order, derived
    /// PTRs included.
    #[test]
    fn matches_a_plain_model_through_random_replacements() {
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut s = store();
        let mut model: Vec<(OwnerKey, Vec<Record>)> = Vec::new();
        for step in 0..400 {
            let owner = owner(&format!("c{}", next(6)));
            let records: Vec<Record> = (0..next(5))
                .map(|_| {
                    let name = format!("n{}.docker", next(8));
                    match next(4) {
                        0 => Record::new(n(&name), RData::Txt(format!("t{}", next(3)).into())),
                        1 => Record::new(
                            n(&format!("{}.0.0.10.in-addr.arpa", next(4))),
                            RData::Ptr(n("x.docker")),
                        ),
                        _ => a(&name, &format!("10.0.0.{}", next(4))),
                    }
                })
                .collect();
            model.retain(|(o, _)| *o != owner);
            if !records.is_empty() {
                model.push((owner.clone(), records.clone()));
            }
            s.apply(Change::Replace { owner, records });
            let snap = s.snapshot();
            let mut want: HashMap<Vec<u8>, Vec<(RData, u32)>> = HashMap::new();
            for (_, records) in &model {
                for r in records {
                    want.entry(r.name.to_wire())
                        .or_default()
                        .push((r.data.clone(), 10));
                    if let Some(ip) = address_of(&r.data) {
                        let ptr = (RData::Ptr(r.name.clone()), 10);
                        want.entry(Name::reverse(ip).to_wire())
                            .or_default()
                            .push(ptr);
                    }
                }
            }
            // The apex, ns.docker and its reverse name are the zone's own.
            assert_eq!(snap.name_count(), want.len() + 3, "step {step}");
            for (key, mut data) in want {
                let got = snap.lookup(&key).expect("name present");
                assert_eq!(got.key(), &key[..]);
                let want = NameEntry::build(&mut Vec::new(), &key, &[], &mut data, &[]);
                let sets = |e: &NameEntry| -> Vec<(RType, u16, Vec<u8>)> {
                    e.rrsets()
                        .map(|s| (s.rtype, s.count, s.wire.to_vec()))
                        .collect()
                };
                assert_eq!(sets(got), sets(&want), "step {step}");
            }
        }
    }

    /// Enough names that some share the hash bits `Work` sorts by, so runs of several
    /// names are told apart by their keys.
    #[test]
    fn names_sharing_sort_bits_stay_apart() {
        let names: Vec<Name> = (0..100_000).map(|i| n(&format!("h{i}.docker"))).collect();
        let mut orders: Vec<u32> = names
            .iter()
            .map(|name| {
                Work::new(FxBuildHasher.hash_one(&name.to_wire()[..]), 0, false, false).order()
            })
            .collect();
        orders.sort_unstable();
        let shared = orders.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(shared > 0, "the test needs names sharing sort bits");
        let mut s = store();
        let records: Vec<Record> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Record::new(name.clone(), RData::A(Ipv4Addr::from(i as u32))))
            .collect();
        s.apply(Change::Replace {
            owner: owner("big"),
            records,
        });
        let snap = s.snapshot();
        assert_eq!(snap.name_count(), 2 * names.len() + 3);
        for (i, name) in names.iter().enumerate() {
            let e = snap.lookup(&name.to_wire()).expect("name present");
            assert_eq!(e.rrset(RType::A).map(|s| s.count), Some(1));
            assert_eq!(e.contributions().collect::<Vec<_>>().len(), 1);
            let ptr = snap.lookup(&Name::reverse(IpAddr::V4(Ipv4Addr::from(i as u32))).to_wire());
            assert_eq!(
                ptr.and_then(|e| e.rrset(RType::PTR)).map(|s| s.count),
                Some(1)
            );
        }
    }

    #[test]
    fn a_reload_with_records_in_place_shares_unchanged_shards() {
        let mut s = store();
        let mut records: Vec<Record> = (0..2000)
            .map(|i| {
                a(
                    &format!("h{i}.docker"),
                    &format!("10.0.{}.{}", i / 256, i % 256),
                )
            })
            .collect();
        s.apply(Change::Replace {
            owner: owner("f"),
            records: records.clone(),
        });
        let before = s.snapshot();
        records.push(a("new.docker", "10.9.9.9"));
        s.apply(Change::Replace {
            owner: owner("f"),
            records,
        });
        let after = s.snapshot();
        let shared = (0..SHARDS)
            .filter(|&i| Arc::ptr_eq(&before.names[i], &after.names[i]))
            .count();
        // The new name and its PTR touch two shards; the zone's own names none.
        assert!(shared >= SHARDS - 2, "{shared} shards shared");
        assert_eq!(count(&after, "new.docker", RType::A), 1);
        assert_eq!(count(&after, "h1999.docker", RType::A), 1);
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
