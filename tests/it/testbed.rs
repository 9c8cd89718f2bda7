//! A test bed of "hosts": network namespaces on a bridge of their own, made by the test and
//! removed when dropped (also when the test fails). Names carry the process id and a
//! counter, so parallel tests and test processes never collide. Nothing here touches the
//! machine's real interfaces: the bridge has no address in the root namespace, and
//! multicast is routed only to each namespace's own veth.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command, ignoring failures (clean-up).
fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// Whether this process may make namespaces (root with iproute2).
pub fn available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    root && Command::new("ip").arg("-V").output().is_ok()
}

pub struct Host {
    /// Namespace name (`ip netns`).
    pub ns: String,
    /// The host side of its veth, on the bridge (down = partitioned).
    pub veth: String,
    pub ip: Ipv4Addr,
}

impl Host {
    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        sh(&full);
    }

    /// Cuts the host off the bridge (`false`) or reconnects it (`true`).
    pub fn set_link(&self, up: bool) {
        sh(&[
            "ip",
            "link",
            "set",
            &self.veth,
            if up { "up" } else { "down" },
        ]);
    }

    /// Drops incoming packets with probability `p` (iptables statistic match).
    pub fn set_loss(&self, p: f64) {
        self.exec(&[
            "iptables",
            "-A",
            "INPUT",
            "-i",
            "eth0",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p.to_string(),
            "-j",
            "DROP",
        ]);
    }
}

pub struct Testbed {
    pub prefix: String,
    pub bridge: String,
    pub hosts: Vec<Host>,
    forward_rule: bool,
}

impl Testbed {
    /// `n` hosts at 10.210.0.1.. on a new bridge.
    pub fn new(n: usize) -> Testbed {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!(
            "jr{}{}",
            std::process::id() % 100000,
            (b'a' + (k % 26) as u8) as char
        );
        let bridge = format!("{prefix}br");
        let mut bed = Testbed {
            prefix: prefix.clone(),
            bridge: bridge.clone(),
            hosts: Vec::new(),
            forward_rule: false,
        };
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        sh(&["ip", "link", "set", &bridge, "up"]);
        // Docker sets FORWARD to DROP and bridged frames pass iptables: allow our bridge.
        sh(&[
            "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ]);
        bed.forward_rule = true;
        for i in 1..=n {
            let ns = format!("{prefix}h{i}");
            let veth = format!("{prefix}v{i}");
            let ip = Ipv4Addr::new(10, 210, 0, i as u8);
            sh(&["ip", "netns", "add", &ns]);
            bed.hosts.push(Host {
                ns: ns.clone(),
                veth: veth.clone(),
                ip,
            });
            sh(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            sh(&["ip", "link", "set", &veth, "master", &bridge, "up"]);
            let h = bed.hosts.last().expect("host");
            h.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            h.exec(&["ip", "link", "set", "eth0", "up"]);
            h.exec(&["ip", "link", "set", "lo", "up"]);
            // Multicast goes out of eth0 only (there is no other interface here).
            h.exec(&["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        bed
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for h in &self.hosts {
            // Processes still inside would keep nothing alive: the namespace goes with its
            // last process, and the callers' guards kill theirs first.
            sh_quiet(&["ip", "netns", "del", &h.ns]);
            sh_quiet(&["ip", "link", "del", &h.veth]);
        }
        if self.forward_rule {
            sh_quiet(&[
                "iptables",
                "-D",
                "FORWARD",
                "-i",
                &self.bridge,
                "-o",
                &self.bridge,
                "-j",
                "ACCEPT",
            ]);
        }
        sh_quiet(&["ip", "link", "del", &self.bridge]);
    }
}
