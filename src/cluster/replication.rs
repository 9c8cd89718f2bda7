//! replication: the anti-entropy of record sets, as plain synchronous state.
//!
//! Each node owns one record set (its local records of the published sources) with a
//! version that only grows: `max(previous + 1, now in ms)`, so a restarted node's versions
//! are newer than anything it published before. Nodes exchange digests `{node: version}`;
//! whoever holds an older (or no) version of a node's set asks for it, whoever holds a newer
//! one pushes it. Every node relays every set it holds, exactly as the origin cut it into
//! parts, so a late joiner or a healed partition receives everything. Only the origin ever
//! changes a set.
//!
//! A peer's set enters the store only while the failure detector says the peer is alive
//! (`set_active`); when it dies, its records are withdrawn, and its last set is kept so that
//! they come back the moment it returns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::records::{Change, OwnerKey, Record, SourceKind};

use super::wire::{RecordsPart, WireOwner, WireRecord, WireSource, MAX_PARTS, PART_BUDGET};

/// Who asserted records within one node: the source kind and the owner id.
pub type OwnerId = (SourceKind, Arc<str>);
/// One node's records, by owner.
pub type RecordSet = BTreeMap<OwnerId, Vec<Record>>;

/// Most node sets pushed or requested in answer to one digest.
const MAX_SETS_PER_EXCHANGE: usize = 16;
/// Bytes of digest entries per datagram (an entry costs its name plus about 10 bytes).
const DIGEST_BUDGET: usize = 900;
/// How many digests a freshly changed set is listed in first, whatever the page: a change
/// spreads epidemically instead of waiting for its turn in the rotation.
const HOT_DIGESTS: u32 = 6;

fn entry_cost(name: &str) -> usize {
    name.len() + 11
}

/// A complete set of one node, as received (parts kept for relaying).
struct Held {
    version: u64,
    set: RecordSet,
    parts: Vec<RecordsPart>,
    /// Records that failed validation (bad names) and were left out.
    invalid: usize,
}

/// Parts of a newer version still arriving.
struct Assembly {
    version: u64,
    parts: Vec<Option<RecordsPart>>,
}

/// What the node should send in answer to a message.
#[derive(Debug, Default, PartialEq)]
pub struct Reply {
    /// Nodes whose sets to ask the sender for.
    pub request: Vec<String>,
    /// Parts to send to the sender.
    pub parts: Vec<RecordsPart>,
}

/// A digest to send: entries and whether they are the whole list.
#[derive(Debug, PartialEq)]
pub struct Digest {
    pub entries: Vec<(String, u64)>,
    pub complete: bool,
}

pub struct Replication {
    local: String,
    local_version: u64,
    local_set: RecordSet,
    local_parts: Vec<RecordsPart>,
    peers: HashMap<String, Held>,
    /// Peers whose records are in the store now.
    in_store: HashMap<String, bool>,
    /// Peers the failure detector says are alive.
    active: HashMap<String, bool>,
    pending: HashMap<String, Assembly>,
    /// Where the next digest page starts.
    cursor: usize,
    /// Our gossip address, stamped on our parts.
    local_addr: Option<std::net::SocketAddr>,
    /// Recently changed sets (ours included) and how many more digests list them first.
    hot: Vec<(String, u32)>,
}

/// A version newer than `prev`, tied to the wall clock so a restart never goes back.
pub fn next_version(prev: u64, now_ms: u64) -> u64 {
    (prev + 1).max(now_ms)
}

impl Replication {
    pub fn new(local: &str, now_ms: u64) -> Replication {
        let version = next_version(0, now_ms);
        Replication {
            local: local.to_string(),
            local_version: version,
            local_set: RecordSet::new(),
            local_parts: cut(local, version, &RecordSet::new()),
            peers: HashMap::new(),
            in_store: HashMap::new(),
            active: HashMap::new(),
            pending: HashMap::new(),
            cursor: 0,
            hot: Vec::new(),
            local_addr: None,
        }
    }

    pub fn local_version(&self) -> u64 {
        self.local_version
    }

    pub fn local_record_count(&self) -> usize {
        self.local_set.values().map(Vec::len).sum()
    }

