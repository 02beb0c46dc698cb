//! The suite's landing page (every store node's HTTP admin `/suite`): services register
//! themselves in the store with a lease, and the page lists them with their health, the
//! store's nodes, and the keyspaces each uses with partitions and bytes. Real aggregators
//! register; the page is read as JSON and in headless Chromium; a killed service shows
//! down at once and drops out when its lease runs out, a stopped one at once.

use std::time::Duration;

use serde_json::Value;
use tests::harness::{wait_until, TempDir};
use tests::logs::{start_store, Aggregator};

fn api(http: std::net::SocketAddr) -> Value {
    let body = tests::cluster::http_get(http, "/suite/api").unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn service<'a>(doc: &'a Value, url: &str) -> Option<&'a Value> {
    doc["services"]
        .as_array()?
        .iter()
        .find(|s| s["url"].as_str() == Some(url))
}

/// The page at `url` after its script has run, as Chromium renders it.
fn rendered(url: &str) -> String {
    let profile = TempDir::new("suite-page-chromium");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path.display()),
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium (scripts/install-test-deps.sh installs it)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn services_register_in_the_store_and_the_landing_page_shows_them_live() {
    let cluster = start_store("suite-page");
    let dir = TempDir::new("suite-page-services");
    let store = cluster.client_addresses();
    let mut a = Aggregator::start(&store, &dir.path, &[]);
    let mut b = Aggregator::start(&store, &dir.path, &[]);
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    assert!(b.wait_ready(Duration::from_secs(60)), "{}", b.log());
    let (url_a, url_b) = (format!("http://{}", a.http), format!("http://{}", b.http));
    // Any node answers for the whole suite.
    let http = cluster.node(2).http;
    let mut doc = Value::Null;
    let listed = wait_until(Duration::from_secs(20), || {
        doc = api(http);
        [&url_a, &url_b]
            .iter()
            .all(|u| service(&doc, u).is_some_and(|s| s["healthy"] == true))
    });
    assert!(listed, "both aggregators listed healthy: {doc:#}");
    let a_entry = service(&doc, &url_a).unwrap();
    assert_eq!(a_entry["name"], "log-aggregator");
    assert_eq!(a_entry["keyspaces"], serde_json::json!(["logs"]));
    let logs = doc["keyspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "logs")
        .expect("the logs keyspace");
    assert_eq!(logs["partitions"], 8);
    assert_eq!(logs["used_by"], serde_json::json!(["log-aggregator"]));
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 3);
    assert!(doc["nodes"][0]["page"]
        .as_str()
        .is_some_and(|p| p.starts_with("http://")));

    // Some lines, so the keyspace holds bytes the page can show. The store keeps them
    // compressed: each line carries 100 hex digits that do not repeat, so they keep their size.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut noise = || {
        (0..7)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                format!("{:016x}", state ^ (state >> 29))
            })
            .collect::<String>()[..100]
            .to_string()
    };
    let body: String = (0..200)
        .map(|i| format!("{{\"service\":\"web\",\"msg\":\"line {i} {}\"}}\n", noise()))
        .collect();
    let (status, out) = a.post("/api/v1/push", body.as_bytes(), &[]);
    assert_eq!(status, 200, "{out}");
    let counted = wait_until(Duration::from_secs(10), || {
        api(http)["keyspaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["name"] == "logs" && k["bytes"].as_u64().unwrap_or(0) > 10_000)
    });
    assert!(counted, "the page counts the keyspace's bytes");

    // In a browser: a row per service, healthy, and the keyspace with its user.
    let page = format!("http://{http}/suite");
    let dom = rendered(&page);
    assert!(
        dom.contains("class=\"up service\" data-name=\"log-aggregator\""),
        "{dom}"
    );
    assert!(dom.contains(&url_a) && dom.contains(&url_b), "{dom}");
    assert!(dom.contains("data-name=\"logs\""), "{dom}");

    // A killed aggregator shows down at once, and drops out when its lease runs out; a
    // stopped one withdraws at once.
    a.kill();
    let down = wait_until(Duration::from_secs(10), || {
        service(&api(http), &url_a).is_some_and(|s| s["healthy"] == false)
    });
    assert!(down, "a killed service shows down");
    let dom = rendered(&page);
    assert!(dom.contains("class=\"down service\""), "{dom}");
    assert!(b.terminate(Duration::from_secs(20)).is_some());
    let withdrawn = wait_until(Duration::from_secs(5), || {
        service(&api(http), &url_b).is_none()
    });
    assert!(withdrawn, "a stopped service withdraws");
    let expired = wait_until(Duration::from_secs(30), || {
        service(&api(http), &url_a).is_none()
    });
    assert!(
        expired,
        "a killed service drops out when its lease runs out"
    );
}
