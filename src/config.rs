//! Configuration: command-line flags, environment variables and an optional TOML file,
//! merged (flags beat env beat file beat defaults) and validated into a `Config`.
//!
//! `Config::resolve` is pure (the environment is passed in), so precedence and every error
//! message are unit-tested without touching the process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::cluster::crypto::ClusterKey;
use crate::records::{Name, RData, Record, SourceKind};
use crate::sources::docker::naming::Schemes;
use crate::sources::docker::EngineAddress;

/// Environment variables of the earlier Python Joyride, still honoured.
pub const LEGACY_ENV: [&str; 6] = [
    "DNS_PORT",
    "DNS_BIND_ADDRESS",
    "HOSTS_DIRECTORY",
    "FLASK_HOST",
    "FLASK_PORT",
    "HOSTIP",
];

/// Where the web page, JSON API and metrics listen unless told otherwise.
pub const DEFAULT_HTTP_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5380);

/// DNS names for Docker containers, on one host and across many.
///
/// With no command, runs the daemon. Every option can also be set with the environment
/// variable shown, or as a key of the same name in the --config TOML file (for example
/// `dns-listen = ["127.0.0.1:53"]`). Flags beat environment variables, which beat the file,
/// which beats the defaults. The commands read the same options (`joyride resolver print`
/// uses --domain and --dns-listen; the operator commands find the daemon's --http-listen).
#[derive(Parser, Debug, Default, Clone)]
#[command(name = "joyride", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// A command; without one, joyride runs the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML configuration file (keys as the long flags; static records as [[records]]).
    #[arg(long, env = "JOYRIDE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to serve DNS on, UDP and TCP; repeatable, or a comma list in the env var
    /// [default: 127.0.0.1:5353 and [::1]:5353]. Legacy: DNS_BIND_ADDRESS and DNS_PORT.
    #[arg(
        long,
        env = "JOYRIDE_DNS_LISTEN",
        value_name = "ADDR:PORT",
        value_delimiter = ','
    )]
    pub dns_listen: Vec<String>,

    /// The zone Joyride is authoritative for [default: docker].
    #[arg(long, env = "JOYRIDE_DOMAIN", value_name = "NAME")]
    pub domain: Option<String>,

    /// TTL of answers, in seconds [default: 10].
    #[arg(long, env = "JOYRIDE_TTL", value_name = "SECONDS")]
    pub ttl: Option<String>,

    /// TTL of negative answers (NXDOMAIN, NODATA), in seconds [default: 5].
    #[arg(long, env = "JOYRIDE_NEGATIVE_TTL", value_name = "SECONDS")]
    pub negative_ttl: Option<String>,

    /// Upstream server for names that are not ours; repeatable, tried in order
    /// [default: the nameservers of /etc/resolv.conf, without joyride's own addresses].
    #[arg(
        long,
        env = "JOYRIDE_UPSTREAM",
        value_name = "ADDR[:PORT]",
        value_delimiter = ','
    )]
    pub upstream: Vec<String>,

    /// Do not forward: names that are not ours get REFUSED.
    #[arg(long, env = "JOYRIDE_NO_FORWARD")]
    pub no_forward: bool,

    /// How long to wait for one upstream before trying the next, in seconds [default: 1].
    #[arg(long, env = "JOYRIDE_UPSTREAM_TIMEOUT", value_name = "SECONDS")]
    pub upstream_timeout: Option<String>,

    /// Directory of hosts-format files to serve, watched for changes [default: none].
    /// Legacy: HOSTS_DIRECTORY.
    #[arg(long, env = "JOYRIDE_HOSTS_DIR", value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,

    /// Log level or tracing filter, e.g. `debug` or `joyride=trace` [default: info].
    #[arg(long, env = "JOYRIDE_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format [default: text].
    #[arg(long, env = "JOYRIDE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// This node's name, recorded as the origin of its records [default: the hostname].
    #[arg(long, env = "JOYRIDE_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Largest UDP response, also advertised in EDNS, 512 to 4096 [default: 1232].
    #[arg(long, env = "JOYRIDE_EDNS_UDP_SIZE", value_name = "BYTES")]
    pub edns_udp_size: Option<String>,

    /// Worker threads per UDP listen address. They take turns to receive: another one takes
    /// over when a batch of 32 comes back full [default: the number of CPUs].
    #[arg(long, env = "JOYRIDE_UDP_THREADS", value_name = "N")]
    pub udp_threads: Option<String>,

    /// Microseconds a busy UDP worker may let queries gather when its queue is empty; 0:
    /// never [default: 200]. Only while several come at a time; see README.
    #[arg(long, env = "JOYRIDE_UDP_COALESCE_US", value_name = "MICROSECONDS")]
    pub udp_coalesce_us: Option<String>,

    /// Seconds a TCP connection may stay idle before it is closed [default: 10].
    #[arg(long, env = "JOYRIDE_TCP_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub tcp_idle_timeout: Option<String>,

    /// Most DNS TCP connections open at once [default: 256].
    #[arg(long, env = "JOYRIDE_MAX_TCP_CONNECTIONS", value_name = "N")]
    pub max_tcp_connections: Option<String>,

    /// Address of the web page, JSON API and Prometheus metrics [default: 127.0.0.1:5380].
    /// Legacy: FLASK_HOST and FLASK_PORT.
    #[arg(long, env = "JOYRIDE_HTTP_LISTEN", value_name = "ADDR:PORT")]
    pub http_listen: Option<String>,

    /// Do not serve the web page, API and metrics at all.
    #[arg(long, env = "JOYRIDE_NO_HTTP")]
    pub no_http: bool,

    /// Do not serve Docker containers' names (no connection to an engine).
    #[arg(long, env = "JOYRIDE_NO_DOCKER")]
    pub no_docker: bool,

    /// The Docker engine: unix:///PATH, tcp://HOST:PORT, http:// or https://
    /// [default: unix:///var/run/docker.sock].
    #[arg(long, env = "DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,

    /// Talk to a tcp:// engine over TLS, verified with the certificates of
    /// --docker-cert-path, as the docker CLI does [default: off].
    #[arg(long, env = "DOCKER_TLS_VERIFY")]
    pub docker_tls_verify: bool,

    /// Directory with ca.pem, cert.pem and key.pem for TLS [default: ~/.docker].
    #[arg(long, env = "DOCKER_CERT_PATH", value_name = "DIR")]
    pub docker_cert_path: Option<PathBuf>,

    /// This host's address, for `joyride.host.name` labels and published ports
    /// [default: the address of the default-route interface]. Legacy: HOSTIP.
    #[arg(long, env = "JOYRIDE_HOST_IP", value_name = "IP")]
    pub host_ip: Option<String>,

    /// The ENVIRONMENT part of dnsdock names, NAME.IMAGE.ENVIRONMENT.DOMAIN [default: empty].
    #[arg(long, env = "JOYRIDE_ENVIRONMENT", value_name = "ENV")]
    pub environment: Option<String>,

    /// Publish only the containers' addresses on this Docker network [default: every network].
    #[arg(long, env = "JOYRIDE_NETWORK", value_name = "NET")]
    pub network: Option<String>,

    /// Container naming schemes to use, a comma list of container, hostname, compose, alias,
    /// dnsdock, labels, srv; `none` for none [default: all of them].
    #[arg(
        long,
        env = "JOYRIDE_NAME_SCHEMES",
        value_name = "LIST",
        value_delimiter = ','
    )]
    pub name_schemes: Vec<String>,

    /// Answer a name with this node's own addresses first when peers publish it too.
    #[arg(long, env = "JOYRIDE_PREFER_LOCAL")]
    pub prefer_local: bool,

    /// Cluster: UDP address for gossip; giving it (or --join, --join-srv, --discovery) turns
    /// clustering on [default: 0.0.0.0:7946].
    #[arg(long, env = "JOYRIDE_GOSSIP_LISTEN", value_name = "ADDR:PORT")]
    pub gossip_listen: Option<String>,

    /// Cluster: the gossip address peers reach this node at [default: the listen address; for
    /// a wildcard, this host's address towards the first --join peer or the multicast group].
    #[arg(long, env = "JOYRIDE_GOSSIP_ADVERTISE", value_name = "ADDR:PORT")]
    pub gossip_advertise: Option<String>,

    /// Cluster: a peer to join; repeatable or a comma list. Names are resolved at start and
    /// again while no peer answers [default: none].
    #[arg(
        long,
        env = "JOYRIDE_JOIN",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub join: Vec<String>,

    /// Cluster: a DNS SRV name whose targets are peers to join, e.g.
    /// _joyride._udp.example.com; repeatable [default: none].
    #[arg(
        long,
        env = "JOYRIDE_JOIN_SRV",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub join_srv: Vec<String>,

    /// Cluster: find peers by announcing on a LAN multicast group (`multicast`)
    /// [default: off].
    #[arg(long, env = "JOYRIDE_DISCOVERY", value_name = "multicast")]
    pub discovery: Option<String>,

    /// Cluster: the multicast group and port of --discovery multicast
    /// [default: 239.1.1.1:4790].
    #[arg(long, env = "JOYRIDE_DISCOVERY_GROUP", value_name = "ADDR:PORT")]
    pub discovery_group: Option<String>,

    /// Cluster: this cluster's name; nodes of another cluster are ignored [default: joyride].
    #[arg(long, env = "JOYRIDE_CLUSTER_ID", value_name = "NAME")]
    pub cluster_id: Option<String>,

    /// Cluster: key that encrypts and authenticates all gossip, 32 bytes in base64 (make one
    /// with `joyride keygen`); repeatable or a comma list to rotate: all are accepted, the
    /// first sends. Prefer the env var or --cluster-key-file: flags show in `ps`.
    #[arg(
        long,
        env = "JOYRIDE_CLUSTER_KEY",
        value_name = "BASE64",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub cluster_key: Vec<String>,

    /// Cluster: file of keys, one per line, the first sends [default: none].
    #[arg(long, env = "JOYRIDE_CLUSTER_KEY_FILE", value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,

    /// Cluster: allow gossip without a key on a non-loopback address (records travel in
    /// clear text and anyone on the network can inject records).
    #[arg(long, env = "JOYRIDE_INSECURE_GOSSIP")]
    pub insecure_gossip: bool,

    /// Cluster: seconds a member that stops answering stays suspect before it is declared
    /// dead and its records are withdrawn [default: 4; dead within about 5 to 8 s].
    #[arg(long, env = "JOYRIDE_FAILURE_TIMEOUT", value_name = "SECONDS")]
    pub failure_timeout: Option<String>,

    /// Cluster: which local sources this node publishes to its peers, a comma list of
    /// docker, hosts, static [default: docker,hosts,static].
    #[arg(
        long,
        env = "JOYRIDE_PUBLISH",
        value_name = "SOURCES",
        value_delimiter = ','
    )]
    pub publish: Vec<String>,
}

