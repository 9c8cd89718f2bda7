//! The JSON API: `/health`, `/status`, `/dns/records`, `/dns/cluster` and `/console/...`. Field names are stable and documented in
//! `openapi.yaml`; the functions building the bodies are plain functions of a snapshot and
//! the status board, shared with the page and the metrics.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::{rfc3339, WebState};
use crate::records::{RData, RType, Snapshot, SourceKind};
use crate::status::{ClusterMember, ComponentStatus};

/// Longest query string accepted; longer is a 400.
pub const MAX_QUERY_LEN: usize = 1024;
/// Longest single filter value (a name is at most 253 characters).
pub const MAX_FILTER_LEN: usize = 253;

/// A JSON error body: `{"status":"error","error":message}`.
pub fn error(code: StatusCode, message: String) -> Response {
    (code, Json(json!({ "status": "error", "error": message }))).into_response()
}

fn bad_request(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// Parses a query string into its parameters, refusing what is oversized, malformed,
/// repeated or not in `allowed`.
pub fn parse_query(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<BTreeMap<String, String>, String> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY_LEN {
        return Err(format!(
            "query string is {} bytes; at most {MAX_QUERY_LEN} are accepted",
            raw.len()
        ));
    }
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit())
        {
            return Err("malformed percent-encoding in the query string".into());
        }
    }
    let mut out = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        if k.contains('\u{FFFD}') || v.contains('\u{FFFD}') {
            return Err("the query string is not valid UTF-8".into());
        }
        if k.is_empty() && v.is_empty() {
            continue;
        }
        if !allowed.contains(&k.as_ref()) {
            return Err(if allowed.is_empty() {
                format!("unknown query parameter {k:?}: this endpoint takes none")
            } else {
                format!(
                    "unknown query parameter {k:?}: expected {}",
                    allowed.join(", ")
                )
            });
        }
        if v.len() > MAX_FILTER_LEN {
            return Err(format!(
                "query parameter {k:?} is longer than {MAX_FILTER_LEN} characters"
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("query parameter {k:?} is given more than once"));
        }
    }
    Ok(out)
}

/// One record as `/dns/records` lists it (the earlier Joyride's fields, extended).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RecordRow {
    pub hostname: String,
    /// The value: an address, or a target name (CNAME, PTR, SRV, MX), or TXT text.
    pub ip_address: String,
    pub ttl: u32,
    #[serde(rename = "type")]
    pub rtype: String,
    pub source: &'static str,
    /// A container id, a file path, `config` or `zone`.
    pub owner: String,
    pub node: String,
}

/// Every record its owners asserted (derived PTRs excluded), sorted by name, type, value.
pub fn record_rows(snap: &Snapshot) -> Vec<RecordRow> {
    let default_ttl = snap.zone.default_ttl;
    let mut rows: Vec<RecordRow> = snap
        .records()
        .map(|(owner, r)| RecordRow {
            hostname: r.name.as_str().to_string(),
            ip_address: r.data.to_string(),
            ttl: r.ttl.unwrap_or(default_ttl),
            rtype: r.data.rtype().to_string(),
            source: owner.source.as_str(),
            owner: owner.owner.to_string(),
            node: owner.node.to_string(),
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.hostname, &a.rtype, &a.ip_address, &a.node, &a.owner).cmp(&(
            &b.hostname,
            &b.rtype,
            &b.ip_address,
            &b.node,
            &b.owner,
        ))
    });
    rows
}

/// The filters of `/dns/records` (and of the page).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RecordFilter {
    /// Substring of the name, case-insensitive.
    pub name: Option<String>,
    pub rtype: Option<String>,
    pub source: Option<String>,
    pub node: Option<String>,
    /// Words that must each be a substring of some field (the page's filter box),
    /// case-insensitive.
    pub q: Option<String>,
}

pub const RECORD_PARAMS: [&str; 5] = ["name", "type", "source", "node", "q"];
const FILTER_TYPES: [RType; 7] = [
    RType::A,
    RType::AAAA,
    RType::CNAME,
    RType::TXT,
    RType::SRV,
    RType::MX,
    RType::PTR,
];
const SOURCES: [SourceKind; 4] = [
    SourceKind::Static,
    SourceKind::Hosts,
    SourceKind::Docker,
    SourceKind::Zone,
];

