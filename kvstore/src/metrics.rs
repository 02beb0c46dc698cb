//! Process metrics: lock-free counters and latency histograms, rendered as Prometheus text.
//!
//! Small on purpose: a fixed set of operations and bucket bounds, atomics only, so recording a
//! sample on the request path costs a few relaxed adds. `/metrics` renders these together with
//! the storage engine's figures.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::storage::Stats;

/// The operations counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    Put,
    Delete,
    Incr,
    Scan,
    Batch,
    Other,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::Get,
        Op::Put,
        Op::Delete,
        Op::Incr,
        Op::Scan,
        Op::Batch,
        Op::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Incr => "incr",
            Op::Scan => "scan",
            Op::Batch => "batch",
            Op::Other => "other",
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records `n` observations of `us` microseconds each.
    fn record_n(&self, us: u64, n: u64) {
        if let Some(i) = BUCKETS_US.iter().position(|&b| us <= b) {
            self.buckets[i].fetch_add(n, Ordering::Relaxed);
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_us
            .fetch_add(us.saturating_mul(n), Ordering::Relaxed);
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Binary,
    Resp,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Listener::Binary => "binary",
            Listener::Resp => "resp",
        }
    }
}

#[derive(Debug, Default)]
struct PerListener {
    connections_active: AtomicI64,
    connections_total: AtomicU64,
    connections_rejected: AtomicU64,
    protocol_errors: AtomicU64,
    timeouts: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// All counters of a server process.
#[derive(Debug, Default)]
pub struct Metrics {
    ops: [AtomicU64; 7],
    op_errors: [AtomicU64; 7],
    latency: [Histogram; 7],
    listeners: [PerListener; 2],
}

impl Metrics {
    pub fn record_op(&self, op: Op, elapsed: Duration, ok: bool) {
        self.record_ops(op, 1, u64::from(!ok), elapsed);
    }

    /// Records `count` operations of one type that took `each` apiece, `errors` of them failed:
    /// a pipelined run costs a handful of atomic additions, not a handful per command.
    pub fn record_ops(&self, op: Op, count: u64, errors: u64, each: Duration) {
        let i = op as usize;
        self.ops[i].fetch_add(count, Ordering::Relaxed);
        if errors > 0 {
            self.op_errors[i].fetch_add(errors, Ordering::Relaxed);
        }
        let us = each.as_micros().min(u128::from(u64::MAX)) as u64;
        self.latency[i].record_n(us, count);
    }

    fn listener(&self, l: Listener) -> &PerListener {
        &self.listeners[l as usize]
    }

