//! The dictionary's web page in a real browser: headless Chromium, driven over the DevTools
//! protocol, types a prefix into the search box and sees the suggestion appear, opens the
//! entry from it, then searches the definitions from the same box.

use std::time::Duration;

use tests::browser::Browser;
use tests::dictionary::{loaded_store, slice, Replica};
use tests::harness::TempDir;

#[test]
fn a_user_types_a_prefix_picks_the_suggestion_and_searches_the_definitions() {
    let entries = slice(500);
    let (cluster, _client, _rt) = loaded_store("dictionary-page", &entries);
    let dir = TempDir::new("dictionary-page");
    let replica = Replica::start(&cluster.client_addresses(), &dir.path);
    assert!(
        replica.wait_ready(Duration::from_secs(60)),
        "{}",
        replica.log()
    );

    let mut b = Browser::start().unwrap();
    let home = format!("http://{}/", replica.addr);
    b.open(&home).unwrap();
    b.eval("document.getElementById('q').focus()").unwrap();
    b.type_text("acro").unwrap();
    let shown = b
        .wait_for(
            "[...document.querySelectorAll('#suggestions a')].map(a => a.textContent).join(',')",
            Duration::from_secs(10),
        )
        .unwrap();
    let shown = shown.as_str().unwrap_or_default().to_string();
    assert!(
        shown.split(',').any(|w| w == "acrophobia"),
        "suggestions: {shown:?}"
    );

    // Pick it: the entry page opens.
    b.eval(
        "[...document.querySelectorAll('#suggestions a')].find(a => a.textContent === 'acrophobia').click()",
    )
    .unwrap();
    let opened = b
        .wait_for(
            "location.pathname === '/entry/acrophobia' && document.readyState === 'complete' \
             && document.querySelector('h1').textContent",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(opened, "acrophobia");
    let text = b.eval("document.body.innerText").unwrap();
    assert!(
        text.as_str()
            .unwrap()
            .contains("a morbid fear of great heights"),
        "{text}"
    );

    // Describe a word instead, and search the definitions.
    b.eval("{ const box = document.getElementById('q'); box.value = ''; box.focus(); }")
        .unwrap();
    b.type_text("fear of heights").unwrap();
    b.eval("document.querySelector('button[value=search]').click()")
        .unwrap();
    let first = b
        .wait_for(
            "location.pathname === '/search' && document.readyState === 'complete' \
             && document.querySelector('main ol li a') && document.querySelector('main ol li a').textContent",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(first, "acrophobia");
}
