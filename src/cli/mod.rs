//! cli: the commands besides the daemon (`joyride health`, `records`, `cluster`, `query`,
//! `resolver`, `completions`, `man`).
//!
//! They talk to a running daemon from outside, like any client: over its HTTP API
//! (`ops`, through the small client in `http`) or over DNS (`query`). Nothing here is
//! linked into the daemon's paths: the daemon never calls this module, and this module
//! reads the daemon only through its sockets and its configuration (the same flags,
//! environment variables and file, so `joyride health` finds a daemon started with
//! `JOYRIDE_HTTP_LISTEN` without being told).

pub mod docs;
mod http;
pub mod ops;
pub mod resolver;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use crate::config::{Cli, Command, Config, ConfigError};

/// Why a command failed. Usage and configuration errors exit 2, the rest 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach joyride at {addr}: {source}")]
    Unreachable {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) | CliError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

/// Runs `command`; `cli` carries the daemon's options (for defaults such as the daemon's
/// addresses). Errors are printed here, on one line.
pub fn run(command: &Command, cli: &Cli) -> ExitCode {
    let result = match command {
        Command::Keygen => {
            println!(
                "{}",
                crate::cluster::crypto::ClusterKey::generate().to_base64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Health(a) => ops::health(a, cli),
        Command::Records(a) => ops::records(a, cli),
        Command::Cluster(a) => ops::cluster(a, cli),
        Command::Query(a) => ops::query(a, cli),
        Command::Resolver(a) => resolver::run(a, cli),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("joyride: {e}");
            e.exit_code()
        }
    }
}

/// The daemon's configuration as the daemon would resolve it from the same flags,
/// environment and file.
pub fn daemon_config(cli: &Cli) -> Result<Config, CliError> {
    Ok(Config::load(cli)?)
}

/// Where a client on this host reaches a listener: a wildcard address becomes loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let r = |s: &str| reachable(s.parse().unwrap()).to_string();
        assert_eq!(r("0.0.0.0:5380"), "127.0.0.1:5380");
        assert_eq!(r("[::]:53"), "[::1]:53");
        assert_eq!(r("10.1.2.3:53"), "10.1.2.3:53");
    }
}
