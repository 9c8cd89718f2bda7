//! The immutable view of all records that readers (DNS, web, cluster) load.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use rustc_hash::{FxBuildHasher, FxHashSet};

use super::wire::NameEntry;
use super::{Name, OwnerKey, Record};

/// Settings of the zone Joyride is authoritative for, fixed for the process lifetime.
#[derive(Debug)]
pub struct ZoneInfo {
    /// The zone apex (`docker`).
    pub apex: Name,
    /// The apex in lowercase wire format, the key of its entry.
    pub apex_wire: Box<[u8]>,
    /// TTL of records that do not set their own.
    pub default_ttl: u32,
    /// TTL of negative answers, and the SOA MINIMUM.
    pub negative_ttl: u32,
    /// RDATA of the zone's SOA record, also served in negative answers.
    pub soa_rdata: Box<[u8]>,
    /// This node's name: the `node` of every locally asserted record.
    pub node: Arc<str>,
}

/// Wire entries, found by their lowercase wire name (which each entry holds: one pointer per
/// name in the table). FxHash: the keys come from trusted sources (containers, files,
/// authenticated peers); queries only look up.
pub type NameMap = HashSet<Keyed, FxBuildHasher>;

/// A `NameEntry` that hashes, compares and borrows as its name, so that a set of entries
/// is a map from names.
#[derive(Clone, Debug)]
pub struct Keyed(pub NameEntry);

impl Borrow<[u8]> for Keyed {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.0.key()
    }
}

impl Hash for Keyed {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key().hash(state)
    }
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Keyed) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for Keyed {}

/// The name map is split into this many shards, each behind its own `Arc`: a publication
/// copies only the shards its changes touched, the others are shared with the previous
/// snapshot.
pub const SHARDS: usize = 256;

/// The shard of a key: hash bits that hashbrown does not use inside a shard (it takes the
/// low bits for the bucket and the top seven as the tag), so every shard stays well spread.
#[inline]
pub fn shard_of(key: &[u8]) -> usize {
    ((FxBuildHasher.hash_one(key) >> 32) as usize) % SHARDS
}

/// One consistent version of every record, published by the store after each batch of
/// changes. Readers hold it through an `Arc` for as long as they answer from it.
pub struct Snapshot {
    /// Counts publications; a reader can tell two snapshots apart by it.
    pub generation: u64,
    pub zone: Arc<ZoneInfo>,
    /// When this snapshot was published.
    pub published: SystemTime,
    /// Every name with records, by lowercase wire-format name, in `SHARDS` shards.
    pub(super) names: Vec<Arc<NameMap>>,
    /// Names inside the zone that have no records but have descendants that do (RFC 8020
    /// says those are not NXDOMAIN).
    pub(super) empty_non_terminals: Arc<FxHashSet<Arc<[u8]>>>,
    /// Every owner's records as asserted, for listings (web, cluster). A `Vec` in its
    /// `Arc`, not a slice: the list a source sends is kept without a copy (a million hosts
    /// records are 64 MB).
    pub owners: Arc<HashMap<OwnerKey, Arc<Vec<Record>>>>,
}

impl Snapshot {
    /// The records of a name, by its lowercase wire form.
    #[inline]
    pub fn lookup(&self, lower_wire: &[u8]) -> Option<&NameEntry> {
        self.names[shard_of(lower_wire)]
            .get(lower_wire)
            .map(|k| &k.0)
    }

    #[inline]
    pub fn is_empty_non_terminal(&self, lower_wire: &[u8]) -> bool {
        self.empty_non_terminals.contains(lower_wire)
    }

    /// Every name and its entry, in no order (wildcard queries scan these).
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &NameEntry)> {
        self.names
            .iter()
            .flat_map(|shard| shard.iter().map(|k| (k.0.key(), &k.0)))
    }

    pub fn name_count(&self) -> usize {
        self.names.iter().map(|s| s.len()).sum()
    }

    /// Every asserted record with its owner, in no order.
    pub fn records(&self) -> impl Iterator<Item = (&OwnerKey, &Record)> {
        self.owners
            .iter()
            .flat_map(|(owner, recs)| recs.iter().map(move |r| (owner, r)))
    }
}
