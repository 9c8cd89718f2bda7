//! resolver: how this host's resolver sends `--domain` names to joyride. `print` shows the
//! steps for systemd-resolved, a plain /etc/resolv.conf, macOS and Docker's containers,
//! computed from the configuration and what the host has; `install --systemd-resolved`
//! writes the resolved drop-in and `uninstall` removes it.
//!
//! The text is built by pure functions over `HostFacts`, so tests never look at (or touch)
//! the real /etc.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{daemon_config, reachable, CliError};
use crate::config::{resolv_conf_nameservers, Cli, Config};

/// Where systemd-resolved reads drop-ins.
pub const RESOLVED_DROPIN: &str = "/etc/systemd/resolved.conf.d/joyride.conf";
/// The first line of every file joyride writes: `install` overwrites and `uninstall`
/// removes only files that start with it.
const MARKER: &str = "# Written by `joyride resolver install`";

/// Send --domain queries from this host's resolver to joyride.
#[derive(Args, Debug, Clone)]
pub struct ResolverArgs {
    #[command(subcommand)]
    pub action: ResolverAction,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ResolverAction {
    /// Print, for this host, the steps that send --domain queries to joyride.
    Print,
    /// Write the systemd-resolved drop-in that sends --domain queries to joyride.
    Install(InstallArgs),
    /// Remove the drop-in written by `install`.
    Uninstall(UninstallArgs),
}

#[derive(Args, Debug, Clone)]
pub struct InstallArgs {
    /// Configure systemd-resolved (a drop-in with DNS= and Domains=~DOMAIN).
    #[arg(long, required = true)]
    pub systemd_resolved: bool,
    #[command(flatten)]
    pub file: DropinFile,
}

#[derive(Args, Debug, Clone)]
pub struct UninstallArgs {
    /// Undo `install --systemd-resolved` (the only kind so far, so the default).
    #[arg(long)]
    pub systemd_resolved: bool,
    #[command(flatten)]
    pub file: DropinFile,
}

#[derive(Args, Debug, Clone)]
pub struct DropinFile {
    /// The drop-in file.
    #[arg(
        long,
        env = "JOYRIDE_RESOLVED_DROPIN",
        value_name = "FILE",
        default_value = RESOLVED_DROPIN
    )]
    pub path: PathBuf,
    /// Print what would be done, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `print` looks at on this host.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// systemd-resolved runs (/run/systemd/resolve exists).
    pub resolved_active: bool,
    /// The servers systemd-resolved itself uses (/run/systemd/resolve/resolv.conf).
    pub resolved_upstreams: Vec<IpAddr>,
    /// The nameservers of /etc/resolv.conf.
    pub resolv_conf: Vec<IpAddr>,
    /// The docker0 bridge's IPv4 address, when there is one.
    pub docker0: Option<Ipv4Addr>,
    /// The drop-in's path, and whether joyride's drop-in is there.
    pub dropin: PathBuf,
    pub dropin_installed: bool,
}

impl HostFacts {
    fn gather(dropin: &Path) -> HostFacts {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        HostFacts {
            resolved_active: Path::new("/run/systemd/resolve").is_dir(),
            resolved_upstreams: resolv_conf_nameservers(&read("/run/systemd/resolve/resolv.conf")),
            resolv_conf: resolv_conf_nameservers(&read("/etc/resolv.conf")),
            docker0: docker0_address(),
            dropin: dropin.to_path_buf(),
            dropin_installed: is_ours(dropin),
        }
    }
}

fn docker0_address() -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name != "docker0" {
            return None;
        }
        ifa.address?.as_sockaddr_in().map(|sin| sin.ip())
    })
}

fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(MARKER))
}

pub fn run(args: &ResolverArgs, cli: &Cli) -> Result<ExitCode, CliError> {
    match &args.action {
        ResolverAction::Print => {
            let facts = HostFacts::gather(Path::new(RESOLVED_DROPIN));
            print!("{}", steps(&daemon_config(cli)?, &facts));
            Ok(ExitCode::SUCCESS)
        }
        ResolverAction::Install(a) => install(&daemon_config(cli)?, &a.file),
        // Needs no configuration: a broken one must not keep the drop-in in place.
        ResolverAction::Uninstall(a) => uninstall(&a.file),
    }
}

