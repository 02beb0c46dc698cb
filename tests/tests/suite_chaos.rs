//! The whole suite on one store, under a seeded fault schedule: one 3-node store cluster;
//! on it the dictionary (two search replicas over a slice of the real data), the log
//! aggregator (two aggregator nodes, an agent tailing a file, a pusher over HTTP and `logger`
//! over syslog TCP), a crawl of a local web by two worker processes, and a linearizability
//! workload on the store's own `default` keyspace, all at once. The schedule
//! (`tests::chaos::schedule`) kills and restarts store nodes, SIGSTOPs the node that leads the
//! most partitions, cuts a node off its peers, lets a node join, drains and undrains a node
//! (partitions move off and back), and kills a dictionary replica, a crawl worker, the log
//! agent and a log aggregator.
//!
//! At the end: the dictionary answered throughout (its error rate and p99 around each fault
//! are in the printed report), every log line written, pushed or sent is stored exactly once,
//! the crawl finished with every page of the web settled and each page's text stored once,
//! and the store's history is linearizable.
//!
//! `SUITE_CHAOS_SEED` replays a schedule (a failing run prints the command),
//! `SUITE_CHAOS_SECONDS` makes it longer, `SUITE_CHAOS_REPORT=DIR` writes `DIR/report.txt`
//! and `DIR/report.svg`. `scripts/chaos.sh --minutes N --seed S` runs a long one.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::partition::change::MapChange;
use kvstore::partition::map::NodeState;
use tests::chaos::{self, Fault, Sample, ScheduleLimits, Step, Timeline};
use tests::cluster::{Cluster, ClusterOptions};
use tests::dictionary::Replica;
use tests::harness::{runtime, wait_until, TempDir};
use tests::logs::{logger, stored, Agent, Aggregator, TOKEN};
use tests::thesaurus::{kill9, url_records, Crawl, Web};
use tests::workload::{self, Workload};
use thesaurus_scraper::crawl::frontier::{Frontier, UrlState};

/// The probes whose samples are counts per second, not latencies.
const RATES: &[&str] = &["crawl"];
/// A dictionary query gives up on a replica after this long and asks the other.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The dictionary is "answering throughout" if no stretch without an answer is longer.
const DICTIONARY_GAP_MAX_SECONDS: f64 = 5.0;

/// Prints the command that replays this run if the test fails.
struct Replay(String);

impl Drop for Replay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("\nsuite_chaos failed; replay it with:\n  {}\n", self.0);
        }
    }
}

