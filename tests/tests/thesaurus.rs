//! The thesaurus-scraper end to end: the local web (`serve-web`) as a real process on several
//! loopback addresses, driven with curl; crawls by real worker processes over a real store
//! cluster, with workers and store nodes killed.
//!
//! Needs Debian's dict-jargon (scripts/install-test-deps.sh installs it).

use std::time::Duration;

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use tests::dictionary::curl;
use tests::harness::{runtime, wait_until, TempDir};
use tests::logs::start_store;
use tests::thesaurus::{kill9, url_records, Crawl, Web};
use thesaurus_scraper::crawl::frontier::{Frontier, UrlRecord, UrlState};

/// The local web serves real pages with navigation around the prose, robots rules, a page
/// list, and its oracle counts what crawlers must not do: fetch disallowed paths, come back
/// sooner than the Crawl-delay, or send two requests to one host at once.
#[test]
fn the_local_web_serves_real_pages_and_its_oracle_counts_impoliteness() {
    let dir = TempDir::new("thesaurus-web");
    let mut web = Web::start(
        &dir.path,
        &[
            "127.0.0.2:0=jargon,crawl_delay=0.5,disallow=/w/z",
            "127.0.0.3:0=jargon,slow=1,slow_ms=600",
        ],
        7,
    );

    // Robots rules and the sitemap.
    let (code, robots) = web.get(0, "/robots.txt");
    assert_eq!(code, 200);
    assert!(robots.contains("Disallow: /w/z\n"), "{robots}");
    assert!(robots.contains("Crawl-delay: 0.5\n"), "{robots}");
    let host0 = web.hosts[0].clone();
    assert!(
        robots.contains(&format!("Sitemap: {host0}/sitemap.xml")),
        "{robots}"
    );
    let (_, pages) = web.get(0, "/__pages");
    let pages: Vec<String> = serde_json::from_str(&pages).unwrap();
    assert!(
        pages.len() > 2_000,
        "the Jargon File has over 2,000 entries: {}",
        pages.len()
    );
    let (_, sitemap) = web.get(0, "/sitemap.xml");
    assert_eq!(sitemap.matches("<loc>").count(), pages.len());

    // A real entry, its cross-references linked, inside navigation and a footer.
    let (code, page) = web.get(0, "/w/leak.html");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("resource-management bugs"), "{page}");
    assert!(
        page.contains("<a href=\"/w/memory_leak.html\">memory leak</a>"),
        "{page}"
    );
    assert!(
        page.contains("<nav>") && page.contains("<footer>"),
        "{page}"
    );
    assert_eq!(web.get(0, "/w/memory_leak.html").0, 200);
    assert_eq!(web.get(0, "/w/no-such-word.html").0, 404);

    // Everything is reachable from the front page, through the browse pages.
    let (_, front) = web.get(0, "/");
    assert!(front.contains("href=\"/browse/l-1.html\""), "{front}");
    let (_, browse) = web.get(0, "/browse/l-1.html");
    assert!(browse.contains("href=\"/w/"), "{browse}");

    // The oracle: one disallowed fetch, and requests closer than the Crawl-delay.
    assert_eq!(web.get(0, "/w/zen.html").0, 200);
    let stats = web.host_stats(0);
    assert_eq!(stats["robots_violations"], 1, "{stats}");
    assert_eq!(stats["robots_violation_paths"][0], "/w/zen.html", "{stats}");
    assert!(
        stats["gaps_below_crawl_delay"].as_u64().unwrap() >= 5,
        "{stats}"
    );
    assert_eq!(stats["robots_fetches"], 1, "{stats}");
    assert_eq!(stats["overlapping_requests"], 0, "{stats}");

    // Two requests at once to one host are counted as overlapping.
    let slow = format!("{}/w/leak.html", web.hosts[1]);
    let other = slow.clone();
    let t = std::thread::spawn(move || curl(&other, &[]).0);
    assert_eq!(curl(&slow, &[]).0, 200);
    assert_eq!(t.join().unwrap(), 200);
    let stats = web.host_stats(1);
    assert_eq!(stats["max_in_flight"], 2, "{stats}");
    assert_eq!(stats["overlapping_requests"], 1, "{stats}");
    assert_eq!(stats["faults"]["slow"], 2, "{stats}");
    // The other host's requests are not this one's.
    assert_eq!(web.host_stats(0)["max_in_flight"], 1);

    let status = web.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        web.log()
    );
}

