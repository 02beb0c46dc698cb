//! Aggregator nodes as real processes over a real 3-node store: real `logger` clients over
//! UDP, TCP newline and TCP octet counting, in RFC 3164 and 5424, NDJSON and Loki pushes
//! with curl; what one aggregator takes becomes searchable on the other (the journal); a
//! retried push is stored once; bad input and a push without the token get their typed
//! errors and the node goes on; the histogram and the live tail agree with the query; and
//! SIGTERM stops a node cleanly. Then: a store node killed mid-ingest, and a node joining
//! (partitions moving onto it) mid-ingest, lose and duplicate nothing, and a new aggregator
//! rebuilds its index from the store. And bad input, and a flood.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::harness::{wait_until, TempDir};
use tests::logs::{logger, start_store, stored, Aggregator};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `pairs` as a URL query string.
fn qs(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn query(a: &Aggregator, pairs: &[(&str, &str)]) -> Value {
    let (status, body) = a.get(&format!("/api/query?{}", qs(pairs)));
    assert_eq!(status, 200, "{body}");
    json(&body)
}

/// Waits until a query on `a` counts `want` lines; the last answer.
fn wait_total(a: &Aggregator, pairs: &[(&str, &str)], want: u64) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(20), || {
        last = query(a, pairs);
        last["total"] == want
    });
    assert!(ok, "{pairs:?}: wanted {want}, got {last}\n{}", a.log());
    last
}

