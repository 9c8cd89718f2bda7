//! Answering a query from a snapshot: a pure function from packet bytes to response bytes.
//!
//! The common case (a name with records of the asked type) parses the header and question,
//! does one hash lookup and copies prepared wire bytes: no allocation. CNAME chasing, SRV/MX
//! additional addresses and wildcard queries take slower paths that re-point prepared
//! records at other owners with compression pointers.

use super::query::{
    self, Malformed, Query, AA, CD, CLASS_CH, CLASS_HS, CLASS_IN, HEADER_LEN, QR, RA, RD, TC,
};
use crate::records::wire::{self, NameEntry};
use crate::records::{RType, Snapshot};

/// Response codes Joyride produces.
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// Extended (EDNS) rcode 16.
    pub const BADVERS: u8 = 16;
}

/// Our EDNS UDP payload size unless configured otherwise (DNS flag day 2020).
pub const DEFAULT_EDNS_UDP_SIZE: u16 = 1232;
/// Longest CNAME chain followed inside our own data.
const MAX_CHASE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What the server knows that the snapshot does not.
#[derive(Clone, Copy, Debug)]
pub struct AnswerContext {
    pub transport: Transport,
    /// Largest UDP response we send (the client's EDNS size is capped by it).
    pub max_udp_size: u16,
    /// Whether names outside our data are forwarded (RA is set then).
    pub forwarding: bool,
}

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds a response with this rcode, to a question of this type (0 when the
    /// question could not be read).
    Reply { rcode: u8, qtype: u16 },
    /// Not ours: relay the packet to an upstream.
    Forward,
    /// Send nothing (too short to answer, or a response).
    Drop,
}

/// Answers `packet` from `snap`, writing the response into `out` (cleared first).
pub fn answer(packet: &[u8], snap: &Snapshot, ctx: &AnswerContext, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    let q = match query::parse(packet) {
        Ok(q) => q,
        Err(Malformed::TooShort) | Err(Malformed::Response) => return Outcome::Drop,
        Err(Malformed::NotQuery) => return header_only(packet, rcode::NOTIMP, ctx, out),
        Err(Malformed::FormErr(_)) => return header_only(packet, rcode::FORMERR, ctx, out),
    };
    if let Some(edns) = q.edns {
        if edns.version != 0 {
            start(out, packet, &q, rcode::BADVERS, false, ctx);
            return finish(out, &q, rcode::BADVERS, ctx);
        }
    }
    match q.qclass {
        CLASS_IN => {}
        CLASS_CH | CLASS_HS => return refuse(out, packet, &q, ctx),
        _ => return refuse(out, packet, &q, ctx),
    }
    let name = q.lower_name();
    let qtype = RType(q.qtype);
    let zone = &snap.zone;
    let in_zone = query::zone_offset(name, &zone.apex_wire);

    if let Some(entry) = snap.lookup(name) {
        if qtype == RType::AXFR || qtype == RType::IXFR {
            return refuse(out, packet, &q, ctx);
        }
        start(out, packet, &q, rcode::NOERROR, true, ctx);
        let mut answers = 0u16;
        let chosen = if qtype == RType::ANY {
            // RFC 8482: one RRset is a complete answer to ANY.
            entry.rrsets().next()
        } else {
            entry.rrset(qtype)
        };
        if let Some(set) = chosen {
            let first = out.len();
            out.extend_from_slice(set.wire);
            answers = set.count;
            set_count(out, 6, answers);
            if qtype == RType::SRV || qtype == RType::MX {
                add_target_addresses(out, snap, first, qtype);
            }
        } else if let Some(cname) = entry.rrset(RType::CNAME).filter(|_| qtype != RType::CNAME) {
            answers = chase(out, snap, cname.wire, qtype);
            set_count(out, 6, answers);
        }
        if answers == 0 {
            // NODATA: the SOA of the zone the name is in; a published name outside our zone
            // is its own apex.
            negative_soa(out, snap, in_zone.unwrap_or(0));
        }
        return finish(out, &q, rcode::NOERROR, ctx);
    }

    let Some(apex_at) = in_zone else {
        if ctx.forwarding {
            return Outcome::Forward;
        }
        return refuse(out, packet, &q, ctx);
    };
    if query::has_wildcard_label(name) {
        let (names, answers) = wildcard(out, packet, &q, snap, qtype, ctx);
        if names > 0 {
            if answers == 0 {
                negative_soa(out, snap, apex_at);
            }
            return finish(out, &q, rcode::NOERROR, ctx);
        }
        out.clear();
    }
    let code = if snap.is_empty_non_terminal(name) {
        rcode::NOERROR
    } else {
        rcode::NXDOMAIN
    };
    start(out, packet, &q, code, true, ctx);
    negative_soa(out, snap, apex_at);
    finish(out, &q, code, ctx)
}