/// Every seeded fault does what it says, for the URLs the seed picks (here all of them).
#[test]
fn the_local_web_misbehaves_as_seeded() {
    let dir = TempDir::new("thesaurus-faults");
    let site = dir.path.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("index.html"),
        "<html><body><p>home</p></body></html>",
    )
    .unwrap();
    let site_spec = |opts: &str| format!("127.0.0.4:0=dir:{},{opts}", site.display());
    let web = Web::start(
        &dir.path,
        &[
            "127.0.0.2:0=jargon,missing=1,loop=1,huge=1,huge_mb=2,binary=1",
            &site_spec("flaky=1,flaky_k=2"),
            &site_spec("redirect=1"),
            &site_spec("dead=1"),
            &site_spec("malformed=1"),
        ],
        11,
    );

    // Trap links on every page, each a different trouble.
    let (_, page) = web.get(0, "/w/leak.html");
    let href = |prefix: &str| {
        let at = page
            .find(&format!("href=\"{prefix}"))
            .unwrap_or_else(|| panic!("{page}"));
        let rest = &page[at + 6..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    assert_eq!(web.get(0, &href("/missing/")).0, 404);
    let looped = href("/loop/");
    let (code, location) = curl(
        &format!("{}{looped}", web.hosts[0]),
        &["-o", "/dev/null", "-w", "%{redirect_url}\n%{http_code}"],
    );
    assert_eq!(code, 302);
    assert!(location.trim().ends_with("/1.html"), "{location}");
    let (code, follow) = curl(
        &format!("{}{looped}", web.hosts[0]),
        &["-L", "--max-redirs", "5", "-o", "/dev/null"],
    );
    assert_eq!(code, 302, "a redirect loop never ends: {follow}");
    let (code, huge) = web.get(0, &href("/huge/"));
    assert_eq!(code, 200);
    assert!(huge.len() >= 2 << 20, "{}", huge.len());
    let (code, ctype) = curl(
        &format!("{}{}", web.hosts[0], href("/file/")),
        &["-o", "/dev/null", "-w", "%{content_type}\n%{http_code}"],
    );
    assert_eq!(code, 200);
    assert!(ctype.contains("application/octet-stream"), "{ctype}");

    // Flaky: 503 with Retry-After twice, then the page.
    let (code, headers) = curl(
        &format!("{}/index.html", web.hosts[1]),
        &["-D", "-", "-o", "/dev/null"],
    );
    assert_eq!(code, 503);
    assert!(
        headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{headers}"
    );
    assert_eq!(web.get(1, "/index.html").0, 503);
    assert_eq!(
        web.get(1, "/index.html"),
        (200, "<html><body><p>home</p></body></html>".into())
    );

    // Redirected to the same page, which then answers.
    let (code, body) = curl(&format!("{}/index.html", web.hosts[2]), &["-L"]);
    assert_eq!((code, body.contains("home")), (200, true));
    // Dead: 500, always.
    assert_eq!(web.get(3, "/index.html").0, 500);
    assert_eq!(web.get(3, "/index.html").0, 500);
    // Malformed: cut short and not UTF-8.
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("{}/index.html", web.hosts[4])])
        .output()
        .unwrap();
    assert!(std::str::from_utf8(&out.stdout).is_err());
    assert!(!out.stdout.ends_with(b"</html>"));

    let stats = web.stats();
    let faults = |i: usize| stats[web.hosts[i].trim_start_matches("http://")]["faults"].clone();
    assert_eq!(faults(1)["flaky"], 2, "{stats}");
    assert_eq!(faults(3)["dead"], 2, "{stats}");
    assert_eq!(faults(4)["malformed"], 1, "{stats}");
}

