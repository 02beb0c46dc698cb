//! The URL shortener end to end: two `url-shortener serve` processes in front of a real 3-node
//! store cluster (started by the suite's harness, `tests::cluster`), spoken to with curl.
//!
//! Links made on both at once never share a code, and each redirects from either process;
//! every click is counted exactly once, through a store node's SIGKILL and restart, once the
//! processes stop gracefully (their last clicks flushed); a process SIGKILLed loses at most
//! the clicks it had not flushed, and never counts one twice; bad input gets a clear error.
//!
//! Run it after building the binaries: `cargo build --workspace --bins && cargo test -p url-shortener`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::cluster::{Cluster, ClusterOptions};
use tests::dictionary::curl;
use tests::harness::{free_ports, wait_until, Proc, TempDir};

/// A `url-shortener serve` process, killed on drop.
struct Shortener {
    proc: Proc,
    addr: String,
}

impl Shortener {
    fn start(store: &[String], dir: &std::path::Path, extra: &[&str]) -> Shortener {
        let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
        let mut args: Vec<String> = ["serve", "--listen", &addr, "--store", &store.join(",")]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = dir.join(format!("shortener-{addr}.log"));
        let s = Shortener {
            proc: Proc::start("url-shortener", args, log),
            addr,
        };
        s.wait_ready();
        s
    }

    /// Starts it again (after a kill or a stop) and waits until it serves.
    fn restart(&mut self) {
        self.proc.restart();
        self.wait_ready();
    }

    fn wait_ready(&self) {
        assert!(
            wait_until(Duration::from_secs(60), || self.get("/health").0 == 200),
            "{}",
            self.log()
        );
    }

