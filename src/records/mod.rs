//! records: the data model every component shares.
//!
//! Owns `Name`, `RData`, `Record` and `OwnerKey` (who asserted a record), the store
//! writer (`store`) and the immutable `Snapshot` it publishes (`snapshot`). It knows
//! nothing about sockets, Docker or gossip; sources send `Change`s in, readers load
//! snapshots out.

pub mod name;
pub mod snapshot;
pub mod store;
pub mod wire;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub use name::{Name, NameError};
pub use snapshot::Snapshot;
pub use store::{Change, SnapshotReader, StoreHandle};

/// A DNS record type, as its 16-bit code. Only the types Joyride serves or
/// recognises in queries have constants.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RType(pub u16);

impl RType {
    pub const A: RType = RType(1);
    pub const NS: RType = RType(2);
    pub const CNAME: RType = RType(5);
    pub const SOA: RType = RType(6);
    pub const PTR: RType = RType(12);
    pub const MX: RType = RType(15);
    pub const TXT: RType = RType(16);
    pub const AAAA: RType = RType(28);
    pub const SRV: RType = RType(33);
    pub const OPT: RType = RType(41);
    pub const IXFR: RType = RType(251);
    pub const AXFR: RType = RType(252);
    pub const ANY: RType = RType(255);

    /// The mnemonic, or `TYPEnnn` (RFC 3597) for codes without one here.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        let s = match self {
            RType::A => "A",
            RType::NS => "NS",
            RType::CNAME => "CNAME",
            RType::SOA => "SOA",
            RType::PTR => "PTR",
            RType::MX => "MX",
            RType::TXT => "TXT",
            RType::AAAA => "AAAA",
            RType::SRV => "SRV",
            RType::OPT => "OPT",
            RType::IXFR => "IXFR",
            RType::AXFR => "AXFR",
            RType::ANY => "ANY",
            RType(n) => return format!("TYPE{n}").into(),
        };
        s.into()
    }
}

impl fmt::Display for RType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The data of one record. Names inside are already validated and lowercased.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Name),
    /// One TXT string; longer than 255 bytes is split into several character-strings on the wire.
    Txt(Arc<str>),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: Name,
    },
    Mx {
        preference: u16,
        exchange: Name,
    },
    Ptr(Name),
}

/// Why a static record's type or value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RDataError {
    #[error("unsupported record type {0:?} (expected A, AAAA, CNAME, TXT, SRV, MX or PTR)")]
    UnsupportedType(String),
    #[error("{rtype} value {value:?} is not valid: {reason}")]
    BadValue {
        rtype: &'static str,
        value: String,
        reason: String,
    },
}

impl RData {
    pub fn rtype(&self) -> RType {
        match self {
            RData::A(_) => RType::A,
            RData::Aaaa(_) => RType::AAAA,
            RData::Cname(_) => RType::CNAME,
            RData::Txt(_) => RType::TXT,
            RData::Srv { .. } => RType::SRV,
            RData::Mx { .. } => RType::MX,
            RData::Ptr(_) => RType::PTR,
        }
    }

    /// An address record for `ip`, A or AAAA by its family.
    pub fn address(ip: IpAddr) -> RData {
        match ip {
            IpAddr::V4(v4) => RData::A(v4),
            IpAddr::V6(v6) => RData::Aaaa(v6),
        }
    }