impl RecordFilter {
    pub fn from_params(p: &BTreeMap<String, String>) -> Result<RecordFilter, String> {
        let nonempty = |k: &str| p.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let rtype = match nonempty("type") {
            Some(t) => {
                let t = t.to_ascii_uppercase();
                if !FILTER_TYPES.iter().any(|k| k.name() == t) {
                    return Err(format!(
                        "invalid value {t:?} for type: expected one of {}",
                        FILTER_TYPES.map(|t| t.name().to_string()).join(", ")
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let source = match nonempty("source") {
            Some(s) => {
                let s = s.to_ascii_lowercase();
                if !SOURCES.iter().any(|k| k.as_str() == s) {
                    return Err(format!(
                        "invalid value {s:?} for source: expected one of {}",
                        SOURCES.map(|s| s.as_str()).join(", ")
                    ));
                }
                Some(s)
            }
            None => None,
        };
        Ok(RecordFilter {
            name: nonempty("name").map(str::to_lowercase),
            rtype,
            source,
            node: nonempty("node").map(str::to_string),
            q: nonempty("q").map(str::to_lowercase),
        })
    }

    pub fn matches(&self, r: &RecordRow) -> bool {
        self.name
            .as_ref()
            .is_none_or(|n| r.hostname.contains(n.trim_end_matches('.')))
            && self.rtype.as_ref().is_none_or(|t| r.rtype == *t)
            && self.source.as_ref().is_none_or(|s| r.source == s)
            && self.node.as_ref().is_none_or(|n| r.node == *n)
            && self.q.as_ref().is_none_or(|q| {
                let text = search_text(r);
                q.split_whitespace().all(|term| text.contains(term))
            })
    }
}

/// Every field of a row, lowercase, space-separated: what the filter box searches (the
/// page's script searches the same text, from the rows' `data-search`).
pub fn search_text(r: &RecordRow) -> String {
    [
        r.hostname.as_str(),
        r.rtype.as_str(),
        r.ip_address.as_str(),
        r.source,
        r.owner.as_str(),
        r.node.as_str(),
    ]
    .join(" ")
    .to_lowercase()
}

/// The body of `/dns/records`.
pub fn records_body(snap: &Snapshot, filter: &RecordFilter) -> Value {
    let rows: Vec<RecordRow> = record_rows(snap)
        .into_iter()
        .filter(|r| filter.matches(r))
        .collect();
    json!({
        "status": "success",
        "total_records": rows.len(),
        "generation": snap.generation,
        "records": rows,
    })
}

/// Record counts by source (every source listed, zeros included).
pub fn counts_by_source(snap: &Snapshot) -> BTreeMap<&'static str, usize> {
    let mut out: BTreeMap<&'static str, usize> = SOURCES.iter().map(|s| (s.as_str(), 0)).collect();
    for (owner, recs) in snap.owners.iter() {
        *out.entry(owner.source.as_str()).or_default() += recs.len();
    }
    out
}

/// Components whose failure makes the daemon unhealthy, and are failing now.
pub fn failing(components: &BTreeMap<String, ComponentStatus>) -> Vec<Value> {
    components
        .iter()
        .filter(|(_, c)| c.critical && !c.healthy)
        .map(|(name, c)| json!({ "component": name, "state": c.state }))
        .collect()
}

/// The body of `/health` and whether it is healthy.
pub fn health_body(state: &WebState) -> (bool, Value) {
    let components = state.shared.status.components();
    let failing = failing(&components);
    let healthy = failing.is_empty() && components.contains_key("dns");
    let mut body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "service": "joyride",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": rfc3339(SystemTime::now()),
    });
    if !healthy {
        body["failing"] = Value::Array(failing);
    }
    (healthy, body)
}

/// The body of `/status`.
pub fn status_body(state: &WebState, snap: &Snapshot) -> Value {
    let now = SystemTime::now();
    let sh = &state.shared;
    let components = sh.status.components();
    let failing = failing(&components);
    let healthy = failing.is_empty();
    let stats = sh.dns_stats.totals();
    let members = sh.status.members();
    let pairs = |v: &[(String, u64)]| -> BTreeMap<String, u64> { v.iter().cloned().collect() };
    json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "service": "joyride",
        "version": env!("CARGO_PKG_VERSION"),
        "node": sh.config.node_name,
        "domain": sh.config.domain.as_str(),
        "timestamp": rfc3339(now),
        "started": rfc3339(sh.started),
        "uptime_seconds": now.duration_since(sh.started).map_or(0, |d| d.as_secs()),
        "listeners": {
            "dns": sh.dns_addrs,
            "http": state.http_addr,
        },
        "components": components,
        "records": {
            "total": snap.owners.values().map(|r| r.len()).sum::<usize>(),
            "names": snap.name_count(),
            "generation": snap.generation,
            "updated": rfc3339(snap.published),
            "by_source": counts_by_source(snap),
        },
        "queries": {
            "by_rcode": pairs(&stats.by_rcode),
            "by_type": pairs(&stats.by_type),
            "forwarded": stats.forwarded,
            "forward_failures": stats.forward_failures,
            "dropped": stats.dropped,
            "udp_pauses": stats.udp_pauses,
        },
        "cluster": {
            "enabled": members.is_some(),
            "members": members.as_ref().map_or(1, Vec::len),
        },
    })
}

