//! The server's counters and latency histograms, rendered as Prometheus text at `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Route>>,
}

impl Metrics {
    pub fn observe(&self, route: String, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut routes = self.routes.lock().expect("metrics lock");
        let r = routes.entry(route).or_default();
        *r.by_status.entry(status).or_default() += 1;
        r.count += 1;
        r.sum_seconds += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                r.buckets[i] += 1;
            }
        }
    }

    /// Prometheus text; `extra` lines (gauges about the index) are appended.
    pub fn render(&self, extra: &str) -> String {
        let routes = self.routes.lock().expect("metrics lock");
        let mut out = String::new();
        out.push_str("# HELP dictionary_requests_total Requests answered, by route and status.\n");
        out.push_str("# TYPE dictionary_requests_total counter\n");
        for (route, r) in routes.iter() {
            for (status, n) in &r.by_status {
                out.push_str(&format!(
                    "dictionary_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
                ));
            }
        }
        out.push_str("# HELP dictionary_request_seconds Time to answer a request, by route.\n");
        out.push_str("# TYPE dictionary_request_seconds histogram\n");
        for (route, r) in routes.iter() {
            for (i, bound) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "dictionary_request_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}\n",
                    r.buckets[i]
                ));
            }
            out.push_str(&format!(
                "dictionary_request_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n",
                r.count
            ));
            out.push_str(&format!(
                "dictionary_request_seconds_sum{{route=\"{route}\"}} {}\n",
                r.sum_seconds
            ));
            out.push_str(&format!(
                "dictionary_request_seconds_count{{route=\"{route}\"}} {}\n",
                r.count
            ));
        }
        out.push_str(extra);
        out
    }
}