/// The commands besides the daemon, one variant per line; their code is in `crate::cli`.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Print a new random cluster key (base64) for --cluster-key.
    Keygen,
    Health(crate::cli::ops::HealthArgs),
    Records(crate::cli::ops::RecordsArgs),
    Cluster(crate::cli::ops::ClusterArgs),
    Query(crate::cli::ops::QueryArgs),
    Resolver(crate::cli::resolver::ResolverArgs),
    Completions(crate::cli::docs::CompletionsArgs),
    Man(crate::cli::docs::ManArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The TOML file, key for key the long flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub dns_listen: Option<Vec<String>>,
    pub domain: Option<String>,
    pub ttl: Option<u32>,
    pub negative_ttl: Option<u32>,
    pub upstream: Option<Vec<String>>,
    pub no_forward: Option<bool>,
    pub upstream_timeout: Option<f64>,
    pub hosts_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub node_name: Option<String>,
    pub edns_udp_size: Option<u16>,
    pub udp_threads: Option<usize>,
    pub udp_coalesce_us: Option<u64>,
    pub tcp_idle_timeout: Option<f64>,
    pub max_tcp_connections: Option<usize>,
    pub http_listen: Option<String>,
    pub no_http: Option<bool>,
    pub no_docker: Option<bool>,
    pub docker_host: Option<String>,
    pub docker_tls_verify: Option<bool>,
    pub docker_cert_path: Option<PathBuf>,
    pub host_ip: Option<String>,
    pub environment: Option<String>,
    pub network: Option<String>,
    pub name_schemes: Option<Vec<String>>,
    pub prefer_local: Option<bool>,
    pub gossip_listen: Option<String>,
    pub gossip_advertise: Option<String>,
    pub join: Option<Vec<String>>,
    pub join_srv: Option<Vec<String>>,
    pub discovery: Option<String>,
    pub discovery_group: Option<String>,
    pub cluster_id: Option<String>,
    pub cluster_key: Option<Vec<String>>,
    pub cluster_key_file: Option<PathBuf>,
    pub insecure_gossip: Option<bool>,
    pub failure_timeout: Option<f64>,
    pub publish: Option<Vec<String>>,
    #[serde(default)]
    pub records: Vec<StaticRecord>,
}

/// One `[[records]]` entry.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct StaticRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub value: String,
    pub ttl: Option<u32>,
}

/// A configuration error: which key, which value, and why. Printed as one line.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Syntax { path: String, reason: String },
}

fn invalid(key: &str, value: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub dns_listen: Vec<SocketAddr>,
    /// True when `dns_listen` is the built-in default: an address this host cannot bind
    /// (no IPv6 loopback in many containers) is then skipped with a warning.
    pub dns_listen_is_default: bool,
    pub domain: Name,
    pub ttl: u32,
    pub negative_ttl: u32,
    /// Upstreams in order; empty when not forwarding.
    pub upstreams: Vec<SocketAddr>,
    /// Whether names that are not ours are forwarded at all.
    pub forward: bool,
    pub upstream_timeout: Duration,
    pub hosts_dir: Option<PathBuf>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub node_name: String,
    pub edns_udp_size: u16,
    pub udp_threads: usize,
    /// See `ServerConfig::udp_coalesce`.
    pub udp_coalesce: Duration,
    pub tcp_idle_timeout: Duration,
    pub max_tcp_connections: usize,
    /// Where the web server listens; `None` with `--no-http`.
    pub http_listen: Option<SocketAddr>,
    /// `[[records]]` of the file.
    pub static_records: Vec<Record>,
    /// This host's address (`--host-ip`); `None`: detected at start, when needed.
    pub host_ip: Option<IpAddr>,
    /// The Docker source's settings; `None` with `--no-docker`.
    pub docker: Option<DockerConfig>,
    /// Order this node's own addresses first in answers.
    pub prefer_local: bool,
    /// The cluster, when clustering is on.
    pub cluster: Option<ClusterConfig>,
}

