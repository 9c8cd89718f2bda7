//! Parsing of incoming queries: the header, the one question and the EDNS OPT record.
//!
//! Hand-written because it runs for every packet and must not allocate; the tests check it
//! against hickory-proto's encoder as an independent implementation.

/// Header flag bits.
pub const QR: u16 = 0x8000;
pub const AA: u16 = 0x0400;
pub const TC: u16 = 0x0200;
pub const RD: u16 = 0x0100;
pub const RA: u16 = 0x0080;
pub const CD: u16 = 0x0010;
pub const OPCODE_MASK: u16 = 0x7800;

pub const HEADER_LEN: usize = 12;
pub const CLASS_IN: u16 = 1;
pub const CLASS_CH: u16 = 3;
pub const CLASS_HS: u16 = 4;
const MAX_NAME: usize = 255;

/// The EDNS(0) OPT record of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The client's UDP payload size (values under 512 count as 512).
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A parsed query. Borrows the packet; the lowercase name is copied into a fixed buffer.
pub struct Query<'a> {
    pub id: u16,
    pub flags: u16,
    /// The question name as sent (case preserved), closing zero included.
    pub qname: &'a [u8],
    lower: [u8; MAX_NAME],
    lower_len: usize,
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past the question section: `packet[12..question_end]` is the question.
    pub question_end: usize,
    pub edns: Option<Edns>,
}

impl Query<'_> {
    /// The question name in lowercase wire format: the key of a snapshot lookup.
    #[inline]
    pub fn lower_name(&self) -> &[u8] {
        &self.lower[..self.lower_len]
    }

    pub fn opcode(&self) -> u16 {
        (self.flags & OPCODE_MASK) >> 11
    }
}

/// Why a packet is not an answerable query.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Malformed {
    /// Shorter than a header: nothing to reply to, dropped.
    TooShort,
    /// QR is set: a response, never answered (reflection loops).
    Response,
    /// The opcode is not QUERY: NOTIMP.
    NotQuery,
    /// The header parses but the body does not, or there is not exactly one question: FORMERR.
    FormErr(&'static str),
}