/// Writes the header (counts zero but QDCOUNT) and echoes the question.
fn start(
    out: &mut Vec<u8>,
    packet: &[u8],
    q: &Query,
    code: u8,
    authoritative: bool,
    ctx: &AnswerContext,
) {
    let mut flags = QR | (q.flags & (query::OPCODE_MASK | RD | CD)) | (code & 0x0f) as u16;
    if authoritative {
        flags |= AA;
    }
    if ctx.forwarding {
        flags |= RA;
    }
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&packet[HEADER_LEN..q.question_end]);
}

/// SERVFAIL for a query no upstream answered.
pub fn servfail(packet: &[u8], ctx: &AnswerContext, out: &mut Vec<u8>) -> Outcome {
    out.clear();
    match query::parse(packet) {
        Ok(q) => {
            start(out, packet, &q, rcode::SERVFAIL, false, ctx);
            finish(out, &q, rcode::SERVFAIL, ctx)
        }
        Err(_) if packet.len() >= HEADER_LEN => header_only(packet, rcode::SERVFAIL, ctx, out),
        Err(_) => Outcome::Drop,
    }
}

fn refuse(out: &mut Vec<u8>, packet: &[u8], q: &Query, ctx: &AnswerContext) -> Outcome {
    out.clear();
    start(out, packet, q, rcode::REFUSED, false, ctx);
    finish(out, q, rcode::REFUSED, ctx)
}

/// A response with no question (FORMERR, NOTIMP): the header of the packet, its id, opcode
/// and RD echoed.
fn header_only(packet: &[u8], code: u8, ctx: &AnswerContext, out: &mut Vec<u8>) -> Outcome {
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    let mut reply = QR | (flags & (query::OPCODE_MASK | RD)) | code as u16;
    if ctx.forwarding {
        reply |= RA;
    }
    out.extend_from_slice(&packet[..2]);
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Outcome::Reply {
        rcode: code,
        qtype: 0,
    }
}

#[inline]
fn set_count(out: &mut [u8], at: usize, n: u16) {
    out[at..at + 2].copy_from_slice(&n.to_be_bytes());
}

#[inline]
fn count(out: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([out[at], out[at + 1]])
}

/// Appends the OPT record when the query had one, and truncates to the size limit.
fn finish(out: &mut Vec<u8>, q: &Query, code: u8, ctx: &AnswerContext) -> Outcome {
    let limit = match (ctx.transport, q.edns) {
        (Transport::Tcp, _) => u16::MAX as usize,
        (Transport::Udp, Some(e)) => e.udp_size.min(ctx.max_udp_size).max(512) as usize,
        (Transport::Udp, None) => 512,
    };
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    if out.len() + opt_len > limit {
        // Too large: the header and question with TC set; the client retries over TCP.
        out.truncate(q.question_end);
        out[3] &= 0xf0;
        out[3] |= code & 0x0f;
        let flags = count(out, 2) | TC;
        set_count(out, 2, flags);
        out[6..12].fill(0);
    }
    if q.edns.is_some() {
        out.push(0); // root owner
        out.extend_from_slice(&RType::OPT.0.to_be_bytes());
        out.extend_from_slice(&ctx.max_udp_size.to_be_bytes());
        out.push(code >> 4); // extended rcode
        out.extend_from_slice(&[0, 0, 0, 0, 0]); // version 0, flags, rdlength 0
        let ar = count(out, 10) + 1;
        set_count(out, 10, ar);
    }
    Outcome::Reply {
        rcode: code,
        qtype: q.qtype,
    }
}