/// A plain HTTP GET with a timeout: the status, or `None` if none came in time.
fn status_of(addr: &str, path: &str, timeout: Duration) -> Option<u16> {
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Waits until `a` holds exactly `want` for `service`; panics with the difference if not.
fn assert_exactly(a: &Aggregator, service: &str, want: &BTreeSet<String>, context: &str) {
    let mut got = BTreeSet::new();
    let ok = wait_until(Duration::from_secs(120), || {
        got = stored(a, service);
        got.len() >= want.len()
    });
    let missing: Vec<&String> = want.difference(&got).take(5).collect();
    let extra: Vec<&String> = got.difference(want).take(5).collect();
    assert!(
        ok && missing.is_empty() && extra.is_empty(),
        "{service}: {} stored of {}; missing {missing:?}; unexpected {extra:?}\n{context}",
        got.len(),
        want.len(),
    );
}

/// Everything the faults act on.
struct Suite {
    cluster: Cluster,
    client: Arc<ClusterClient>,
    rt: tokio::runtime::Runtime,
    replicas: Vec<Replica>,
    aggregators: Vec<Aggregator>,
    agent: Agent,
    crawl: Crawl,
}

impl Suite {
    /// The node that leads the most partitions now (by the map's leader hints).
    fn busiest_leader(&self) -> u64 {
        let map = self
            .rt
            .block_on(self.client.current_map())
            .expect("the map");
        let mut counts = std::collections::BTreeMap::<u64, usize>::new();
        for p in map.groups.values() {
            if let Some(l) = p.leader {
                *counts.entry(l).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|&(id, n)| (n, std::cmp::Reverse(id)))
            .map(|(id, _)| id)
            .unwrap_or(1)
    }

    fn set_state(&self, node: u64, state: NodeState) {
        let change = MapChange::SetState { node, state };
        let ok = wait_until(Duration::from_secs(30), || {
            self.rt.block_on(self.client.change_map(&change)).is_ok()
        });
        assert!(ok, "node {node} set {state:?}\n{}", self.cluster.logs());
    }

    /// Inflicts `step`, holds it, heals it; returns what it acted on.
    fn inflict(&mut self, step: &Step) -> String {
        let founders = 3;
        let node = step.pick % founders + 1;
        match step.fault {
            Fault::KillStoreNode => {
                self.cluster.kill(node).unwrap();
                std::thread::sleep(step.hold);
                self.cluster.restart(node).unwrap();
                format!("node {node}")
            }
            Fault::PauseStoreLeader => {
                let id = self.busiest_leader();
                self.cluster.pause(id).unwrap();
                std::thread::sleep(step.hold);
                self.cluster.resume(id).unwrap();
                format!("node {id}")
            }
            Fault::IsolateStoreNode => {
                self.cluster.isolate(node);
                std::thread::sleep(step.hold);
                self.cluster.heal();
                format!("node {node}")
            }
            Fault::JoinStoreNode => {
                let map = self.rt.block_on(self.client.current_map()).unwrap();
                let peer = map.nodes[&1].peer.clone();
                self.cluster
                    .start_joining_node(4, &["--join".to_string(), peer])
                    .unwrap();
                std::thread::sleep(step.hold);
                "node 4".into()
            }
            Fault::MovePartitions => {
                let id = step.pick % self.cluster.nodes.len() as u64 + 1;
                self.set_state(id, NodeState::Draining);
                std::thread::sleep(step.hold);
                self.set_state(id, NodeState::Up);
                format!("node {id}")
            }
            Fault::KillDictionaryReplica => {
                let i = (step.pick % self.replicas.len() as u64) as usize;
                self.replicas[i].kill();
                std::thread::sleep(step.hold);
                self.replicas[i].restart();
                format!("replica {}", i + 1)
            }
            Fault::KillCrawlWorker => {
                let i = (step.pick % 2) as usize;
                match self.crawl.worker_pid(i) {
                    Some(pid) => {
                        kill9(pid);
                        std::thread::sleep(step.hold);
                        format!("worker {i}, pid {pid}")
                    }
                    None => "no worker running".into(),
                }
            }
            Fault::KillLogAgent => {
                self.agent.kill();
                std::thread::sleep(step.hold);
                self.agent.restart();
                "agent".into()
            }
            Fault::KillAggregator => {
                // Aggregator 2 takes the syslog clients and stays up: syslog over TCP has no
                // acknowledgement, so lines in a killed node's socket buffer are lost by the
                // protocol's design. The agent and the pusher fail over between both.
                self.aggregators[0].kill();
                std::thread::sleep(step.hold);
                self.aggregators[0].restart();
                "aggregator 1".into()
            }
        }
    }
}

#[test]
fn the_whole_suite_keeps_its_promises_under_a_seeded_fault_schedule() {
    let seed: u64 = std::env::var("SUITE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000
        });
    let seconds: u64 = std::env::var("SUITE_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let _replay = Replay(format!(
        "SUITE_CHAOS_SEED={seed} SUITE_CHAOS_SECONDS={seconds} cargo test -p tests --test \
         suite_chaos -- --nocapture"
    ));
    let steps = chaos::schedule(
        seed,
        Duration::from_secs(seconds),
        ScheduleLimits::default(),
    );
    let span = steps.last().map(|s| s.at + s.hold).unwrap_or_default();
    eprintln!(
        "suite_chaos: seed {seed}, {} faults over {:.0} s:\n{}",
        steps.len(),
        span.as_secs_f64(),
        chaos::describe(&steps)
    );

    // --- the store, and each application on it --------------------------------------------
    let dir = TempDir::new("suite-chaos");
    let cluster = Cluster::start(
        "suite-chaos",
        ClusterOptions {
            partitions: 8,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    cluster.wait_settled(Duration::from_secs(60)).unwrap();
    let store = cluster.client_addresses();
    let rt = runtime();
    let client = Arc::new(ClusterClient::new(store.clone(), ClusterConfig::default()));

    // The dictionary: a slice of the real data, two replicas.
    let entries = tests::dictionary::slice(200);
    let words: Vec<String> = entries.keys().cloned().collect();
    rt.block_on(dictionary_search::store::ensure_keyspace(&client, 8))
        .unwrap();
    let version = dictionary_search::dataset::version(&entries);
    rt.block_on(dictionary_search::store::load(
        client.clone(),
        &entries,
        &version,
        false,
        &|_| {},
    ))
    .unwrap();
    let replicas = vec![
        Replica::start(&store, &dir.path),
        Replica::start(&store, &dir.path),
    ];
    for r in &replicas {
        assert!(r.wait_ready(Duration::from_secs(60)), "{}", r.log());
    }

    // The logs: two aggregators, an agent tailing a file and failing over between them.
    let aggregators = vec![
        Aggregator::start(&store, &dir.path, &["--name", "agg-1"]),
        Aggregator::start(&store, &dir.path, &["--name", "agg-2"]),
    ];
    for a in &aggregators {
        assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());
    }
    let logs = dir.path.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let agent_dir = dir.path.join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let agent = Agent::start(
        &agent_dir,
        &format!(
            "name = \"host-1\"\nhost = \"host-1\"\naggregators = [\"{}\", \"{}\"]\n\
             token = \"{TOKEN}\"\nstate_dir = \"{}\"\nbatch_wait_ms = 50\n\
             [[files]]\npaths = [\"{}/*.log\"]\nservice = \"chaos-file\"\n",
            aggregators[0].http,
            aggregators[1].http,
            agent_dir.join("state").display(),
            logs.display()
        ),
    );

    // The crawl: three clean hosts with a Crawl-delay (about 9 pages a second each), sized
    // to run through most of the schedule.
    let pages = (span.as_secs() * 7).max(300);
    let specs: Vec<String> = ["jargon", "gcide", "foldoc"]
        .iter()
        .enumerate()
        .map(|(i, source)| format!("127.0.0.{}:0={source},pages={pages},crawl_delay=0.1", i + 2))
        .collect();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let web = Web::start(&dir.path, &specs, seed);
    let seeds: Vec<String> = web.hosts.iter().map(|h| format!("{h}/")).collect();
    let crawl = Crawl::start(
        &dir.path,
        &store,
        &seeds,
        &[
            "--workers=2",
            "--lease-ms=2000",
            "--backoff-ms=100",
            "--partitions=8",
        ],
    );

    let mut suite = Suite {
        cluster,
        client: client.clone(),
        rt,
        replicas,
        aggregators,
        agent,
        crawl,
    };

    // --- the probes --------------------------------------------------------------------------
    let timeline = Arc::new(Timeline::new());
    let stop = Arc::new(AtomicBool::new(false));
    let load = workload::start_paced(
        &suite.rt,
        store.clone(),
        Workload {
            clients: 3,
            keys: 8,
            seed,
        },
        Duration::from_millis(20),
    );
    let mut probes = Vec::new();

    // Dictionary queries, as a load balancer sends them: one replica, the other on failure.
    let addrs: Vec<String> = suite.replicas.iter().map(|r| r.addr.clone()).collect();
    {
        let (t, stop, words) = (timeline.clone(), stop.clone(), words.clone());
        probes.push(std::thread::spawn(move || {
            let mut rng = chaos::Rng::new(seed);
            while !stop.load(Ordering::Relaxed) {
                let word = &words[rng.below(words.len() as u64) as usize];
                let path = format!("/api/entry/{}", word.replace(' ', "%20"));
                let first = rng.below(2) as usize;
                let at = t.now();
                let ok = (0..2)
                    .any(|k| status_of(&addrs[(first + k) % 2], &path, QUERY_TIMEOUT) == Some(200));
                t.latency("dictionary", at, ok);
                std::thread::sleep(Duration::from_millis(40));
            }
        }));
    }

    // Log lines: a file the agent tails (20 a second)...
    let file_lines = Arc::new(AtomicUsize::new(0));
    {
        let (stop, written) = (stop.clone(), file_lines.clone());
        let path = logs.join("app.log");
        probes.push(std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                writeln!(f, "chaos file seq {n:06}").unwrap();
                n += 1;
                written.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // ...pushes over HTTP, each retried (on either aggregator) until acknowledged...
    let pushed = Arc::new(Mutex::new(BTreeSet::new()));
    let aggregator_http: Vec<String> = suite.aggregators.iter().map(|a| a.http.clone()).collect();
    {
        let (t, stop, pushed) = (timeline.clone(), stop.clone(), pushed.clone());
        let dir = dir.path.clone();
        probes.push(std::thread::spawn(move || {
            let mut n = 0usize;
            let mut batch = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mut body = String::new();
                let mut lines = Vec::new();
                for _ in 0..10 {
                    let line = format!("chaos push n{n:06}");
                    body.push_str(&format!(
                        "{{\"service\":\"chaos-push\",\"msg\":\"{line}\",\
                         \"source\":\"/chaos/push\",\"position\":{}}}\n",
                        n * 100
                    ));
                    lines.push(line);
                    n += 1;
                }
                let at = t.now();
                let mut k = batch;
                loop {
                    let http = &aggregator_http[k % 2];
                    if push(&dir, http, &body) == 200 {
                        t.latency("logs", at, true);
                        break;
                    }
                    t.sample(Sample {
                        app: "logs",
                        at: t.now(),
                        value: 0.0,
                        ok: false,
                    });
                    k += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                pushed.lock().unwrap().extend(lines);
                batch += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
        }));
    }
    // ...and syslog over TCP from `logger`, to the aggregator that stays up.
    let sent = Arc::new(Mutex::new(BTreeSet::new()));
    {
        let (stop, sent) = (stop.clone(), sent.clone());
        let port = suite.aggregators[1].syslog_tcp;
        probes.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let line = format!("chaos syslog n{n:06}");
                logger(
                    port,
                    &["--tcp", "--rfc5424", "--tag", "chaos-syslog"],
                    &line,
                );
                sent.lock().unwrap().insert(line);
                n += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }
    // The crawl's pace: pages the web served each second.
    let web = Arc::new(web);
    {
        let (t, stop, web) = (timeline.clone(), stop.clone(), web.clone());
        probes.push(std::thread::spawn(move || {
            let requests = |web: &Web| -> f64 {
                let s = web.stats();
                s.as_object()
                    .map(|hosts| hosts.values().filter_map(|h| h["requests"].as_f64()).sum())
                    .unwrap_or(0.0)
            };
            let mut last = requests(&web);
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let now = requests(&web);
                t.sample(Sample {
                    app: "crawl",
                    at: t.now() - 1.0,
                    value: now - last,
                    ok: true,
                });
                last = now;
            }
        }));
    }

    // --- the schedule ------------------------------------------------------------------------
    for step in &steps {
        let when = timeline.instant(step.at);
        if let Some(wait) = when.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let from = timeline.now();
        eprintln!("t={from:.1}s {}...", step.fault.name());
        let detail = suite.inflict(step);
        timeline.span(step.fault, detail, from);
    }
    std::thread::sleep(Duration::from_secs_f64(chaos::AFTERMATH_SECONDS + 2.0));
    stop.store(true, Ordering::Relaxed);
    for p in probes {
        p.join().unwrap();
    }

    // The store's history, as samples for the report.
    let rec = load.rec.clone();
    let offset = rec
        .started()
        .saturating_duration_since(timeline.instant(Duration::ZERO))
        .as_secs_f64();
    for (_, op) in rec.history() {
        let at = offset + op.call as f64 / 1e6;
        match &op.completion {
            Some((_, done)) => timeline.sample(Sample {
                app: "store",
                at,
                value: (done - op.call) as f64 / 1000.0,
                ok: true,
            }),
            None => timeline.sample(Sample {
                app: "store",
                at,
                value: 0.0,
                ok: false,
            }),
        }
    }
    let report = timeline.report(RATES);
    let table = report.table();
    eprintln!("\n{table}");
    if let Ok(out) = std::env::var("SUITE_CHAOS_REPORT") {
        let out = Path::new(&out);
        std::fs::create_dir_all(out).unwrap();
        std::fs::write(
            out.join("report.txt"),
            format!(
                "suite_chaos: seed {seed}, {} faults, {:.0} s\n\n{table}",
                steps.len(),
                report.seconds
            ),
        )
        .unwrap();
        std::fs::write(
            out.join("report.svg"),
            report.svg(&format!("Seed {seed}, {} faults.", steps.len())),
        )
        .unwrap();
        eprintln!("report written to {}", out.display());
    }

    // --- the promises ------------------------------------------------------------------------
    // The dictionary answered throughout.
    let answered: Vec<f64> = report
        .samples
        .iter()
        .filter(|s| s.app == "dictionary" && s.ok)
        .map(|s| s.at)
        .collect();
    let longest_gap = answered
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0f64, f64::max);
    let overall = report.figures("dictionary", 0.0, report.seconds);
    eprintln!(
        "dictionary: {} queries, {} unanswered ({:.2} %), p99 {:.0} ms, longest stretch without \
         an answer {longest_gap:.1} s",
        overall.requests,
        overall.errors,
        overall.error_rate() * 100.0,
        overall.p99_ms
    );
    assert!(
        longest_gap <= DICTIONARY_GAP_MAX_SECONDS && overall.error_rate() < 0.02,
        "the dictionary stopped answering: {overall:?}, gap {longest_gap:.1} s\n{}\n{}",
        suite.replicas[0].log(),
        suite.replicas[1].log()
    );

    // The crawl finished; every page of every host settled, each page's text stored once.
    let status = suite.crawl.wait(Duration::from_secs(600));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}\n{}",
        suite.crawl.output(),
        suite.crawl.log()
    );
    let frontier = Frontier::new(client.clone());
    let mut fingerprints = BTreeSet::new();
    for (i, host) in web.hosts.iter().enumerate() {
        let host = host.trim_start_matches("http://");
        let urls = url_records(&suite.rt, &frontier, host);
        for p in web.page_keys(i) {
            let r = urls
                .get(&p)
                .unwrap_or_else(|| panic!("{host}{p} was never reached"));
            assert!(
                matches!(r.state, UrlState::Done | UrlState::Duplicate),
                "{host}{p}: {r:?}"
            );
        }
        for r in urls.values().filter(|r| r.state == UrlState::Done) {
            let fp = r.fingerprint.clone().expect("a page with text");
            assert!(fingerprints.insert(fp), "{r:?}: its text is stored twice");
        }
    }
    let stored_pages = suite
        .rt
        .block_on(frontier.scan_prefix("p:{", true, usize::MAX))
        .unwrap()
        .len();
    assert_eq!(stored_pages, fingerprints.len(), "pages stored once each");

    // Every log line written, pushed or sent is stored exactly once.
    let written: BTreeSet<String> = (0..file_lines.load(Ordering::Relaxed))
        .map(|n| format!("chaos file seq {n:06}"))
        .collect();
    let context = || format!("{}\n{}", suite.agent.log(), suite.aggregators[1].log());
    let b = &suite.aggregators[1];
    assert_exactly(b, "chaos-file", &written, &context());
    assert_exactly(b, "chaos-push", &pushed.lock().unwrap(), &context());
    assert_exactly(b, "chaos-syslog", &sent.lock().unwrap(), &context());

    // The store's own history is linearizable.
    let history = load.finish(&suite.rt, store.clone());
    workload::assert_linearizable(&history, || suite.cluster.logs());
    eprintln!(
        "suite_chaos: seed {seed} passed: {} file lines, {} pushed, {} over syslog, {} pages, \
         {} store operations",
        written.len(),
        pushed.lock().unwrap().len(),
        sent.lock().unwrap().len(),
        fingerprints.len(),
        history.len()
    );
}

/// One NDJSON push with the ingest token; its HTTP status (0 if none came).
fn push(dir: &Path, http: &str, body: &str) -> u16 {
    let file = dir.join(format!("push-{}.ndjson", std::process::id()));
    std::fs::write(&file, body).unwrap();
    let (status, _) = tests::dictionary::curl(
        &format!("http://{http}/api/v1/push"),
        &[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", file.display()),
            "-H",
            &format!("Authorization: Bearer {TOKEN}"),
            "-H",
            "X-Log-Agent: chaos-pusher",
        ],
    );
    status
}