/// Parses a query packet.
pub fn parse(packet: &[u8]) -> Result<Query<'_>, Malformed> {
    if packet.len() < HEADER_LEN {
        return Err(Malformed::TooShort);
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & QR != 0 {
        return Err(Malformed::Response);
    }
    if flags & OPCODE_MASK != 0 {
        return Err(Malformed::NotQuery);
    }
    let count = |i: usize| u16::from_be_bytes([packet[i], packet[i + 1]]);
    let (qdcount, ancount, nscount, arcount) = (count(4), count(6), count(8), count(10));
    if qdcount != 1 {
        return Err(Malformed::FormErr("not exactly one question"));
    }
    let mut lower = [0u8; MAX_NAME];
    let mut at = HEADER_LEN;
    loop {
        let len = *packet
            .get(at)
            .ok_or(Malformed::FormErr("name runs past the end"))? as usize;
        if len == 0 {
            if at + 1 - HEADER_LEN > MAX_NAME {
                return Err(Malformed::FormErr("name longer than 255 bytes"));
            }
            lower[at - HEADER_LEN] = 0;
            at += 1;
            break;
        }
        if len > 63 {
            return Err(Malformed::FormErr(
                "compression or bad label type in question",
            ));
        }
        let end = at + 1 + len;
        if end - HEADER_LEN >= MAX_NAME {
            return Err(Malformed::FormErr("name longer than 255 bytes"));
        }
        let label = packet
            .get(at + 1..end)
            .ok_or(Malformed::FormErr("label runs past the end"))?;
        lower[at - HEADER_LEN] = len as u8;
        for (dst, src) in lower[at + 1 - HEADER_LEN..end - HEADER_LEN]
            .iter_mut()
            .zip(label)
        {
            *dst = src.to_ascii_lowercase();
        }
        at = end;
    }
    let lower_len = at - HEADER_LEN;
    let qname = &packet[HEADER_LEN..at];
    let fixed = packet
        .get(at..at + 4)
        .ok_or(Malformed::FormErr("question truncated"))?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    let question_end = at + 4;

    let mut edns = None;
    if ancount != 0 || nscount != 0 || arcount != 0 {
        let mut at = question_end;
        for _ in 0..(ancount as usize + nscount as usize) {
            at = skip_record(packet, at)?.1;
        }
        for _ in 0..arcount {
            let (rr, next) = skip_record(packet, at)?;
            if rr.rtype == 41 {
                if edns.is_some() {
                    return Err(Malformed::FormErr("more than one OPT record"));
                }
                if !rr.root_owner {
                    return Err(Malformed::FormErr("OPT record not owned by the root"));
                }
                edns = Some(Edns {
                    udp_size: rr.class.max(512),
                    version: (rr.ttl >> 16) as u8,
                    dnssec_ok: rr.ttl & 0x8000 != 0,
                });
            }
            at = next;
        }
    }
    Ok(Query {
        id,
        flags,
        qname,
        lower,
        lower_len,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

struct RrHead {
    rtype: u16,
    class: u16,
    ttl: u32,
    root_owner: bool,
}

/// Skips one resource record starting at `at`; returns its fixed fields and the next offset.
fn skip_record(packet: &[u8], mut at: usize) -> Result<(RrHead, usize), Malformed> {
    let start = at;
    // owner name: labels, ending in a zero byte or a compression pointer
    loop {
        let len = *packet
            .get(at)
            .ok_or(Malformed::FormErr("record runs past the end"))?;
        match len {
            0 => {
                at += 1;
                break;
            }
            1..=63 => at += 1 + len as usize,
            0xC0..=0xFF => {
                at += 2;
                break;
            }
            _ => return Err(Malformed::FormErr("bad label type")),
        }
        if at - start > MAX_NAME {
            return Err(Malformed::FormErr("owner name longer than 255 bytes"));
        }
    }
    let root_owner = at - start == 1;
    let f = packet
        .get(at..at + 10)
        .ok_or(Malformed::FormErr("record truncated"))?;
    let rtype = u16::from_be_bytes([f[0], f[1]]);
    let class = u16::from_be_bytes([f[2], f[3]]);
    let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
    let rdlen = u16::from_be_bytes([f[8], f[9]]) as usize;
    let end = at + 10 + rdlen;
    if end > packet.len() {
        return Err(Malformed::FormErr("record data runs past the end"));
    }
    Ok((
        RrHead {
            rtype,
            class,
            ttl,
            root_owner,
        },
        end,
    ))
}

pub use crate::records::wire::zone_offset;

/// True when some label of the (lowercase wire) name is exactly `*`.
#[inline]
pub fn has_wildcard_label(name: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&len) = name.get(at) {
        if len == 0 {
            return false;
        }
        if len == 1 && name.get(at + 1) == Some(&b'*') {
            return true;
        }
        at += 1 + len as usize;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p
    }

    #[test]
    fn parses_question_and_lowercases() {
        let p = query("Web.Docker", 1);
        let q = parse(&p).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.qname, b"\x03Web\x06Docker\x00");
        assert_eq!(q.lower_name(), b"\x03web\x06docker\x00");
        assert_eq!((q.qtype, q.qclass), (1, 1));
        assert_eq!(q.question_end, p.len());
        assert!(q.edns.is_none());
    }

    #[test]
    fn parses_edns() {
        let mut p = query("a", 1);
        p[11] = 1;
        p.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0]);
        let q = parse(&p).unwrap();
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 4096,
                version: 0,
                dnssec_ok: true
            })
        );
    }

    #[test]
    fn zone_offsets() {
        let apex = b"\x06docker\x00";
        assert_eq!(zone_offset(b"\x03web\x06docker\x00", apex), Some(4));
        assert_eq!(zone_offset(b"\x06docker\x00", apex), Some(0));
        assert_eq!(zone_offset(b"\x09webdocker\x00", apex), None);
        assert_eq!(zone_offset(b"\x06docker\x03com\x00", apex), None);
        assert_eq!(zone_offset(b"\x03web\x06docker\x00", b"\x00"), Some(11));
        assert_eq!(zone_offset(b"\x00", apex), None);
        assert!(has_wildcard_label(b"\x01*\x06docker\x00"));
        assert!(has_wildcard_label(b"\x03web\x01*\x06docker\x00"));
        assert!(!has_wildcard_label(b"\x02**\x06docker\x00"));
    }
}