    pub fn connection_opened(&self, l: Listener) {
        self.listener(l)
            .connections_active
            .fetch_add(1, Ordering::Relaxed);
        self.listener(l)
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self, l: Listener) {
        self.listener(l)
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connection_rejected(&self, l: Listener) {
        self.listener(l)
            .connections_rejected
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn protocol_error(&self, l: Listener) {
        self.listener(l)
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn timeout(&self, l: Listener) {
        self.listener(l).timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes(&self, l: Listener, read: usize, written: usize) {
        self.listener(l)
            .bytes_in
            .fetch_add(read as u64, Ordering::Relaxed);
        self.listener(l)
            .bytes_out
            .fetch_add(written as u64, Ordering::Relaxed);
    }

    pub fn connections_active(&self, l: Listener) -> i64 {
        self.listener(l).connections_active.load(Ordering::Relaxed)
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.iter().map(|o| o.load(Ordering::Relaxed)).sum()
    }

    /// The Prometheus text exposition of these metrics and the engine's `stats`.
    pub fn render(&self, stats: &Stats) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let o = &mut out;
        header(
            o,
            "kvstore_ops_total",
            "counter",
            "Requests handled, by operation.",
        );
        for op in Op::ALL {
            let n = self.ops[op as usize].load(Ordering::Relaxed);
            let _ = writeln!(o, "kvstore_ops_total{{op=\"{}\"}} {n}", op.name());
        }
        header(
            o,
            "kvstore_op_errors_total",
            "counter",
            "Requests that failed, by operation.",
        );
        for op in Op::ALL {
            let n = self.op_errors[op as usize].load(Ordering::Relaxed);
            let _ = writeln!(o, "kvstore_op_errors_total{{op=\"{}\"}} {n}", op.name());
        }
        header(
            o,
            "kvstore_op_duration_seconds",
            "histogram",
            "Request latency, by operation.",
        );
        for op in Op::ALL {
            let h = &self.latency[op as usize];
            let mut cumulative = 0;
            for (i, bound) in BUCKETS_US.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let le = *bound as f64 / 1e6;
                let _ = writeln!(
                    o,
                    "kvstore_op_duration_seconds_bucket{{op=\"{}\",le=\"{le}\"}} {cumulative}",
                    op.name()
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let name = op.name();
            let _ = writeln!(
                o,
                "kvstore_op_duration_seconds_bucket{{op=\"{name}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(o, "kvstore_op_duration_seconds_sum{{op=\"{name}\"}} {sum}");
            let _ = writeln!(
                o,
                "kvstore_op_duration_seconds_count{{op=\"{name}\"}} {count}"
            );
        }
        type Field = fn(&PerListener) -> u64;
        let per_listener: [(&str, &str, &str, Field); 7] = [
            (
                "kvstore_connections_active",
                "gauge",
                "Open client connections.",
                |l| l.connections_active.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "kvstore_connections_total",
                "counter",
                "Client connections accepted.",
                |l| l.connections_total.load(Ordering::Relaxed),
            ),
            (
                "kvstore_connections_rejected_total",
                "counter",
                "Connections refused at the limit.",
                |l| l.connections_rejected.load(Ordering::Relaxed),
            ),
            (
                "kvstore_protocol_errors_total",
                "counter",
                "Malformed or oversized input.",
                |l| l.protocol_errors.load(Ordering::Relaxed),
            ),
            (
                "kvstore_timeouts_total",
                "counter",
                "Connections closed by idle or read timeouts.",
                |l| l.timeouts.load(Ordering::Relaxed),
            ),
            (
                "kvstore_bytes_received_total",
                "counter",
                "Bytes read from clients.",
                |l| l.bytes_in.load(Ordering::Relaxed),
            ),
            (
                "kvstore_bytes_sent_total",
                "counter",
                "Bytes written to clients.",
                |l| l.bytes_out.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, field) in per_listener {
            header(o, name, kind, help);
            for l in [Listener::Binary, Listener::Resp] {
                let _ = writeln!(
                    o,
                    "{name}{{listener=\"{}\"}} {}",
                    l.name(),
                    field(self.listener(l))
                );
            }
        }
        let engine: [(&str, &str, &str, u64); 9] = [
            (
                "kvstore_keys",
                "gauge",
                "Keys in the index (expired ones until purged).",
                stats.keys,
            ),
            (
                "kvstore_segments",
                "gauge",
                "Segment files.",
                stats.segments,
            ),
            (
                "kvstore_disk_bytes",
                "gauge",
                "Bytes in segment files.",
                stats.disk_bytes,
            ),
            (
                "kvstore_live_bytes",
                "gauge",
                "Bytes of live records.",
                stats.live_bytes,
            ),
            (
                "kvstore_compactions_total",
                "counter",
                "Compactions finished.",
                stats.compactions,
            ),
            (
                "kvstore_compaction_reclaimed_bytes_total",
                "counter",
                "Bytes freed by compaction.",
                stats.compaction_bytes_reclaimed,
            ),
            (
                "kvstore_fsyncs_total",
                "counter",
                "fsync calls on segment files.",
                stats.fsyncs,
            ),
            (
                "kvstore_last_version",
                "gauge",
                "Highest version written.",
                stats.last_version,
            ),
            (
                "kvstore_durable_version",
                "gauge",
                "Highest version known on disk.",
                stats.durable_version,
            ),
        ];
        for (name, kind, help, value) in engine {
            header(o, name, kind, help);
            let _ = writeln!(o, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record_op(Op::Get, Duration::from_micros(70), true);
        m.record_op(Op::Get, Duration::from_micros(3_000), false);
        m.connection_opened(Listener::Resp);
        let text = m.render(&Stats {
            keys: 3,
            ..Stats::default()
        });
        for line in [
            "kvstore_ops_total{op=\"get\"} 2",
            "kvstore_op_errors_total{op=\"get\"} 1",
            "kvstore_op_duration_seconds_bucket{op=\"get\",le=\"0.0001\"} 1",
            "kvstore_op_duration_seconds_bucket{op=\"get\",le=\"0.005\"} 2",
            "kvstore_op_duration_seconds_count{op=\"get\"} 2",
            "kvstore_connections_active{listener=\"resp\"} 1",
            "kvstore_keys 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
