//! The wire-format form of a name's records, prepared once per change so that the DNS hot
//! path only copies bytes.
//!
//! A `NameEntry` is one allocation: a list of RRsets, each `[type u16][count u16][len u32]`
//! followed by `count` resource records. Every record's owner is the compression pointer
//! `0xC00C`, the question name at offset 12 of any response, so the answer echoes the
//! question's case. A record can be re-pointed at another owner by rewriting those two bytes
//! (CNAME chasing and SRV additional data do that).
//!
//! Names inside RDATA are written uncompressed and lowercase.

use std::net::IpAddr;

use triomphe::ThinArc;

use rustc_hash::FxHashSet;

use super::{Name, RData, RType};

/// RRsets up to this size find duplicates by a scan; larger ones with a hash set.
const SCAN_DEDUP_UP_TO: usize = 8;

/// The compression pointer to the question name (offset 12).
pub const QNAME_POINTER: [u8; 2] = [0xC0, 0x0C];
const CLASS_IN: [u8; 2] = [0, 1];
const RRSET_HEADER: usize = 8;

/// A name's records in wire format, grouped into RRsets by type, together with the name
/// itself (the key it is found by) and the store's note of where the records came from.
/// One shared allocation behind a thin (8-byte) pointer; cloning is a reference-count
/// increment.
///
/// Layout: `[key length u8][key: lowercase wire name][m: u8, or 255 then u32][m bytes of
/// contributions][RRsets]`; a contribution is two LEB128 varints, the owner id and the
/// record index << 1 | derived (four bytes for a million records, not eight). Keeping the key and the contributions inside the
/// entry saves a key allocation and a map entry per name (a million hosts records are two
/// million names), and the thin pointer halves the slots of the shards' tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameEntry {
    blob: ThinArc<(), u8>,
}

/// A contributions length of this or more is written as this byte and a u32.
const LONG_LEN: u8 = u8::MAX;

/// One record's contribution to a name, as the store tracks it: the owner's id and the
/// record's index in that owner's list (with `Contribution::DERIVED` set: the PTR derived
/// from that record's address).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Contribution {
    pub owner: u32,
    pub index: u32,
}

impl Contribution {
    pub const DERIVED: u32 = 1 << 31;
}

/// One RRset of a `NameEntry`.
#[derive(Clone, Copy, Debug)]
pub struct RrSet<'a> {
    pub rtype: RType,
    pub count: u16,
    /// `count` complete resource records, owners `0xC00C`.
    pub wire: &'a [u8],
}

impl NameEntry {
    /// Builds the entry of the name `key` (lowercase wire form) from every record of it and
    /// the contributions they come from, plus RRsets prepared elsewhere (`extra`: type,
    /// count, records; the apex's NS and SOA). Identical data from several owners appears
    /// once; an RRset's TTL is the lowest TTL among its records (RFC 2181 5.2). `scratch`
    /// is a buffer reused between calls.
    pub fn build(
        scratch: &mut Vec<u8>,
        key: &[u8],
        contributions: &[Contribution],
        records: &mut [(RData, u32)],
        extra: &[(RType, u16, &[u8])],
    ) -> NameEntry {
        NameEntry::encode(scratch, key, contributions, records, extra);
        NameEntry::from_encoded(scratch)
    }

