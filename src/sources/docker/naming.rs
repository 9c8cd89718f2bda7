//! naming: which records one container gets. Pure: a plain `ContainerInfo` (what the engine
//! said about the container) and a `NamingContext` (the configuration) in, records out. No
//! I/O, no clock, no Docker types; the client loop (`super`) converts the engine's inspect
//! answer into a `ContainerInfo` and sends the records to the store.
//!
//! The schemes, each switchable (`Schemes`):
//! - `container`: `NAME.docker`; `hostname`: `HOSTNAME.docker` when the container set its
//!   own, plus `HOSTNAME.DOMAINNAME` when it set a domain name too (as DPS does);
//! - `compose`: `SERVICE.PROJECT.docker`; `alias`: `ALIAS.docker` for network aliases;
//! - `dnsdock`: `NAME.IMAGE.ENV.docker` and the forms with parts left out from the left
//!   (`IMAGE.ENV.docker`; with no environment `NAME.IMAGE.docker` and `IMAGE.docker`);
//!   `*` queries are answered by the DNS server's wildcard matching over these names;
//! - `labels`: `joyride.alias`, `joyride.host.name` (the host's address), dnsdock aliases;
//! - `srv`: `_PORT._tcp.NAME.docker` for each exposed port.
//!
//! PTR records are not made here: the store derives one for every address record.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::records::{Name, RData, Record};

/// Label: `true` withdraws every name of the container.
pub const LABEL_IGNORE: &str = "joyride.ignore";
/// Label: names (comma list) pointing at the container's own addresses.
pub const LABEL_ALIAS: &str = "joyride.alias";
/// Label: names (comma list) pointing at the host's address (a reverse proxy runs there).
pub const LABEL_HOST_NAME: &str = "joyride.host.name";
/// Label: TTL of every record of the container.
pub const LABEL_TTL: &str = "joyride.ttl";
/// Label: the one network whose address is published.
pub const LABEL_NETWORK: &str = "joyride.network";
/// Label: `true` publishes records only while the health check says healthy.
pub const LABEL_HEALTHY_ONLY: &str = "joyride.healthy-only";

/// What the engine says about one container, reduced to what naming needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The full container id (the owner key of its records).
    pub id: String,
    /// The name without Docker's leading `/`.
    pub name: String,
    /// `Config.Hostname`: the short id unless the container set its own.
    pub hostname: String,
    /// `Config.Domainname`, usually empty.
    pub domainname: String,
    /// `Config.Image` as the container was created: `repo/name:tag`, or an image id.
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// `Config.Env`, split at the first `=`.
    pub env: BTreeMap<String, String>,
    /// The container's endpoints, by network name.
    pub networks: Vec<Endpoint>,
    /// True for `--network host`: the container's address is the host's.
    pub host_network: bool,
    /// Exposed ports, with the host port where one is published.
    pub ports: Vec<Port>,
    pub state: RunState,
    pub health: Health,
    /// When the container last started, by the engine's clock (Unix nanoseconds). Not used
    /// for names: the client loop tells late events from current ones with it.
    pub started_at: Option<i64>,
}

/// The container's endpoint on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub network: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub aliases: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "_tcp",
            Protocol::Udp => "_udp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub port: u16,
    pub protocol: Protocol,
    /// The port on the host when published.
    pub host_port: Option<u16>,
}

/// The container's lifecycle state as far as names are concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    /// Created, exited, dead, restarting (waiting to restart), removing.
    #[default]
    Stopped,
}

/// The container's health check status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Health {
    /// No health check.
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// Which naming schemes are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schemes {
    pub container: bool,
    pub hostname: bool,
    pub compose: bool,
    pub alias: bool,
    pub dnsdock: bool,
    pub labels: bool,
    pub srv: bool,
}

impl Schemes {
    /// Scheme names as the configuration spells them.
    pub const NAMES: [&'static str; 7] = [
        "container",
        "hostname",
        "compose",
        "alias",
        "dnsdock",
        "labels",
        "srv",
    ];

    pub fn all() -> Schemes {
        Schemes {
            container: true,
            hostname: true,
            compose: true,
            alias: true,
            dnsdock: true,
            labels: true,
            srv: true,
        }
    }

    pub fn none() -> Schemes {
        Schemes {
            container: false,
            hostname: false,
            compose: false,
            alias: false,
            dnsdock: false,
            labels: false,
            srv: false,
        }
    }

