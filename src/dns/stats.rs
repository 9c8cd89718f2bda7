//! Query counters. Each UDP worker thread and the TCP side own a `WorkerStats` of their own
//! (no cache line shared between cores on the hot path); readers sum them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::records::RType;

/// The query types counted separately; everything else is `other`.
pub const COUNTED_TYPES: [RType; 10] = [
    RType::A,
    RType::AAAA,
    RType::CNAME,
    RType::TXT,
    RType::SRV,
    RType::MX,
    RType::PTR,
    RType::SOA,
    RType::NS,
    RType::ANY,
];
/// rcodes 0..=15 plus BADVERS (16) counted in the last slot.
const RCODE_SLOTS: usize = 17;

/// Latency buckets (upper bounds, microseconds) of the answer-time histogram.
pub const LATENCY_BUCKETS_US: [u64; 8] = [10, 25, 50, 100, 250, 1_000, 10_000, 100_000];

/// Counters of one worker.
#[derive(Default)]
pub struct WorkerStats {
    by_rcode: [AtomicU64; RCODE_SLOTS],
    by_type: [AtomicU64; COUNTED_TYPES.len() + 1],
    /// Packets not answered (too short, or responses), and UDP replies the kernel refused
    /// to send (no route back to the client, a firewall rule).
    pub dropped: AtomicU64,
    /// Queries relayed to an upstream.
    pub forwarded: AtomicU64,
    /// Forwarded queries no upstream answered (answered SERVFAIL).
    pub forward_failures: AtomicU64,
    /// Times a UDP worker found its queue empty while queries came several at a time and
    /// slept to let them gather (`Pacer`).
    pub udp_pauses: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_ns: AtomicU64,
}

impl WorkerStats {
    #[inline]
    pub fn answered(&self, rcode: u8, qtype: u16) {
        let slot = (rcode as usize).min(RCODE_SLOTS - 1);
        self.by_rcode[slot].fetch_add(1, Relaxed);
        let t = COUNTED_TYPES
            .iter()
            .position(|t| t.0 == qtype)
            .unwrap_or(COUNTED_TYPES.len());
        self.by_type[t].fetch_add(1, Relaxed);
    }

    /// `n` answers that took `nanos` together, each counted with their mean.
    #[inline]
    pub fn latency_batch(&self, n: u64, nanos: u64) {
        let Some(mean) = nanos.checked_div(n) else {
            return;
        };
        let us = mean / 1000;
        let b = LATENCY_BUCKETS_US
            .iter()
            .position(|&le| us <= le)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[b].fetch_add(n, Relaxed);
        self.latency_sum_ns.fetch_add(nanos, Relaxed);
    }

    #[inline]
    pub fn latency(&self, nanos: u64) {
        self.latency_batch(1, nanos);
    }
}

/// Every worker's counters.
#[derive(Default)]
pub struct DnsStats {
    workers: Mutex<Vec<Arc<WorkerStats>>>,
}

/// A sum of all workers' counters at one moment.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct StatsTotals {
    /// Answers by rcode name (NOERROR, NXDOMAIN, ...).
    pub by_rcode: Vec<(String, u64)>,
    /// Answers by query type name.
    pub by_type: Vec<(String, u64)>,
    pub dropped: u64,
    pub forwarded: u64,
    pub forward_failures: u64,
    pub udp_pauses: u64,
    /// Cumulative histogram: (upper bound in seconds, count), the last `+Inf`.
    pub latency_buckets: Vec<(f64, u64)>,
    pub latency_sum_seconds: f64,
    pub latency_count: u64,
}

pub fn rcode_name(code: usize) -> &'static str {
    match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        16 => "BADVERS",
        _ => "OTHER",
    }
}

impl DnsStats {
    /// A new worker's counters, registered for reading.
    pub fn worker(&self) -> Arc<WorkerStats> {
        let w = Arc::new(WorkerStats::default());
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(w.clone());
        w
    }

    pub fn totals(&self) -> StatsTotals {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut rc = [0u64; RCODE_SLOTS];
        let mut ty = [0u64; COUNTED_TYPES.len() + 1];
        let mut lat = [0u64; LATENCY_BUCKETS_US.len() + 1];
        let mut t = StatsTotals::default();
        let mut sum_ns = 0;
        for w in workers.iter() {
            for (a, b) in rc.iter_mut().zip(&w.by_rcode) {
                *a += b.load(Relaxed);
            }
            for (a, b) in ty.iter_mut().zip(&w.by_type) {
                *a += b.load(Relaxed);
            }
            for (a, b) in lat.iter_mut().zip(&w.latency) {
                *a += b.load(Relaxed);
            }
            t.dropped += w.dropped.load(Relaxed);
            t.forwarded += w.forwarded.load(Relaxed);
            t.forward_failures += w.forward_failures.load(Relaxed);
            t.udp_pauses += w.udp_pauses.load(Relaxed);
            sum_ns += w.latency_sum_ns.load(Relaxed);
        }
        let mut other = 0;
        for (code, n) in rc.iter().enumerate() {
            match rcode_name(code) {
                "OTHER" => other += n,
                name => t.by_rcode.push((name.to_string(), *n)),
            }
        }
        t.by_rcode.push(("OTHER".to_string(), other));
        for (i, n) in ty.iter().enumerate() {
            let name = COUNTED_TYPES
                .get(i)
                .map_or("OTHER".to_string(), |t| t.to_string());
            t.by_type.push((name, *n));
        }
        let mut cumulative = 0;
        for (i, n) in lat.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS_US
                .get(i)
                .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
            t.latency_buckets.push((le, cumulative));
        }
        t.latency_count = cumulative;
        t.latency_sum_seconds = sum_ns as f64 / 1e9;
        t
    }
}