    /// The entry's bytes as `build` would make them, written into `scratch` (cleared first),
    /// so that an unchanged entry can be kept without allocating (`same_as`).
    pub fn encode(
        scratch: &mut Vec<u8>,
        key: &[u8],
        contributions: &[Contribution],
        records: &mut [(RData, u32)],
        extra: &[(RType, u16, &[u8])],
    ) {
        records.sort_by_key(|r| r.0.rtype());
        let blob = scratch;
        blob.clear();
        blob.push(key.len() as u8);
        blob.extend_from_slice(key);
        let len_at = blob.len();
        blob.push(0);
        for c in contributions {
            write_varint(blob, c.owner);
            let derived = c.index & Contribution::DERIVED != 0;
            write_varint(
                blob,
                (c.index & !Contribution::DERIVED) << 1 | derived as u32,
            );
        }
        let len = blob.len() - len_at - 1;
        match u8::try_from(len) {
            Ok(n) if n < LONG_LEN => blob[len_at] = n,
            _ => {
                blob[len_at] = LONG_LEN;
                let bytes = (len as u32).to_le_bytes();
                blob.splice(len_at + 1..len_at + 1, bytes);
            }
        }
        let mut i = 0;
        while i < records.len() {
            let rtype = records[i].0.rtype();
            let mut j = i;
            while j < records.len() && records[j].0.rtype() == rtype {
                j += 1;
            }
            let set = &records[i..j];
            let ttl = set.iter().map(|r| r.1).min().unwrap_or(0);
            let header_at = blob.len();
            blob.extend_from_slice(&[0; RRSET_HEADER]);
            let mut count: u16 = 0;
            // A name many owners share (the PTR of the host address that every
            // `joyride.host.name` label points at) can hold a record per container: a scan
            // for duplicates made each rebuild quadratic in them (1,000 such containers: 2.2 s
            // of the store's time in the Docker reconcile, 0.08 s with a hash set). Small
            // sets, nearly all of them, are scanned: no allocation.
            let mut seen: FxHashSet<&RData> = FxHashSet::default();
            for (k, (data, _)) in set.iter().enumerate() {
                let dup = if set.len() <= SCAN_DEDUP_UP_TO {
                    set[..k].iter().any(|(d, _)| d == data)
                } else {
                    !seen.insert(data)
                };
                if dup || count == u16::MAX {
                    continue;
                }
                write_rr(blob, rtype, ttl, |out| encode_rdata(data, out));
                count += 1;
            }
            let len = (blob.len() - header_at - RRSET_HEADER) as u32;
            blob[header_at..header_at + 2].copy_from_slice(&rtype.0.to_be_bytes());
            blob[header_at + 2..header_at + 4].copy_from_slice(&count.to_be_bytes());
            blob[header_at + 4..header_at + 8].copy_from_slice(&len.to_be_bytes());
            i = j;
        }
        for (rtype, count, wire) in extra {
            blob.extend_from_slice(&rtype.0.to_be_bytes());
            blob.extend_from_slice(&count.to_be_bytes());
            blob.extend_from_slice(&(wire.len() as u32).to_be_bytes());
            blob.extend_from_slice(wire);
        }
    }

    /// The entry of bytes written by `encode`.
    pub fn from_encoded(bytes: &[u8]) -> NameEntry {
        NameEntry {
            blob: ThinArc::from_header_and_slice((), bytes),
        }
    }

    /// Whether this entry's bytes are `encoded`.
    pub fn same_as(&self, encoded: &[u8]) -> bool {
        self.bytes() == encoded
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.blob.slice
    }

    /// The name, in lowercase wire form.
    #[inline]
    pub fn key(&self) -> &[u8] {
        let b = self.bytes();
        &b[1..1 + b[0] as usize]
    }

    /// Where the contributions start and end.
    #[inline]
    fn contributions_span(&self) -> (usize, usize) {
        let b = self.bytes();
        let at = 1 + b[0] as usize;
        if b[at] < LONG_LEN {
            (at + 1, at + 1 + b[at] as usize)
        } else {
            let n = u32::from_le_bytes(b[at + 1..at + 5].try_into().expect("4 bytes"));
            (at + 5, at + 5 + n as usize)
        }
    }

    /// Where the RRsets start.
    #[inline]
    fn rrsets_at(&self) -> usize {
        self.contributions_span().1
    }

    /// The contributions the entry was built from, in order.
    pub fn contributions(&self) -> impl Iterator<Item = Contribution> + '_ {
        let (start, end) = self.contributions_span();
        let mut bytes = &self.bytes()[start..end];
        std::iter::from_fn(move || {
            if bytes.is_empty() {
                return None;
            }
            let owner = read_varint(&mut bytes);
            let index = read_varint(&mut bytes);
            let derived = if index & 1 != 0 {
                Contribution::DERIVED
            } else {
                0
            };
            Some(Contribution {
                owner,
                index: index >> 1 | derived,
            })
        })
    }

    pub fn rrsets(&self) -> impl Iterator<Item = RrSet<'_>> {
        let mut at = self.rrsets_at();
        let blob = self.bytes();
        std::iter::from_fn(move || {
            if at + RRSET_HEADER > blob.len() {
                return None;
            }
            let rtype = RType(u16::from_be_bytes([blob[at], blob[at + 1]]));
            let count = u16::from_be_bytes([blob[at + 2], blob[at + 3]]);
            let len = u32::from_be_bytes([blob[at + 4], blob[at + 5], blob[at + 6], blob[at + 7]])
                as usize;
            let wire = &blob[at + RRSET_HEADER..at + RRSET_HEADER + len];
            at += RRSET_HEADER + len;
            Some(RrSet { rtype, count, wire })
        })
    }

    pub fn rrset(&self, rtype: RType) -> Option<RrSet<'_>> {
        self.rrsets().find(|s| s.rtype == rtype)
    }

    pub fn is_empty(&self) -> bool {
        self.rrsets_at() == self.bytes().len()
    }

    /// Bytes held, for memory accounting.
    pub fn heap_size(&self) -> usize {
        self.bytes().len()
    }
}

