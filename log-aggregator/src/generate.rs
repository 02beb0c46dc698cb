//! A generated workload: the log lines of a made-up web service, for `scripts/run.sh` and
//! demonstrations (`log-aggregator generate --out FILE --rate N`). Access lines with their
//! status and latency, warnings, and now and then an error with a multi-line stack trace;
//! every line starts with an ISO time, so `multiline_start = '^\d{4}-'` joins the traces.
//! Deterministic for a seed. Pure.

/// A small xorshift generator: enough for made-up logs.
pub struct Generator {
    state: u64,
    n: u64,
}

const PATHS: [&str; 8] = [
    "/",
    "/login",
    "/search",
    "/cart",
    "/checkout",
    "/api/items",
    "/api/users",
    "/static/app.js",
];
const METHODS: [&str; 4] = ["GET", "GET", "GET", "POST"];

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            state: seed.max(1),
            n: 0,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// The next record (one line, or a few for a stack trace) at `iso_time`, without its
    /// final newline.
    pub fn record(&mut self, iso_time: &str) -> String {
        self.n += 1;
        let r = self.next();
        let path = PATHS[(r % PATHS.len() as u64) as usize];
        let method = METHODS[((r >> 8) % METHODS.len() as u64) as usize];
        let ms = (r >> 16) % 900 + 3;
        let user = (r >> 32) % 5000;
        match (r >> 40) % 100 {
            0..=1 => format!(
                "{iso_time} ERROR request {} failed: java.lang.IllegalStateException: cart {user} is closed\n\
                 \tat shop.Cart.add(Cart.java:{})\n\tat shop.Api.handle(Api.java:88)\n\tat shop.Server.run(Server.java:41)",
                self.n,
                (r >> 48) % 400 + 10
            ),
            2..=6 => format!(
                "{iso_time} WARN slow upstream for {method} {path}: {ms}ms (user {user})"
            ),
            _ => {
                let status = if (r >> 50).is_multiple_of(50) { 404 } else { 200 };
                format!("{iso_time} INFO {method} {path} {status} {ms}ms user={user}")
            }
        }
    }
}

/// A Unix time in milliseconds as `2026-12-07T05:16:23.870Z`.
pub fn iso_time(ms: i64) -> String {
    let (y, m, d) = crate::syslog::message::civil_from_days(ms.div_euclid(86_400_000));
    let rem = ms.rem_euclid(86_400_000);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::message::parse_rfc3339;

    #[test]
    fn times_round_trip_and_records_start_with_them() {
        for ms in [0, 1_796_623_200_123, 951_782_400_000 /* 2000-02-29 */] {
            assert_eq!(parse_rfc3339(&iso_time(ms)), Some(ms), "{}", iso_time(ms));
        }
        let mut g = Generator::new(7);
        let records: Vec<String> = (0..500)
            .map(|_| g.record("2026-12-07T00:00:00.000Z"))
            .collect();
        assert!(records.iter().all(|r| r.starts_with("2026-12-07T")));
        assert!(
            records.iter().any(|r| r.contains("\n\tat shop.")),
            "some stack traces"
        );
        assert!(records.iter().any(|r| r.contains(" WARN ")));
        let mut again = Generator::new(7);
        assert_eq!(
            again.record("t"),
            Generator::new(7).record("t"),
            "deterministic"
        );
    }
}