    /// Parses a value in zone-file presentation order: `A 10.0.0.1`, `SRV 0 5 80 web.docker`,
    /// `MX 10 mail.example.com`, `TXT any text`.
    pub fn parse(rtype: &str, value: &str) -> Result<RData, RDataError> {
        let value = value.trim();
        let bad = |rtype: &'static str, reason: &dyn fmt::Display| RDataError::BadValue {
            rtype,
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let name = |rtype: &'static str, s: &str| Name::parse(s).map_err(|e| bad(rtype, &e));
        let num = |rtype: &'static str, what: &str, s: Option<&str>| -> Result<u16, RDataError> {
            let s = s.ok_or_else(|| bad(rtype, &format!("missing {what}")))?;
            s.parse::<u16>().map_err(|_| {
                bad(
                    rtype,
                    &format!("{what} {s:?} is not a number from 0 to 65535"),
                )
            })
        };
        match rtype.to_ascii_uppercase().as_str() {
            "A" => value.parse().map(RData::A).map_err(|e| bad("A", &e)),
            "AAAA" => value.parse().map(RData::Aaaa).map_err(|e| bad("AAAA", &e)),
            "CNAME" => Ok(RData::Cname(name("CNAME", value)?)),
            "PTR" => Ok(RData::Ptr(name("PTR", value)?)),
            "TXT" => {
                if value.len() > 4000 {
                    return Err(bad("TXT", &"longer than 4000 bytes"));
                }
                Ok(RData::Txt(value.into()))
            }
            "MX" => {
                let mut parts = value.split_whitespace();
                let preference = num("MX", "preference", parts.next())?;
                let exchange = name("MX", parts.next().unwrap_or(""))?;
                if parts.next().is_some() {
                    return Err(bad("MX", &"expected `PREFERENCE EXCHANGE`"));
                }
                Ok(RData::Mx {
                    preference,
                    exchange,
                })
            }
            "SRV" => {
                let mut parts = value.split_whitespace();
                let priority = num("SRV", "priority", parts.next())?;
                let weight = num("SRV", "weight", parts.next())?;
                let port = num("SRV", "port", parts.next())?;
                let target = name("SRV", parts.next().unwrap_or(""))?;
                if parts.next().is_some() {
                    return Err(bad("SRV", &"expected `PRIORITY WEIGHT PORT TARGET`"));
                }
                Ok(RData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                })
            }
            _ => Err(RDataError::UnsupportedType(rtype.to_string())),
        }
    }
}

impl fmt::Display for RData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RData::A(ip) => write!(f, "{ip}"),
            RData::Aaaa(ip) => write!(f, "{ip}"),
            RData::Cname(n) | RData::Ptr(n) => write!(f, "{n}"),
            RData::Txt(t) => write!(f, "{t}"),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => write!(f, "{priority} {weight} {port} {target}"),
            RData::Mx {
                preference,
                exchange,
            } => write!(f, "{preference} {exchange}"),
        }
    }
}

/// One record as a source asserts it. `ttl: None` means the configured default.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Record {
    pub name: Name,
    pub ttl: Option<u32>,
    pub data: RData,
}

impl Record {
    pub fn new(name: Name, data: RData) -> Record {
        Record {
            name,
            ttl: None,
            data,
        }
    }
}

/// Which kind of source asserted a record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// `[[records]]` in the config file.
    Static,
    /// A file in `--hosts-dir`.
    Hosts,
    /// A container of the Docker engine.
    Docker,
    /// Derived by Joyride itself (the zone apex: SOA, NS and the name server's address).
    Zone,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Static => "static",
            SourceKind::Hosts => "hosts",
            SourceKind::Docker => "docker",
            SourceKind::Zone => "zone",
        }
    }
}

/// Who asserted a set of records: a node (this one, or a peer), a source kind, and the
/// owner within that source (a file path, a container id, `config`). Every record in the
/// store belongs to exactly one owner; an owner's records are replaced as a whole.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct OwnerKey {
    pub node: Arc<str>,
    pub source: SourceKind,
    pub owner: Arc<str>,
}

impl OwnerKey {
    pub fn new(node: &Arc<str>, source: SourceKind, owner: impl Into<Arc<str>>) -> OwnerKey {
        OwnerKey {
            node: node.clone(),
            source,
            owner: owner.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_static_values() {
        let table: &[(&str, &str, Result<&str, &str>)] = &[
            ("A", "10.0.0.1", Ok("10.0.0.1")),
            ("a", " 10.0.0.1 ", Ok("10.0.0.1")),
            ("AAAA", "fd00::1", Ok("fd00::1")),
            ("CNAME", "Web.Docker.", Ok("web.docker")),
            ("PTR", "web.docker", Ok("web.docker")),
            ("TXT", "hello world", Ok("hello world")),
            ("MX", "10 mail.example.com", Ok("10 mail.example.com")),
            ("SRV", "0 5 80 web.docker", Ok("0 5 80 web.docker")),
            ("A", "10.0.0", Err("A value")),
            ("AAAA", "10.0.0.1", Err("AAAA value")),
            ("MX", "x mail", Err("preference")),
            ("MX", "10", Err("MX value")),
            ("SRV", "0 5 70000 web", Err("port")),
            ("SRV", "0 5 80 web extra", Err("expected")),
            ("CNAME", "bad name!", Err("CNAME value")),
            ("HINFO", "x", Err("unsupported")),
        ];
        for (t, v, want) in table {
            let got = RData::parse(t, v);
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(&g.to_string(), w, "{t} {v}"),
                (Err(w), Err(e)) => assert!(e.to_string().contains(w), "{t} {v}: {e}"),
                (w, g) => panic!("{t} {v}: want {w:?}, got {g:?}"),
            }
        }
    }
}