    /// Records held for a peer (whether or not in the store).
    pub fn peer_record_count(&self, node: &str) -> Option<usize> {
        self.peers
            .get(node)
            .map(|h| h.set.values().map(Vec::len).sum())
    }

    /// Records of peers dropped for invalid names, in total.
    pub fn invalid_records(&self) -> usize {
        self.peers.values().map(|h| h.invalid).sum()
    }

    /// Whether a set changed recently (digests then go to more members).
    pub fn has_hot(&self) -> bool {
        !self.hot.is_empty()
    }

    /// Sets this node's own records. Returns true when they changed (and the version moved).
    pub fn set_local(&mut self, set: RecordSet, now_ms: u64) -> bool {
        if set == self.local_set {
            return false;
        }
        self.local_set = set;
        self.bump_local(now_ms);
        let local = self.local.clone();
        self.mark_hot(&local);
        true
    }

    fn bump_local(&mut self, now_ms: u64) {
        self.local_version = next_version(self.local_version, now_ms);
        self.recut();
    }

    fn recut(&mut self) {
        self.local_parts = cut(&self.local, self.local_version, &self.local_set);
        for p in &mut self.local_parts {
            p.origin = self.local_addr;
        }
    }

    /// Our gossip address, carried in our parts.
    pub fn set_local_addr(&mut self, addr: std::net::SocketAddr) {
        self.local_addr = Some(addr);
        self.recut();
    }

    fn mark_hot(&mut self, node: &str) {
        self.hot.retain(|(n, _)| n != node);
        self.hot.push((node.to_string(), HOT_DIGESTS));
    }

    /// The parts of this node's own set, to push to a peer.
    pub fn local_parts(&self) -> &[RecordsPart] {
        &self.local_parts
    }

    /// The next page of our digest: ourselves, recently changed sets, then a rotating
    /// window of the others, as many as fit one datagram.
    pub fn digest(&mut self) -> Digest {
        let mut names: Vec<&String> = self.peers.keys().collect();
        names.sort();
        let total: usize =
            entry_cost(&self.local) + names.iter().map(|n| entry_cost(n)).sum::<usize>();
        let version = |this: &Replication, n: &str| {
            if n == this.local {
                this.local_version
            } else {
                this.peers.get(n).map_or(0, |h| h.version)
            }
        };
        if total <= DIGEST_BUDGET {
            let mut entries = vec![(self.local.clone(), self.local_version)];
            entries.extend(names.iter().map(|n| ((*n).clone(), self.peers[*n].version)));
            self.hot.clear();
            return Digest {
                entries,
                complete: true,
            };
        }
        let mut entries = vec![(self.local.clone(), self.local_version)];
        let mut size = entry_cost(&self.local);
        let mut listed: std::collections::HashSet<String> = std::collections::HashSet::new();
        listed.insert(self.local.clone());
        for (n, left) in self.hot.iter_mut() {
            if size + entry_cost(n) > DIGEST_BUDGET {
                break;
            }
            if listed.insert(n.clone()) {
                size += entry_cost(n);
                entries.push((n.clone(), 0));
            }
            *left -= 1;
        }
        self.hot.retain(|(_, left)| *left > 0);
        for e in entries.iter_mut().skip(1) {
            e.1 = version(self, &e.0);
        }
        let names: Vec<String> = {
            let mut v: Vec<String> = self.peers.keys().cloned().collect();
            v.sort();
            v
        };
        let start = self.cursor % names.len().max(1);
        let mut taken = 0;
        for i in 0..names.len() {
            let n = &names[(start + i) % names.len()];
            if size + entry_cost(n) > DIGEST_BUDGET {
                break;
            }
            taken += 1;
            if listed.insert(n.clone()) {
                size += entry_cost(n);
                entries.push((n.clone(), self.peers[n].version));
            }
        }
        self.cursor = (start + taken) % names.len().max(1);
        Digest {
            entries,
            complete: false,
        }
    }