/// A worker SIGKILLed while its request is being answered (a slow page) leaves no record of
/// that request: its replacement, or any other worker, must still wait out the dead worker's
/// lease and then the Crawl-delay before asking the host again, and never overlap the request
/// the dead worker left in flight.
#[test]
fn a_worker_killed_mid_request_is_not_followed_sooner_than_the_crawl_delay() {
    let dir = TempDir::new("thesaurus-takeover");
    let cluster = start_store("thesaurus-takeover");
    let web = Web::start(
        &dir.path,
        &["127.0.0.2:0=jargon,pages=3,crawl_delay=1.5,slow=1,slow_ms=600"],
        11,
    );
    let store = cluster.client_addresses();
    let mut crawl = Crawl::start(
        &dir.path,
        &store,
        &[format!("{}/", web.hosts[0])],
        &["--workers=1", "--lease-ms=2000", "--partitions=4"],
    );
    // robots.txt and two pages, then a page in flight: the worker dies while it is answered.
    assert!(
        wait_until(Duration::from_secs(60), || {
            let s = web.host_stats(0);
            s["requests"].as_u64().unwrap() >= 3 && s["in_flight"] == 1
        }),
        "{}\n{}",
        web.host_stats(0),
        crawl.log()
    );
    let pid = crawl.worker_pid(0).expect("worker 0's pid");
    kill9(pid);

    let status = crawl.wait(Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}\n{}",
        crawl.output(),
        crawl.log()
    );
    assert_ne!(
        crawl.worker_pid(0),
        Some(pid),
        "the dead worker was replaced"
    );
    let s = web.host_stats(0);
    assert_eq!(s["gaps_below_crawl_delay"], 0, "{s}");
    assert_eq!(s["overlapping_requests"], 0, "{s}");
    assert_eq!(s["robots_violations"], 0, "{s}");
}