    /// Turns on the scheme called `name`; false when there is none by that name.
    pub fn enable(&mut self, name: &str) -> bool {
        let flag = match name.trim().to_ascii_lowercase().as_str() {
            "container" => &mut self.container,
            "hostname" => &mut self.hostname,
            "compose" => &mut self.compose,
            "alias" => &mut self.alias,
            "dnsdock" => &mut self.dnsdock,
            "labels" => &mut self.labels,
            "srv" => &mut self.srv,
            _ => return false,
        };
        *flag = true;
        true
    }
}

impl Default for Schemes {
    fn default() -> Schemes {
        Schemes::all()
    }
}

/// The configuration naming depends on.
#[derive(Clone, Debug)]
pub struct NamingContext {
    /// The zone (`docker`).
    pub domain: Name,
    /// The dnsdock ENVIRONMENT part (`--environment`), one or more labels; `None` if empty.
    pub environment: Option<String>,
    /// This host's address: target of `joyride.host.name` and of published SRV ports.
    pub host_ip: Option<IpAddr>,
    /// `HOSTNODE.node.DOMAIN`: the SRV target of published ports.
    pub host_node: Option<Name>,
    /// `--network`: publish only this network's addresses.
    pub network: Option<String>,
    pub schemes: Schemes,
}

/// The records of one container, and what was wrong with its labels (to log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerRecords {
    pub records: Vec<Record>,
    pub problems: Vec<String>,
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

impl ContainerInfo {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// A dnsdock setting: the label `com.dnsdock.KEY` beats the env var `DNSDOCK_KEY`.
    fn dnsdock(&self, key: &str) -> Option<&str> {
        self.label(&format!("com.dnsdock.{key}")).or_else(|| {
            self.env
                .get(&format!("DNSDOCK_{}", key.to_ascii_uppercase()))
                .map(String::as_str)
        })
    }

    /// Whether the container set its own hostname (Docker's default is the short id).
    fn own_hostname(&self) -> Option<&str> {
        let h = self.hostname.as_str();
        (!h.is_empty() && !self.id.starts_with(h)).then_some(h)
    }
}

/// The last path component of an image reference without tag or digest
/// (`registry:5000/team/web:1.2` → `web`); `None` for an image id.
pub fn image_basename(image: &str) -> Option<&str> {
    if image.starts_with("sha256:") {
        return None;
    }
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let base = last.split(':').next().unwrap_or(last);
    (!base.is_empty()).then_some(base)
}