    /// A peer's digest: ask for what it has newer, push what it lacks.
    pub fn on_digest(
        &mut self,
        from: &str,
        entries: &[(String, u64)],
        complete: bool,
        now_ms: u64,
    ) -> Reply {
        let mut reply = Reply::default();
        let mut pushed = 0;
        let mut seen_local = false;
        for (node, version) in entries {
            if *node == self.local {
                seen_local = true;
                if *version > self.local_version {
                    // Someone holds a newer set under our name: an earlier life of this node
                    // with a clock that was ahead. Move past it so ours wins.
                    self.local_version = *version;
                    self.bump_local(now_ms);
                }
                if *version < self.local_version && pushed < MAX_SETS_PER_EXCHANGE {
                    reply.parts.extend(self.local_parts.iter().cloned());
                    pushed += 1;
                }
                continue;
            }
            let held = self.peers.get(node).map_or(0, |h| h.version);
            if *version > held {
                if reply.request.len() < MAX_SETS_PER_EXCHANGE {
                    reply.request.push(node.clone());
                }
            } else if *version < held && node != from && pushed < MAX_SETS_PER_EXCHANGE {
                reply.parts.extend(self.peers[node].parts.iter().cloned());
                pushed += 1;
            }
        }
        if complete {
            if !seen_local && pushed < MAX_SETS_PER_EXCHANGE {
                reply.parts.extend(self.local_parts.iter().cloned());
                pushed += 1;
            }
            let mut missing: Vec<&String> = self
                .peers
                .keys()
                .filter(|n| *n != from && !entries.iter().any(|(e, _)| e == *n))
                .collect();
            missing.sort();
            for node in missing {
                if pushed >= MAX_SETS_PER_EXCHANGE {
                    break;
                }
                reply.parts.extend(self.peers[node].parts.iter().cloned());
                pushed += 1;
            }
        }
        reply
    }

    /// A request for sets: the parts of those we hold.
    pub fn on_request(&self, nodes: &[String]) -> Vec<RecordsPart> {
        let mut out = Vec::new();
        for node in nodes.iter().take(MAX_SETS_PER_EXCHANGE) {
            if *node == self.local {
                out.extend(self.local_parts.iter().cloned());
            } else if let Some(h) = self.peers.get(node) {
                out.extend(h.parts.iter().cloned());
            }
        }
        out
    }

    /// One part of a peer's set. Returns the store changes once a newer set is complete
    /// (none while the peer is not alive, or for a part that is old, duplicate or invalid).
    pub fn on_part(&mut self, part: RecordsPart) -> Vec<Change> {
        if part.node == self.local
            || part.parts == 0
            || part.parts > MAX_PARTS
            || part.part >= part.parts
        {
            return Vec::new();
        }
        let held = self.peers.get(&part.node).map_or(0, |h| h.version);
        if part.version <= held {
            return Vec::new();
        }
        let asm = self
            .pending
            .entry(part.node.clone())
            .or_insert_with(|| Assembly {
                version: part.version,
                parts: Vec::new(),
            });
        if part.version < asm.version {
            return Vec::new();
        }
        if part.version > asm.version || asm.parts.len() != part.parts as usize {
            asm.version = part.version;
            asm.parts = vec![None; part.parts as usize];
        }
        let node = part.node.clone();
        let idx = part.part as usize;
        asm.parts[idx] = Some(part);
        if asm.parts.iter().any(Option::is_none) {
            return Vec::new();
        }
        let asm = self.pending.remove(&node).expect("assembly present");
        let parts: Vec<RecordsPart> = asm.parts.into_iter().flatten().collect();
        let (set, invalid) = assemble(&parts);
        self.mark_hot(&node);
        let old = self.peers.insert(
            node.clone(),
            Held {
                version: asm.version,
                set,
                parts,
                invalid,
            },
        );
        if !self.active.get(&node).copied().unwrap_or(false) {
            return Vec::new();
        }
        let was_in_store = self.in_store.insert(node.clone(), true).unwrap_or(false);
        let empty = RecordSet::new();
        let before = match (&old, was_in_store) {
            (Some(h), true) => &h.set,
            _ => &empty,
        };
        diff(&node, before, &self.peers[&node].set)
    }