/// This node alone, as a cluster of one reports itself.
fn single_node(state: &WebState, snap: &Snapshot) -> ClusterMember {
    let node = &state.shared.config.node_name;
    ClusterMember {
        name: node.clone(),
        address: None,
        state: "alive".into(),
        records: snap
            .owners
            .iter()
            .filter(|(k, _)| &*k.node == node.as_str())
            .map(|(_, r)| r.len())
            .sum(),
        last_seen: Some(SystemTime::now()),
        local: true,
    }
}

/// Cluster members as the API shows them (times as RFC 3339), this node first.
pub fn cluster_members(state: &WebState, snap: &Snapshot) -> (bool, Vec<Value>) {
    let (enabled, mut members) = match state.shared.status.members() {
        Some(m) if !m.is_empty() => (true, m),
        Some(_) => (true, vec![single_node(state, snap)]),
        None => (false, vec![single_node(state, snap)]),
    };
    members.sort_by(|a, b| b.local.cmp(&a.local).then_with(|| a.name.cmp(&b.name)));
    let rows = members
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "address": m.address,
                "state": m.state,
                "records": m.records,
                "last_seen": m.last_seen.map(rfc3339),
                "local": m.local,
            })
        })
        .collect();
    (enabled, rows)
}

/// The body of `/dns/cluster`.
pub fn cluster_body(state: &WebState, snap: &Snapshot) -> Value {
    let (enabled, members) = cluster_members(state, snap);
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for m in &members {
        *by_state
            .entry(m["state"].as_str().unwrap_or("unknown").to_string())
            .or_default() += 1;
    }
    json!({
        "status": "success",
        "enabled": enabled,
        "node": state.shared.config.node_name,
        "total_members": members.len(),
        "by_state": by_state,
        "members": members,
    })
}