/// Appends `v` as an LEB128 varint (seven bits a byte, low bits first).
fn write_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an LEB128 varint written by `write_varint` from the front of `bytes`.
fn read_varint(bytes: &mut &[u8]) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    while let Some((&b, rest)) = bytes.split_first() {
        *bytes = rest;
        v |= ((b & 0x7f) as u32) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

/// Writes the reverse-lookup name of `ip` in lowercase wire format (the wire form of
/// `Name::reverse(ip)`, without building the string).
pub fn write_reverse_name(ip: IpAddr, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ip {
        IpAddr::V4(v4) => {
            for octet in v4.octets().iter().rev() {
                let mut digits = [0u8; 3];
                let mut n = *octet;
                let mut len = 0;
                loop {
                    digits[len] = b'0' + n % 10;
                    len += 1;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                out.push(len as u8);
                out.extend(digits[..len].iter().rev());
            }
            out.extend_from_slice(b"\x07in-addr\x04arpa\x00");
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                out.extend_from_slice(&[
                    1,
                    HEX[(byte & 0x0f) as usize],
                    1,
                    HEX[(byte >> 4) as usize],
                ]);
            }
            out.extend_from_slice(b"\x03ip6\x04arpa\x00");
        }
    }
}

/// Where the zone `apex` (lowercase wire) starts inside the lowercase wire `name`, if
/// `name` is the apex or below it.
#[inline]
pub fn zone_offset(name: &[u8], apex: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        if name.len() - at == apex.len() {
            return (name[at..] == *apex).then_some(at);
        }
        let len = *name.get(at)? as usize;
        if len == 0 || name.len() - at < apex.len() {
            return None;
        }
        at += 1 + len;
    }
}

/// Offsets of each record within an RRset's wire bytes: `(start, rdata_start, end)`.
pub fn records(wire: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        // owner pointer (2) + type (2) + class (2) + ttl (4) + rdlength (2)
        if at + 12 > wire.len() {
            return None;
        }
        let rdlen = u16::from_be_bytes([wire[at + 10], wire[at + 11]]) as usize;
        let start = at;
        at += 12 + rdlen;
        Some((start, start + 12, at))
    })
}