/// Cuts a finished UDP reply to its header and question with TC set, keeping its OPT
/// record, so the client retries over TCP. For a reply the kernel would not send whole (too
/// large for the interface, and replies are never fragmented). False when `out` is not a
/// reply with one question.
pub fn truncate_reply(out: &mut Vec<u8>) -> bool {
    if out.len() < HEADER_LEN || count(out, 4) != 1 {
        return false;
    }
    let mut at = HEADER_LEN;
    loop {
        match out.get(at) {
            Some(0) => break,
            Some(&len) if len < 0x40 => at += 1 + len as usize,
            _ => return false,
        }
    }
    let question_end = at + 1 + 4;
    if question_end > out.len() {
        return false;
    }
    let opt_at = out.len().saturating_sub(11);
    let opt = (count(out, 10) > 0
        && opt_at >= question_end
        && out[opt_at] == 0
        && count(out, opt_at + 1) == RType::OPT.0
        && count(out, opt_at + 9) == 0)
        .then(|| <[u8; 11]>::try_from(&out[opt_at..]).expect("11 bytes"));
    out.truncate(question_end);
    let flags = count(out, 2) | TC;
    set_count(out, 2, flags);
    out[6..12].fill(0);
    if let Some(opt) = opt {
        out.extend_from_slice(&opt);
        set_count(out, 10, 1);
    }
    true
}