    fn get(&self, path: &str) -> (u16, String) {
        curl(&format!("http://{}{path}", self.addr), &[])
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = curl(
            &format!("http://{}{path}", self.addr),
            &["-X", "POST", "--data-binary", body],
        );
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Follows nothing: the status and the `Location` of `GET /{code}`.
    fn redirect(&self, code: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "-o", "/dev/null"])
            .args(["-w", "%{http_code} %{redirect_url}"])
            .arg(format!("http://{}/{code}", self.addr))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (status, location) = text.split_once(' ').unwrap_or((&text, ""));
        (status.parse().unwrap_or(0), location.to_string())
    }

    fn clicks(&self, code: &str) -> u64 {
        let (status, body) = self.get(&format!("/api/links/{code}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["clicks"]
            .as_u64()
            .unwrap()
    }

    fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    /// SIGTERM, and waits for a clean exit.
    fn stop(&mut self) {
        let child = &mut self.proc.child;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let mut exit = None;
        wait_until(Duration::from_secs(20), || {
            exit = child.try_wait().unwrap();
            exit.is_some()
        });
        assert!(
            exit.is_some_and(|s| s.success()),
            "{exit:?}\n{}",
            self.log()
        );
    }

    fn kill(&mut self) {
        self.proc.kill();
    }

    fn log(&self) -> String {
        self.proc.log()
    }
}

#[test]
fn codes_never_collide_redirects_work_everywhere_and_every_click_counts_once() {
    let dir = TempDir::new("url-shortener");
    let mut cluster = Cluster::start("url-shortener", ClusterOptions::default()).unwrap();
    cluster.wait_settled(Duration::from_secs(60)).unwrap();
    let store = cluster.client_addresses();
    // Small blocks of ids, so the two processes take many and interleave them.
    let mut a = Shortener::start(&store, &dir.path, &["--id-block", "7"]);
    let mut b = Shortener::start(&store, &dir.path, &["--id-block", "7"]);

    // 240 links made at once, half on each process, from four clients.
    let links: BTreeMap<String, String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let node = if t % 2 == 0 { &a } else { &b };
                s.spawn(move || {
                    (0..60)
                        .map(|i| {
                            let url = format!("https://example.com/t{t}/page-{i}?q=a%20b");
                            let (status, made) =
                                node.post("/api/links", &format!("{{\"url\": \"{url}\"}}"));
                            assert_eq!(status, 201, "{made}\n{}", node.log());
                            assert_eq!(made["url"], url);
                            (made["code"].as_str().unwrap().to_string(), url)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<(String, String)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        let map: BTreeMap<String, String> = all.into_iter().collect();
        assert_eq!(map.len(), n, "two links got one code");
        map
    });
    assert_eq!(links.len(), 240);
    assert!(links.keys().all(|c| c.len() == 7));
    // Each redirects from either process (the other one reads it from the store).
    for (i, (code, url)) in links.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        assert_eq!(node.redirect(code), (302, url.clone()), "{code}");
    }

    // An alias is taken once; bad input gets its error.
    let alias = r#"{"url": "https://example.com/launch", "alias": "launch-day"}"#;
    assert_eq!(a.post("/api/links", alias).0, 201);
    let (status, taken) = b.post("/api/links", alias);
    assert_eq!(status, 409, "{taken}");
    assert_eq!(taken["error"]["code"], "alias_taken");
    assert_eq!(b.redirect("launch-day").1, "https://example.com/launch");
    for (body, code) in [
        (r#"{"url": "javascript:alert(1)"}"#, "bad_url"),
        (r#"{"url": "not a url"}"#, "bad_url"),
        (r#"{"url": "https://e.com/", "alias": "a/b"}"#, "bad_alias"),
        (
            r#"{"url": "https://e.com/", "alias": "metrics"}"#,
            "bad_alias",
        ),
        ("{not json", "bad_request"),
    ] {
        let (status, out) = a.post("/api/links", body);
        assert_eq!(
            (status, out["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let huge = format!("{{\"url\": \"https://e.com/{}\"}}", "a".repeat(10_000));
    assert_eq!(a.post("/api/links", &huge).0, 413);
    assert_eq!(a.redirect("zzzzzzz").0, 404);
    assert_eq!(a.redirect("no.such").0, 404);

    // Clicks on 12 links from both processes, while a store node is SIGKILLed and restarted.
    let clicked: Vec<&String> = links.keys().take(12).collect();
    // Each was clicked once already, when its redirect was checked.
    let mut want: BTreeMap<&String, u64> = clicked.iter().map(|c| (*c, 1)).collect();
    for round in 0..30 {
        if round == 10 {
            cluster.kill(2).unwrap();
        }
        if round == 20 {
            cluster.restart(2).unwrap();
        }
        for (i, code) in clicked.iter().enumerate() {
            if round % (i % 3 + 1) != 0 {
                continue;
            }
            let node = if (round + i) % 2 == 0 { &a } else { &b };
            let (status, location) = node.redirect(code);
            assert_eq!((status, &location), (302, &links[*code]));
            *want.entry(code).or_default() += 1;
        }
    }
    // A graceful stop flushes what each counted; then the store holds every click once.
    for node in [&a, &b] {
        assert_eq!(node.metric("shortener_clicks_unknown_total"), 0);
        assert_eq!(node.metric("shortener_clicks_dropped_total"), 0);
    }
    a.stop();
    b.stop();
    a.restart();
    for (code, n) in &want {
        assert_eq!(a.clicks(code), *n, "{code}\n{}\n{}", a.log(), b.log());
    }

    // A process SIGKILLed loses at most what it had not flushed, and counts nothing twice.
    let code = clicked[0];
    let before = a.clicks(code);
    for _ in 0..50 {
        assert_eq!(a.redirect(code).0, 302);
    }
    a.kill();
    b.restart();
    let after = b.clicks(code);
    assert!(
        after >= before && after <= before + 50,
        "{before} then {after} after 50 clicks"
    );
    eprintln!(
        "a SIGKILLed shortener lost {} of its last 50 clicks (those not yet flushed)",
        before + 50 - after
    );
}