#[test]
fn real_clients_reach_every_aggregator_and_each_line_is_found_once() {
    let cluster = start_store("logs-ingest");
    let dir = TempDir::new("logs-ingest-aggregators");
    let store = cluster.client_addresses();
    let mut a = Aggregator::start(&store, &dir.path, &["--name", "agg-a"]);
    let b = Aggregator::start(&store, &dir.path, &["--name", "agg-b"]);
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    assert!(b.wait_ready(Duration::from_secs(60)), "{}", b.log());

    // logger, every transport and format, to A; each line found on B, with its stream.
    let cases: [(&[&str], &str); 5] = [
        (&["--udp", "--rfc5424"], "udp5424"),
        (&["--udp", "--rfc3164"], "udp3164"),
        (&["--tcp", "--rfc5424"], "tcpnewline"),
        (&["--tcp", "--octet-count", "--rfc5424"], "tcpoctet"),
        (&["--tcp", "--rfc3164"], "tcp3164"),
    ];
    for (args, word) in cases {
        let port = if args.contains(&"--udp") {
            a.syslog_udp
        } else {
            a.syslog_tcp
        };
        let mut all = args.to_vec();
        all.extend(["--tag", "payments", "-p", "user.err"]);
        logger(port, &all, &format!("card declined {word} for order 17"));
    }
    for (_, word) in cases {
        let found = wait_total(&b, &[("q", word)], 1);
        let line = &found["lines"][0];
        assert_eq!(line["service"], "payments", "{found}");
        assert_eq!(line["level"], "error", "{found}");
        assert_eq!(
            line["message"],
            format!("card declined {word} for order 17")
        );
    }
    wait_total(&b, &[("q", "declined"), ("service", "payments")], 5);

    // NDJSON with the token; the same push retried under its Idempotency-Key is stored once.
    let body = b"{\"service\":\"api\",\"host\":\"web-9\",\"level\":\"warn\",\"msg\":\"slow upstream alpha\",\"route\":\"/pay\"}\n\
{\"service\":\"api\",\"host\":\"web-9\",\"level\":\"info\",\"msg\":\"request served beta\"}\n\
this line is not json gamma\n";
    for _ in 0..3 {
        let (status, out) = a.post("/api/v1/push", body, &["Idempotency-Key: push-0001"]);
        assert_eq!(status, 200, "{out}");
        assert_eq!(json(&out)["accepted"], 3);
    }
    let found = wait_total(&b, &[("q", "alpha")], 1);
    assert_eq!(found["lines"][0]["labels"]["route"], "/pay");
    assert_eq!(found["lines"][0]["host"], "web-9");
    let raw = wait_total(&b, &[("q", "gamma")], 1);
    assert!(raw["lines"][0]["parse_error"].is_string(), "{raw}");
    assert_eq!(
        raw["lines"][0]["host"], "127.0.0.1",
        "a raw line's host is its sender"
    );
    wait_total(&b, &[("host", "web-9")], 2);
    wait_total(&b, &[("host", "web-9"), ("level", "warning")], 1);

    // gzip on the wire.
    let gz = Command::new("sh")
        .args([
            "-c",
            "printf '{\"service\":\"api\",\"msg\":\"compressed delta\"}\\n' | gzip -c",
        ])
        .output()
        .unwrap()
        .stdout;
    let (status, out) = a.post("/api/v1/push", &gz, &["Content-Encoding: gzip"]);
    assert_eq!(status, 200, "{out}");
    wait_total(&b, &[("q", "delta")], 1);

    // Loki's push API.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let loki = format!(
        "{{\"streams\":[{{\"stream\":{{\"service_name\":\"checkout\",\"host\":\"web-3\",\"env\":\"prod\"}},\
          \"values\":[[\"{now_ns}\",\"loki epsilon one\"],[\"{}\",\"loki epsilon two\"]]}}]}}",
        now_ns + 1_000_000
    );
    let (status, out) = a.post(
        "/loki/api/v1/push",
        loki.as_bytes(),
        &["Content-Type: application/json"],
    );
    assert_eq!(status, 204, "{out}");
    let found = wait_total(&b, &[("q", "epsilon"), ("label", "env:prod")], 2);
    assert_eq!(
        found["lines"][0]["message"], "loki epsilon two",
        "newest first"
    );
    assert_eq!(found["lines"][0]["service"], "checkout");

    // Refused, with what was wrong; the node goes on.
    let (status, out) = a.post_as("/api/v1/push", body, &[], None);
    assert_eq!(status, 401, "{out}");
    assert_eq!(json(&out)["error"]["code"], "no_token");
    let (status, _) = a.post_as("/api/v1/push", body, &[], Some("wrong"));
    assert_eq!(status, 401);
    let (status, out) = a.post("/loki/api/v1/push", b"{\"streams\":{}}", &[]);
    assert_eq!(status, 400, "{out}");
    assert!(json(&out)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("streams"));
    let (status, out) = a.post(
        "/api/v1/push",
        b"\x1f\x8b garbage",
        &["Content-Encoding: gzip"],
    );
    assert_eq!(status, 400, "{out}");
    let (status, out) = a.get(&format!("/api/query?{}", qs(&[("level", "loud")])));
    assert_eq!(status, 400, "{out}");
    assert!(out.contains("level"), "{out}");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (status, _) = a.post("/api/v1/push", &garbage, &[]);
    assert_eq!(status, 200, "binary garbage is kept as raw lines");

    // The histogram counts what the query counts.
    let (status, out) = b.get(&format!(
        "/api/histogram?{}",
        qs(&[("q", "declined"), ("step", "1m")])
    ));
    assert_eq!(status, 200, "{out}");
    let h = json(&out);
    let sum: u64 = h["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!((h["total"].as_u64(), sum), (Some(5), 5), "{h}");

    // The live tail on B sees a line pushed to A.
    let tail_url = format!("http://{}/api/tail?{}", b.http, qs(&[("q", "zeta")]));
    let tail = std::thread::spawn(move || {
        Command::new("curl")
            .args(["-s", "-N", "--max-time", "6", &tail_url])
            .output()
            .unwrap()
            .stdout
    });
    // Twice, in case the tail connects late on a slow machine.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1500));
        let (status, _) = a.post(
            "/api/v1/push",
            b"{\"msg\":\"no match here\"}\n{\"msg\":\"tailed zeta line\"}\n",
            &[],
        );
        assert_eq!(status, 200);
    }
    let events = String::from_utf8(tail.join().unwrap()).unwrap();
    assert!(events.contains("event: line"), "{events}");
    assert!(events.contains("tailed zeta line"), "{events}");
    assert!(!events.contains("no match here"), "{events}");

    // The page, /health, /metrics.
    let (status, page) = b.get("/");
    assert!(status == 200 && page.contains("live tail"), "{page}");
    let (_, metrics) = a.get("/metrics");
    assert!(
        metrics.contains("logs_ingested_lines_total{via=\"syslog_udp\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("logs_pushes_refused_total{reason=\"token\"} 2"));
    let (_, metrics) = b.get("/metrics");
    let dedup = metrics
        .lines()
        .find(|l| l.starts_with("logs_dedup_hits_total "))
        .unwrap();
    assert_ne!(
        dedup, "logs_dedup_hits_total 0",
        "the retried push: {metrics}"
    );

    // SIGTERM: a clean stop.
    let status = a.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        a.log()
    );
    assert!(a.log().contains("stopped"), "{}", a.log());
}