/// Builds the records a container publishes now. Not running, paused, ignored, or (when it
/// asked for health gating) not healthy: none.
pub fn container_records(c: &ContainerInfo, ctx: &NamingContext) -> ContainerRecords {
    let mut out = ContainerRecords::default();
    if c.state != RunState::Running {
        return out;
    }
    let ignored =
        c.label(LABEL_IGNORE).is_some_and(truthy) || c.dnsdock("ignore").is_some_and(truthy);
    if ignored {
        return out;
    }
    let gated = c.label(LABEL_HEALTHY_ONLY).is_some_and(truthy);
    if gated && matches!(c.health, Health::Starting | Health::Unhealthy) {
        return out;
    }

    let mut b = Builder {
        ctx,
        records: Vec::new(),
        problems: Vec::new(),
    };
    let ttl_text = c.label(LABEL_TTL).or_else(|| c.dnsdock("ttl"));
    let ttl = ttl_text.and_then(|t| match t.trim().parse::<u32>() {
        Ok(n) if n <= i32::MAX as u32 => Some(n),
        _ => {
            b.problems.push(format!(
                "TTL {t:?} is not a number of seconds; using the default"
            ));
            None
        }
    });

    // Which endpoints count: `--network`, then the container's own `joyride.network`.
    let picked = c.label(LABEL_NETWORK).map(str::trim);
    let endpoints: Vec<&Endpoint> = c
        .networks
        .iter()
        .filter(|e| ctx.network.as_deref().is_none_or(|n| n == e.network))
        .filter(|e| picked.is_none_or(|n| n == e.network))
        .collect();
    if let Some(n) = picked {
        if !c.networks.iter().any(|e| e.network == n) {
            b.problems.push(format!(
                "{LABEL_NETWORK}={n:?}: the container is not on that network"
            ));
        }
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    if c.host_network {
        addrs.extend(ctx.host_ip);
    }
    for e in &endpoints {
        for ip in endpoint_addrs(e) {
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
    }

    let zone = &ctx.domain;
    let s = ctx.schemes;
    let container_name = zone.child(&c.name);
    if s.container {
        b.under_zone(&c.name, &addrs);
    }
    if s.hostname {
        if let Some(h) = c.own_hostname() {
            b.under_zone(h, &addrs);
            if !c.domainname.is_empty() {
                b.full(&format!("{h}.{}", c.domainname), &addrs);
            }
        }
    }
    if s.compose {
        let service = c.label("com.docker.compose.service");
        let project = c.label("com.docker.compose.project");
        if let (Some(service), Some(project)) = (service, project) {
            b.under_zone(&format!("{service}.{project}"), &addrs);
        }
    }
    if s.alias {
        for e in &endpoints {
            let own = endpoint_addrs(e);
            for alias in &e.aliases {
                b.under_zone(alias, &own);
            }
        }
    }
    if s.dnsdock {
        let name = c.dnsdock("name").unwrap_or(&c.name);
        let image = match c.dnsdock("image") {
            Some(i) => Some(i),
            None => image_basename(&c.image),
        };
        let env = ctx.environment.as_deref().filter(|e| !e.is_empty());
        let join = |parts: &[Option<&str>]| -> String {
            parts
                .iter()
                .flatten()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(".")
        };
        let image = image.filter(|i| !i.is_empty());
        if image.is_some_and(|i| i.contains('.')) {
            b.problems.push(format!(
                "dnsdock image part {:?} is not one DNS label; dnsdock names skipped",
                image.unwrap_or_default()
            ));
        } else {
            b.under_zone(&join(&[Some(name), image, env]), &addrs);
            if image.is_some() {
                b.under_zone(&join(&[image, env]), &addrs);
            }
        }
    }
    if s.labels {
        for alias in list(c.label(LABEL_ALIAS)).chain(list(c.dnsdock("alias"))) {
            b.qualified(alias, &addrs);
        }
        let host_names: Vec<&str> = list(c.label(LABEL_HOST_NAME)).collect();
        if !host_names.is_empty() {
            match ctx.host_ip {
                Some(ip) => {
                    for n in host_names {
                        b.qualified(n, &[ip]);
                    }
                }
                None => b.problems.push(format!(
                    "{LABEL_HOST_NAME}: the host's address is unknown (set --host-ip)"
                )),
            }
        }
    }
    if s.srv {
        if let Ok(target_container) = &container_name {
            for p in &c.ports {
                let owner = format!("_{}.{}", p.port, p.protocol.label());
                let Ok(name) = target_container.child(&owner) else {
                    continue;
                };
                let published = match (p.host_port, &ctx.host_node, ctx.host_ip) {
                    (Some(hp), Some(node), Some(ip)) => Some((hp, node, ip)),
                    _ => None,
                };
                let (port, target) = match published {
                    Some((hp, node, ip)) => {
                        b.push(node.clone(), RData::address(ip));
                        (hp, node.clone())
                    }
                    None => {
                        if !s.container {
                            continue;
                        }
                        (p.port, target_container.clone())
                    }
                };
                b.push(
                    name,
                    RData::Srv {
                        priority: 0,
                        weight: 0,
                        port,
                        target,
                    },
                );
            }
        }
    }

    let mut records = b.records;
    for r in &mut records {
        r.ttl = ttl;
    }
    out.records = records;
    out.problems = b.problems;
    out
}

/// An endpoint's addresses, IPv4 first.
fn endpoint_addrs(e: &Endpoint) -> Vec<IpAddr> {
    e.ipv4
        .map(IpAddr::V4)
        .into_iter()
        .chain(e.ipv6.map(IpAddr::V6))
        .collect()
}

/// The items of a comma (or whitespace) separated label value.
fn list(v: Option<&str>) -> impl Iterator<Item = &str> {
    v.unwrap_or("")
        .split([',', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Collects records without duplicates, and the names that could not be made.
struct Builder<'a> {
    ctx: &'a NamingContext,
    records: Vec<Record>,
    problems: Vec<String>,
}

impl Builder<'_> {
    fn push(&mut self, name: Name, data: RData) {
        let r = Record::new(name, data);
        if !self.records.contains(&r) {
            self.records.push(r);
        }
    }

    fn addresses(&mut self, name: Name, addrs: &[IpAddr]) {
        for ip in addrs {
            self.push(name.clone(), RData::address(*ip));
        }
    }

    /// `LABELS.docker`: a Docker identifier, always under the zone.
    fn under_zone(&mut self, labels: &str, addrs: &[IpAddr]) {
        if labels.is_empty() {
            return;
        }
        match self.ctx.domain.child(labels) {
            Ok(name) => self.addresses(name, addrs),
            Err(e) => self.problems.push(format!("name {labels:?} skipped: {e}")),
        }
    }

    /// A name given in full (`host.example.com`).
    fn full(&mut self, text: &str, addrs: &[IpAddr]) {
        match Name::parse(text) {
            Ok(name) => self.addresses(name, addrs),
            Err(e) => self.problems.push(format!("name {text:?} skipped: {e}")),
        }
    }

    /// A name from a label: without a dot it goes under the zone, with one it stands as is.
    fn qualified(&mut self, text: &str, addrs: &[IpAddr]) {
        match Name::qualify(text, &self.ctx.domain) {
            Ok(name) => self.addresses(name, addrs),
            Err(e) => self.problems.push(format!("name {text:?} skipped: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> NamingContext {
        NamingContext {
            domain: Name::parse("docker").unwrap(),
            environment: None,
            host_ip: Some("192.0.2.10".parse().unwrap()),
            host_node: Some(Name::parse("host1.node.docker").unwrap()),
            network: None,
            schemes: Schemes::all(),
        }
    }

    /// A running container `web` (image `team/nginx:1.25`) on `bridge` at 172.17.0.2.
    fn web() -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef0123".into(),
            name: "web".into(),
            hostname: "0123456789ab".into(),
            image: "registry:5000/team/nginx:1.25".into(),
            networks: vec![Endpoint {
                network: "bridge".into(),
                ipv4: Some("172.17.0.2".parse().unwrap()),
                ..Default::default()
            }],
            state: RunState::Running,
            ..Default::default()
        }
    }

    fn with(f: impl FnOnce(&mut ContainerInfo)) -> ContainerInfo {
        let mut c = web();
        f(&mut c);
        c
    }

    fn only(s: &str) -> Schemes {
        let mut sc = Schemes::none();
        assert!(sc.enable(s));
        sc
    }

    fn render(r: &ContainerRecords) -> Vec<String> {
        let mut v: Vec<String> = r
            .records
            .iter()
            .map(|r| match r.ttl {
                Some(t) => format!("{} {} {} {}", r.name, t, r.data.rtype(), r.data),
                None => format!("{} {} {}", r.name, r.data.rtype(), r.data),
            })
            .collect();
        v.sort();
        v
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_scheme() {
        let mut env_ctx = ctx();
        env_ctx.environment = Some("prod".into());
        let two_nets = with(|c| {
            c.networks.push(Endpoint {
                network: "back".into(),
                ipv4: Some("10.5.0.3".parse().unwrap()),
                ipv6: Some("fd00::3".parse().unwrap()),
                aliases: vec!["db".into()],
            })
        });
        #[allow(clippy::type_complexity)]
        let table: Vec<(&str, ContainerInfo, NamingContext, Vec<&str>)> = vec![
            (
                "container name, A only",
                web(),
                NamingContext {
                    schemes: only("container"),
                    ..ctx()
                },
                vec!["web.docker A 172.17.0.2"],
            ),
            (
                "container name, A and AAAA on two networks",
                two_nets.clone(),
                NamingContext {
                    schemes: only("container"),
                    ..ctx()
                },
                vec![
                    "web.docker A 10.5.0.3",
                    "web.docker A 172.17.0.2",
                    "web.docker AAAA fd00::3",
                ],
            ),
            (
                "--network picks one network",
                two_nets.clone(),
                NamingContext {
                    schemes: only("container"),
                    network: Some("back".into()),
                    ..ctx()
                },
                vec!["web.docker A 10.5.0.3", "web.docker AAAA fd00::3"],
            ),
            (
                "joyride.network label picks one network",
                with(|c| {
                    c.networks = two_nets.networks.clone();
                    c.labels = labels(&[(LABEL_NETWORK, "bridge")]);
                }),
                NamingContext {
                    schemes: only("container"),
                    ..ctx()
                },
                vec!["web.docker A 172.17.0.2"],
            ),
            (
                "default hostname is not published",
                web(),
                NamingContext {
                    schemes: only("hostname"),
                    ..ctx()
                },
                vec![],
            ),
            (
                "own hostname, and with a domain name",
                with(|c| {
                    c.hostname = "front".into();
                    c.domainname = "example.com".into();
                }),
                NamingContext {
                    schemes: only("hostname"),
                    ..ctx()
                },
                vec![
                    "front.docker A 172.17.0.2",
                    "front.example.com A 172.17.0.2",
                ],
            ),
            (
                "compose service.project",
                with(|c| {
                    c.labels = labels(&[
                        ("com.docker.compose.service", "api"),
                        ("com.docker.compose.project", "shop"),
                    ])
                }),
                NamingContext {
                    schemes: only("compose"),
                    ..ctx()
                },
                vec!["api.shop.docker A 172.17.0.2"],
            ),
            (
                "network aliases get their own network's address",
                two_nets.clone(),
                NamingContext {
                    schemes: only("alias"),
                    ..ctx()
                },
                vec!["db.docker A 10.5.0.3", "db.docker AAAA fd00::3"],
            ),
            (
                "dnsdock without environment",
                web(),
                NamingContext {
                    schemes: only("dnsdock"),
                    ..ctx()
                },
                vec!["nginx.docker A 172.17.0.2", "web.nginx.docker A 172.17.0.2"],
            ),
            (
                "dnsdock with environment",
                web(),
                NamingContext {
                    schemes: only("dnsdock"),
                    ..env_ctx.clone()
                },
                vec![
                    "nginx.prod.docker A 172.17.0.2",
                    "web.nginx.prod.docker A 172.17.0.2",
                ],
            ),
            (
                "dnsdock overrides: labels beat env",
                with(|c| {
                    c.labels = labels(&[("com.dnsdock.name", "front")]);
                    c.env = labels(&[("DNSDOCK_NAME", "ignored"), ("DNSDOCK_IMAGE", "www")]);
                }),
                NamingContext {
                    schemes: only("dnsdock"),
                    ..env_ctx.clone()
                },
                vec![
                    "front.www.prod.docker A 172.17.0.2",
                    "www.prod.docker A 172.17.0.2",
                ],
            ),
            (
                "dnsdock image set empty leaves the image part out",
                with(|c| c.env = labels(&[("DNSDOCK_IMAGE", "")])),
                NamingContext {
                    schemes: only("dnsdock"),
                    ..env_ctx.clone()
                },
                vec!["web.prod.docker A 172.17.0.2"],
            ),
            (
                "joyride.alias and dnsdock aliases: container addresses",
                with(|c| {
                    c.labels = labels(&[(LABEL_ALIAS, "x.example.com, api")]);
                    c.env = labels(&[("DNSDOCK_ALIAS", "old.example.org")]);
                }),
                NamingContext {
                    schemes: only("labels"),
                    ..ctx()
                },
                vec![
                    "api.docker A 172.17.0.2",
                    "old.example.org A 172.17.0.2",
                    "x.example.com A 172.17.0.2",
                ],
            ),
            (
                "joyride.host.name: the host's address",
                with(|c| c.labels = labels(&[(LABEL_HOST_NAME, "a.example.com,b.example.com")])),
                NamingContext {
                    schemes: only("labels"),
                    ..ctx()
                },
                vec!["a.example.com A 192.0.2.10", "b.example.com A 192.0.2.10"],
            ),
            (
                "SRV: published port targets the host node, unpublished the container",
                with(|c| {
                    c.ports = vec![
                        Port {
                            port: 80,
                            protocol: Protocol::Tcp,
                            host_port: Some(8080),
                        },
                        Port {
                            port: 53,
                            protocol: Protocol::Udp,
                            host_port: None,
                        },
                    ]
                }),
                NamingContext {
                    schemes: Schemes {
                        container: true,
                        srv: true,
                        ..Schemes::none()
                    },
                    ..ctx()
                },
                vec![
                    "_53._udp.web.docker SRV 0 0 53 web.docker",
                    "_80._tcp.web.docker SRV 0 0 8080 host1.node.docker",
                    "host1.node.docker A 192.0.2.10",
                    "web.docker A 172.17.0.2",
                ],
            ),
            (
                "host network: the host's address",
                with(|c| {
                    c.networks = vec![Endpoint {
                        network: "host".into(),
                        ..Default::default()
                    }];
                    c.host_network = true;
                }),
                NamingContext {
                    schemes: only("container"),
                    ..ctx()
                },
                vec!["web.docker A 192.0.2.10"],
            ),
            (
                "joyride.ttl applies to every record",
                with(|c| c.labels = labels(&[(LABEL_TTL, "60")])),
                NamingContext {
                    schemes: only("container"),
                    ..ctx()
                },
                vec!["web.docker 60 A 172.17.0.2"],
            ),
            (
                "DNSDOCK_TTL too",
                with(|c| c.env = labels(&[("DNSDOCK_TTL", "30")])),
                NamingContext {
                    schemes: only("container"),
                    ..ctx()
                },
                vec!["web.docker 30 A 172.17.0.2"],
            ),
        ];
        for (what, c, ctx, want) in table {
            let got = container_records(&c, &ctx);
            assert_eq!(render(&got), want, "{what}");
            assert!(got.problems.is_empty(), "{what}: {:?}", got.problems);
        }
    }

    #[test]
    fn all_schemes_together_have_no_duplicates() {
        let c = with(|c| {
            c.hostname = "web".into();
            c.networks[0].aliases = vec!["web".into(), "0123456789ab".into()];
        });
        let got = render(&container_records(&c, &ctx()));
        assert_eq!(
            got,
            vec![
                "0123456789ab.docker A 172.17.0.2",
                "nginx.docker A 172.17.0.2",
                "web.docker A 172.17.0.2",
                "web.nginx.docker A 172.17.0.2",
            ]
        );
    }

    #[test]
    fn states_that_publish_nothing() {
        let table: Vec<(&str, ContainerInfo)> = vec![
            ("stopped", with(|c| c.state = RunState::Stopped)),
            ("paused", with(|c| c.state = RunState::Paused)),
            (
                "joyride.ignore",
                with(|c| c.labels = labels(&[(LABEL_IGNORE, "true")])),
            ),
            (
                "DNSDOCK_IGNORE",
                with(|c| c.env = labels(&[("DNSDOCK_IGNORE", "1")])),
            ),
            (
                "healthy-only and starting",
                with(|c| {
                    c.labels = labels(&[(LABEL_HEALTHY_ONLY, "true")]);
                    c.health = Health::Starting;
                }),
            ),
            (
                "healthy-only and unhealthy",
                with(|c| {
                    c.labels = labels(&[(LABEL_HEALTHY_ONLY, "true")]);
                    c.health = Health::Unhealthy;
                }),
            ),
        ];
        for (what, c) in table {
            assert_eq!(
                container_records(&c, &ctx()),
                ContainerRecords::default(),
                "{what}"
            );
        }
        let healthy = with(|c| {
            c.labels = labels(&[(LABEL_HEALTHY_ONLY, "true")]);
            c.health = Health::Healthy;
        });
        assert!(!container_records(&healthy, &ctx()).records.is_empty());
        let unhealthy_ungated = with(|c| c.health = Health::Unhealthy);
        assert!(!container_records(&unhealthy_ungated, &ctx())
            .records
            .is_empty());
    }

    #[test]
    fn problems_are_reported_not_fatal() {
        let mut no_host = ctx();
        no_host.host_ip = None;
        let c = with(|c| {
            c.labels = labels(&[
                (LABEL_TTL, "soon"),
                (LABEL_HOST_NAME, "proxy.example.com"),
                (LABEL_ALIAS, "bad!name"),
                (LABEL_NETWORK, "elsewhere"),
            ])
        });
        let got = container_records(&c, &no_host);
        assert!(got.records.is_empty(), "{:?}", got.records);
        let text = got.problems.join("\n");
        for want in ["TTL \"soon\"", "--host-ip", "not on that network"] {
            assert!(text.contains(want), "{want} in {text}");
        }
        let c = with(|c| c.labels = labels(&[(LABEL_ALIAS, "bad!name")]));
        let got = container_records(&c, &ctx());
        assert!(got.problems.join("").contains("bad!name"));
        assert!(render(&got).contains(&"web.docker A 172.17.0.2".to_string()));
    }

    #[test]
    fn image_basenames() {
        for (image, want) in [
            ("nginx", Some("nginx")),
            ("nginx:1.25", Some("nginx")),
            ("team/nginx:1.25", Some("nginx")),
            ("registry:5000/team/nginx", Some("nginx")),
            ("nginx@sha256:abcd", Some("nginx")),
            ("sha256:abcdef", None),
            ("", None),
        ] {
            assert_eq!(image_basename(image), want, "{image}");
        }
    }
}
