//! Domain names as the store keeps them: validated, lowercased, without the trailing dot.

use std::fmt;
use std::net::IpAddr;

use smol_str::SmolStr;

/// A validated, lowercase domain name without the trailing dot (`web.docker`); the root is
/// the empty string. Cheap to clone: up to 23 bytes (most container and host names) are
/// held inline, without an allocation of their own, longer ones in a shared `Arc`. A
/// million hosts-file records hold a million of these.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(SmolStr);

/// Longest name in presentation form (without the trailing dot).
const MAX_LEN: usize = 253;

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("empty label in {0:?}")]
    EmptyLabel(String),
    #[error("label {0:?} is longer than 63 bytes")]
    LabelTooLong(String),
    #[error("name is longer than 253 characters")]
    TooLong,
    #[error("character {ch:?} is not allowed in {name:?} (letters, digits, '-' and '_' only)")]
    BadChar { ch: char, name: String },
}

impl Name {
    /// The root name (`.`).
    pub fn root() -> Name {
        Name(SmolStr::default())
    }

    /// Parses `Web.Docker` or `web.docker.`: lowercases it and checks every label.
    pub fn parse(s: &str) -> Result<Name, NameError> {
        let s = s.trim();
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(NameError::TooLong);
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel(s.to_string()));
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong(label.to_string()));
            }
            if let Some(ch) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(NameError::BadChar {
                    ch,
                    name: s.to_string(),
                });
            }
        }
        if !s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Ok(Name(SmolStr::new(s)));
        }
        // Lowercased on the stack: every byte is ASCII (checked above).
        let mut buf = [0u8; MAX_LEN];
        let lower = &mut buf[..s.len()];
        lower.copy_from_slice(s.as_bytes());
        lower.make_ascii_lowercase();
        Ok(Name(SmolStr::new(
            std::str::from_utf8(lower).expect("ASCII is UTF-8"),
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Labels from the leftmost.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.').filter(|l| !l.is_empty())
    }

    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// True when `self` equals `zone` or lies below it.
    pub fn is_within(&self, zone: &Name) -> bool {
        if zone.is_root() || self == zone {
            return true;
        }
        self.0.len() > zone.0.len()
            && self.0.ends_with(&*zone.0)
            && self.0.as_bytes()[self.0.len() - zone.0.len() - 1] == b'.'
    }

    /// The name without its leftmost label; `None` for the root.
    pub fn parent(&self) -> Option<Name> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.find('.') {
            Some(i) => Name(SmolStr::new(&self.0[i + 1..])),
            None => Name::root(),
        })
    }

    /// `label.self`, validated.
    pub fn child(&self, label: &str) -> Result<Name, NameError> {
        if self.is_root() {
            return Name::parse(label);
        }
        // Joined on the stack when it fits (hosts files qualify every dotless name).
        let mut buf = [0u8; 2 * MAX_LEN];
        let len = label.len() + 1 + self.0.len();
        if len > buf.len() {
            return Name::parse(&format!("{label}.{}", self.0));
        }
        buf[..label.len()].copy_from_slice(label.as_bytes());
        buf[label.len()] = b'.';
        buf[label.len() + 1..len].copy_from_slice(self.0.as_bytes());
        Name::parse(std::str::from_utf8(&buf[..len]).expect("joined UTF-8 strings"))
    }

    /// Qualifies a name written without dots (`web`) with `zone`; a name with dots is taken as
    /// it stands, as dnsmasq's `expand-hosts` does.
    pub fn qualify(s: &str, zone: &Name) -> Result<Name, NameError> {
        let trimmed = s.trim();
        if !trimmed.trim_end_matches('.').contains('.') && !trimmed.ends_with('.') {
            zone.child(trimmed)
        } else {
            Name::parse(trimmed)
        }
    }

    /// The reverse-lookup name of an address: `4.3.2.1.in-addr.arpa` or the nibble form
    /// under `ip6.arpa`.
    pub fn reverse(ip: IpAddr) -> Name {
        let s = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
            }
            IpAddr::V6(v6) => {
                let mut s = String::with_capacity(72);
                for byte in v6.octets().iter().rev() {
                    for nibble in [byte & 0x0f, byte >> 4] {
                        s.push(char::from_digit(nibble as u32, 16).unwrap_or('0'));
                        s.push('.');
                    }
                }
                s.push_str("ip6.arpa");
                s
            }
        };
        Name(SmolStr::new(s))
    }

    /// Appends the name in DNS wire format (lowercase labels, closing zero byte).
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        out.reserve(self.0.len() + 2);
        if !self.is_root() {
            for label in self.0.as_bytes().split(|&b| b == b'.') {
                out.push(label.len() as u8);
                out.extend_from_slice(label);
            }
        }
        out.push(0);
    }

    pub fn to_wire(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.0.len() + 2);
        self.write_wire(&mut v);
        v
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str(".")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({})", self)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_and_rejects() {
        assert_eq!(Name::parse("Web.Docker.").unwrap().as_str(), "web.docker");
        assert_eq!(
            Name::parse("_80._tcp.web").unwrap().as_str(),
            "_80._tcp.web"
        );
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse("."), Err(NameError::Empty));
        assert!(matches!(Name::parse("a..b"), Err(NameError::EmptyLabel(_))));
        assert!(matches!(
            Name::parse(&"x".repeat(64)),
            Err(NameError::LabelTooLong(_))
        ));
        assert!(matches!(
            Name::parse(&"a.".repeat(130)),
            Err(NameError::TooLong)
        ));
        assert!(matches!(
            Name::parse("a b"),
            Err(NameError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            Name::parse("*.docker"),
            Err(NameError::BadChar { ch: '*', .. })
        ));
    }

    #[test]
    fn within_parent_child_qualify() {
        let zone = Name::parse("docker").unwrap();
        assert!(Name::parse("web.docker").unwrap().is_within(&zone));
        assert!(zone.is_within(&zone));
        assert!(!Name::parse("webdocker").unwrap().is_within(&zone));
        assert!(!Name::parse("docker.com").unwrap().is_within(&zone));
        assert_eq!(
            Name::parse("a.b.docker")
                .unwrap()
                .parent()
                .unwrap()
                .as_str(),
            "b.docker"
        );
        assert!(Name::parse("docker").unwrap().parent().unwrap().is_root());
        assert_eq!(Name::qualify("web", &zone).unwrap().as_str(), "web.docker");
        assert_eq!(Name::qualify("web.", &zone).unwrap().as_str(), "web");
        assert_eq!(
            Name::qualify("app.example.com", &zone).unwrap().as_str(),
            "app.example.com"
        );
    }

    #[test]
    fn reverse_names_and_wire() {
        assert_eq!(
            Name::reverse("10.1.2.3".parse().unwrap()).as_str(),
            "3.2.1.10.in-addr.arpa"
        );
        let v6 = Name::reverse("2001:db8::1".parse().unwrap());
        assert!(v6.as_str().starts_with("1.0.0.0.0.0.0.0."));
        assert!(v6.as_str().ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"));
        assert_eq!(v6.label_count(), 34);
        assert_eq!(
            Name::parse("Web.docker").unwrap().to_wire(),
            b"\x03web\x06docker\x00"
        );
        assert_eq!(Name::root().to_wire(), b"\x00");
    }
}