/// Settings of the Docker source.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    pub address: EngineAddress,
    /// The dnsdock ENVIRONMENT part, lowercase; `None` when empty.
    pub environment: Option<String>,
    /// Publish only this network's addresses.
    pub network: Option<String>,
    pub schemes: Schemes,
}

/// The default engine address, as the docker CLI's.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Checks an engine URL: a scheme Joyride can talk to, and something after it.
fn parse_docker_host(key: &str, v: &str) -> Result<String, ConfigError> {
    let v = v.trim();
    let rest = ["unix://", "tcp://", "http://", "https://"]
        .iter()
        .find_map(|p| v.strip_prefix(p));
    match rest {
        None => Err(invalid(
            key,
            v,
            "expected unix:///PATH, tcp://HOST:PORT, http://HOST:PORT or https://HOST:PORT",
        )),
        Some("") => Err(invalid(key, v, "nothing after the scheme")),
        Some(path) if v.starts_with("unix://") && !path.starts_with('/') => {
            Err(invalid(key, v, "the socket path must be absolute"))
        }
        Some(_) => Ok(v.to_string()),
    }
}

/// How this node takes part in a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub gossip_listen: SocketAddr,
    pub gossip_advertise: Option<SocketAddr>,
    /// Seeds as given (`HOST:PORT`), resolved by the cluster at start and while alone.
    pub join: Vec<String>,
    /// SRV names whose targets are seeds.
    pub join_srv: Vec<Name>,
    /// The multicast group of `--discovery multicast`.
    pub multicast: Option<std::net::SocketAddrV4>,
    pub cluster_id: String,
    /// Accepted keys, the first seals; empty only with `--insecure-gossip` or on loopback.
    pub keys: Vec<ClusterKey>,
    pub failure_timeout: Duration,
    /// Local sources published to peers.
    pub publish: Vec<SourceKind>,
}

/// The gossip port of Serf and memberlist, which operators expect.
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;
/// The group of the earlier Docker Router's discovery.
pub const DEFAULT_MULTICAST_GROUP: &str = "239.1.1.1:4790";

/// `HOST:PORT` with a name or an IP (IPv6 in brackets).
fn parse_host_port(key: &str, v: &str) -> Result<String, ConfigError> {
    let v = v.trim();
    let bad = || {
        invalid(
            key,
            v,
            "expected HOST:PORT, e.g. node1.example.com:7946 or 10.0.0.1:7946",
        )
    };
    if v.parse::<SocketAddr>().is_ok() {
        return Ok(v.to_string());
    }
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() || host.contains(':') || Name::parse(host).is_err() {
        return Err(bad());
    }
    Ok(v.to_string())
}

fn parse_key(key: &str, v: &str) -> Result<ClusterKey, ConfigError> {
    ClusterKey::parse(v)
        .map_err(|e| invalid(key, format!("<{} characters, hidden>", v.trim().len()), e))
}

impl ClusterConfig {
    /// The cluster part of `resolve`: `None` when clustering is off.
    fn resolve(cli: &Cli, file: &FileConfig) -> Result<Option<ClusterConfig>, ConfigError> {
        let listen_s = cli
            .gossip_listen
            .clone()
            .map(|v| ("--gossip-listen", v))
            .or(file.gossip_listen.clone().map(|v| ("gossip-listen", v)));
        let join: Vec<(&str, String)> = if !cli.join.is_empty() {
            cli.join
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| ("--join", s.clone()))
                .collect()
        } else {
            file.join
                .iter()
                .flatten()
                .map(|s| ("join", s.clone()))
                .collect()
        };
        let join_srv: Vec<(&str, String)> = if !cli.join_srv.is_empty() {
            cli.join_srv
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| ("--join-srv", s.clone()))
                .collect()
        } else {
            file.join_srv
                .iter()
                .flatten()
                .map(|s| ("join-srv", s.clone()))
                .collect()
        };
        let discovery = cli
            .discovery
            .clone()
            .map(|v| ("--discovery", v))
            .or(file.discovery.clone().map(|v| ("discovery", v)));
        if listen_s.is_none() && join.is_empty() && join_srv.is_empty() && discovery.is_none() {
            return Ok(None);
        }

        let gossip_listen = match &listen_s {
            Some((k, v)) => parse_listen(k, v)?,
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_GOSSIP_PORT),
        };
        let gossip_advertise = match (&cli.gossip_advertise, &file.gossip_advertise) {
            (Some(v), _) => Some(("--gossip-advertise", v)),
            (None, Some(v)) => Some(("gossip-advertise", v)),
            _ => None,
        }
        .map(|(k, v)| {
            let a = parse_listen(k, v)?;
            if a.ip().is_unspecified() || a.port() == 0 {
                return Err(invalid(
                    k,
                    v,
                    "must be an address and port peers can reach, not a wildcard or port 0",
                ));
            }
            Ok(a)
        })
        .transpose()?;
        let join = join
            .iter()
            .map(|(k, v)| parse_host_port(k, v))
            .collect::<Result<Vec<_>, _>>()?;
        let join_srv = join_srv
            .iter()
            .map(|(k, v)| Name::parse(v).map_err(|e| invalid(k, v, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let multicast = match &discovery {
            None => None,
            Some((k, v)) if v.trim().eq_ignore_ascii_case("multicast") => {
                let (gk, g) = match (&cli.discovery_group, &file.discovery_group) {
                    (Some(g), _) => ("--discovery-group", g.clone()),
                    (None, Some(g)) => ("discovery-group", g.clone()),
                    _ => ("--discovery-group", DEFAULT_MULTICAST_GROUP.to_string()),
                };
                let _ = k;
                match parse_listen(gk, &g)? {
                    SocketAddr::V4(a) if a.ip().is_multicast() && a.port() != 0 => Some(a),
                    _ => {
                        return Err(invalid(gk, &g, "must be an IPv4 multicast group (224.0.0.0/4) and a port, e.g. 239.1.1.1:4790"))
                    }
                }
            }
            Some((k, v)) => {
                return Err(invalid(
                    k,
                    v,
                    "the only discovery method is `multicast`; use --join or --join-srv for seeds",
                ))
            }
        };

        let (id_key, cluster_id) = match (&cli.cluster_id, &file.cluster_id) {
            (Some(v), _) => ("--cluster-id", v.clone()),
            (None, Some(v)) => ("cluster-id", v.clone()),
            _ => ("--cluster-id", "joyride".to_string()),
        };
        if cluster_id.is_empty()
            || cluster_id.len() > 63
            || !cluster_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                id_key,
                &cluster_id,
                "must be 1 to 63 letters, digits, '-', '_' or '.'",
            ));
        }

        let mut keys: Vec<ClusterKey> = Vec::new();
        if !cli.cluster_key.is_empty() {
            for v in cli.cluster_key.iter().filter(|s| !s.trim().is_empty()) {
                keys.push(parse_key("--cluster-key", v)?);
            }
        } else if let Some(list) = &file.cluster_key {
            for v in list {
                keys.push(parse_key("cluster-key", v)?);
            }
        }
        let key_file = cli
            .cluster_key_file
            .clone()
            .map(|p| ("--cluster-key-file", p))
            .or(file
                .cluster_key_file
                .clone()
                .map(|p| ("cluster-key-file", p)));
        if let Some((k, path)) = key_file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid(k, &shown, format!("cannot read: {e}")))?;
            let before = keys.len();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                keys.push(
                    ClusterKey::parse(line)
                        .map_err(|e| invalid(k, &shown, format!("line {}: {e}", i + 1)))?,
                );
            }
            if keys.len() == before {
                return Err(invalid(k, &shown, "has no key (one base64 key per line)"));
            }
        }
        let insecure = cli.insecure_gossip || file.insecure_gossip.unwrap_or(false);
        if keys.is_empty() && !insecure && !gossip_listen.ip().is_loopback() {
            return Err(invalid(
                "--cluster-key",
                "",
                format!(
                    "gossip listens on {gossip_listen}, which is not loopback, and without a key anyone who can reach it could read and inject records: give a key (JOYRIDE_CLUSTER_KEY, --cluster-key-file or --cluster-key; make one with `joyride keygen`) or say --insecure-gossip"
                ),
            ));
        }

        let failure_timeout = match (&cli.failure_timeout, file.failure_timeout) {
            (Some(v), _) => seconds("--failure-timeout", v)?,
            (None, Some(s)) => seconds("failure-timeout", &s.to_string())?,
            _ => Duration::from_secs(4),
        };
        let (pub_key, publish_s): (&str, Vec<String>) = if !cli.publish.is_empty() {
            ("--publish", cli.publish.clone())
        } else if let Some(list) = &file.publish {
            ("publish", list.clone())
        } else {
            (
                "--publish",
                vec!["docker".into(), "hosts".into(), "static".into()],
            )
        };
        let mut publish = Vec::new();
        for v in publish_s.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let kind = match v.to_ascii_lowercase().as_str() {
                "docker" => SourceKind::Docker,
                "hosts" => SourceKind::Hosts,
                "static" => SourceKind::Static,
                _ => return Err(invalid(pub_key, v, "expected docker, hosts or static")),
            };
            if !publish.contains(&kind) {
                publish.push(kind);
            }
        }

        Ok(Some(ClusterConfig {
            gossip_listen,
            gossip_advertise,
            join,
            join_srv,
            multicast,
            cluster_id,
            keys,
            failure_timeout,
            publish,
        }))
    }
}