    /// The failure detector's word on a peer. Returns the store changes: its records in
    /// when it comes alive, out when it dies or leaves.
    pub fn set_active(&mut self, node: &str, active: bool) -> Vec<Change> {
        if node == self.local {
            return Vec::new();
        }
        self.active.insert(node.to_string(), active);
        let in_store = self.in_store.get(node).copied().unwrap_or(false);
        match (active, in_store) {
            (true, false) => match self.peers.get(node) {
                Some(h) => {
                    self.in_store.insert(node.to_string(), true);
                    diff(node, &RecordSet::new(), &h.set)
                }
                None => Vec::new(),
            },
            (false, true) => {
                self.in_store.insert(node.to_string(), false);
                vec![Change::WithdrawNode {
                    node: Arc::from(node),
                }]
            }
            _ => Vec::new(),
        }
    }

    /// Peers whose sets are held, and whether the failure detector says each is alive.
    pub fn held_peers(&self) -> Vec<(String, bool)> {
        self.peers
            .keys()
            .map(|n| (n.clone(), self.active.get(n).copied().unwrap_or(false)))
            .collect()
    }

    /// Forgets what is held of a peer (its process restarted: its old set is void). Returns
    /// the changes withdrawing it, if it was in the store.
    pub fn forget(&mut self, node: &str) -> Vec<Change> {
        self.peers.remove(node);
        self.pending.remove(node);
        if self.in_store.remove(node).unwrap_or(false) {
            vec![Change::WithdrawNode {
                node: Arc::from(node),
            }]
        } else {
            Vec::new()
        }
    }
}

/// The store changes turning `before` into `after` for `node`'s owners.
fn diff(node: &str, before: &RecordSet, after: &RecordSet) -> Vec<Change> {
    let node: Arc<str> = Arc::from(node);
    let mut out = Vec::new();
    for (id, recs) in after {
        if before.get(id) != Some(recs) {
            out.push(Change::Replace {
                owner: OwnerKey::new(&node, id.0, id.1.clone()),
                records: recs.clone(),
            });
        }
    }
    for id in before.keys() {
        if !after.contains_key(id) {
            out.push(Change::Replace {
                owner: OwnerKey::new(&node, id.0, id.1.clone()),
                records: Vec::new(),
            });
        }
    }
    out
}

/// Cuts a set into parts of at most `PART_BUDGET` bytes of records (an owner may span parts).
pub fn cut(node: &str, version: u64, set: &RecordSet) -> Vec<RecordsPart> {
    let mut parts: Vec<Vec<WireOwner>> = vec![Vec::new()];
    let mut size = 0usize;
    for ((source, owner), records) in set {
        let Some(source) = WireSource::from_kind(*source) else {
            continue;
        };
        let owner_cost = owner.len() + 4;
        for r in records {
            let w = WireRecord::from_record(r);
            let cost = postcard::experimental::serialized_size(&w).unwrap_or(PART_BUDGET);
            let current = parts.last_mut().expect("one part at least");
            let same_owner = current
                .last()
                .is_some_and(|o| o.source == source && *o.owner == **owner);
            let add = cost + if same_owner { 0 } else { owner_cost };
            if size + add > PART_BUDGET && !current.is_empty() {
                if parts.len() >= MAX_PARTS as usize {
                    break;
                }
                parts.push(Vec::new());
                size = 0;
            }
            let current = parts.last_mut().expect("one part at least");
            match current.last_mut() {
                Some(o) if o.source == source && *o.owner == **owner => o.records.push(w),
                _ => {
                    size += owner_cost;
                    current.push(WireOwner {
                        source,
                        owner: owner.to_string(),
                        records: vec![w],
                    });
                }
            }
            size += cost;
        }
    }
    let n = parts.len() as u16;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, owners)| RecordsPart {
            node: node.to_string(),
            version,
            part: i as u16,
            parts: n,
            origin: None,
            owners,
        })
        .collect()
}

