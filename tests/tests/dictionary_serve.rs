//! Search replicas as real processes over a real 3-node store, spoken to with curl: a replica
//! builds its indexes from the store and answers the API and the pages; bad input gets its
//! typed 4xx and the server goes on; answers revalidate by ETag; with a store node killed, a
//! new replica still builds from the others, and a new dataset reaches a running replica;
//! SIGTERM stops a replica cleanly.

use std::time::Duration;

use dictionary_search::{dataset, store};
use serde_json::Value;
use tests::dictionary::{curl, loaded_store, slice, Replica};
use tests::harness::{wait_until, TempDir};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn words(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|w| w["word"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_replica_serves_search_from_the_store_and_rides_out_a_store_node_dying() {
    let entries = slice(300);
    let version = dataset::version(&entries);
    let (mut cluster, client, rt) = loaded_store("dictionary-serve", &entries);

    let dir = TempDir::new("dictionary-serve-replicas");
    let replica = Replica::start(&cluster.client_addresses(), &dir.path);
    assert!(
        replica.wait_ready(Duration::from_secs(60)),
        "ready:\n{}",
        replica.log()
    );
    let health = json(&replica.get("/health").1);
    assert_eq!(health["dataset"], version.as_str());
    assert_eq!(health["entries"], entries.len());

    // The API.
    let (status, body) = replica.get("/api/suggest?q=acro");
    assert_eq!(status, 200);
    assert!(
        words(&json(&body)["suggestions"]).contains(&"acrophobia".to_string()),
        "{body}"
    );
    let (status, body) = replica.get("/api/entry/geese");
    assert_eq!(status, 200, "{body}");
    let found = json(&body);
    assert_eq!(found["entry"]["word"], "goose");
    assert_eq!(found["inflection_of"], "goose");
    let (status, body) = replica.get("/api/entry/acrofobia");
    assert_eq!(status, 404);
    let missing = json(&body);
    assert_eq!(missing["error"]["code"], "not_found");
    assert!(
        words(&missing["suggestions"]).contains(&"acrophobia".to_string()),
        "{body}"
    );
    let (status, body) = replica.get("/api/search?q=a%20fear%20of%20heights");
    assert_eq!(status, 200);
    let results = json(&body)["results"].clone();
    assert_eq!(results[0]["word"], "acrophobia", "{body}");
    assert!(results[0]["snippet"]
        .as_str()
        .unwrap()
        .contains("<b>fear</b>"));
    let (status, body) = replica.get("/api/anagram?q=listen");
    assert_eq!(status, 200);
    assert!(
        words(&json(&body)["results"]).contains(&"silent".to_string()),
        "{body}"
    );
    let (status, body) = replica.get("/api/rhymes?q=cat");
    assert_eq!(status, 200);
    assert!(
        words(&json(&body)["perfect"]).contains(&"hat".to_string()),
        "{body}"
    );
    let (status, body) = replica.get("/api/pattern?q=c%3Ft");
    assert_eq!(status, 200);
    assert!(
        words(&json(&body)["results"]).contains(&"cat".to_string()),
        "{body}"
    );

    // Bad input: a typed 400 each, and the server goes on.
    let long = "a".repeat(100);
    for (path, code) in [
        ("/api/suggest?q=".to_string(), "empty"),
        ("/api/suggest".to_string(), "missing_parameter"),
        ("/api/suggest?q=%FF%FE".to_string(), "invalid_utf8"),
        ("/api/spell?q=%ZZ".to_string(), "bad_escape"),
        (format!("/api/suggest?q={long}"), "too_long"),
        ("/api/pattern?q=*%3F*".to_string(), "pattern_too_broad"),
        ("/api/entry/%C3%28".to_string(), "invalid_utf8"),
        ("/api/search?q=nosuchfield%3Afear".to_string(), "bad_query"),
    ] {
        let (status, body) = replica.get(&path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(json(&body)["error"]["code"], code, "{path}: {body}");
    }
    assert_eq!(replica.get("/api/suggest?q=good").0, 200, "still serving");

    // Caching: the ETag is the dataset version; a revalidation is a 304.
    let url = format!("http://{}/api/suggest?q=goo", replica.addr);
    let (_, head) = curl(&url, &["-D", "-", "-o", "/dev/null"]);
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap_or_else(|| panic!("an ETag in {head}"))
        .trim()
        .to_string();
    assert_eq!(etag, format!("W/\"{version}\""));
    assert!(head.contains("cache-control: public, max-age="), "{head}");
    let (status, _) = curl(&url, &["-H", &format!("If-None-Match: {etag}")]);
    assert_eq!(status, 304);

    // The pages: an entry, escaping, full-text results, a 404 with suggestions.
    let (status, page) = replica.get("/entry/goose");
    assert_eq!(status, 200);
    assert!(
        page.contains("<h1>goose</h1>") && page.contains("geese"),
        "{page}"
    );
    let (status, page) = replica.get("/entry/%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert_eq!(status, 404);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>alert")
    );
    let (status, page) = replica.get("/search?q=fear+of+heights");
    assert_eq!(status, 200);
    assert!(page.contains("/entry/acrophobia"), "{page}");
    let (_, metrics) = replica.get("/metrics");
    assert!(
        metrics.contains("dictionary_requests_total{route=\"/api/suggest\",status=\"400\"}"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("dictionary_index_entries {}", entries.len())));

    // A store node dies: the replica answers on, a new replica builds from the two left, and
    // a new dataset reaches the running replica.
    cluster.kill(2).unwrap();
    assert_eq!(replica.get("/api/suggest?q=acro").0, 200);
    let second = Replica::start(&cluster.client_addresses(), &dir.path);
    assert!(
        second.wait_ready(Duration::from_secs(60)),
        "ready with a node down:\n{}",
        second.log()
    );
    let mut changed = entries.clone();
    changed.get_mut("goose").unwrap().frequency += 1.0;
    let changed_version = dataset::version(&changed);
    rt.block_on(store::load(
        client.clone(),
        &changed,
        &changed_version,
        false,
        &|_| {},
    ))
    .unwrap();
    let follows = wait_until(Duration::from_secs(60), || {
        json(&replica.get("/health").1)["dataset"] == changed_version.as_str()
    });
    assert!(
        follows,
        "the replica serves the new dataset:\n{}",
        replica.log()
    );

    // SIGTERM: the replica stops cleanly.
    let mut replica = replica;
    let pid = replica.proc.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let exited = wait_until(Duration::from_secs(10), || {
        matches!(replica.proc.child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "stopped on SIGTERM");
    assert!(
        replica.proc.child.wait().unwrap().success(),
        "{}",
        replica.log()
    );
}