/// What `resolve` reads besides the flags: environment variables (legacy aliases) and the
/// nameservers of /etc/resolv.conf (the default upstreams).
pub struct Environment<'a> {
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub resolv_conf: &'a dyn Fn() -> Option<String>,
    pub hostname: &'a dyn Fn() -> Option<String>,
}

impl Environment<'static> {
    pub fn process() -> Environment<'static> {
        Environment {
            var: &|k| std::env::var(k).ok(),
            resolv_conf: &|| std::fs::read_to_string("/etc/resolv.conf").ok(),
            hostname: &|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                    .ok()
                    .map(|s| s.trim().to_string())
            },
        }
    }
}

impl FileConfig {
    pub fn from_toml(text: &str, path: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_string(),
            reason: e.to_string().trim().replace('\n', " "),
        })
    }

    pub fn read(path: &std::path::Path) -> Result<FileConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        FileConfig::from_toml(&text, &shown)
    }
}

/// Parses a number-of-seconds option.
fn seconds(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let s: f64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(key, v, "not a number of seconds"))?;
    if !(s > 0.0 && s <= 3600.0) {
        return Err(invalid(
            key,
            v,
            "must be more than 0 and at most 3600 seconds",
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

/// `--udp-coalesce-us` when not given.
pub const DEFAULT_UDP_COALESCE_US: u64 = 200;

fn number<T>(key: &str, v: &str, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let n: T = v
        .trim()
        .parse()
        .map_err(|_| invalid(key, v, "not a whole number"))?;
    if n < min || n > max {
        return Err(invalid(key, v, format!("must be from {min} to {max}")));
    }
    Ok(n)
}

/// `ADDR:PORT` with a literal IP (IPv6 in brackets).
pub fn parse_listen(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.trim().parse().map_err(|_| {
        invalid(
            key,
            v,
            "expected IP:PORT, e.g. 127.0.0.1:5353 or [::1]:5353",
        )
    })
}

/// `ADDR` or `ADDR:PORT`, port 53 when left out.
pub fn parse_upstream(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    let v = v.trim();
    if let Ok(sa) = v.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let ip_part = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v);
    ip_part
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| invalid(key, v, "expected an IP address, optionally with :PORT"))
}

/// Nameservers named in resolv.conf text.
pub fn resolv_conf_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some("nameserver"))
                .then(|| parts.next())
                .flatten()
                .and_then(|ip| ip.split('%').next()?.parse().ok())
        })
        .collect()
}