/// A crawl over three hosts (one clean with a Crawl-delay and a disallowed prefix, one full of
/// seeded faults, one whose robots.txt answers 503) while a worker is SIGKILLed and a store
/// node is SIGKILLed and restarted:
/// it finishes with every reachable page fetched, each page's text stored once, every fault
/// given its final state, and the politeness oracle clean.
#[test]
fn a_crawl_survives_a_killed_worker_and_a_killed_store_node_and_stays_polite() {
    let dir = TempDir::new("thesaurus-crawl");
    let mut cluster = start_store("thesaurus-crawl");
    let web = Web::start(
        &dir.path,
        &[
            "127.0.0.2:0=jargon,pages=300,crawl_delay=0.02,disallow=/w/z",
            "127.0.0.3:0=gcide,pages=200,flaky=0.1,redirect=0.05,missing=0.05,loop=0.03,\
             huge=0.03,huge_mb=3,binary=0.03",
            "127.0.0.4:0=jargon,pages=20,robots_status=503",
        ],
        5,
    );
    let host = |i: usize| web.hosts[i].trim_start_matches("http://").to_string();
    let requests = || -> u64 {
        let s = web.stats();
        (0..2)
            .map(|i| s[&host(i)]["requests"].as_u64().unwrap())
            .sum()
    };
    let store = cluster.client_addresses();
    let mut crawl = Crawl::start(
        &dir.path,
        &store,
        &[
            format!("{}/", web.hosts[0]),
            format!("{}/", web.hosts[1]),
            format!("{}/", web.hosts[2]),
        ],
        &[
            "--workers=2",
            "--lease-ms=2000",
            "--backoff-ms=100",
            "--partitions=8",
            "--page-bytes-max=2000000",
        ],
    );

    // A worker dies mid-crawl; then a store node does, and comes back.
    assert!(
        wait_until(Duration::from_secs(90), || requests() >= 120),
        "{}",
        crawl.log()
    );
    let pid = crawl.worker_pid(0).expect("worker 0's pid");
    kill9(pid);
    let at = requests();
    assert!(
        wait_until(Duration::from_secs(90), || requests() >= at + 150),
        "{}",
        crawl.log()
    );
    cluster.kill(2).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart(2).unwrap();

    let status = crawl.wait(Duration::from_secs(300));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}\n{}",
        crawl.output(),
        crawl.log()
    );
    let out = crawl.output();
    assert!(out.contains("crawl finished"), "{out}");
    assert!(
        crawl.worker_pid(0) != Some(pid),
        "the dead worker was replaced: {out}"
    );

    // Politeness, by the web's own count.
    let stats = web.stats();
    for i in 0..2 {
        let s = &stats[&host(i)];
        assert_eq!(s["robots_violations"], 0, "{s}");
        assert_eq!(s["gaps_below_crawl_delay"], 0, "{s}");
        assert_eq!(s["overlapping_requests"], 0, "{s}");
    }

    let rt = runtime();
    let client = ClusterClient::new(store.clone(), ClusterConfig::default());
    let frontier = Frontier::new(std::sync::Arc::new(client));

    // The clean host: every page fetched but the disallowed ones, which were never fetched.
    let pages = |i: usize| web.page_keys(i);
    let urls = url_records(&rt, &frontier, &host(0));
    for p in &pages(0) {
        let r = urls
            .get(p)
            .unwrap_or_else(|| panic!("{p} was never reached"));
        let want = if p.starts_with("/w/z") {
            UrlState::Disallowed
        } else {
            UrlState::Done
        };
        assert!(
            r.state == want || want == UrlState::Done && r.state == UrlState::Duplicate,
            "{p}: {r:?}"
        );
    }
    assert!(urls.values().all(|r| r.state != UrlState::Queued));

    // The faulty host: every page settled; each fault has its outcome.
    let urls = url_records(&rt, &frontier, &host(1));
    let fetched = |r: &UrlRecord| matches!(r.state, UrlState::Done | UrlState::Duplicate);
    for p in &pages(1) {
        let r = urls
            .get(p)
            .unwrap_or_else(|| panic!("{p} was never reached"));
        let ok = fetched(r)
            || r.state == UrlState::Redirected
                && urls.get(&format!("{p}?moved=1")).is_some_and(fetched);
        assert!(ok, "{p}: {r:?}");
    }
    let reasons = |prefix: &str| -> Vec<(UrlState, String)> {
        urls.iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, r)| (r.state, r.reason.clone().unwrap_or_default()))
            .collect()
    };
    let missing = reasons("/missing/");
    assert!(!missing.is_empty());
    assert!(
        missing
            .iter()
            .all(|(s, r)| *s == UrlState::Failed && r == "HTTP 404"),
        "{missing:?}"
    );
    let loops = reasons("/loop/");
    assert!(
        loops
            .iter()
            .any(|(s, r)| *s == UrlState::Failed && r.contains("over 5 redirects")),
        "{loops:?}"
    );
    assert!(loops
        .iter()
        .all(|(s, _)| matches!(s, UrlState::Redirected | UrlState::Failed)));
    let huge = reasons("/huge/");
    assert!(
        !huge.is_empty()
            && huge
                .iter()
                .all(|(s, r)| *s == UrlState::Skipped && r.contains("size limit")),
        "{huge:?}"
    );
    let binary = reasons("/file/");
    assert!(
        !binary.is_empty()
            && binary
                .iter()
                .all(|(s, r)| *s == UrlState::Skipped && r.contains("not HTML")),
        "{binary:?}"
    );
    assert!(stats[&host(1)]["faults"]["flaky"].as_u64().unwrap() > 0);
    assert!(
        !urls
            .values()
            .any(|r| r.status == Some(503) && r.state == UrlState::Failed),
        "flaky pages are recovered by retrying"
    );

    // A host whose robots.txt keeps failing: asked a few times, then left alone, its URLs
    // settled as disallowed, not one page fetched.
    let s = &stats[&host(2)];
    assert!(s["robots_fetches"].as_u64().unwrap() >= 5, "{s}");
    assert_eq!(s["requests"], s["robots_fetches"], "{s}");
    let urls = url_records(&rt, &frontier, &host(2));
    assert_eq!(urls.len(), 1, "{urls:?}");
    assert!(
        urls.values().all(|r| r.state == UrlState::Disallowed),
        "{urls:?}"
    );

    // Each page's text stored once: one stored page per fetched URL with text, none extra.
    let mut fingerprints = std::collections::HashSet::new();
    for host in [host(0), host(1)] {
        for r in url_records(&rt, &frontier, &host).values() {
            if r.state == UrlState::Done {
                let fp = r.fingerprint.clone().expect("a page with text");
                assert!(fingerprints.insert(fp), "{r:?}: its text is stored twice");
            }
        }
    }
    let stored = rt
        .block_on(frontier.scan_prefix("p:{", true, usize::MAX))
        .unwrap()
        .len();
    assert_eq!(stored, fingerprints.len());
}

