//! wire: what travels between nodes, inside a sealed datagram (see `crypto`).
//!
//! Serialized with postcard (compact, serde-driven). Record sets are cut into parts that
//! fit one datagram; a part is self-describing (node, version, index, count), so parts can
//! be relayed by any node exactly as the origin cut them.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::records::{Name, RData, Record, SourceKind};

/// Largest datagram we send (fits a 1500-byte MTU with room for IP/UDP and tunnels).
pub const MAX_DATAGRAM: usize = 1400;
/// Budget for the records in one part, leaving room for the envelope and the seal.
pub const PART_BUDGET: usize = 1000;
/// Most parts one node's record set may have (about 1 MB of records).
pub const MAX_PARTS: u16 = 1024;

/// A member's identity as the failure detector knows it. `name` is the member's address in
/// foca's sense (one live identity per name); `boot` is the process start time in ms, so a
/// restarted node is a new identity that wins over the old one; `renewal` counts the times
/// this process came back after being declared dead (a healed partition).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub boot: u64,
    pub renewal: u32,
}

impl foca::Identity for NodeId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(NodeId {
            renewal: self.renewal.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.boot, self.renewal) > (adversary.boot, adversary.renewal)
    }
}

/// One datagram's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Packet {
    /// `--cluster-id`: datagrams of other clusters are ignored (and, with a key, fail to
    /// authenticate, as the id is associated data).
    pub cluster: String,
    /// The sender's node name.
    pub from: String,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    /// A foca (SWIM) message.
    Swim(Vec<u8>),
    /// Anti-entropy: the record-set versions the sender holds. `complete` is false when the
    /// list was cut into pages (large clusters); then absence means nothing.
    Digest {
        entries: Vec<(String, u64)>,
        complete: bool,
    },
    /// Asks for the full record sets of these nodes.
    Request { nodes: Vec<String> },
    /// One part of one node's record set.
    Records(RecordsPart),
    /// "Here I am": sent to seeds and the multicast group; the receiver introduces itself to
    /// the sender through the failure detector.
    Announce { id: NodeId },
    /// The sender is leaving (SIGTERM): withdraw its records now.
    Leave { id: NodeId },
}

/// Part `part` of `parts` of `node`'s record set at `version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordsPart {
    pub node: String,
    pub version: u64,
    pub part: u16,
    pub parts: u16,
    /// The origin's gossip address, so a node that holds a set of a member it has not met
    /// yet can introduce itself (membership then catches up with the records).
    pub origin: Option<SocketAddr>,
    pub owners: Vec<WireOwner>,
}

/// Records of one owner (or a slice of them, when an owner spans parts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireOwner {
    pub source: WireSource,
    pub owner: String,
    pub records: Vec<WireRecord>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireSource {
    Static,
    Hosts,
    Docker,
}

impl WireSource {
    pub fn from_kind(k: SourceKind) -> Option<WireSource> {
        match k {
            SourceKind::Static => Some(WireSource::Static),
            SourceKind::Hosts => Some(WireSource::Hosts),
            SourceKind::Docker => Some(WireSource::Docker),
            SourceKind::Zone => None,
        }
    }
    pub fn kind(self) -> SourceKind {
        match self {
            WireSource::Static => SourceKind::Static,
            WireSource::Hosts => SourceKind::Hosts,
            WireSource::Docker => SourceKind::Docker,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireRecord {
    pub name: String,
    pub ttl: Option<u32>,
    pub data: WireData,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireData {
    A([u8; 4]),
    Aaaa([u8; 16]),
    Cname(String),
    Txt(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Mx {
        preference: u16,
        exchange: String,
    },
    Ptr(String),
}

impl WireRecord {
    pub fn from_record(r: &Record) -> WireRecord {
        let data = match &r.data {
            RData::A(ip) => WireData::A(ip.octets()),
            RData::Aaaa(ip) => WireData::Aaaa(ip.octets()),
            RData::Cname(n) => WireData::Cname(n.as_str().to_string()),
            RData::Txt(t) => WireData::Txt(t.to_string()),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => WireData::Srv {
                priority: *priority,
                weight: *weight,
                port: *port,
                target: target.as_str().to_string(),
            },
            RData::Mx {
                preference,
                exchange,
            } => WireData::Mx {
                preference: *preference,
                exchange: exchange.as_str().to_string(),
            },
            RData::Ptr(n) => WireData::Ptr(n.as_str().to_string()),
        };
        WireRecord {
            name: r.name.as_str().to_string(),
            ttl: r.ttl,
            data,
        }
    }

    /// The record, if every name in it is valid (a peer is authenticated, not infallible).
    pub fn to_record(&self) -> Option<Record> {
        let name = |s: &str| Name::parse(s).ok();
        let data = match &self.data {
            WireData::A(o) => RData::A(Ipv4Addr::from(*o)),
            WireData::Aaaa(o) => RData::Aaaa(Ipv6Addr::from(*o)),
            WireData::Cname(n) => RData::Cname(name(n)?),
            WireData::Txt(t) => RData::Txt(Arc::from(t.as_str())),
            WireData::Srv {
                priority,
                weight,
                port,
                target,
            } => RData::Srv {
                priority: *priority,
                weight: *weight,
                port: *port,
                target: name(target)?,
            },
            WireData::Mx {
                preference,
                exchange,
            } => RData::Mx {
                preference: *preference,
                exchange: name(exchange)?,
            },
            WireData::Ptr(n) => RData::Ptr(name(n)?),
        };
        Some(Record {
            name: name(&self.name)?,
            ttl: self.ttl,
            data,
        })
    }
}

pub fn encode(p: &Packet) -> Vec<u8> {
    postcard::to_allocvec(p).expect("postcard encoding of owned data cannot fail")
}

pub fn decode(bytes: &[u8]) -> Result<Packet, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_names_refused() {
        let recs = [
            ("A", "10.0.0.1"),
            ("AAAA", "fd00::1"),
            ("CNAME", "web.docker"),
            ("TXT", "hello world"),
            ("SRV", "0 5 80 web.docker"),
            ("MX", "10 mail.docker"),
            ("PTR", "web.docker"),
        ];
        for (t, v) in recs {
            let r = Record {
                name: Name::parse("x.docker").unwrap(),
                ttl: Some(7),
                data: RData::parse(t, v).unwrap(),
            };
            let w = WireRecord::from_record(&r);
            let p = Packet {
                cluster: "c".into(),
                from: "n".into(),
                body: Body::Records(RecordsPart {
                    node: "n".into(),
                    version: 1,
                    part: 0,
                    parts: 1,
                    origin: Some("10.0.0.1:7946".parse().unwrap()),
                    owners: vec![WireOwner {
                        source: WireSource::Hosts,
                        owner: "/f".into(),
                        records: vec![w.clone()],
                    }],
                }),
            };
            assert_eq!(decode(&encode(&p)).unwrap(), p);
            assert_eq!(w.to_record().unwrap(), r);
        }
        let bad = WireRecord {
            name: "bad name!".into(),
            ttl: None,
            data: WireData::A([1, 2, 3, 4]),
        };
        assert!(bad.to_record().is_none());
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[]).is_err());
    }
}