impl Config {
    /// This process's configuration: the flags, the file they name, the environment.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Config::resolve(cli, file, &Environment::process())
    }

    /// Merges flags (with their env vars, already applied by clap), legacy env vars, the
    /// file and the defaults, and validates the result.
    pub fn resolve(cli: &Cli, file: FileConfig, env: &Environment) -> Result<Config, ConfigError> {
        let var = |k: &str| (env.var)(k).filter(|v| !v.is_empty());

        // Listen addresses: flag/env, then the legacy pair, then the file, then defaults.
        let dns_listen: Vec<SocketAddr> = if !cli.dns_listen.is_empty() {
            cli.dns_listen
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_listen("--dns-listen", s))
                .collect::<Result<_, _>>()?
        } else if var("DNS_PORT").is_some() || var("DNS_BIND_ADDRESS").is_some() {
            let port = match var("DNS_PORT") {
                Some(p) => number::<u16>("DNS_PORT", &p, 0, u16::MAX)?,
                None => 5353,
            };
            let ip = match var("DNS_BIND_ADDRESS") {
                Some(a) => a
                    .trim()
                    .parse::<IpAddr>()
                    .map_err(|_| invalid("DNS_BIND_ADDRESS", &a, "not an IP address"))?,
                None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            };
            vec![SocketAddr::new(ip, port)]
        } else if let Some(list) = &file.dns_listen {
            list.iter()
                .map(|s| parse_listen("dns-listen", s))
                .collect::<Result<_, _>>()?
        } else {
            vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5353),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 5353),
            ]
        };
        let dns_listen_is_default = cli.dns_listen.is_empty()
            && var("DNS_PORT").is_none()
            && var("DNS_BIND_ADDRESS").is_none()
            && file.dns_listen.is_none();
        if dns_listen.is_empty() {
            return Err(invalid(
                "--dns-listen",
                "",
                "at least one address is needed",
            ));
        }

        let domain_s = cli
            .domain
            .clone()
            .or(file.domain.clone())
            .unwrap_or_else(|| "docker".into());
        let domain = Name::parse(&domain_s).map_err(|e| invalid("--domain", &domain_s, e))?;

        let ttl = match &cli.ttl {
            Some(v) => number("--ttl", v, 0, i32::MAX as u32)?,
            None => file.ttl.map_or(Ok(10), |t| {
                number("ttl", &t.to_string(), 0, i32::MAX as u32)
            })?,
        };
        let negative_ttl = match &cli.negative_ttl {
            Some(v) => number("--negative-ttl", v, 0, i32::MAX as u32)?,
            None => file.negative_ttl.map_or(Ok(5), |t| {
                number("negative-ttl", &t.to_string(), 0, i32::MAX as u32)
            })?,
        };

        let forward = !(cli.no_forward || file.no_forward.unwrap_or(false));
        // Given upstreams are validated even with --no-forward: a bad value is an error.
        let upstreams: Vec<SocketAddr> = if !cli.upstream.is_empty() {
            cli.upstream
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_upstream("--upstream", s))
                .collect::<Result<_, _>>()?
        } else if let Some(list) = &file.upstream {
            list.iter()
                .map(|s| parse_upstream("upstream", s))
                .collect::<Result<_, _>>()?
        } else {
            let text = (env.resolv_conf)().unwrap_or_default();
            resolv_conf_nameservers(&text)
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 53))
                .filter(|ns| !is_own_address(ns, &dns_listen))
                .collect()
        };
        let upstreams = if forward { upstreams } else { Vec::new() };
        let upstream_timeout = match &cli.upstream_timeout {
            Some(v) => seconds("--upstream-timeout", v)?,
            None => match file.upstream_timeout {
                Some(s) => seconds("upstream-timeout", &s.to_string())?,
                None => Duration::from_secs(1),
            },
        };

        let hosts_dir = cli
            .hosts_dir
            .clone()
            .or_else(|| var("HOSTS_DIRECTORY").map(PathBuf::from))
            .or(file.hosts_dir.clone());

        let log_level = cli
            .log_level
            .clone()
            .or(file.log_level.clone())
            .unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| invalid("--log-level", &log_level, e))?;
        let log_format = cli.log_format.or(file.log_format).unwrap_or_default();

        let node_name = cli
            .node_name
            .clone()
            .or(file.node_name.clone())
            .or_else(|| (env.hostname)())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "joyride".into());
        if node_name.len() > 63
            || !node_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "--node-name",
                &node_name,
                "must be 1 to 63 letters, digits, '-' or '_'",
            ));
        }

        let edns_udp_size = match &cli.edns_udp_size {
            Some(v) => number("--edns-udp-size", v, 512, 4096)?,
            None => file.edns_udp_size.map_or(Ok(1232), |n| {
                number("edns-udp-size", &n.to_string(), 512, 4096)
            })?,
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let udp_threads = match &cli.udp_threads {
            Some(v) => number("--udp-threads", v, 1, 256)?,
            None => file
                .udp_threads
                .map_or(Ok(cpus), |n| number("udp-threads", &n.to_string(), 1, 256))?,
        };
        let udp_coalesce_us = match &cli.udp_coalesce_us {
            Some(v) => number("--udp-coalesce-us", v, 0, 1000)?,
            None => file
                .udp_coalesce_us
                .map_or(Ok(DEFAULT_UDP_COALESCE_US), |n| {
                    number("udp-coalesce-us", &n.to_string(), 0, 1000)
                })?,
        };
        let udp_coalesce = Duration::from_micros(udp_coalesce_us);
        let tcp_idle_timeout = match &cli.tcp_idle_timeout {
            Some(v) => seconds("--tcp-idle-timeout", v)?,
            None => match file.tcp_idle_timeout {
                Some(s) => seconds("tcp-idle-timeout", &s.to_string())?,
                None => Duration::from_secs(10),
            },
        };
        let max_tcp_connections = match &cli.max_tcp_connections {
            Some(v) => number("--max-tcp-connections", v, 1, 65536)?,
            None => file.max_tcp_connections.map_or(Ok(256), |n| {
                number("max-tcp-connections", &n.to_string(), 1, 65536)
            })?,
        };

        let http_listen = if cli.no_http || file.no_http.unwrap_or(false) {
            None
        } else if let Some(v) = &cli.http_listen {
            Some(parse_listen("--http-listen", v)?)
        } else if var("FLASK_HOST").is_some() || var("FLASK_PORT").is_some() {
            let port = match var("FLASK_PORT") {
                Some(p) => number::<u16>("FLASK_PORT", &p, 0, u16::MAX)?,
                None => DEFAULT_HTTP_LISTEN.port(),
            };
            let ip = match var("FLASK_HOST").as_deref().map(str::trim) {
                Some("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Some(a) => a
                    .parse::<IpAddr>()
                    .map_err(|_| invalid("FLASK_HOST", a, "not an IP address (or localhost)"))?,
                None => DEFAULT_HTTP_LISTEN.ip(),
            };
            Some(SocketAddr::new(ip, port))
        } else if let Some(v) = &file.http_listen {
            Some(parse_listen("http-listen", v)?)
        } else {
            Some(DEFAULT_HTTP_LISTEN)
        };

        let static_records = file
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let key = format!("records[{i}]");
                let name = Name::qualify(&r.name, &domain)
                    .map_err(|e| invalid(&format!("{key}.name"), &r.name, e))?;
                let data = RData::parse(&r.rtype, &r.value)
                    .map_err(|e| invalid(&format!("{key}.value"), &r.value, e))?;
                if let Some(t) = r.ttl {
                    number(&format!("{key}.ttl"), &t.to_string(), 0, i32::MAX as u32)?;
                }
                Ok(Record {
                    name,
                    ttl: r.ttl,
                    data,
                })
            })
            .collect::<Result<_, ConfigError>>()?;

        let host_ip = match (&cli.host_ip, var("HOSTIP"), &file.host_ip) {
            (Some(v), _, _) => Some(("--host-ip", v.clone())),
            (None, Some(v), _) => Some(("HOSTIP", v)),
            (None, None, Some(v)) => Some(("host-ip", v.clone())),
            _ => None,
        }
        .map(|(key, v)| {
            v.trim()
                .parse::<IpAddr>()
                .map_err(|_| invalid(key, &v, "not an IP address"))
        })
        .transpose()?;

        let no_docker = cli.no_docker || file.no_docker.unwrap_or(false);
        let docker = if no_docker {
            None
        } else {
            let host = match (&cli.docker_host, &file.docker_host) {
                (Some(v), _) => parse_docker_host("--docker-host", v)?,
                (None, Some(v)) => parse_docker_host("docker-host", v)?,
                _ => DEFAULT_DOCKER_HOST.to_string(),
            };
            let cert_path = cli
                .docker_cert_path
                .clone()
                .or(file.docker_cert_path.clone())
                .unwrap_or_else(|| {
                    PathBuf::from(var("HOME").unwrap_or_else(|| "/root".into())).join(".docker")
                });
            let environment = match (&cli.environment, &file.environment) {
                (Some(v), _) => Some(("--environment", v)),
                (None, Some(v)) => Some(("environment", v)),
                _ => None,
            }
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(key, v)| {
                Name::parse(v)
                    .map(|n| n.as_str().to_string())
                    .map_err(|e| invalid(key, v, e))
            })
            .transpose()?;
            let network = cli
                .network
                .clone()
                .or(file.network.clone())
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty());
            let (key, list) = if !cli.name_schemes.is_empty() {
                ("--name-schemes", cli.name_schemes.clone())
            } else if let Some(list) = &file.name_schemes {
                ("name-schemes", list.clone())
            } else {
                ("", Schemes::NAMES.iter().map(|s| s.to_string()).collect())
            };
            let mut schemes = Schemes::none();
            for name in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
                if name != "none" && !schemes.enable(name) {
                    return Err(invalid(
                        key,
                        name,
                        format!(
                            "unknown naming scheme (expected {})",
                            Schemes::NAMES.join(", ")
                        ),
                    ));
                }
            }
            Some(DockerConfig {
                address: EngineAddress {
                    host,
                    tls_verify: cli.docker_tls_verify || file.docker_tls_verify.unwrap_or(false),
                    cert_path,
                },
                environment,
                network,
                schemes,
            })
        };
        let prefer_local = cli.prefer_local || file.prefer_local.unwrap_or(false);
        let cluster = ClusterConfig::resolve(cli, &file)?;

        Ok(Config {
            dns_listen,
            dns_listen_is_default,
            domain,
            ttl,
            negative_ttl,
            upstreams,
            forward,
            upstream_timeout,
            hosts_dir,
            log_level,
            log_format,
            node_name,
            edns_udp_size,
            udp_threads,
            udp_coalesce,
            tcp_idle_timeout,
            max_tcp_connections,
            http_listen,
            static_records,
            host_ip,
            docker,
            prefer_local,
            cluster,
        })
    }
}

