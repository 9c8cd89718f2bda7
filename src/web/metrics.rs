//! `/metrics`: the Prometheus text format (version 0.0.4), every name prefixed `joyride_`.
//!
//! Built from the DNS counters, the snapshot and the status board on each scrape; the
//! components' own counters become `joyride_<component>_<counter>_total`, so a new
//! component's counters appear without changing this file.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::api::counts_by_source;
use super::{unix_seconds, WebState};
use crate::dns::stats::StatsTotals;
use crate::status::{ClusterMember, ComponentStatus};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything one scrape shows, gathered first so that rendering is a pure function.
pub struct MetricsInput<'a> {
    pub stats: &'a StatsTotals,
    pub records_by_source: BTreeMap<&'static str, usize>,
    pub names: usize,
    pub generation: u64,
    pub components: &'a BTreeMap<String, ComponentStatus>,
    pub members: Option<&'a [ClusterMember]>,
    pub started: SystemTime,
    pub now: SystemTime,
}

pub async fn metrics(State(state): State<WebState>) -> Response {
    let sh = &state.shared;
    let snap = sh.reader.load_full();
    let stats = sh.dns_stats.totals();
    let components = sh.status.components();
    let members = sh.status.members();
    let text = render(&MetricsInput {
        stats: &stats,
        records_by_source: counts_by_source(&snap),
        names: snap.name_count(),
        generation: snap.generation,
        components: &components,
        members: members.as_deref(),
        started: sh.started,
        now: SystemTime::now(),
    });
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// A metric or label name made of `[a-zA-Z0-9_]`.
fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label value, escaped as the format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn float(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

pub fn render(m: &MetricsInput) -> String {
    let mut o = String::with_capacity(4096);
    header(
        &mut o,
        "joyride_build_info",
        "gauge",
        "Version of this joyride.",
    );
    let _ = writeln!(
        o,
        "joyride_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    header(
        &mut o,
        "joyride_start_time_seconds",
        "gauge",
        "When this process started, in seconds since the Unix epoch.",
    );
    let _ = writeln!(o, "joyride_start_time_seconds {}", unix_seconds(m.started));
    header(
        &mut o,
        "joyride_uptime_seconds",
        "gauge",
        "Seconds since this process started.",
    );
    let up = m
        .now
        .duration_since(m.started)
        .map_or(0.0, |d| d.as_secs_f64());
    let _ = writeln!(o, "joyride_uptime_seconds {up}");

    header(
        &mut o,
        "joyride_dns_queries_total",
        "counter",
        "DNS queries answered, by query type.",
    );
    for (t, n) in &m.stats.by_type {
        let _ = writeln!(o, "joyride_dns_queries_total{{type=\"{}\"}} {n}", label(t));
    }
    header(
        &mut o,
        "joyride_dns_responses_total",
        "counter",
        "DNS responses sent, by response code.",
    );
    for (rc, n) in &m.stats.by_rcode {
        let _ = writeln!(
            o,
            "joyride_dns_responses_total{{rcode=\"{}\"}} {n}",
            label(rc)
        );
    }
    header(
        &mut o,
        "joyride_dns_answer_duration_seconds",
        "histogram",
        "Time spent building answers from joyride's own records (UDP: the mean over the batch a query came in).",
    );
    for (le, n) in &m.stats.latency_buckets {
        let _ = writeln!(
            o,
            "joyride_dns_answer_duration_seconds_bucket{{le=\"{}\"}} {n}",
            float(*le)
        );
    }
    let _ = writeln!(
        o,
        "joyride_dns_answer_duration_seconds_sum {}",
        m.stats.latency_sum_seconds
    );
    let _ = writeln!(
        o,
        "joyride_dns_answer_duration_seconds_count {}",
        m.stats.latency_count
    );
    for (name, help, v) in [
        (
            "joyride_dns_forwarded_total",
            "Queries relayed to an upstream nameserver.",
            m.stats.forwarded,
        ),
        (
            "joyride_dns_upstream_failures_total",
            "Forwarded queries no upstream answered (answered SERVFAIL).",
            m.stats.forward_failures,
        ),
        (
            "joyride_dns_dropped_total",
            "Packets not answered (too short, or responses) and UDP replies the kernel refused to send.",
            m.stats.dropped,
        ),
        (
            "joyride_dns_udp_pauses_total",
            "Times a UDP worker found no query waiting while they came several at a time, \
             and let them gather for --udp-coalesce-us.",
            m.stats.udp_pauses,
        ),
    ] {
        header(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }

    header(
        &mut o,
        "joyride_records",
        "gauge",
        "Records served, by the source that asserted them (derived PTRs not counted).",
    );
    for (s, n) in &m.records_by_source {
        let _ = writeln!(o, "joyride_records{{source=\"{s}\"}} {n}");
    }
    header(
        &mut o,
        "joyride_names",
        "gauge",
        "Distinct names with records, derived reverse names included.",
    );
    let _ = writeln!(o, "joyride_names {}", m.names);
    header(
        &mut o,
        "joyride_snapshot_generation",
        "counter",
        "Record snapshots published since start.",
    );
    let _ = writeln!(o, "joyride_snapshot_generation {}", m.generation);

    header(
        &mut o,
        "joyride_component_healthy",
        "gauge",
        "1 when the component reports itself healthy.",
    );
    for (name, c) in m.components {
        let _ = writeln!(
            o,
            "joyride_component_healthy{{component=\"{}\"}} {}",
            label(name),
            u8::from(c.healthy)
        );
    }

    header(
        &mut o,
        "joyride_cluster_members",
        "gauge",
        "Cluster members by state (this node alone, alive, without clustering).",
    );
    let mut by_state: BTreeMap<&str, usize> = ["alive", "suspect", "dead", "left"]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
    match m.members {
        Some(members) if !members.is_empty() => {
            for mem in members {
                *by_state.entry(mem.state.as_str()).or_default() += 1;
            }
        }
        _ => *by_state.entry("alive").or_default() += 1,
    }
    for (s, n) in by_state {
        let _ = writeln!(o, "joyride_cluster_members{{state=\"{}\"}} {n}", label(s));
    }

    // Components' own counters: joyride_<component>_<counter>_total. A name already used
    // above (or twice after sanitizing) is skipped: a family must appear once.
    let mut seen: std::collections::HashSet<String> = o
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    for (comp, c) in m.components {
        for (counter, v) in &c.counters {
            let base = format!("joyride_{}_{}", sanitize(comp), sanitize(counter));
            let name = if base.ends_with("_total") {
                base
            } else {
                format!("{base}_total")
            };
            if !seen.insert(name.clone()) {
                continue;
            }
            header(
                &mut o,
                &name,
                "counter",
                &format!("Counter {counter:?} of the {comp} component."),
            );
            let _ = writeln!(o, "{name} {v}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_every_family_in_valid_text_format() {
        let stats = StatsTotals {
            by_rcode: vec![("NOERROR".into(), 3), ("NXDOMAIN".into(), 1)],
            by_type: vec![("A".into(), 4)],
            forwarded: 2,
            forward_failures: 1,
            dropped: 0,
            udp_pauses: 5,
            latency_buckets: vec![(0.00001, 1), (0.1, 4), (f64::INFINITY, 4)],
            latency_sum_seconds: 0.002,
            latency_count: 4,
        };
        let mut components = BTreeMap::new();
        components.insert(
            "hosts".to_string(),
            ComponentStatus {
                healthy: true,
                counters: [
                    ("bad_lines".to_string(), 2),
                    ("events-seen".to_string(), 5),
                    ("events_seen".to_string(), 6),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            },
        );
        let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let text = render(&MetricsInput {
            stats: &stats,
            records_by_source: [("hosts", 2), ("docker", 0)].into_iter().collect(),
            names: 3,
            generation: 7,
            components: &components,
            members: None,
            started,
            now: started + Duration::from_secs(5),
        });
        for want in [
            "joyride_dns_queries_total{type=\"A\"} 4",
            "joyride_dns_responses_total{rcode=\"NXDOMAIN\"} 1",
            "joyride_dns_answer_duration_seconds_bucket{le=\"0.00001\"} 1",
            "joyride_dns_answer_duration_seconds_bucket{le=\"+Inf\"} 4",
            "joyride_dns_answer_duration_seconds_count 4",
            "joyride_dns_forwarded_total 2",
            "joyride_dns_upstream_failures_total 1",
            "joyride_records{source=\"hosts\"} 2",
            "joyride_hosts_bad_lines_total 2",
            "joyride_hosts_events_seen_total 5",
            "joyride_cluster_members{state=\"alive\"} 1",
            "joyride_component_healthy{component=\"hosts\"} 1",
            "joyride_uptime_seconds 5",
            "# TYPE joyride_dns_answer_duration_seconds histogram",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        components.insert(
            "dns".to_string(),
            ComponentStatus {
                counters: [("forwarded".to_string(), 9)].into_iter().collect(),
                ..Default::default()
            },
        );
        let text = render(&MetricsInput {
            stats: &stats,
            records_by_source: BTreeMap::new(),
            names: 3,
            generation: 7,
            components: &components,
            members: None,
            started,
            now: started,
        });
        assert_eq!(
            text.matches("# TYPE joyride_dns_forwarded_total").count(),
            1
        );
        assert_eq!(
            text.matches("# TYPE joyride_hosts_events_seen_total")
                .count(),
            1
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("joyride_"), "{line}");
            assert!(value == "+Inf" || value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn names_and_labels_are_escaped() {
        assert_eq!(sanitize("gossip-bytes.sent"), "gossip_bytes_sent");
        assert_eq!(sanitize("9x"), "_9x");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
