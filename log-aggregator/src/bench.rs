//! The query benchmark (`log-aggregator bench-query`, run by `bench/logs.sh`): loads LINES
//! generated lines into an aggregator over HTTP (NDJSON pushes, several in flight, spread
//! over the last hour and over 8 services on 4 hosts), waits until all are searchable, then
//! times text searches of the kinds a user types (a word, a rare word, a phrase, a word in
//! one service, a level) and prints each kind's p50 and p99.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::http;
use crate::generate::{iso_time, Generator};
use crate::server::now_ms;

/// Lines in one push of the load.
pub const PUSH_LINES: usize = 5_000;
const SERVICES: [&str; 8] = [
    "shop", "cart", "search", "auth", "payments", "mail", "images", "api",
];

/// The searches timed: (kind, query string).
pub fn searches() -> Vec<(&'static str, &'static str)> {
    vec![
        ("common word", "q=GET"),
        ("rare word", "q=IllegalStateException"),
        ("phrase", "q=%22slow+upstream%22"),
        ("word, one service", "q=checkout&service=payments"),
        ("level only", "level=error"),
        ("word, newest 10", "q=cart&limit=10"),
    ]
}

/// The value at `q` (0..=1) of sorted `xs`, nearest rank.
pub fn percentile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

/// The NDJSON of lines `from..to` of `total`, spread over the hour before `end_ms`.
fn push_body(g: &mut Generator, from: usize, to: usize, total: usize, end_ms: i64) -> Vec<u8> {
    let mut body = Vec::with_capacity((to - from) * 160);
    for i in from..to {
        let ts = end_ms - 3_600_000 + (i as i64 * 3_600_000) / total as i64;
        let text = g.record(&iso_time(ts));
        let line = serde_json::json!({
            "ts": ts,
            "service": SERVICES[i % SERVICES.len()],
            "host": format!("web-{}", i % 4),
            "level": crate::agent::run::level_of(&text).name(),
            "msg": text,
        });
        serde_json::to_writer(&mut body, &line).expect("serialises");
        body.push(b'\n');
    }
    body
}

/// Loads `lines` lines into the aggregator at `addr` with `in_flight` pushes at once.
pub async fn load(addr: &str, token: &str, lines: usize, in_flight: usize) -> anyhow::Result<f64> {
    let end_ms = now_ms();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..in_flight {
        let (addr, token, next, done) = (
            addr.to_string(),
            format!("Bearer {token}"),
            next.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut g = Generator::new(worker as u64 + 1);
            loop {
                let from = next.fetch_add(PUSH_LINES as u64, Ordering::Relaxed) as usize;
                if from >= lines {
                    return Ok::<(), anyhow::Error>(());
                }
                let to = (from + PUSH_LINES).min(lines);
                let body = push_body(&mut g, from, to, lines, end_ms);
                let key = format!("bench-{end_ms}-{from}");
                loop {
                    let headers = [
                        ("Authorization", token.as_str()),
                        ("Idempotency-Key", key.as_str()),
                    ];
                    match http::post(
                        &addr,
                        "/api/v1/push",
                        &headers,
                        &body,
                        Duration::from_secs(60),
                    )
                    .await
                    {
                        Ok((200, _)) => break,
                        Ok((429 | 503, _)) | Err(_) => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        Ok((status, answer)) => {
                            anyhow::bail!("the aggregator answered {status}: {answer}")
                        }
                    }
                }
                done.fetch_add((to - from) as u64, Ordering::Relaxed);
            }
        }));
    }
    let reporter = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let n = done.load(Ordering::Relaxed) as f64;
                let rate = n / started.elapsed().as_secs_f64();
                let eta = (lines as f64 - n) / rate.max(1.0);
                eprintln!("loaded {n:.0} of {lines} lines, {rate:.0} lines/s, ETA {eta:.0} s");
            }
        })
    };
    for t in tasks {
        t.await??;
    }
    reporter.abort();
    Ok(lines as f64 / started.elapsed().as_secs_f64())
}

/// The `total` of a query.
async fn total(addr: &str, query: &str) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let (status, body) = http::get(
        addr,
        &format!("/api/query?{query}"),
        Duration::from_secs(120),
    )
    .await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(status == 200, "the query {query} answered {status}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    Ok((v["total"].as_u64().unwrap_or(0), ms))
}

/// Loads, waits until searchable, then times `rounds` rounds of [`searches`]; prints.
pub async fn run(
    addr: &str,
    token: &str,
    lines: usize,
    in_flight: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    // What the aggregator holds already (the benchmark may follow others on it).
    let (before, _) = total(addr, "from=now-2h&limit=1").await?;
    let rate = load(addr, token, lines, in_flight).await?;
    println!("loaded {lines} lines over HTTP at {rate:.0} lines/s ({in_flight} pushes of {PUSH_LINES} in flight)");
    let started = Instant::now();
    let range = "from=now-2h&limit=1";
    loop {
        let (n, _) = total(addr, range).await?;
        if n >= before + lines as u64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "only {n} of {lines} lines became searchable"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "all searchable {:.1} s after the load finished",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>12}",
        "search", "p50 ms", "p99 ms", "max ms", "lines found"
    );
    for (kind, q) in searches() {
        let query = format!("{q}&from=now-2h");
        let mut times = Vec::with_capacity(rounds);
        let mut found = 0;
        for _ in 0..rounds {
            let (n, ms) = total(addr, &query).await?;
            found = n;
            times.push(ms);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{kind:<22} {:>10.1} {:>10.1} {:>10.1} {found:>12}",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 0.5), 50.0);
        assert_eq!(percentile(&xs, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn a_push_body_spreads_its_lines_over_the_hour() {
        let mut g = Generator::new(1);
        let body = push_body(&mut g, 0, 10, 10, 3_600_000);
        let lines: Vec<serde_json::Value> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0]["ts"], 0);
        assert_eq!(lines[9]["ts"], 3_240_000);
        assert_eq!(lines[1]["service"], "cart");
        assert!(lines.iter().all(|l| l["level"].is_string()));
    }
}