/// Appends the SOA for a negative answer to the authority section. Its owner is a pointer
/// to where the zone apex starts inside the question name (`apex_at` bytes into it).
fn negative_soa(out: &mut Vec<u8>, snap: &Snapshot, apex_at: usize) {
    let pointer = 0xC000 | (HEADER_LEN + apex_at) as u16;
    out.extend_from_slice(&pointer.to_be_bytes());
    out.extend_from_slice(&RType::SOA.0.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&snap.zone.negative_ttl.to_be_bytes());
    out.extend_from_slice(&(snap.zone.soa_rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&snap.zone.soa_rdata);
    let ns = count(out, 8) + 1;
    set_count(out, 8, ns);
}

/// Appends the records of `wire` with their owner pointer rewritten to `owner_at`.
fn append_repointed(out: &mut Vec<u8>, wire: &[u8], owner_at: usize) -> u16 {
    let pointer = (0xC000 | owner_at as u16).to_be_bytes();
    let mut n = 0;
    for (start, _, end) in wire::records(wire) {
        let at = out.len();
        out.extend_from_slice(&wire[start..end]);
        out[at..at + 2].copy_from_slice(&pointer);
        n += 1;
    }
    n
}

/// Follows a CNAME chain inside our data: the CNAME record, then the target's records of
/// `qtype` (or its own CNAME), each owned by a pointer to the previous record's target.
/// Returns the number of answer records written.
fn chase(out: &mut Vec<u8>, snap: &Snapshot, cname_wire: &[u8], qtype: RType) -> u16 {
    let Some((start, rdata, end)) = wire::records(cname_wire).next() else {
        return 0;
    };
    let mut target_at = out.len() + (rdata - start);
    out.extend_from_slice(&cname_wire[start..end]);
    let mut answers = 1;
    for _ in 0..MAX_CHASE {
        if target_at > 0x3fff {
            break;
        }
        let target = out[target_at..].to_vec();
        let Some(entry) = snap.lookup(name_prefix(&target)) else {
            break;
        };
        if let Some(set) = entry.rrset(qtype) {
            answers += append_repointed(out, set.wire, target_at);
            break;
        }
        let Some(next) = entry.rrset(RType::CNAME) else {
            break;
        };
        let Some((s, r, e)) = wire::records(next.wire).next() else {
            break;
        };
        let at = out.len();
        answers += append_repointed(out, &next.wire[s..e], target_at);
        target_at = at + (r - s);
    }
    answers
}

/// The wire name at the start of `bytes` (up to and including its zero byte).
fn name_prefix(bytes: &[u8]) -> &[u8] {
    let mut at = 0;
    while let Some(&len) = bytes.get(at) {
        if len == 0 {
            return &bytes[..at + 1];
        }
        at += 1 + len as usize;
    }
    bytes
}

/// For SRV and MX answers: the A and AAAA records of each target we hold, in the
/// additional section, owned by pointers to the target names in the answers.
fn add_target_addresses(out: &mut Vec<u8>, snap: &Snapshot, first: usize, qtype: RType) {
    let skip = if qtype == RType::SRV { 6 } else { 2 };
    let answers_end = out.len();
    let mut additional = 0;
    let mut at = first;
    while at + 12 <= answers_end {
        let rdlen = count(out, at + 10) as usize;
        let target_at = at + 12 + skip;
        at += 12 + rdlen;
        if target_at > 0x3fff || target_at >= at {
            continue;
        }
        let target = name_prefix(&out[target_at..at]).to_vec();
        if let Some(entry) = snap.lookup(&target) {
            for t in [RType::A, RType::AAAA] {
                if let Some(set) = entry.rrset(t) {
                    additional += append_repointed(out, set.wire, target_at);
                }
            }
        }
    }
    let ar = count(out, 10) + additional;
    set_count(out, 10, ar);
}

/// Answers a query with `*` labels: every name of the same depth whose other labels match,
/// its records of `qtype` owned by the question name, duplicates removed. Returns how many
/// names matched and how many records were written; writes the header too.
fn wildcard(
    out: &mut Vec<u8>,
    packet: &[u8],
    q: &Query,
    snap: &Snapshot,
    qtype: RType,
    ctx: &AnswerContext,
) -> (usize, u16) {
    start(out, packet, q, rcode::NOERROR, true, ctx);
    let pattern: Vec<&[u8]> = labels(q.lower_name()).collect();
    let mut matched = 0;
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut answers = 0u16;
    let mut sets: Vec<&NameEntry> = Vec::new();
    for (key, entry) in snap.entries() {
        let mut it = labels(key);
        let same = pattern
            .iter()
            .all(|p| it.next().is_some_and(|l| *p == b"*" || *p == l))
            && it.next().is_none();
        if same {
            matched += 1;
            sets.push(entry);
        }
    }
    for entry in sets {
        let set = if qtype == RType::ANY {
            entry.rrset(RType::A).or_else(|| entry.rrset(RType::AAAA))
        } else {
            entry.rrset(qtype)
        };
        let Some(set) = set else { continue };
        for (s, r, e) in wire::records(set.wire) {
            let rdata = &set.wire[r..e];
            if seen.contains(&rdata) {
                continue;
            }
            seen.push(rdata);
            out.extend_from_slice(&set.wire[s..e]);
            answers = answers.saturating_add(1);
        }
    }
    set_count(out, 6, answers);
    (matched, answers)
}

/// The labels of a wire-format name, without length bytes.
fn labels(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = *name.get(at)? as usize;
        if len == 0 {
            return None;
        }
        let label = name.get(at + 1..at + 1 + len)?;
        at += 1 + len;
        Some(label)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn big_reply(edns: bool) -> Vec<u8> {
        let name = Name::from_ascii("big.docker.").unwrap();
        let mut m = Message::query();
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.metadata.id = 4242;
        m.metadata.message_type = MessageType::Response;
        m.metadata.authoritative = true;
        for i in 0..100u8 {
            m.answers.push(Record::from_rdata(
                name.clone(),
                60,
                RData::A(A::new(10, 2, 0, i)),
            ));
        }
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn truncate_reply_keeps_header_question_and_opt_with_tc_set() {
        for edns in [true, false] {
            let mut out = big_reply(edns);
            assert!(out.len() > 1500);
            assert!(truncate_reply(&mut out));
            let m = Message::from_vec(&out).unwrap();
            assert_eq!(m.metadata.id, 4242);
            assert!(m.metadata.truncation && m.metadata.authoritative);
            assert_eq!(m.queries.len(), 1);
            assert_eq!(m.queries[0].name().to_ascii(), "big.docker.");
            assert!(m.answers.is_empty() && m.authorities.is_empty());
            assert_eq!(
                m.edns.as_ref().map(|e| e.max_payload()),
                edns.then_some(4096),
                "edns {edns}"
            );
        }
    }

    #[test]
    fn truncate_reply_refuses_what_is_not_a_one_question_reply() {
        for bad in [
            &b"short"[..],
            &[0u8; 12][..],
            &[0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a'][..],
        ] {
            assert!(!truncate_reply(&mut bad.to_vec()), "{bad:?}");
        }
    }
}