/// Lines pushed as an agent pushes them (each naming its file position), retried until
/// acknowledged, while a store node is killed and brought back: every line is stored
/// exactly once; and an aggregator started afterwards rebuilds the same from the store.
#[test]
fn a_store_node_killed_mid_ingest_loses_and_duplicates_nothing() {
    let mut cluster = start_store("logs-kill");
    let dir = TempDir::new("logs-kill-aggregators");
    let store = cluster.client_addresses();
    let a = Aggregator::start(&store, &dir.path, &["--name", "agg-a"]);
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());

    const PUSHES: usize = 60;
    const LINES: usize = 50;
    let mut retries = 0;
    for p in 0..PUSHES {
        if p == 15 {
            cluster.kill(2).unwrap();
        }
        if p == 40 {
            cluster.restart(2).unwrap();
        }
        if p == 25 {
            // A node joins: partitions move onto it while the pushes go on.
            let rt = tests::harness::runtime();
            let client = kvstore::client::cluster::ClusterClient::new(
                cluster.client_addresses(),
                Default::default(),
            );
            let peer = rt.block_on(client.current_map()).unwrap().nodes[&1]
                .peer
                .clone();
            cluster
                .start_joining_node(4, &["--join".to_string(), peer])
                .unwrap();
        }
        let mut body = String::new();
        for l in 0..LINES {
            let n = p * LINES + l;
            body.push_str(&format!(
                "{{\"service\":\"drill\",\"msg\":\"line n{n:05}\",\"source\":\"/var/log/drill.log\",\"position\":{}}}\n",
                n * 100
            ));
        }
        loop {
            let (status, out) = a.post("/api/v1/push", body.as_bytes(), &["X-Log-Agent: host-1"]);
            if status == 200 {
                break;
            }
            retries += 1;
            assert!(retries < 200, "{status} {out}\n{}", a.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let want = (PUSHES * LINES) as u64;
    wait_total(&a, &[("service", "drill")], want);
    // The new node took replicas (moves ran under the pushes).
    assert!(
        wait_until(Duration::from_secs(60), || cluster
            .status(4)
            .and_then(|s| s["groups"].as_array().map(|g| !g.is_empty()))
            .unwrap_or(false)),
        "node 4 hosts partitions"
    );
    let seen = stored(&a, "drill");
    assert_eq!(seen.len() as u64, want);
    for n in 0..PUSHES * LINES {
        assert!(seen.contains(&format!("line n{n:05}")), "line {n} lost");
    }

    // A new aggregator builds the same from the store alone.
    let c = Aggregator::start(&store, &dir.path, &["--name", "agg-c"]);
    assert!(c.wait_ready(Duration::from_secs(60)), "{}", c.log());
    assert_eq!(query(&c, &[("service", "drill")])["total"], want);
    assert_eq!(stored(&c, "drill"), seen);
}

/// Bad input gets its answer and the node goes on: a 10 MiB line over syslog TCP and in an
/// NDJSON push (cut at 64 KiB and flagged), binary garbage, invalid UTF-8 over UDP; and a
/// flood of pushes beyond the pushes in flight gets 429 with Retry-After (back-pressure),
/// never a 5xx, and every push its sender retried is stored exactly once.
#[test]
fn bad_input_and_a_flood_get_their_answers_and_nothing_acknowledged_is_lost() {
    use std::io::Write as _;
    let cluster = start_store("logs-bad-input");
    let dir = TempDir::new("logs-bad-input-aggregators");
    let a = Aggregator::start(
        &cluster.client_addresses(),
        &dir.path,
        &["--pushes-in-flight", "2"],
    );
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());

    // Syslog over TCP: a 10 MiB line, garbage, then a good message on the same connection.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", a.syslog_tcp)).unwrap();
    let mut huge = b"<11>1 - web-1 bigapp - - - hugeline ".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    huge.push(b'\n');
    conn.write_all(&huge).unwrap();
    conn.write_all(b"\x00\x01\xfe\xff garbageword \x80\x81\n")
        .unwrap();
    conn.write_all(b"<14>1 - web-1 bigapp - - - afterword survived\n")
        .unwrap();
    drop(conn);
    let big = wait_total(&a, &[("q", "hugeline")], 1);
    let line = &big["lines"][0];
    assert_eq!(line["truncated"], true, "{line}");
    assert!(line["message"].as_str().unwrap().len() <= 64 * 1024);
    wait_total(&a, &[("q", "garbageword")], 1);
    wait_total(&a, &[("q", "afterword")], 1);

    // Invalid UTF-8 over UDP.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        b"<13>1 - vm udpapp - - - bad \xc3\x28 utf8word",
        ("127.0.0.1", a.syslog_udp),
    )
    .unwrap();
    let found = wait_total(&a, &[("q", "utf8word")], 1);
    assert!(found["lines"][0]["message"]
        .as_str()
        .unwrap()
        .contains('\u{fffd}'));

    // A 10 MiB line in an NDJSON push.
    let mut body = b"{\"service\":\"bigjson\",\"msg\":\"jsonhuge ".to_vec();
    body.extend(std::iter::repeat_n(b'y', 10 * 1024 * 1024));
    body.extend_from_slice(b"\"}\n");
    let (status, out) = a.post("/api/v1/push", &body, &[]);
    assert_eq!(status, 200, "{out}");
    let found = wait_total(&a, &[("q", "jsonhuge")], 1);
    assert_eq!(found["lines"][0]["truncated"], true);

    // A flood: 12 senders × 5 pushes × 200 lines at once, through 2 pushes in flight.
    let http = a.http.clone();
    let senders: Vec<_> = (0..12)
        .map(|s| {
            let http = http.clone();
            std::thread::spawn(move || {
                let (mut busy, mut other) = (0, Vec::new());
                for p in 0..5 {
                    let mut body = String::new();
                    for l in 0..200 {
                        body.push_str(&format!(
                            "{{\"service\":\"flood\",\"msg\":\"flood s{s} p{p} l{l}\"}}\n"
                        ));
                    }
                    let file =
                        std::env::temp_dir().join(format!("flood-{}-{s}-{p}", std::process::id()));
                    std::fs::write(&file, body).unwrap();
                    loop {
                        let out = std::process::Command::new("curl")
                            .args([
                                "-s",
                                "-o",
                                "/dev/null",
                                "-D",
                                "-",
                                "--max-time",
                                "30",
                                "-X",
                                "POST",
                            ])
                            .args([
                                "-H",
                                &format!("Authorization: Bearer {}", tests::logs::TOKEN),
                            ])
                            .args(["-H", &format!("Idempotency-Key: flood-{s}-{p}")])
                            .arg("--data-binary")
                            .arg(format!("@{}", file.display()))
                            .arg(format!("http://{http}/api/v1/push"))
                            .output()
                            .unwrap();
                        let head = String::from_utf8_lossy(&out.stdout).to_string();
                        let status: u16 = head
                            .split_whitespace()
                            .nth(1)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        match status {
                            200 => break,
                            429 => {
                                assert!(head.to_lowercase().contains("retry-after"), "{head}");
                                busy += 1;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            _ => {
                                other.push(status);
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                    }
                    let _ = std::fs::remove_file(&file);
                }
                (busy, other)
            })
        })
        .collect();
    let mut busy = 0;
    for t in senders {
        let (b, other) = t.join().unwrap();
        busy += b;
        assert!(
            other.is_empty(),
            "answers other than 200 and 429: {other:?}"
        );
    }
    assert!(busy > 0, "the flood met the limit");
    let flood = wait_total(&a, &[("service", "flood"), ("limit", "1")], 12 * 5 * 200);
    assert_eq!(flood["total"], 12000);

    // A syslog flood on one TCP connection, written as fast as the socket takes it: more
    // lines than the queue to the store holds (20,000), many in each read. Every line is
    // stored once, in the order sent.
    const SYSLOG_FLOOD: usize = 50_000;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", a.syslog_tcp)).unwrap();
    let mut lines = String::new();
    for i in 0..SYSLOG_FLOOD {
        lines.push_str(&format!("<13>1 - web-2 sysflood - - - sysflood {i:05}\n"));
    }
    conn.write_all(lines.as_bytes()).unwrap();
    drop(conn);
    let pairs = [
        ("service", "sysflood"),
        ("order", "oldest"),
        ("limit", "5000"),
    ];
    let page = wait_total(&a, &pairs, SYSLOG_FLOOD as u64);
    let sent: Vec<String> = (0..5000).map(|i| format!("sysflood {i:05}")).collect();
    let got: Vec<&str> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(got, sent, "the first 5,000 lines, once each and in order");

    let (status, health) = a.get("/health");
    assert_eq!(status, 200, "{health}");
}

/// Retention: lines older than `--retention` go, and a stream over `--stream-bytes-max`
/// loses its oldest buckets (never its newest) while a small stream keeps all of its; both
/// from the store too.
#[test]
fn retention_deletes_old_lines_and_a_stream_over_its_size_limit_loses_its_oldest_buckets() {
    let cluster = start_store("logs-retention");
    let dir = TempDir::new("logs-retention-aggregators");
    let store = cluster.client_addresses();
    let a = Aggregator::start(
        &store,
        &dir.path,
        &[
            "--retention",
            "1h",
            "--retention-every",
            "1s",
            "--stream-bytes-max",
            "20000",
        ],
    );
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let bucket = now - now % 600_000;
    let mut body = String::new();
    // "big": four buckets of 100 lines (about 16 KB each); "small": 10 lines, the oldest.
    for b in 0..4 {
        let ts = bucket - (3 - b) * 600_000 + 1_000;
        for i in 0..100 {
            body.push_str(&format!(
                "{{\"ts\":{},\"service\":\"big\",\"msg\":\"big b{b} line {i:03} {}\"}}\n",
                ts + i,
                "x".repeat(60)
            ));
        }
    }
    for i in 0..10 {
        body.push_str(&format!(
            "{{\"ts\":{},\"service\":\"small\",\"msg\":\"small line {i}\"}}\n",
            bucket - 3 * 600_000 + 2_000 + i
        ));
    }
    // Past the retention.
    body.push_str(&format!(
        "{{\"ts\":{},\"service\":\"ancient\",\"msg\":\"too old\"}}\n",
        now - 2 * 3_600_000
    ));
    let (status, out) = a.post("/api/v1/push", body.as_bytes(), &[]);
    assert_eq!(status, 200, "{out}");

    let range = [("from", "now-3h")];
    let total = |agg: &Aggregator, service: &str| {
        query(agg, &[range[0], ("service", service), ("limit", "1")])["total"]
            .as_u64()
            .unwrap()
    };
    // The sweeps run beside the feed, so the counts pass through other values (a bucket
    // indexed, another deleted) before they settle on this.
    let mut newest = Value::Null;
    let settled = wait_until(Duration::from_secs(30), || {
        newest = query(&a, &[range[0], ("service", "big"), ("limit", "1")]);
        newest["total"] == 100
            && newest["lines"][0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("big b3 "))
    });
    assert!(
        settled,
        "big keeps its newest bucket only: {newest}\n{}",
        a.log()
    );
    assert_eq!(total(&a, "small"), 10);
    assert!(
        wait_until(Duration::from_secs(10), || total(&a, "ancient") == 0),
        "the sweep after its arrival deletes it"
    );

    // From the store too: what each bucket holds there, by service.
    let rt = tests::harness::runtime();
    let client = kvstore::client::cluster::ClusterClient::new(store.clone(), Default::default());
    let logs = log_aggregator::store::LogStore::new(std::sync::Arc::new(client), "test".into());
    let held = |start: i64| -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for stream in rt.block_on(logs.streams(start)).unwrap() {
            let n = rt
                .block_on(logs.bucket_records(&stream, start))
                .unwrap()
                .len();
            *out.entry(stream.service).or_default() += n;
        }
        out
    };
    let oldest = bucket - 3 * 600_000;
    assert_eq!(held(oldest), BTreeMap::from([("small".to_string(), 10)]));
    assert_eq!(held(oldest + 600_000), BTreeMap::new());
    assert_eq!(held(oldest + 1_200_000), BTreeMap::new());
    assert_eq!(held(bucket), BTreeMap::from([("big".to_string(), 100)]));
    let ancient = now - 2 * 3_600_000;
    assert_eq!(held(ancient - ancient % 600_000), BTreeMap::new());
}

/// The `from_store=` and `from_journal=` counts of the last "index up to date" line of a
/// log: where a start took its lines from.
fn caught_up(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rfind(|l| l.contains("index up to date"))
        .unwrap_or_else(|| panic!("no start in the log:\n{log}"));
    let field = |name: &str| -> u64 {
        let at = line.find(&format!("{name}=")).expect(name) + name.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("from_store"), field("from_journal"))
}

#[test]
fn an_index_on_disk_survives_a_crash_and_catches_up_on_what_others_took_meanwhile() {
    let cluster = start_store("logs-index-dir");
    let dir = TempDir::new("logs-index-dir-aggregators");
    let store = cluster.client_addresses();
    let index = dir.path.join("index-a");
    let index_arg = index.display().to_string();
    let mut a = Aggregator::start(&store, &dir.path, &["--index-dir", &index_arg]);
    let b = Aggregator::start(&store, &dir.path, &[]);
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    assert!(b.wait_ready(Duration::from_secs(60)), "{}", b.log());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Three whole buckets in the past, so that nothing lands in a bucket A has no index of.
    let first = now - now % 600_000 - 3 * 600_000;
    let push = |agg: &Aggregator, tag: &str, n: i64| {
        let mut body = String::new();
        for i in 0..n {
            let ts = first + (i * 1_800_000 / n);
            body.push_str(&format!(
                "{{\"ts\":{ts},\"service\":\"api\",\"msg\":\"{tag} line {i:05}\"}}\n"
            ));
        }
        let (status, out) = agg.post("/api/v1/push", body.as_bytes(), &[]);
        assert_eq!(status, 200, "{out}");
    };
    let all = [("from", "now-1h"), ("limit", "1")];
    push(&a, "before", 2_000);
    wait_total(&a, &all, 2_000);
    let (from_store, _) = caught_up(&a.log());
    assert_eq!(from_store, 0, "a new index starts empty");
    // Searchable means committed; the checkpoint is saved with the commit. A crash.
    std::thread::sleep(Duration::from_millis(500));
    a.kill();

    // Meanwhile B takes more, in the same buckets.
    push(&b, "meanwhile", 500);
    wait_total(&b, &all, 2_500);

    // A opens its index, reads only the journal since its checkpoint, and answers in full
    // as soon as it is ready.
    a.restart();
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    let answer = query(&a, &all);
    assert_eq!(answer["total"], 2_500, "{answer}\n{}", a.log());
    let (from_store, from_journal) = caught_up(&a.log());
    assert_eq!(
        from_store,
        0,
        "nothing read again from the store\n{}",
        a.log()
    );
    assert_eq!(from_journal, 500, "{}", a.log());
    let meanwhile = query(&a, &[("from", "now-1h"), ("q", "meanwhile")]);
    assert_eq!(meanwhile["total"], 500);

    // A torn bucket (its index's metadata cut short) is deleted at start and read again from
    // the store: nothing is lost, and only that bucket is read.
    assert!(a
        .terminate(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    let torn = std::fs::read_dir(&index)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().parse::<i64>().is_ok())
        .expect("a bucket's directory")
        .path();
    std::fs::write(torn.join("meta.json"), b"{ torn").unwrap();
    a.restart();
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    assert_eq!(query(&a, &all)["total"], 2_500, "{}", a.log());
    let (from_store, _) = caught_up(&a.log());
    assert!(
        (500..=1_250).contains(&from_store),
        "one bucket of three read again: {from_store}\n{}",
        a.log()
    );
    // A second aggregator cannot use the same directory.
    let c = Aggregator::start(&store, &dir.path, &["--index-dir", &index_arg]);
    let refused = wait_until(Duration::from_secs(30), || {
        c.log().contains("in use by another")
    });
    assert!(refused, "{}", c.log());
}

/// `kvstore keyspace --addr … ARGS` on `store`, asserting it succeeded.
fn kvstore_keyspace(store: &[String], args: &[&str]) {
    let out = Command::new(tests::harness::kvstore_bin())
        .args(["keyspace", "--addr", &store.join(",")])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kvstore keyspace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_log_flood_meets_the_store_s_keyspace_limits_with_429_and_507_and_the_sender_keeps_it() {
    let cluster = start_store("logs-limits");
    let dir = TempDir::new("logs-limits-aggregators");
    let store = cluster.client_addresses();
    // The operator caps the logs keyspace before the aggregators start (they keep an
    // existing keyspace as it is).
    kvstore_keyspace(
        &store,
        &["create", "logs", "--partitions", "8", "--max-ops", "200"],
    );
    let a = Aggregator::start(&store, &dir.path, &["--retention", "1h"]);
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    let push = |n: usize, tag: &str| {
        let mut body = String::new();
        for i in 0..n {
            // Many services: a push is many chunks, each a write.
            body.push_str(&format!(
                "{{\"service\":\"svc{}\",\"msg\":\"{tag} {i} {}\"}}\n",
                i % 40,
                "x".repeat(100)
            ));
        }
        a.post("/api/v1/push", body.as_bytes(), &[])
    };
    // Over the rate: 429 with Retry-After, naming the limit.
    let mut limited = None;
    for round in 0..20 {
        let (status, body) = push(200, &format!("rate{round}"));
        if status == 429 {
            limited = Some(body);
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let body = limited.expect("never rate limited");
    let answer = json(&body);
    assert_eq!(answer["error"]["code"], "rate_limited", "{body}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keyspace logs"),
        "{body}"
    );

    // At the byte limit: 507, and once it is raised, pushes go again.
    kvstore_keyspace(
        &store,
        &["limit", "logs", "--max-ops", "none", "--max-bytes", "100K"],
    );
    let mut full = None;
    let refused = wait_until(Duration::from_secs(30), || {
        let (status, body) = push(200, "bytes");
        if status == 507 {
            full = Some(body);
            return true;
        }
        false
    });
    assert!(refused, "never refused for bytes\n{}", a.log());
    let body = full.unwrap();
    assert_eq!(json(&body)["error"]["code"], "over_quota", "{body}");
    kvstore_keyspace(&store, &["limit", "logs", "--max-bytes", "none"]);
    let again = wait_until(Duration::from_secs(20), || push(10, "again").0 == 200);
    assert!(again, "pushes go again once the limit is lifted");
}