/// Runs `thesaurus-scraper` with `args` to the end (killed after 3 minutes): its stdout, or
/// a panic with its output.
fn run(args: &[&str]) -> String {
    let dir =
        std::env::temp_dir().join(format!("thesaurus-run-{}-{}", std::process::id(), args[0]));
    let (out_path, err_path) = (dir.with_extension("out"), dir.with_extension("err"));
    let mut child = std::process::Command::new(tests::harness::workspace_bin("thesaurus-scraper"))
        .args(args)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("running thesaurus-scraper");
    let finished = wait_until(Duration::from_secs(180), || {
        child.try_wait().unwrap().is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let status = child.wait().unwrap();
    assert!(
        finished && status.success(),
        "{args:?}: {} ({status})\n{stdout}\n{stderr}",
        if finished {
            "failed"
        } else {
            "still running after 3 minutes"
        }
    );
    stdout
}

/// Crawl a slice of GCIDE and the Jargon File (impolitely, several fetches of a host at
/// once), build the thesaurus, serve it: a pair the
/// dictionary names (a dolt is "a blockhead; a numskull; … a dunce") appears in each other's
/// neighbours with the sentence as evidence, similarity answers for known words and 404s
/// for unknown ones, and eval produces its figures.
#[test]
fn the_thesaurus_is_built_from_the_crawl_and_served() {
    let dir = TempDir::new("thesaurus-build");
    let cluster = start_store("thesaurus-build");
    let web = Web::start(
        &dir.path,
        &[
            "127.0.0.2:0=gcide,from=dolt,to=dom",
            "127.0.0.3:0=jargon,pages=150,slow=1,slow_ms=50",
        ],
        3,
    );
    let store = cluster.client_addresses().join(",");
    let seeds = format!("{}/,{}/", web.hosts[0], web.hosts[1]);
    // Impolitely (the speed benchmark's mode): several fetches of a host in flight, never
    // more than asked.
    let out = run(&[
        "crawl",
        &format!("--store={store}"),
        &format!("--seeds={seeds}"),
        "--workers=1",
        "--partitions=8",
        "--impolite",
        "--per-host=4",
    ]);
    assert!(out.contains("crawl finished"), "{out}");
    let stats = web.stats();
    let in_flight: Vec<u64> = stats
        .as_object()
        .unwrap()
        .values()
        .map(|h| h["max_in_flight"].as_u64().unwrap())
        .collect();
    assert!(
        in_flight.iter().any(|n| *n >= 2) && in_flight.iter().all(|n| *n <= 4),
        "{stats}"
    );
    let status = run(&["crawl", "status", &format!("--store={store}"), "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["done"].as_u64().unwrap() > 150, "{status}");
    assert_eq!(status["queued"], 0);

    // Serve it, on a port the system picks.
    let mut serve = std::process::Command::new(tests::harness::workspace_bin("thesaurus-scraper"))
        .args(["serve", &format!("--store={store}"), "--listen=127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("serving ")
        .expect("serving URL")
        .trim_end_matches('/')
        .to_string();
    let get = |path: &str| -> (u16, serde_json::Value) {
        let (code, body) = curl(&format!("{base}{path}"), &[]);
        (
            code,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        )
    };
    // Before any build: healthy, and a word is simply not there yet.
    assert_eq!(get("/health").0, 200);
    let (code, body) = get("/api/synonyms/dolt");
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not in the thesaurus"),
        "{body}"
    );
    assert_eq!(get("/api/info").0, 404);

    let built = run(&["build", &format!("--store={store}"), "--min-count=1"]);
    assert!(built.starts_with("built: "), "{built}");

    let neighbours = |word: &str| -> Vec<serde_json::Value> {
        let (code, body) = get(&format!("/api/synonyms/{word}?k=25"));
        assert_eq!(code, 200, "{word}: {body}");
        body["neighbours"].as_array().unwrap().clone()
    };
    let dolt = neighbours("dolt");
    let blockhead = dolt
        .iter()
        .find(|n| n["word"] == "blockhead")
        .unwrap_or_else(|| panic!("{dolt:?}"));
    let evidence = blockhead["evidence"].as_array().unwrap();
    assert!(
        evidence
            .iter()
            .any(|e| e.as_str().unwrap().contains("blockhead")),
        "{blockhead}"
    );
    assert!(neighbours("blockhead").iter().any(|n| n["word"] == "dolt"));
    // Best first, at most k.
    let scores: Vec<f64> = dolt.iter().map(|n| n["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(
        get("/api/synonyms/dolt?k=3").1["neighbours"]
            .as_array()
            .unwrap()
            .len()
            <= 3
    );
    // A form of a word finds its lemma.
    assert_eq!(get("/api/synonyms/dolts").1["word"], "dolt");

    let (code, sim) = get("/api/similarity?a=dolt&b=blockhead");
    assert_eq!(code, 200, "{sim}");
    assert!(sim["score"].as_f64().unwrap() > 0.0, "{sim}");
    assert_eq!(get("/api/similarity?a=dolt&b=zzzxq").0, 404);
    assert_eq!(get("/api/similarity?a=dolt").0, 400);
    assert_eq!(get("/api/synonyms/zzzxq").0, 404);
    assert_eq!(get("/api/synonyms/dolt?k=0").0, 400);
    let (code, crawl) = get("/api/crawl/status");
    assert_eq!(code, 200);
    assert!(crawl["hosts"].as_object().unwrap().len() == 2, "{crawl}");
    assert_eq!(get("/health").0, 200);
    let (_, metrics) = curl(&format!("{base}/metrics"), &[]);
    assert!(
        metrics.contains("thesaurus_requests_total{route=\"synonyms\",status=\"200\"}"),
        "{metrics}"
    );
    let (code, page) = curl(&format!("{base}/"), &[]);
    assert!(code == 200 && page.contains("/api/synonyms/"));

    // The eval's figures (on a slice this small they say little, but they are computed).
    let eval = run(&[
        "eval",
        &format!("--store={store}"),
        "--min-count=3",
        "--questions=50",
        "--json",
    ]);
    let eval: serde_json::Value = serde_json::from_str(&eval).unwrap();
    assert!(eval["words"].as_u64().unwrap() > 50, "{eval}");
    assert!(
        eval["wordnet"]["combined"]["words"].as_u64().unwrap() > 0,
        "{eval}"
    );
    assert!(eval["questions"].as_u64().unwrap() > 0, "{eval}");
    for k in ["p_at_1", "p_at_10", "hit_at_10"] {
        let x = eval["wordnet"]["combined"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{k}: {x}");
    }

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let status = serve.wait().unwrap();
    assert!(status.success(), "serve stops cleanly on SIGTERM: {status}");
}

/// A crawl SIGKILLed leaves no worker behind: its workers go with it (they would otherwise
/// run on, orphaned), and the frontier is where they left it for the next crawl.
#[test]
fn workers_do_not_outlive_a_killed_crawl() {
    let dir = TempDir::new("thesaurus-orphans");
    let cluster = start_store("thesaurus-orphans");
    let web = Web::start(
        &dir.path,
        &["127.0.0.2:0=jargon,pages=300,slow=1,slow_ms=20"],
        9,
    );
    let store = cluster.client_addresses();
    let crawl = Crawl::start(
        &dir.path,
        &store,
        &[format!("{}/", web.hosts[0])],
        &["--workers=2", "--partitions=8"],
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            crawl.worker_pid(1).is_some() && web.host_stats(0)["requests"].as_u64().unwrap() > 10
        }),
        "{}",
        crawl.log()
    );
    let workers: Vec<u32> = crawl.workers.lock().unwrap().values().copied().collect();
    kill9(crawl.pid());
    let alive = |pid: u32| {
        // A zombie (state Z) has exited; it waits only for its reaper.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"))
    };
    assert!(
        wait_until(Duration::from_secs(10), || workers
            .iter()
            .all(|p| !alive(*p))),
        "workers {workers:?} outlived their crawl"
    );
}
