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

use crate::records::{Name, RData, Record};

/// Environment variables of the earlier Python Joyride, still honoured.
pub const LEGACY_ENV: [&str; 5] = [
    "DNS_PORT",
    "DNS_BIND_ADDRESS",
    "HOSTS_DIRECTORY",
    "FLASK_HOST",
    "FLASK_PORT",
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

    /// Worker threads per UDP listener [default: the number of CPUs].
    #[arg(long, env = "JOYRIDE_UDP_THREADS", value_name = "N")]
    pub udp_threads: Option<String>,

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
}

/// The commands besides the daemon, one variant per line; their code is in `crate::cli`.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
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
    pub tcp_idle_timeout: Option<f64>,
    pub max_tcp_connections: Option<usize>,
    pub http_listen: Option<String>,
    pub no_http: Option<bool>,
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
    pub tcp_idle_timeout: Duration,
    pub max_tcp_connections: usize,
    /// Where the web server listens; `None` with `--no-http`.
    pub http_listen: Option<SocketAddr>,
    /// `[[records]]` of the file.
    pub static_records: Vec<Record>,
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

        Ok(Config {
            dns_listen,
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
            tcp_idle_timeout,
            max_tcp_connections,
            http_listen,
            static_records,
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