/// The addresses a resolver on this host uses to reach joyride, in listen order.
fn dns_addresses(config: &Config) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in config.dns_listen.iter().map(|a| reachable(*a)) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// systemd-resolved's syntax for a server: the port only when it is not 53.
fn resolved_server(a: &SocketAddr) -> String {
    match (a.port(), a.ip()) {
        (53, ip) => ip.to_string(),
        _ => a.to_string(),
    }
}

/// The drop-in's text.
pub fn dropin(config: &Config) -> String {
    let servers: Vec<String> = dns_addresses(config).iter().map(resolved_server).collect();
    let domain = config.domain.as_str().trim_end_matches('.');
    format!(
        "{MARKER}; `joyride resolver uninstall` removes it.\n\
         # Names under {domain}. go to joyride; every other name as before.\n\
         [Resolve]\n\
         DNS={}\n\
         Domains=~{domain}\n",
        servers.join(" ")
    )
}

fn install(config: &Config, file: &DropinFile) -> Result<ExitCode, CliError> {
    let text = dropin(config);
    let path = &file.path;
    let current = std::fs::read_to_string(path).ok();
    if let Some(existing) = &current {
        if !existing.starts_with(MARKER) {
            return Err(CliError::Failed(format!(
                "{} exists and was not written by joyride: remove it, or choose another --path",
                path.display()
            )));
        }
    }
    if file.dry_run {
        println!("would write {}:\n\n{text}", path.display());
    } else if current.as_deref() == Some(text.as_str()) {
        println!("{} is already installed", path.display());
        return Ok(ExitCode::SUCCESS);
    } else {
        write_atomically(path, &text)?;
        println!("wrote {}:\n\n{text}", path.display());
    }
    println!("Then run: sudo systemctl restart systemd-resolved");
    println!("Check with: resolvectl query <a name>.{}", config.domain);
    if !dns_addresses(config).iter().all(|a| a.port() == 53) {
        println!("(DNS= with a port needs systemd 246 or later.)");
    }
    Ok(ExitCode::SUCCESS)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    let io = |what: &str| {
        let what = format!("cannot {what} {}", path.display());
        move |source| CliError::Io { what, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    let tmp = path.with_extension("conf.joyride-tmp");
    std::fs::write(&tmp, text).map_err(io("write"))?;
    std::fs::rename(&tmp, path).map_err(io("replace"))
}

fn uninstall(file: &DropinFile) -> Result<ExitCode, CliError> {
    let path = &file.path;
    if !path.exists() {
        println!("{} is not there: nothing to remove", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !is_ours(path) {
        return Err(CliError::Failed(format!(
            "{} was not written by joyride: left as it is",
            path.display()
        )));
    }
    if file.dry_run {
        println!("would remove {}", path.display());
    } else {
        std::fs::remove_file(path).map_err(|source| CliError::Io {
            what: format!("cannot remove {}", path.display()),
            source,
        })?;
        println!("removed {}", path.display());
    }
    println!("Then run: sudo systemctl restart systemd-resolved");
    Ok(ExitCode::SUCCESS)
}

fn is_stub(ip: &IpAddr) -> bool {
    *ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53))
        || *ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 54))
}

