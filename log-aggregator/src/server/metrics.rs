//! The aggregator's counters, rendered as Prometheus text at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    /// Lines acknowledged (stored), by the way they came.
    pub lines_http: AtomicU64,
    pub lines_loki: AtomicU64,
    pub lines_syslog_tcp: AtomicU64,
    pub lines_syslog_udp: AtomicU64,
    pub bytes: AtomicU64,
    /// Chunks written to the store.
    pub batches: AtomicU64,
    /// Writes to the store that failed (and were retried, or refused to the sender).
    pub store_errors: AtomicU64,
    /// Pushes refused, by reason.
    pub refused_busy: AtomicU64,
    pub refused_token: AtomicU64,
    pub refused_bad: AtomicU64,
    /// UDP datagrams dropped because the queue was full (UDP has no back-pressure).
    pub udp_dropped: AtomicU64,
    /// Records the index already had (retries, replays).
    pub dedup_hits: AtomicU64,
    pub indexed: AtomicU64,
    /// Syslog records queued for the store now.
    pub queued: AtomicU64,
    /// How far the index is behind the journal (ms), as of the last poll.
    pub lag_ms: AtomicU64,
    pub queries: AtomicU64,
    pub tails: AtomicU64,
}

/// Appends one metric in Prometheus text: its HELP and TYPE, then a line per sample (labels
/// as written, `""` for none).
pub fn line(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    for (labels, v) in samples {
        out.push_str(&format!("{name}{labels} {v}\n"));
    }
}

impl Metrics {
    /// Prometheus text; `buckets` and `indexed_lines` describe the index.
    pub fn render(&self, buckets: usize, indexed_lines: u64) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        line(
            &mut out,
            "logs_ingested_lines_total",
            "counter",
            "Lines stored (acknowledged), by the way they came.",
            &[
                ("{via=\"http\"}", get(&self.lines_http)),
                ("{via=\"loki\"}", get(&self.lines_loki)),
                ("{via=\"syslog_tcp\"}", get(&self.lines_syslog_tcp)),
                ("{via=\"syslog_udp\"}", get(&self.lines_syslog_udp)),
            ],
        );
        line(
            &mut out,
            "logs_ingested_bytes_total",
            "counter",
            "Bytes of records stored.",
            &[("", get(&self.bytes))],
        );
        line(
            &mut out,
            "logs_store_chunks_total",
            "counter",
            "Chunks (a push's records of one stream and bucket) written to the store.",
            &[("", get(&self.batches))],
        );
        line(
            &mut out,
            "logs_store_errors_total",
            "counter",
            "Writes to the store that failed.",
            &[("", get(&self.store_errors))],
        );
        line(
            &mut out,
            "logs_pushes_refused_total",
            "counter",
            "Pushes refused, by reason.",
            &[
                ("{reason=\"busy\"}", get(&self.refused_busy)),
                ("{reason=\"token\"}", get(&self.refused_token)),
                ("{reason=\"bad\"}", get(&self.refused_bad)),
            ],
        );
        line(
            &mut out,
            "logs_udp_dropped_total",
            "counter",
            "Syslog datagrams dropped with the queue full.",
            &[("", get(&self.udp_dropped))],
        );
        line(
            &mut out,
            "logs_dedup_hits_total",
            "counter",
            "Records the index already had (retries and replays).",
            &[("", get(&self.dedup_hits))],
        );
        line(
            &mut out,
            "logs_indexed_total",
            "counter",
            "Records indexed by this aggregator.",
            &[("", get(&self.indexed))],
        );
        line(
            &mut out,
            "logs_queue_records",
            "gauge",
            "Syslog records waiting for the store (the buffer's fill).",
            &[("", get(&self.queued))],
        );
        line(
            &mut out,
            "logs_index_lag_seconds",
            "gauge",
            "How far the index is behind the newest journal entry read.",
            &[],
        );
        out.push_str(&format!(
            "logs_index_lag_seconds {}\n",
            get(&self.lag_ms) as f64 / 1000.0
        ));
        line(
            &mut out,
            "logs_index_buckets",
            "gauge",
            "Time buckets indexed.",
            &[("", buckets as u64)],
        );
        line(
            &mut out,
            "logs_index_lines",
            "gauge",
            "Lines in the index.",
            &[("", indexed_lines)],
        );
        line(
            &mut out,
            "logs_queries_total",
            "counter",
            "Queries answered.",
            &[("", get(&self.queries))],
        );
        line(
            &mut out,
            "logs_tails",
            "gauge",
            "Live tails open.",
            &[("", get(&self.tails))],
        );
        out
    }
}