/// Joins parts back into a set; returns it and how many records were invalid.
fn assemble(parts: &[RecordsPart]) -> (RecordSet, usize) {
    let mut set = RecordSet::new();
    let mut invalid = 0;
    for p in parts {
        for o in &p.owners {
            let entry = set
                .entry((o.source.kind(), Arc::from(o.owner.as_str())))
                .or_default();
            for w in &o.records {
                match w.to_record() {
                    Some(r) => entry.push(r),
                    None => invalid += 1,
                }
            }
        }
    }
    set.retain(|_, v| !v.is_empty());
    (set, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Name, RData};

    fn rec(name: &str, ip: &str) -> Record {
        Record::new(Name::parse(name).unwrap(), RData::A(ip.parse().unwrap()))
    }
    fn set(entries: &[(&str, &[(&str, &str)])]) -> RecordSet {
        entries
            .iter()
            .map(|(owner, recs)| {
                (
                    (SourceKind::Hosts, Arc::from(*owner)),
                    recs.iter().map(|(n, ip)| rec(n, ip)).collect(),
                )
            })
            .collect()
    }
    fn replaced(changes: &[Change]) -> Vec<(String, String, usize)> {
        let mut out: Vec<_> = changes
            .iter()
            .map(|c| match c {
                Change::Replace { owner, records } => (
                    owner.node.to_string(),
                    owner.owner.to_string(),
                    records.len(),
                ),
                Change::WithdrawNode { node } => (node.to_string(), "*".into(), 0),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        out.sort();
        out
    }
    /// Delivers every part of `from`'s reply into `to`.
    fn deliver(to: &mut Replication, parts: Vec<RecordsPart>) -> Vec<Change> {
        parts.into_iter().flat_map(|p| to.on_part(p)).collect()
    }

    #[test]
    fn versions_only_grow_even_with_an_old_clock() {
        assert_eq!(next_version(0, 1000), 1000);
        assert_eq!(next_version(1000, 1000), 1001);
        assert_eq!(next_version(5000, 10), 5001);
    }

    #[test]
    fn digest_pull_then_push_and_store_gating() {
        let mut a = Replication::new("a", 100);
        let mut b = Replication::new("b", 100);
        assert!(a.set_local(set(&[("/h/1", &[("web.docker", "10.0.0.1")])]), 200));
        assert!(
            !a.set_local(set(&[("/h/1", &[("web.docker", "10.0.0.1")])]), 300),
            "unchanged"
        );

        // b hears a's digest: it wants a's set.
        let d = a.digest();
        assert!(d.complete);
        let reply = b.on_digest("a", &d.entries, d.complete, 400);
        assert_eq!(reply.request, vec!["a".to_string()]);
        // a answers the request; b holds the set but a is not known alive yet: no changes.
        let parts = a.on_request(&reply.request);
        assert!(deliver(&mut b, parts.clone()).is_empty());
        assert_eq!(b.peer_record_count("a"), Some(1));
        // Alive: records enter the store. Duplicate parts change nothing.
        assert_eq!(
            replaced(&b.set_active("a", true)),
            vec![("a".into(), "/h/1".into(), 1)]
        );
        assert!(deliver(&mut b, parts).is_empty());
        // Dead: withdrawn; back: restored without any new message.
        assert_eq!(
            replaced(&b.set_active("a", false)),
            vec![("a".into(), "*".into(), 0)]
        );
        assert!(b.set_active("a", false).is_empty());
        assert_eq!(
            replaced(&b.set_active("a", true)),
            vec![("a".into(), "/h/1".into(), 1)]
        );

        // a changes: one owner gone, one new; b's digest shows it is behind, a pushes.
        a.set_local(set(&[("/h/2", &[("db.docker", "10.0.0.2")])]), 500);
        let d = b.digest();
        let reply = a.on_digest("b", &d.entries, d.complete, 600);
        assert_eq!(
            reply.request,
            vec!["b".to_string()],
            "a never had b's (empty) set"
        );
        assert_eq!(
            replaced(&deliver(&mut b, reply.parts)),
            vec![
                ("a".into(), "/h/1".into(), 0),
                ("a".into(), "/h/2".into(), 1)
            ]
        );
    }

    #[test]
    fn relays_third_party_sets_and_ignores_own_and_old() {
        let mut a = Replication::new("a", 100);
        let mut b = Replication::new("b", 100);
        let mut c = Replication::new("c", 100);
        a.set_local(set(&[("/x", &[("x.docker", "10.0.0.9")])]), 200);
        deliver(&mut b, a.on_request(&["a".into()]));
        // c never talked to a: it gets a's set from b (complete digest without "a").
        let d = c.digest();
        let reply = b.on_digest("c", &d.entries, d.complete, 300);
        c.set_active("a", true);
        assert_eq!(
            replaced(&deliver(&mut c, reply.parts)),
            vec![("a".into(), "/x".into(), 1)]
        );
        // An older version of a's set is ignored.
        let old = cut("a", 150, &set(&[("/x", &[("x.docker", "10.0.0.1")])]));
        assert!(deliver(&mut c, old).is_empty());
        // Parts claiming to be c's own are ignored.
        let forged = cut("c", u64::MAX, &set(&[("/x", &[("x.docker", "10.6.6.6")])]));
        assert!(deliver(&mut c, forged).is_empty());
        assert_eq!(c.peer_record_count("c"), None);
    }

    #[test]
    fn a_newer_set_under_our_name_moves_our_version_past_it() {
        let mut a = Replication::new("a", 100);
        let v = a.local_version();
        let reply = a.on_digest("b", &[("a".into(), v + 1000)], true, 150);
        assert!(a.local_version() > v + 1000);
        assert!(reply.parts.is_empty() || reply.parts[0].version > v + 1000);
    }

    #[test]
    fn large_sets_are_cut_and_assembled_in_any_order() {
        let recs: Vec<(String, String)> = (0..300)
            .map(|i| {
                (
                    format!("host-{i}.docker"),
                    format!("10.1.{}.{}", i / 250, i % 250),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = recs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let s = set(&[("/big", &refs), ("/small", &[("s.docker", "10.2.0.1")])]);
        let parts = cut("a", 7, &s);
        assert!(parts.len() > 3, "{} parts", parts.len());
        for p in &parts {
            let bytes = postcard::to_allocvec(p).unwrap();
            assert!(
                bytes.len() <= super::super::wire::MAX_DATAGRAM - 200,
                "{}",
                bytes.len()
            );
        }
        let mut b = Replication::new("b", 1);
        b.set_active("a", true);
        let mut changes = Vec::new();
        // Reverse order, with a duplicate and a lost part delivered later.
        let (first, rest) = parts.split_first().unwrap();
        for p in rest.iter().rev() {
            changes.extend(b.on_part(p.clone()));
            changes.extend(b.on_part(p.clone()));
        }
        assert!(changes.is_empty(), "incomplete until every part arrived");
        changes.extend(b.on_part(first.clone()));
        assert_eq!(
            replaced(&changes),
            vec![
                ("a".into(), "/big".into(), 300),
                ("a".into(), "/small".into(), 1)
            ]
        );
    }

    #[test]
    fn digest_pages_rotate_through_large_clusters() {
        let mut a = Replication::new("a", 1);
        for i in 0..100 {
            let n = format!("n{i:02}");
            deliver(
                &mut a,
                cut(&n, 5, &set(&[("/f", &[("x.docker", "10.0.0.1")])])),
            );
        }
        let mut seen = std::collections::HashSet::new();
        let mut pages = 0;
        while seen.len() < 101 {
            let d = a.digest();
            assert!(!d.complete);
            assert_eq!(d.entries[0].0, "a");
            let size: usize = d.entries.iter().map(|e| entry_cost(&e.0)).sum();
            assert!(size <= DIGEST_BUDGET, "{size}");
            seen.extend(d.entries.into_iter().map(|e| e.0));
            pages += 1;
            assert!(pages < 10, "pages rotate through everyone");
        }
        // Every set is fresh here: the hot list fades after a few digests.
        for _ in 0..HOT_DIGESTS {
            a.digest();
        }
        assert!(a.hot.is_empty());
        // A newly changed set is listed first in the next digests.
        deliver(
            &mut a,
            cut("n42", 9, &set(&[("/f", &[("y.docker", "10.0.0.2")])])),
        );
        for _ in 0..3 {
            assert_eq!(a.digest().entries[1], ("n42".to_string(), 9));
        }
    }

    #[test]
    fn forget_drops_a_restarted_nodes_old_set() {
        let mut b = Replication::new("b", 1);
        b.set_active("a", true);
        deliver(
            &mut b,
            cut("a", 5, &set(&[("/f", &[("x.docker", "10.0.0.1")])])),
        );
        assert_eq!(replaced(&b.forget("a")), vec![("a".into(), "*".into(), 0)]);
        assert_eq!(b.peer_record_count("a"), None);
        assert!(b.set_active("a", true).is_empty(), "nothing to restore");
    }
}