/// Everything `resolver print` shows: one section per resolver, this host's first.
pub fn steps(config: &Config, facts: &HostFacts) -> String {
    let domain = config.domain.as_str().trim_end_matches('.').to_string();
    let addrs = dns_addresses(config);
    let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "Joyride answers for {domain}. on {} (from --dns-listen).",
        shown.join(", ")
    );
    let _ = writeln!(
        w,
        "Send {domain}. queries to it from this host's resolver, from macOS, and from containers:"
    );

    // systemd-resolved
    let _ = writeln!(w);
    let state = if facts.resolved_active {
        "running on this host"
    } else {
        "not running on this host"
    };
    let _ = writeln!(w, "== systemd-resolved ({state}) ==");
    let installed = if facts.dropin_installed {
        " (installed now)"
    } else {
        ""
    };
    let _ = writeln!(
        w,
        "Write {}{installed}, or run `sudo joyride resolver install --systemd-resolved`:",
        facts.dropin.display()
    );
    let _ = writeln!(w);
    for line in dropin(config).lines() {
        let _ = writeln!(w, "    {line}");
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "then `sudo systemctl restart systemd-resolved`, and check: `resolvectl query web.{domain}`."
    );
    if addrs.iter().any(|a| a.port() != 53) {
        let _ = writeln!(
            w,
            "DNS= takes ADDR:PORT since systemd 246 (Debian 11, Ubuntu 21.04); with an older systemd,\nrun joyride on port 53 (`--dns-listen 127.0.0.1:53`)."
        );
    }
    let _ = writeln!(
        w,
        "`~{domain}` is a routing domain: names under {domain}. go to joyride, not to other servers.\nsystemd-resolved may also ask joyride other names (global DNS= servers are a default route):\njoyride must not forward those back to the stub 127.0.0.53."
    );
    let upstreams_are_stub = config.forward && config.upstreams.iter().any(|u| is_stub(&u.ip()));
    let real = if facts.resolved_upstreams.is_empty() {
        "YOUR-DNS-SERVER".to_string()
    } else {
        facts
            .resolved_upstreams
            .iter()
            .map(|ip| format!("--upstream {ip}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if upstreams_are_stub {
        let _ = writeln!(
            w,
            "WARNING: joyride now forwards to {} (the stub): run it with `--no-forward`, or with the\nservers systemd-resolved uses (/run/systemd/resolve/resolv.conf): {real}",
            config.upstreams.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(", ")
        );
    } else if !config.forward {
        let _ = writeln!(
            w,
            "joyride runs with --no-forward: it refuses other names, which the other servers answer."
        );
    } else {
        let _ = writeln!(
            w,
            "joyride forwards to {}, not the stub: good.",
            config
                .upstreams
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // /etc/resolv.conf
    let _ = writeln!(w);
    let _ = writeln!(w, "== /etc/resolv.conf (hosts without systemd-resolved) ==");
    let _ = writeln!(
        w,
        "resolv.conf has neither ports nor per-domain servers: joyride becomes the first nameserver,\non port 53, and forwards every other name to the servers you had."
    );
    let port53: Vec<&SocketAddr> = addrs.iter().filter(|a| a.port() == 53).collect();
    let theirs: Vec<IpAddr> = facts
        .resolv_conf
        .iter()
        .filter(|ip| !addrs.iter().any(|a| a.ip() == **ip) && !ip.is_loopback())
        .copied()
        .collect();
    let upstream_flags = if theirs.is_empty() {
        "--upstream YOUR-DNS-SERVER".to_string()
    } else {
        theirs
            .iter()
            .map(|ip| format!("--upstream {ip}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match port53.first() {
        Some(a) => {
            let _ = writeln!(
                w,
                "joyride listens on {a}; put this line first in /etc/resolv.conf:"
            );
            let _ = writeln!(w, "\n    nameserver {}\n", a.ip());
        }
        None => {
            let _ = writeln!(
                w,
                "joyride does not listen on port 53: run it with `--dns-listen 127.0.0.1:53 {upstream_flags}`\nand put this line first in /etc/resolv.conf:\n\n    nameserver 127.0.0.1\n"
            );
        }
    }
    let _ = writeln!(
        w,
        "If DHCP rewrites the file, add `prepend domain-name-servers 127.0.0.1;` to\n/etc/dhcp/dhclient.conf (or `nameserver 127.0.0.1` to /etc/resolvconf/resolv.conf.d/head)."
    );

    // macOS
    let mac = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first());
    let _ = writeln!(w);
    let _ = writeln!(w, "== macOS ==");
    let _ = writeln!(
        w,
        "macOS sends a domain's names to the servers of /etc/resolver/DOMAIN (ports allowed):"
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "    sudo mkdir -p /etc/resolver");
    if let Some(a) = mac {
        let _ = writeln!(
            w,
            "    printf 'nameserver {}\\nport {}\\n' | sudo tee /etc/resolver/{domain}",
            a.ip(),
            a.port()
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Check with `scutil --dns` (a resolver for domain {domain}) and `dscacheutil -q host -a name web.{domain}`\n(dig and nslookup skip /etc/resolver). With Docker Desktop, run joyride in a container\nwith 53/udp published on 127.0.0.1 (docker-compose.yml)."
    );

    // Docker's containers
    let bridge = facts
        .docker0
        .map_or("172.17.0.1".to_string(), |ip| ip.to_string());
    let on_bridge = addrs
        .iter()
        .find(|a| a.port() == 53 && !a.ip().is_loopback());
    let _ = writeln!(w);
    let _ = writeln!(w, "== Containers (Docker's daemon.json) ==");
    match on_bridge {
        Some(a) => {
            let _ = writeln!(w, "joyride listens on {a}, which containers can reach.");
        }
        None => {
            let seen = if facts.docker0.is_some() {
                "docker0's address on this host"
            } else {
                "docker0's usual address; check `ip -4 addr show docker0`"
            };
            let _ = writeln!(
                w,
                "Containers cannot reach the host's loopback, and daemon.json takes no port: run joyride\nalso on the bridge, port 53: `--dns-listen {bridge}:53` ({seen}),\nstarted after Docker (the unit in contrib/ orders itself after docker.service)."
            );
        }
    }
    let ns = on_bridge.map_or(bridge, |a| a.ip().to_string());
    let _ = writeln!(w, "Then in /etc/docker/daemon.json:");
    let _ = writeln!(w);
    let _ = writeln!(w, "    {{ \"dns\": [\"{ns}\"] }}");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "and `sudo systemctl restart docker`: new containers (and the embedded DNS of user-defined\nnetworks) ask joyride for every name, so joyride must forward (no --no-forward).\nFor one container only: `docker run --dns {ns} ...`."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Environment, FileConfig};

    fn config(args: &[&str], resolv: &str) -> Config {
        let mut argv = vec!["joyride"];
        argv.extend_from_slice(args);
        let cli = <Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let resolv = resolv.to_string();
        let env = Environment {
            var: &|_| None,
            resolv_conf: &|| Some(resolv.clone()),
            hostname: &|| Some("h".into()),
        };
        Config::resolve(&cli, FileConfig::default(), &env).unwrap()
    }

    #[test]
    fn dropin_has_ports_only_when_not_53() {
        let c = config(&["--no-forward"], "");
        let d = dropin(&c);
        assert!(d.starts_with(MARKER));
        assert!(
            d.contains("[Resolve]\nDNS=127.0.0.1:5353 [::1]:5353\nDomains=~docker\n"),
            "{d}"
        );
        let c = config(
            &[
                "--no-forward",
                "--dns-listen",
                "0.0.0.0:53",
                "--dns-listen",
                "172.17.0.1:53",
                "--domain",
                "lan.test",
            ],
            "",
        );
        assert!(
            dropin(&c).contains("DNS=127.0.0.1 172.17.0.1\nDomains=~lan.test\n"),
            "{}",
            dropin(&c)
        );
    }

    #[test]
    fn steps_follow_the_host() {
        let facts = HostFacts {
            resolved_active: true,
            resolved_upstreams: vec!["192.0.2.1".parse().unwrap()],
            resolv_conf: vec!["127.0.0.53".parse().unwrap()],
            docker0: Some(Ipv4Addr::new(172, 18, 0, 1)),
            dropin: PathBuf::from(RESOLVED_DROPIN),
            dropin_installed: false,
        };
        let c = config(&[], "nameserver 127.0.0.53\n");
        let s = steps(&c, &facts);
        for want in [
            "== systemd-resolved (running on this host) ==",
            "    DNS=127.0.0.1:5353 [::1]:5353",
            "    Domains=~docker",
            "systemd 246",
            "WARNING: joyride now forwards to 127.0.0.53:53",
            "--upstream 192.0.2.1",
            "joyride does not listen on port 53",
            "printf 'nameserver 127.0.0.1\\nport 5353\\n' | sudo tee /etc/resolver/docker",
            "--dns-listen 172.18.0.1:53",
            "{ \"dns\": [\"172.18.0.1\"] }",
        ] {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }

        let facts = HostFacts {
            resolv_conf: vec!["10.0.0.1".parse().unwrap()],
            dropin: PathBuf::from(RESOLVED_DROPIN),
            ..HostFacts::default()
        };
        let c = config(
            &[
                "--dns-listen",
                "127.0.0.1:53",
                "--dns-listen",
                "172.17.0.1:53",
            ],
            "nameserver 10.0.0.1\n",
        );
        let s = steps(&c, &facts);
        for want in [
            "== systemd-resolved (not running on this host) ==",
            "    DNS=127.0.0.1 172.17.0.1",
            "joyride listens on 127.0.0.1:53; put this line first",
            "    nameserver 127.0.0.1\n",
            "joyride listens on 172.17.0.1:53, which containers can reach.",
            "{ \"dns\": [\"172.17.0.1\"] }",
        ] {
            assert!(s.contains(want), "missing {want:?} in:\n{s}");
        }
        assert!(!s.contains("systemd 246") && !s.contains("WARNING"), "{s}");
    }
}
