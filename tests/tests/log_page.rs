//! The log aggregator's web page in a real browser: headless Chromium, driven over the
//! DevTools protocol, searches the lines an aggregator stored, sees the count, the lines and
//! the histogram's bars, then turns the live tail on and sees a new line arrive.

use std::time::Duration;

use tests::browser::Browser;
use tests::harness::{wait_until, TempDir};
use tests::logs::{start_store, Aggregator};

#[test]
fn a_search_on_the_page_shows_the_count_the_lines_and_the_histogram_then_tails() {
    let cluster = start_store("logs-page");
    let dir = TempDir::new("logs-page");
    let a = Aggregator::start(&cluster.client_addresses(), &dir.path, &[]);
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    let mut body = String::new();
    for i in 0..30 {
        let level = if i % 3 == 0 { "error" } else { "info" };
        body.push_str(&format!(
            "{{\"service\":\"shop\",\"level\":\"{level}\",\"msg\":\"checkout {i} paid by card\"}}\n"
        ));
    }
    let (status, out) = a.post("/api/v1/push", body.as_bytes(), &[]);
    assert_eq!(status, 200, "{out}");
    assert!(wait_until(Duration::from_secs(10), || a
        .get("/api/query?q=checkout")
        .1
        .contains("\"total\":30")));

    let mut b = Browser::start().unwrap();
    b.open(&format!("http://{}/", a.http)).unwrap();
    b.eval(
        "{ const f = document.getElementById('f'); f.elements.q.value = 'checkout'; \
           f.elements.level.value = 'error'; f.requestSubmit(); }",
    )
    .unwrap();
    let summary = b
        .wait_for(
            "document.getElementById('summary').textContent.startsWith('10 ') \
             && document.getElementById('summary').textContent",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(summary, "10 matching lines");
    let rows = b
        .eval("document.querySelectorAll('#lines tr').length")
        .unwrap();
    assert_eq!(rows, 10);
    let first = b
        .eval("document.querySelector('#lines tr td.msg').textContent")
        .unwrap();
    assert_eq!(first, "checkout 27 paid by card", "newest first");
    let bars = b
        .eval(
            "[...document.querySelectorAll('#histogram rect')]\
               .filter(r => parseFloat(r.getAttribute('height')) > 0).length",
        )
        .unwrap();
    assert!(
        bars.as_u64().unwrap() >= 1,
        "the histogram has a bar: {bars}"
    );

    // The live tail: a new matching line appears at the top.
    b.eval("document.getElementById('live').click()").unwrap();
    // The tail sees what is indexed after it connects: push until it shows (a slow machine
    // may take a moment to open it).
    let mut top = serde_json::Value::Null;
    for _ in 0..10 {
        let (status, _) = a.post(
            "/api/v1/push",
            b"{\"service\":\"shop\",\"level\":\"error\",\"msg\":\"checkout live one\"}\n",
            &[],
        );
        assert_eq!(status, 200);
        top = b
            .wait_for(
                "document.querySelector('#lines tr td.msg').textContent === 'checkout live one' \
                 && document.querySelector('#lines tr td.msg').textContent",
                Duration::from_secs(2),
            )
            .unwrap();
        if top == "checkout live one" {
            break;
        }
    }
    assert_eq!(top, "checkout live one");
}