pub async fn health(State(state): State<WebState>, RawQuery(q): RawQuery) -> Response {
    if let Err(e) = parse_query(q.as_deref(), &[]) {
        return bad_request(e);
    }
    let (healthy, body) = health_body(&state);
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

pub async fn status(State(state): State<WebState>, RawQuery(q): RawQuery) -> Response {
    if let Err(e) = parse_query(q.as_deref(), &[]) {
        return bad_request(e);
    }
    let snap = state.shared.reader.load_full();
    Json(status_body(&state, &snap)).into_response()
}

pub async fn records(State(state): State<WebState>, RawQuery(q): RawQuery) -> Response {
    let filter = match parse_query(q.as_deref(), &RECORD_PARAMS)
        .and_then(|p| RecordFilter::from_params(&p))
    {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let snap = state.shared.reader.load_full();
    Json(records_body(&snap, &filter)).into_response()
}

pub async fn cluster(State(state): State<WebState>, RawQuery(q): RawQuery) -> Response {
    if let Err(e) = parse_query(q.as_deref(), &[]) {
        return bad_request(e);
    }
    let snap = state.shared.reader.load_full();
    Json(cluster_body(&state, &snap)).into_response()
}

/// How the console looks containers up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleKey {
    Name,
    Hostname,
    Image,
    Id,
    Ip,
}

impl ConsoleKey {
    pub fn parse(s: &str) -> Option<ConsoleKey> {
        Some(match s {
            "name" => ConsoleKey::Name,
            "hostname" => ConsoleKey::Hostname,
            "image" => ConsoleKey::Image,
            "id" => ConsoleKey::Id,
            "ip" => ConsoleKey::Ip,
            _ => return None,
        })
    }
}

/// A container as the console shows it, gathered from its records (owner = container id)
/// and, when the Docker source publishes them in its status details, its name and image.
#[derive(Clone, Debug, Serialize, PartialEq, Default)]
pub struct ConsoleContainer {
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    pub node: String,
    pub hostnames: Vec<String>,
    pub addresses: Vec<String>,
}

/// Containers known from the snapshot's Docker records, enriched with the Docker source's
/// `details.containers` (objects with `id`, `name`, `image`) when present.
pub fn console_containers(
    snap: &Snapshot,
    docker: Option<&ComponentStatus>,
) -> Vec<ConsoleContainer> {
    let mut by_id: BTreeMap<(String, String), ConsoleContainer> = BTreeMap::new();
    for (owner, recs) in snap.owners.iter() {
        if owner.source != SourceKind::Docker {
            continue;
        }
        let c = by_id
            .entry((owner.node.to_string(), owner.owner.to_string()))
            .or_insert_with(|| ConsoleContainer {
                id: owner.owner.to_string(),
                node: owner.node.to_string(),
                ..Default::default()
            });
        for r in recs.iter() {
            let name = r.name.as_str().to_string();
            if !c.hostnames.contains(&name) {
                c.hostnames.push(name);
            }
            if let RData::A(_) | RData::Aaaa(_) = r.data {
                let a = r.data.to_string();
                if !c.addresses.contains(&a) {
                    c.addresses.push(a);
                }
            }
        }
    }
    let known: Vec<&Value> = docker
        .and_then(|d| d.details.get("containers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    for c in by_id.values_mut() {
        c.hostnames.sort();
        c.addresses.sort();
        if let Some(k) = known
            .iter()
            .find(|k| k["id"].as_str() == Some(c.id.as_str()))
        {
            c.name = k["name"]
                .as_str()
                .map(|n| n.trim_start_matches('/').to_string());
            c.image = k["image"].as_str().map(str::to_string);
        }
    }
    by_id.into_values().collect()
}

/// Whether a container matches a console lookup.
pub fn console_matches(c: &ConsoleContainer, by: ConsoleKey, key: &str, domain: &str) -> bool {
    let key_l = key.to_ascii_lowercase();
    match by {
        ConsoleKey::Id => key_l.len() >= 3 && c.id.to_ascii_lowercase().starts_with(&key_l),
        ConsoleKey::Ip => match key.parse::<IpAddr>() {
            Ok(ip) => c.addresses.iter().any(|a| a.parse::<IpAddr>() == Ok(ip)),
            Err(_) => false,
        },
        ConsoleKey::Image => c.image.as_deref().is_some_and(|i| {
            i == key || i.split(':').next() == Some(key) || i.starts_with(&format!("{key}@"))
        }),
        ConsoleKey::Name => {
            c.name.as_deref().map(str::to_ascii_lowercase) == Some(key_l.clone())
                || c.hostnames
                    .iter()
                    .any(|h| h.split('.').next() == Some(key_l.as_str()))
        }
        ConsoleKey::Hostname => {
            let key_l = key_l.trim_end_matches('.');
            let qualified = format!("{key_l}.{domain}");
            c.hostnames.iter().any(|h| h == key_l || *h == qualified)
        }
    }
}

pub async fn console(
    State(state): State<WebState>,
    Path((kind, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(e) = parse_query(q.as_deref(), &[]) {
        return bad_request(e);
    }
    let Some(by) = ConsoleKey::parse(&kind) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such console lookup {kind:?}: expected name, hostname, image, id or ip"),
        );
    };
    if key.is_empty() || key.len() > MAX_FILTER_LEN {
        return bad_request(format!(
            "the {kind} to look up must be 1 to {MAX_FILTER_LEN} characters"
        ));
    }
    if by == ConsoleKey::Ip && key.parse::<IpAddr>().is_err() {
        return bad_request(format!("invalid value {key:?} for ip: not an IP address"));
    }
    if by == ConsoleKey::Id && (key.len() < 3 || !key.chars().all(|c| c.is_ascii_hexdigit())) {
        return bad_request(format!(
            "invalid value {key:?} for id: expected at least 3 hexadecimal digits"
        ));
    }
    let snap = state.shared.reader.load_full();
    let components = state.shared.status.components();
    let domain = state.shared.config.domain.as_str().to_string();
    let containers: Vec<ConsoleContainer> = console_containers(&snap, components.get("docker"))
        .into_iter()
        .filter(|c| console_matches(c, by, &key, &domain))
        .collect();
    Json(json!({
        "status": "success",
        "query": { "by": kind, "key": key },
        "total": containers.len(),
        "containers": containers,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        let ok = |q: &str| parse_query(Some(q), &RECORD_PARAMS);
        assert_eq!(ok("").unwrap().len(), 0);
        assert_eq!(ok("&&").unwrap().len(), 0);
        let p = ok("name=web&type=a&q=%20x+y").unwrap();
        assert_eq!(p["name"], "web");
        assert_eq!(p["q"], " x y");
        for (q, want) in [
            ("name=%zz", "percent-encoding"),
            ("name=%4", "percent-encoding"),
            ("name=%", "percent-encoding"),
            ("name=%ff", "UTF-8"),
            ("colour=red", "unknown query parameter \"colour\""),
            ("name=a&name=b", "more than once"),
        ] {
            let e = ok(q).unwrap_err();
            assert!(e.contains(want), "{q}: {e}");
        }
        assert!(ok(&"x".repeat(MAX_QUERY_LEN + 1))
            .unwrap_err()
            .contains("at most"));
        assert!(ok(&format!("name={}", "a".repeat(300)))
            .unwrap_err()
            .contains("longer than"));
        assert!(parse_query(Some("a=1"), &[])
            .unwrap_err()
            .contains("takes none"));
    }

    fn row(name: &str, t: &str, v: &str, source: &'static str) -> RecordRow {
        RecordRow {
            hostname: name.into(),
            ip_address: v.into(),
            ttl: 10,
            rtype: t.into(),
            source,
            owner: "/etc/hosts.d/a".into(),
            node: "n1".into(),
        }
    }

    #[test]
    fn record_filters() {
        let f = |q: &[(&str, &str)]| {
            let p = q
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            RecordFilter::from_params(&p)
        };
        let web = row("web.docker", "A", "10.0.0.1", "hosts");
        let db = row("db.docker", "AAAA", "fd00::1", "docker");
        // (query parameters, matches web, matches db)
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, bool);
        let cases: &[Case] = &[
            (&[], true, true),
            (&[("name", "WEB")], true, false),
            (&[("name", "web.docker.")], true, false),
            (&[("type", "aaaa")], false, true),
            (&[("source", "Docker")], false, true),
            (&[("node", "n1")], true, true),
            (&[("node", "n2")], false, false),
            (&[("q", "10.0.0")], true, false),
            (&[("q", "hosts.d")], true, true),
            (&[("q", "DOCKER")], true, true),
            (&[("q", "web  10.0")], true, false),
            (&[("q", "web fd00")], false, false),
            (&[("name", ""), ("type", " ")], true, true),
        ];
        for (q, w, d) in cases {
            let filter = f(q).unwrap();
            assert_eq!(
                (filter.matches(&web), filter.matches(&db)),
                (*w, *d),
                "{q:?}"
            );
        }
        assert!(f(&[("type", "HINFO")]).unwrap_err().contains("for type"));
        assert!(f(&[("source", "etcd")]).unwrap_err().contains("for source"));
    }

    #[test]
    fn only_critical_failures_make_the_daemon_unhealthy() {
        let c = |healthy, critical, state: &str| ComponentStatus {
            healthy,
            critical,
            state: state.into(),
            ..Default::default()
        };
        let mut components = BTreeMap::new();
        components.insert("dns".to_string(), c(true, true, "listening"));
        components.insert(
            "hosts".to_string(),
            c(false, false, "waiting for directory"),
        );
        assert!(failing(&components).is_empty());
        components.insert("docker".to_string(), c(false, true, "disconnected"));
        assert_eq!(
            failing(&components),
            vec![json!({"component": "docker", "state": "disconnected"})]
        );
    }

    #[test]
    fn console_lookups() {
        let c = ConsoleContainer {
            id: "0123456789abcdef".into(),
            name: Some("web-1".into()),
            image: Some("nginx:1.25".into()),
            node: "n1".into(),
            hostnames: vec!["web.docker".into(), "www.docker".into()],
            addresses: vec!["172.17.0.2".into(), "fd00::2".into()],
        };
        let m = |by, key| console_matches(&c, by, key, "docker");
        assert!(m(ConsoleKey::Id, "0123"));
        assert!(!m(ConsoleKey::Id, "01"));
        assert!(!m(ConsoleKey::Id, "abcd"));
        assert!(m(ConsoleKey::Ip, "172.17.0.2"));
        assert!(m(ConsoleKey::Ip, "FD00:0::2"));
        assert!(!m(ConsoleKey::Ip, "172.17.0.3"));
        assert!(m(ConsoleKey::Image, "nginx"));
        assert!(m(ConsoleKey::Image, "nginx:1.25"));
        assert!(!m(ConsoleKey::Image, "nginx:1.24"));
        assert!(m(ConsoleKey::Name, "web-1"));
        assert!(m(ConsoleKey::Name, "www"));
        assert!(!m(ConsoleKey::Name, "db"));
        assert!(m(ConsoleKey::Hostname, "web.docker"));
        assert!(m(ConsoleKey::Hostname, "WWW"));
        assert!(m(ConsoleKey::Hostname, "www.docker."));
        assert!(!m(ConsoleKey::Hostname, "web.example"));
        assert_eq!(ConsoleKey::parse("names"), None);
    }
}