/// Appends one resource record with owner `0xC00C`; `rdata` writes the RDATA.
pub fn write_rr(out: &mut Vec<u8>, rtype: RType, ttl: u32, rdata: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(&QNAME_POINTER);
    out.extend_from_slice(&rtype.0.to_be_bytes());
    out.extend_from_slice(&CLASS_IN);
    out.extend_from_slice(&ttl.to_be_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    rdata(out);
    let rdlen = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
}

/// Appends the RDATA of `data`.
pub fn encode_rdata(data: &RData, out: &mut Vec<u8>) {
    match data {
        RData::A(ip) => out.extend_from_slice(&ip.octets()),
        RData::Aaaa(ip) => out.extend_from_slice(&ip.octets()),
        RData::Cname(n) | RData::Ptr(n) => n.write_wire(out),
        RData::Txt(text) => {
            let bytes = text.as_bytes();
            if bytes.is_empty() {
                out.push(0);
            }
            for chunk in bytes.chunks(255) {
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            target.write_wire(out);
        }
        RData::Mx {
            preference,
            exchange,
        } => {
            out.extend_from_slice(&preference.to_be_bytes());
            exchange.write_wire(out);
        }
    }
}

/// The RDATA of the zone's SOA record.
pub fn soa_rdata(mname: &Name, rname: &Name, serial: u32, negative_ttl: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    mname.write_wire(&mut out);
    rname.write_wire(&mut out);
    // serial, refresh, retry, expire, minimum (the negative-caching TTL, RFC 2308)
    for v in [serial, 3600, 600, 86400, negative_ttl] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn groups_dedupes_and_takes_lowest_ttl() {
        let key = n("web.docker").to_wire();
        let contribs = [Contribution {
            owner: 3,
            index: 7 | Contribution::DERIVED,
        }];
        let entry = NameEntry::build(
            &mut Vec::new(),
            &key,
            &contribs,
            &mut [
                (RData::A("10.0.0.2".parse().unwrap()), 30),
                (RData::Txt("hi".into()), 10),
                (RData::A("10.0.0.1".parse().unwrap()), 10),
                (RData::A("10.0.0.2".parse().unwrap()), 60),
            ],
            &[(RType::NS, 1, b"not parsed")],
        );
        assert_eq!(entry.key(), &key[..]);
        assert_eq!(entry.contributions().collect::<Vec<_>>(), contribs);
        assert_eq!(entry.rrset(RType::NS).unwrap().wire, b"not parsed");
        // Contributions of 255 bytes and more take the long form; varints of every width.
        for n in [1u32, 120, 127, 128, 300] {
            let many: Vec<_> = (0..n)
                .map(|i| Contribution {
                    owner: i.wrapping_mul(40_000_003),
                    index: i.wrapping_mul(1_000_003) & !Contribution::DERIVED
                        | if i % 2 == 0 { Contribution::DERIVED } else { 0 },
                })
                .collect();
            let e = NameEntry::build(&mut Vec::new(), &key, &many, &mut [], &[]);
            assert_eq!(e.contributions().collect::<Vec<_>>(), many);
            assert!(e.is_empty() && e.rrsets().next().is_none());
        }
        let sets: Vec<_> = entry.rrsets().collect();
        assert_eq!(sets.len(), 3);
        assert_eq!(sets[0].rtype, RType::A);
        assert_eq!(sets[0].count, 2);
        assert_eq!(sets[1].rtype, RType::TXT);
        let recs: Vec<_> = records(sets[0].wire).collect();
        assert_eq!(recs.len(), 2);
        for (start, rdata, end) in recs {
            let rr = &sets[0].wire[start..end];
            assert_eq!(&rr[..2], &QNAME_POINTER);
            assert_eq!(u32::from_be_bytes([rr[6], rr[7], rr[8], rr[9]]), 10);
            assert_eq!(end - rdata, 4);
        }
        assert!(entry.rrset(RType::AAAA).is_none());
    }

    #[test]
    fn large_rrsets_dedupe_like_small_ones() {
        // One PTR name shared by many owners: past SCAN_DEDUP_UP_TO the hash set decides.
        let key = n("2.0.0.127.in-addr.arpa").to_wire();
        for unique in [3usize, SCAN_DEDUP_UP_TO, SCAN_DEDUP_UP_TO + 1, 200] {
            let mut recs: Vec<_> = (0..unique * 3)
                .map(|i| (RData::Ptr(n(&format!("c{}.docker", i % unique))), 10))
                .collect();
            let e = NameEntry::build(&mut Vec::new(), &key, &[], &mut recs, &[]);
            let set = e.rrset(RType::PTR).unwrap();
            assert_eq!(set.count as usize, unique, "{unique} names, each thrice");
            assert_eq!(records(set.wire).count(), unique);
        }
    }

    #[test]
    fn reverse_wire_names_match_the_string_form() {
        for ip in ["10.1.2.3", "0.0.0.0", "255.100.9.1", "2001:db8::1", "::"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            write_reverse_name(ip, &mut out);
            assert_eq!(out, Name::reverse(ip).to_wire(), "{ip}");
        }
    }

    #[test]
    fn encodes_rdata() {
        let mut out = Vec::new();
        encode_rdata(
            &RData::Srv {
                priority: 1,
                weight: 2,
                port: 80,
                target: n("web.docker"),
            },
            &mut out,
        );
        assert_eq!(out, b"\x00\x01\x00\x02\x00\x50\x03web\x06docker\x00");
        out.clear();
        encode_rdata(&RData::Txt("x".repeat(300).into()), &mut out);
        assert_eq!(out.len(), 302);
        assert_eq!(out[0], 255);
        assert_eq!(out[256], 45);
        out.clear();
        encode_rdata(&RData::Txt("".into()), &mut out);
        assert_eq!(out, [0]);
    }
}