/// True when a nameserver is joyride itself: one of its listen addresses, or a loopback
/// address on a port joyride listens on with a wildcard address.
fn is_own_address(ns: &SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|l| {
        l.port() == ns.port()
            && (l.ip() == ns.ip()
                || (l.ip().is_unspecified()
                    && (ns.ip().is_loopback() || ns.is_ipv4() == l.is_ipv4())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve_with(
        args: &[&str],
        vars: &[(&str, &str)],
        file: &str,
        resolv: &str,
    ) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut argv = vec!["joyride"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        let file = FileConfig::from_toml(file, "test.toml")?;
        let resolv = resolv.to_string();
        let env = Environment {
            var: &|k| vars.get(k).cloned(),
            resolv_conf: &|| Some(resolv.clone()),
            hostname: &|| Some("host1".into()),
        };
        Config::resolve(&cli, file, &env)
    }

    #[test]
    fn defaults() {
        let c = resolve_with(&[], &[], "", "nameserver 10.0.0.53\n").unwrap();
        assert!(c.dns_listen_is_default);
        assert_eq!(
            c.dns_listen,
            vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert_eq!(c.domain.as_str(), "docker");
        assert_eq!((c.ttl, c.negative_ttl), (10, 5));
        assert_eq!(c.upstreams, vec!["10.0.0.53:53".parse().unwrap()]);
        assert!(c.forward);
        assert_eq!(c.node_name, "host1");
        assert_eq!(c.edns_udp_size, 1232);
        assert_eq!(c.http_listen, Some("127.0.0.1:5380".parse().unwrap()));
    }

    #[test]
    fn http_listen_precedence_and_legacy_flask_env() {
        let file = "http-listen = \"127.0.0.1:1\"\n";
        let c = resolve_with(&["--http-listen", "[::1]:8080"], &[], file, "").unwrap();
        assert_eq!(c.http_listen, Some("[::1]:8080".parse().unwrap()));
        let c = resolve_with(&[], &[("FLASK_PORT", "8000")], file, "").unwrap();
        assert_eq!(
            c.http_listen,
            Some("127.0.0.1:8000".parse().unwrap()),
            "legacy env beats file"
        );
        let c = resolve_with(
            &[],
            &[("FLASK_HOST", "0.0.0.0"), ("FLASK_PORT", "5000")],
            "",
            "",
        )
        .unwrap();
        assert_eq!(c.http_listen, Some("0.0.0.0:5000".parse().unwrap()));
        let c = resolve_with(&[], &[("FLASK_HOST", "localhost")], "", "").unwrap();
        assert_eq!(c.http_listen, Some("127.0.0.1:5380".parse().unwrap()));
        let c = resolve_with(&[], &[], file, "").unwrap();
        assert_eq!(c.http_listen, Some("127.0.0.1:1".parse().unwrap()));
        let c = resolve_with(&["--no-http", "--http-listen", "127.0.0.1:9"], &[], "", "").unwrap();
        assert_eq!(c.http_listen, None);
        let c = resolve_with(&[], &[], "no-http = true", "").unwrap();
        assert_eq!(c.http_listen, None);
    }

    #[test]
    fn flags_beat_file_and_legacy_env() {
        let file = "domain = \"file.test\"\nttl = 30\ndns-listen = [\"127.0.0.1:1\"]\n";
        let c = resolve_with(
            &["--domain", "flag.test"],
            &[("DNS_PORT", "5300")],
            file,
            "",
        )
        .unwrap();
        assert_eq!(c.domain.as_str(), "flag.test");
        assert_eq!(c.ttl, 30);
        assert_eq!(
            c.dns_listen,
            vec!["127.0.0.1:5300".parse().unwrap()],
            "legacy env beats file"
        );
        let c = resolve_with(
            &[],
            &[("DNS_BIND_ADDRESS", "0.0.0.0"), ("DNS_PORT", "53")],
            "",
            "",
        )
        .unwrap();
        assert_eq!(c.dns_listen, vec!["0.0.0.0:53".parse().unwrap()]);
        let c = resolve_with(&[], &[("HOSTS_DIRECTORY", "/tmp/h")], "", "").unwrap();
        assert_eq!(c.hosts_dir, Some(PathBuf::from("/tmp/h")));
    }

    #[test]
    fn upstreams_and_own_address_skipped() {
        let c = resolve_with(
            &["--upstream", "127.0.0.1:5300", "--upstream", "::1"],
            &[],
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            c.upstreams,
            vec![
                "127.0.0.1:5300".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let c = resolve_with(
            &["--dns-listen", "127.0.0.1:53"],
            &[],
            "",
            "nameserver 127.0.0.1\nnameserver 10.1.1.1\n",
        )
        .unwrap();
        assert_eq!(c.upstreams, vec!["10.1.1.1:53".parse().unwrap()]);
        let c = resolve_with(&["--no-forward"], &[], "", "nameserver 10.1.1.1").unwrap();
        assert!(c.upstreams.is_empty() && !c.forward);
    }

    #[test]
    fn static_records_from_file() {
        let file = r#"
[[records]]
name = "db"
type = "A"
value = "10.0.0.5"
[[records]]
name = "_pg._tcp.db.docker"
type = "SRV"
value = "0 0 5432 db.docker"
ttl = 60
"#;
        let c = resolve_with(&[], &[], file, "").unwrap();
        assert_eq!(c.static_records.len(), 2);
        assert_eq!(c.static_records[0].name.as_str(), "db.docker");
        assert_eq!(c.static_records[1].ttl, Some(60));
    }

    #[test]
    fn errors_name_key_value_and_reason() {
        let table: &[(&[&str], &str, &str)] = &[
            (
                &["--dns-listen", "localhost:53"],
                "",
                "invalid value \"localhost:53\" for --dns-listen",
            ),
            (
                &["--ttl=-1"],
                "",
                "invalid value \"-1\" for --ttl: not a whole number",
            ),
            (&["--domain", "bad domain"], "", "for --domain"),
            (&["--upstream", "nowhere"], "", "for --upstream"),
            (&["--edns-udp-size", "100"], "", "must be from 512 to 4096"),
            (
                &["--udp-coalesce-us", "5000"],
                "",
                "invalid value \"5000\" for --udp-coalesce-us: must be from 0 to 1000",
            ),
            (&[], "udp-coalesce-us = 2000", "for udp-coalesce-us"),
            (&["--upstream-timeout", "0"], "", "for --upstream-timeout"),
            (&["--log-level", "=[bad"], "", "for --log-level"),
            (
                &["--http-listen", "localhost:80"],
                "",
                "invalid value \"localhost:80\" for --http-listen: expected IP:PORT",
            ),
            (&[], "http-listen = \"nowhere\"", "for http-listen"),
            (&[], "colour = 1", "unknown field `colour`"),
            (&[], "ttl = \"ten\"", "config file test.toml"),
            (
                &[],
                "[[records]]\nname = \"x\"\ntype = \"A\"\nvalue = \"1.2.3\"",
                "records[0].value",
            ),
            (
                &[],
                "[[records]]\nname = \"a b\"\ntype = \"A\"\nvalue = \"1.2.3.4\"",
                "records[0].name",
            ),
        ];
        for (args, file, want) in table {
            let err = resolve_with(args, &[], file, "").unwrap_err().to_string();
            assert!(err.contains(want), "{args:?} {file:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let env_table: &[(&str, &str, &str)] = &[
            (
                "FLASK_PORT",
                "http",
                "invalid value \"http\" for FLASK_PORT",
            ),
            (
                "FLASK_PORT",
                "70000",
                "invalid value \"70000\" for FLASK_PORT",
            ),
            (
                "FLASK_HOST",
                "web.example",
                "for FLASK_HOST: not an IP address",
            ),
        ];
        for (k, v, want) in env_table {
            let err = resolve_with(&[], &[(k, v)], "", "")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{k}={v}: {err}");
        }
    }

    const KEY1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY2: &str = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=";

    #[test]
    fn cluster_is_off_unless_a_cluster_flag_is_given() {
        let c = resolve_with(&["--cluster-id", "x"], &[], "", "").unwrap();
        assert!(c.cluster.is_none());
        assert!(!c.prefer_local);
        let c = resolve_with(
            &["--join", "10.0.0.2:7946", "--cluster-key", KEY1],
            &[],
            "",
            "",
        )
        .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.gossip_listen, "0.0.0.0:7946".parse().unwrap());
        assert_eq!(cl.join, vec!["10.0.0.2:7946".to_string()]);
        assert_eq!(cl.cluster_id, "joyride");
        assert_eq!(cl.failure_timeout, Duration::from_secs(4));
        assert_eq!(
            cl.publish,
            vec![SourceKind::Docker, SourceKind::Hosts, SourceKind::Static]
        );
        assert_eq!(cl.multicast, None);
        assert_eq!(cl.keys.len(), 1);
    }

    #[test]
    fn cluster_flags_and_file_keys() {
        let c = resolve_with(
            &[
                "--gossip-listen",
                "10.1.0.1:8000",
                "--gossip-advertise",
                "192.0.2.1:8000",
                "--join",
                "node2.example.com:7946,[fd00::2]:7946",
                "--join-srv",
                "_joyride._udp.example.com",
                "--discovery",
                "multicast",
                "--cluster-id",
                "prod-1",
                "--cluster-key",
                KEY2,
                "--cluster-key",
                KEY1,
                "--failure-timeout",
                "2.5",
                "--publish",
                "hosts,docker",
                "--prefer-local",
            ],
            &[],
            "",
            "",
        )
        .unwrap();
        assert!(c.prefer_local);
        let cl = c.cluster.unwrap();
        assert_eq!(cl.gossip_advertise, Some("192.0.2.1:8000".parse().unwrap()));
        assert_eq!(cl.join.len(), 2);
        assert_eq!(cl.join_srv[0].as_str(), "_joyride._udp.example.com");
        assert_eq!(cl.multicast, Some("239.1.1.1:4790".parse().unwrap()));
        assert_eq!(cl.cluster_id, "prod-1");
        assert_eq!(
            cl.keys,
            vec![
                ClusterKey::parse(KEY2).unwrap(),
                ClusterKey::parse(KEY1).unwrap()
            ],
            "order kept: first sends"
        );
        assert_eq!(cl.failure_timeout, Duration::from_millis(2500));
        assert_eq!(cl.publish, vec![SourceKind::Hosts, SourceKind::Docker]);

        let dir = tempfile::tempdir().unwrap();
        let kf = dir.path().join("keys");
        std::fs::write(&kf, format!("# new key first\n{KEY2}\n\n{KEY1}\n")).unwrap();
        let file = format!(
            "join = [\"h1:7946\"]\ncluster-key-file = \"{}\"\ndiscovery = \"multicast\"\ndiscovery-group = \"239.2.2.2:5000\"\nfailure-timeout = 6\npublish = [\"static\"]\nprefer-local = true\n",
            kf.display()
        );
        let c = resolve_with(&[], &[], &file, "").unwrap();
        assert!(c.prefer_local);
        let cl = c.cluster.unwrap();
        assert_eq!(cl.keys.len(), 2);
        assert_eq!(cl.multicast, Some("239.2.2.2:5000".parse().unwrap()));
        assert_eq!(cl.failure_timeout, Duration::from_secs(6));
        assert_eq!(cl.publish, vec![SourceKind::Static]);
    }

    #[test]
    fn gossip_without_a_key_needs_loopback_or_insecure() {
        let err = resolve_with(&["--join", "10.0.0.2:7946"], &[], "", "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--cluster-key")
                && err.contains("0.0.0.0:7946")
                && err.contains("not loopback")
                && err.contains("--insecure-gossip"),
            "{err}"
        );
        assert!(
            resolve_with(&["--gossip-listen", "127.0.0.1:7946"], &[], "", "")
                .unwrap()
                .cluster
                .is_some()
        );
        let c = resolve_with(
            &["--discovery", "multicast", "--insecure-gossip"],
            &[],
            "",
            "",
        )
        .unwrap();
        assert!(c.cluster.unwrap().keys.is_empty());
    }

    #[test]
    fn cluster_errors_name_key_value_and_reason() {
        let table: &[(&[&str], &str)] = &[
            (
                &["--gossip-listen", "nowhere"],
                "invalid value \"nowhere\" for --gossip-listen",
            ),
            (
                &["--join", "justahost", "--insecure-gossip"],
                "invalid value \"justahost\" for --join: expected HOST:PORT",
            ),
            (&["--join", "h:99999", "--insecure-gossip"], "for --join"),
            (
                &["--join-srv", "bad name!", "--insecure-gossip"],
                "for --join-srv",
            ),
            (
                &["--discovery", "mdns", "--insecure-gossip"],
                "invalid value \"mdns\" for --discovery: the only discovery method is `multicast`",
            ),
            (
                &[
                    "--discovery",
                    "multicast",
                    "--discovery-group",
                    "10.0.0.1:4790",
                    "--insecure-gossip",
                ],
                "for --discovery-group: must be an IPv4 multicast group",
            ),
            (
                &["--gossip-listen", "127.0.0.1:1", "--cluster-id", "a b"],
                "invalid value \"a b\" for --cluster-id",
            ),
            (
                &[
                    "--gossip-listen",
                    "127.0.0.1:1",
                    "--cluster-key",
                    "c2hvcnQ=",
                ],
                "for --cluster-key: decodes to 5 bytes",
            ),
            (
                &["--gossip-listen", "127.0.0.1:1", "--cluster-key", "%%%"],
                "for --cluster-key: not valid base64",
            ),
            (
                &[
                    "--gossip-listen",
                    "127.0.0.1:1",
                    "--cluster-key-file",
                    "/nonexistent/k",
                ],
                "invalid value \"/nonexistent/k\" for --cluster-key-file: cannot read",
            ),
            (
                &["--gossip-listen", "127.0.0.1:1", "--failure-timeout", "0"],
                "for --failure-timeout",
            ),
            (
                &["--gossip-listen", "127.0.0.1:1", "--publish", "etcd"],
                "invalid value \"etcd\" for --publish: expected docker, hosts or static",
            ),
            (
                &[
                    "--gossip-listen",
                    "127.0.0.1:1",
                    "--gossip-advertise",
                    "0.0.0.0:7946",
                ],
                "for --gossip-advertise: must be an address",
            ),
        ];
        for (args, want) in table {
            let err = resolve_with(args, &[], "", "").unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        // A bad key is never echoed.
        let secretish = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
        let err = resolve_with(
            &["--gossip-listen", "127.0.0.1:1", "--cluster-key", secretish],
            &[],
            "",
            "",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains(secretish), "{err}");
        let err = resolve_with(&[], &[], "join = [\"h:1\"]\ncluster-key = [\"x\"]", "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("for cluster-key"), "{err}");
    }

    #[test]
    fn keygen_subcommand_parses() {
        let cli = Cli::try_parse_from(["joyride", "keygen"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Keygen)));
        assert!(Cli::try_parse_from(["joyride"]).unwrap().command.is_none());
    }

    #[test]
    fn docker_settings() {
        let c = resolve_with(&[], &[("HOME", "/home/u")], "", "").unwrap();
        let d = c.docker.expect("docker on by default");
        assert_eq!(d.address.host, DEFAULT_DOCKER_HOST);
        assert!(!d.address.tls_verify);
        assert_eq!(d.address.cert_path, PathBuf::from("/home/u/.docker"));
        assert_eq!(d.schemes, Schemes::all());
        assert_eq!((d.environment, d.network), (None, None));
        assert_eq!(c.host_ip, None);

        let c = resolve_with(
            &[
                "--docker-host",
                "tcp://10.0.0.2:2376",
                "--docker-tls-verify",
                "--docker-cert-path",
                "/certs",
                "--environment",
                "Prod",
                "--network",
                "back",
                "--name-schemes",
                "container,srv",
                "--host-ip",
                "192.0.2.7",
            ],
            &[],
            "",
            "",
        )
        .unwrap();
        let d = c.docker.unwrap();
        assert_eq!(d.address.host, "tcp://10.0.0.2:2376");
        assert!(d.address.tls_verify);
        assert_eq!(d.address.cert_path, PathBuf::from("/certs"));
        assert_eq!(d.environment.as_deref(), Some("prod"));
        assert_eq!(d.network.as_deref(), Some("back"));
        let mut want = Schemes::none();
        want.container = true;
        want.srv = true;
        assert_eq!(d.schemes, want);
        assert_eq!(c.host_ip, Some("192.0.2.7".parse().unwrap()));

        let file = "docker-host = \"unix:///tmp/d.sock\"\nname-schemes = [\"none\"]\nhost-ip = \"fd00::1\"\n";
        let c = resolve_with(&[], &[("HOSTIP", "192.0.2.8")], file, "").unwrap();
        assert_eq!(
            c.host_ip,
            Some("192.0.2.8".parse().unwrap()),
            "legacy env beats file"
        );
        let d = c.docker.unwrap();
        assert_eq!(d.address.host, "unix:///tmp/d.sock");
        assert_eq!(d.schemes, Schemes::none());

        assert!(resolve_with(&["--no-docker"], &[], "", "")
            .unwrap()
            .docker
            .is_none());
        assert!(resolve_with(&[], &[], "no-docker = true", "")
            .unwrap()
            .docker
            .is_none());
    }

    #[test]
    fn docker_errors_name_key_value_and_reason() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
        let table: &[Case] = &[
            (
                &["--docker-host", "ssh://h"],
                &[],
                "",
                "invalid value \"ssh://h\" for --docker-host: expected unix:///PATH",
            ),
            (
                &["--docker-host", "unix://run/d.sock"],
                &[],
                "",
                "for --docker-host: the socket path must be absolute",
            ),
            (
                &["--docker-host", "tcp://"],
                &[],
                "",
                "nothing after the scheme",
            ),
            (&[], &[], "docker-host = \"/x\"", "for docker-host"),
            (
                &["--host-ip", "myhost"],
                &[],
                "",
                "for --host-ip: not an IP address",
            ),
            (&[], &[("HOSTIP", "x")], "", "for HOSTIP"),
            (&["--environment", "a b"], &[], "", "for --environment"),
            (
                &["--name-schemes", "container,bogus"],
                &[],
                "",
                "invalid value \"bogus\" for --name-schemes: unknown naming scheme",
            ),
            (&[], &[], "name-schemes = [\"x\"]", "for name-schemes"),
        ];
        for (args, vars, file, want) in table {
            let err = resolve_with(args, vars, file, "").unwrap_err().to_string();
            assert!(err.contains(want), "{args:?} {file:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn resolv_conf_parsing() {
        let text =
            "# c\nnameserver 10.0.0.1\nsearch x\nnameserver fe80::1%eth0\nnameserver bogus\n";
        assert_eq!(
            resolv_conf_nameservers(text),
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
    }
}
