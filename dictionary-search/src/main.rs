//! The `dictionary-search` binary: parses the arguments and runs a subcommand of the library.
//!
//! - `load --store ADDRS`: parse the sources, merge, write the `dictionary` keyspace;
//! - `serve --listen HOST:PORT --store ADDRS`: a search replica (API, pages, health, metrics)
//!   that builds its indexes from the store and follows its dataset version;
//! - `show WORD`: one merged entry as JSON, from the sources or (`--store`) from the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use dictionary_search::source::Sources;
use dictionary_search::{dataset, store};
use indicatif::{ProgressBar, ProgressStyle};
use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::service::{init_logging, shutdown_signal};
use kvstore::wire::Consistency;

#[derive(Parser)]
#[command(
    version,
    about = "Search an English dictionary (WordNet, GCIDE, CMUdict) served from kvstore"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct SourceArgs {
    /// WordNet 3.0's dict directory (Debian's wordnet-base).
    #[arg(long, default_value_os_t = Sources::default().wordnet_dir)]
    wordnet_dir: PathBuf,
    /// GCIDE's dictd index (Debian's dict-gcide).
    #[arg(long, default_value_os_t = Sources::default().gcide_index)]
    gcide_index: PathBuf,
    /// GCIDE's dictd text, dictzip or gzip.
    #[arg(long, default_value_os_t = Sources::default().gcide_dict)]
    gcide_dict: PathBuf,
    /// CMUdict with syllables and stress (Debian's festlex-cmu).
    #[arg(long, default_value_os_t = Sources::default().cmudict)]
    cmudict: PathBuf,
    /// Word frequencies, `word<TAB>zipf` (scripts/install-dictionary-data.sh exports them).
    #[arg(long, default_value_os_t = Sources::default().frequencies)]
    frequencies: PathBuf,
}

impl SourceArgs {
    fn sources(&self) -> Sources {
        Sources {
            wordnet_dir: self.wordnet_dir.clone(),
            gcide_index: self.gcide_index.clone(),
            gcide_dict: self.gcide_dict.clone(),
            cmudict: self.cmudict.clone(),
            frequencies: self.frequencies.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Parses the sources and writes one entry per headword into the `dictionary` keyspace.
    Load {
        /// Client addresses of store nodes, comma-separated.
        #[arg(long, env = "DICTIONARY_STORE", value_delimiter = ',', required = true)]
        store: Vec<String>,
        /// Partitions of the keyspace, if the load creates it.
        #[arg(long, default_value_t = 64)]
        partitions: u32,
        /// Writes every entry even if the store holds this dataset version already.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Serves search (JSON API and web page) from indexes built from the store.
    Serve {
        /// Where to listen for HTTP.
        #[arg(long, default_value = "127.0.0.1:8380")]
        listen: String,
        /// Client addresses of store nodes, comma-separated.
        #[arg(long, env = "DICTIONARY_STORE", value_delimiter = ',', required = true)]
        store: Vec<String>,
    },
    /// Measures "did you mean" on real misspellings (codespell's list), against GNU aspell
    /// side by side: how often each puts the right word first, and in its first five.
    EvalSpelling {
        /// codespell's dictionary (`typo->correction` lines).
        #[arg(
            long,
            default_value = "/usr/lib/python3/dist-packages/codespell_lib/data/dictionary.txt"
        )]
        list: PathBuf,
        /// Every Nth usable pair only.
        #[arg(long, default_value_t = 1)]
        every: usize,
        /// Skips aspell.
        #[arg(long)]
        no_aspell: bool,
        /// Prints this many of the misspellings it got wrong.
        #[arg(long, default_value_t = 0)]
        misses: usize,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Writes every merged entry as JSON lines (the benchmark's peers index the same data).
    Export {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Writes the benchmark's seeded queries (`kind<TAB>query[<TAB>expected]` lines).
    BenchQueries {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        per_kind: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// codespell's list, for the misspellings.
        #[arg(
            long,
            default_value = "/usr/lib/python3/dist-packages/codespell_lib/data/dictionary.txt"
        )]
        list: PathBuf,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Times the queries of a query file: in this process on an index built from the sources
    /// (server-side), or over HTTP against a running `serve` (`--http`). Prints a JSON line
    /// per kind of query.
    Bench {
        #[arg(long)]
        queries: PathBuf,
        /// A running replica's address: time HTTP requests over loopback instead.
        #[arg(long)]
        http: Option<String>,
        /// Keep-alive connections (concurrent clients) for `--http`.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Each query is sent this many times (more samples for the percentiles).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Prints one merged entry as JSON.
    Show {
        word: String,
        /// Reads it from the store at these addresses rather than from the sources.
        #[arg(long, value_delimiter = ',')]
        store: Vec<String>,
        #[command(flatten)]
        sources: SourceArgs,
    },
}

fn main() -> anyhow::Result<()> {
    init_logging("info");
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Load {
            store,
            partitions,
            force,
            sources,
        } => runtime.block_on(load(store, partitions, force, sources.sources())),
        Command::Show {
            word,
            store,
            sources,
        } => runtime.block_on(show(&word, store, sources.sources())),
        Command::Serve { listen, store } => runtime.block_on(serve(&listen, store)),
        Command::Export { out, sources } => export(&out, &sources.sources()),
        Command::BenchQueries {
            out,
            per_kind,
            seed,
            list,
            sources,
        } => bench_queries(&out, per_kind, seed, &list, &sources.sources()),
        Command::Bench {
            queries,
            http,
            connections,
            rounds,
            sources,
        } => match http {
            Some(addr) => runtime.block_on(bench_http(&queries, &addr, connections, rounds)),
            None => bench_local(&queries, rounds, &sources.sources()),
        },
        Command::EvalSpelling {
            list,
            every,
            no_aspell,
            misses,
            sources,
        } => eval_spelling(&list, every, !no_aspell, misses, &sources.sources()),
    }
}

async fn serve(listen: &str, addresses: Vec<String>) -> anyhow::Result<()> {
    use dictionary_search::server::{self, replica::Replica};
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let client = Arc::new(ClusterClient::new(addresses, ClusterConfig::default()));
    // On the suite's landing page (every store node's /suite).
    let registration = kvstore::client::registry::register(
        client.clone(),
        kvstore::client::registry::Service {
            name: "dictionary-search".into(),
            url: format!("http://{}", listener.local_addr()?),
            health: "/health".into(),
            keyspaces: vec![dictionary_search::store::KEYSPACE.into()],
            about: "search an English dictionary: suggestions, spelling, full text".into(),
        },
    );
    let replica = Arc::new(Replica::new(client));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let maintain = tokio::spawn(replica.clone().maintain(stopped()));
    tracing::info!(listen = %listener.local_addr()?, "dictionary-search serving (the index builds from the store)");
    let app = server::App::new(replica);
    let http = tokio::spawn(server::run(listener, app, stopped()));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    http.await?.context("the HTTP server")?;
    maintain.await?;
    registration.withdraw().await;
    Ok(())
}

/// Parses and merges every source, logging each step.
fn read_dataset(
    sources: &Sources,
) -> anyhow::Result<std::collections::BTreeMap<String, dictionary_search::entry::Entry>> {
    let started = Instant::now();
    let parsed = sources.read(&mut |step| {
        tracing::info!(
            step,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "parsing"
        )
    })?;
    let entries = dataset::merge(&parsed);
    tracing::info!(
        entries = entries.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "merged the sources"
    );
    Ok(entries)
}

/// The indexes a replica would build, from the sources directly (no store).
fn index_from_sources(sources: &Sources) -> anyhow::Result<dictionary_search::index::Index> {
    let entries = read_dataset(sources)?;
    let version = dataset::version(&entries);
    Ok(dictionary_search::index::Index::build(
        &version,
        entries.into_values().collect(),
    ))
}

async fn load(
    addresses: Vec<String>,
    partitions: u32,
    force: bool,
    sources: Sources,
) -> anyhow::Result<()> {
    let entries = tokio::task::spawn_blocking(move || read_dataset(&sources)).await??;
    let version = dataset::version(&entries);
    let client = Arc::new(ClusterClient::new(addresses, ClusterConfig::default()));
    store::ensure_keyspace(&client, partitions)
        .await
        .context("creating the dictionary keyspace")?;
    let bar = ProgressBar::new(entries.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} entries, {per_sec}, ETA {eta} {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let report = store::load(client, &entries, &version, force, &|_| bar.inc(1)).await?;
    bar.finish_and_clear();
    if report.already_loaded {
        tracing::info!(%version, entries = entries.len(), "the store holds this dataset already (--force writes it again)");
    } else {
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            %version,
            written = report.written,
            deleted = report.deleted,
            megabytes = format!("{:.1}", report.bytes as f64 / 1e6),
            seconds = format!("{seconds:.1}"),
            entries_per_s = format!("{:.0}", report.written as f64 / seconds),
            "loaded the dictionary"
        );
    }
    Ok(())
}

async fn show(word: &str, addresses: Vec<String>, sources: Sources) -> anyhow::Result<()> {
    let entry = if addresses.is_empty() {
        let word = word.to_string();
        let mut entries = tokio::task::spawn_blocking(move || read_dataset(&sources)).await??;
        entries.remove(&dictionary_search::entry::Entry::key_of(&word))
    } else {
        let client = ClusterClient::new(addresses, ClusterConfig::default());
        let key = store::entry_key(word);
        match client
            .get(store::KEYSPACE, key.as_bytes(), Consistency::Follower)
            .await?
        {
            Some(v) => Some(serde_json::from_slice(&v.value)?),
            None => None,
        }
    };
    match entry {
        Some(e) => {
            println!("{}", serde_json::to_string_pretty(&e)?);
            Ok(())
        }
        None => anyhow::bail!("no entry for {word:?}"),
    }
}

/// Runs `words` through `aspell -a` (one per line) and returns its suggestions for each, in
/// order (empty for a word it accepts).
fn aspell(words: &[&str]) -> anyhow::Result<Vec<Option<Vec<String>>>> {
    use std::io::{BufRead, Write};
    let mut child = std::process::Command::new("aspell")
        .args(["-a", "--lang=en", "--sug-mode=normal"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running aspell (scripts/install-dictionary-data.sh installs aspell-en)")?;
    let mut stdin = child.stdin.take().expect("piped");
    let input: String = words.iter().map(|w| format!("^{w}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut answers = Vec::with_capacity(words.len());
    let mut current: Option<Option<Vec<String>>> = None;
    for line in stdout.lines().skip(1) {
        let line = line?;
        if line.is_empty() {
            answers.push(current.take().unwrap_or(None));
            if answers.len() == words.len() {
                break;
            }
        } else if current.is_none() {
            current = Some(dictionary_search::eval::aspell_suggestions(&line));
        }
    }
    writer.join().expect("the writer thread")?;
    child.wait()?;
    Ok(answers)
}

fn eval_spelling(
    list: &std::path::Path,
    every: usize,
    with_aspell: bool,
    misses: usize,
    sources: &Sources,
) -> anyhow::Result<()> {
    use dictionary_search::eval::{codespell_pairs, Score};
    let started = Instant::now();
    let index = index_from_sources(sources)?;
    tracing::info!(
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "parsed the sources and built the index"
    );
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("reading {} (Debian's codespell)", list.display()))?;
    let mut pairs = codespell_pairs(&text, |w| index.knows(w));
    pairs = pairs.into_iter().step_by(every.max(1)).collect();
    let aspell_answers = if with_aspell {
        // Fair to both: aspell must know the word meant and not the misspelling.
        let words: Vec<&str> = pairs
            .iter()
            .flat_map(|p| [p.typed.as_str(), p.meant.as_str()])
            .collect();
        let answers = aspell(&words)?;
        let mut kept = Vec::new();
        let mut kept_answers = Vec::new();
        for (i, p) in pairs.into_iter().enumerate() {
            let (typed, meant) = (&answers[2 * i], &answers[2 * i + 1]);
            if meant.as_ref().is_some_and(|m| m.is_empty())
                && typed.as_ref().is_some_and(|t| !t.is_empty())
            {
                kept.push(p);
                kept_answers.push(typed.clone().unwrap_or_default());
            }
        }
        pairs = kept;
        Some(kept_answers)
    } else {
        None
    };
    let mut ours = Score::default();
    let started = Instant::now();
    let mut missed = Vec::new();
    for p in &pairs {
        let got: Vec<String> = index
            .spell(&p.typed, 5)?
            .into_iter()
            .map(|c| c.word)
            .collect();
        if got
            .first()
            .is_none_or(|g| !g.eq_ignore_ascii_case(&p.meant))
            && missed.len() < misses
        {
            missed.push(format!(
                "{} -> {} (got {:?})",
                p.typed,
                p.meant,
                &got[..got.len().min(3)]
            ));
        }
        ours.add(&p.meant, &got);
    }
    let ours_us = started.elapsed().as_secs_f64() * 1e6 / pairs.len().max(1) as f64;
    for m in &missed {
        println!("missed: {m}");
    }
    println!("{} real misspellings from {}", pairs.len(), list.display());
    println!(
        "{:<22} {:>11} {:>11} {:>10}",
        "speller", "right first", "in top 5", "µs/word"
    );
    println!(
        "{:<22} {:>10.1}% {:>10.1}% {:>10.0}",
        "dictionary-search",
        100.0 * ours.first_rate(),
        100.0 * ours.top5_rate(),
        ours_us
    );
    if let Some(answers) = aspell_answers {
        let mut theirs = Score::default();
        for (p, a) in pairs.iter().zip(&answers) {
            theirs.add(&p.meant, a);
        }
        let started = Instant::now();
        let words: Vec<&str> = pairs.iter().map(|p| p.typed.as_str()).collect();
        aspell(&words)?;
        let aspell_us = started.elapsed().as_secs_f64() * 1e6 / pairs.len().max(1) as f64;
        println!(
            "{:<22} {:>10.1}% {:>10.1}% {:>10.0}",
            "aspell 0.60 (en)",
            100.0 * theirs.first_rate(),
            100.0 * theirs.top5_rate(),
            aspell_us
        );
    }
    Ok(())
}

fn export(out: &std::path::Path, sources: &Sources) -> anyhow::Result<()> {
    use std::io::Write;
    let entries = read_dataset(sources)?;
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    for e in entries.values() {
        serde_json::to_writer(&mut file, e)?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    tracing::info!(entries = entries.len(), out = %out.display(), "exported");
    Ok(())
}

fn bench_queries(
    out: &std::path::Path,
    per_kind: usize,
    seed: u64,
    list: &std::path::Path,
    sources: &Sources,
) -> anyhow::Result<()> {
    let entries = read_dataset(sources)?;
    let version = dataset::version(&entries);
    let refs: Vec<&dictionary_search::entry::Entry> = entries.values().collect();
    let index =
        dictionary_search::index::Index::build(&version, entries.values().cloned().collect());
    let text =
        std::fs::read_to_string(list).with_context(|| format!("reading {}", list.display()))?;
    let pairs = dictionary_search::eval::codespell_pairs(&text, |w| index.knows(w));
    let lines = dictionary_search::bench::queries(&refs, &pairs, per_kind, seed);
    std::fs::write(out, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    tracing::info!(queries = lines.len(), out = %out.display(), "wrote the queries");
    Ok(())
}

/// The query file's lines as (kind, query, expected).
fn read_queries(path: &std::path::Path) -> anyhow::Result<Vec<(String, String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next().unwrap_or("").to_string(),
            ))
        })
        .collect())
}

fn report(
    system: &str,
    mode: &str,
    kind: &str,
    micros: Vec<f64>,
    seconds: f64,
    right_first: Option<f64>,
) {
    let n = micros.len();
    let l = dictionary_search::bench::Latency::of(micros);
    let mut line = serde_json::json!({
        "system": system, "mode": mode, "kind": kind, "queries": n,
        "p50_us": (l.p50_us * 10.0).round() / 10.0, "p99_us": (l.p99_us * 10.0).round() / 10.0,
        "qps": (n as f64 / seconds).round(),
    });
    if let Some(r) = right_first {
        line["right_first"] = serde_json::json!((r * 1000.0).round() / 1000.0);
    }
    println!("{line}");
}

fn bench_local(path: &std::path::Path, rounds: usize, sources: &Sources) -> anyhow::Result<()> {
    let queries = read_queries(path)?;
    let index = index_from_sources(sources)?;
    for kind in ["prefix", "spell", "search"] {
        let chosen: Vec<&(String, String, String)> =
            queries.iter().filter(|q| q.0 == kind).collect();
        let mut micros = Vec::with_capacity(chosen.len() * rounds);
        let mut right = 0usize;
        let started = Instant::now();
        for round in 0..rounds.max(1) {
            for (_, q, expected) in &chosen {
                let t = Instant::now();
                let first = match kind {
                    "prefix" => index
                        .suggest(q, 10)
                        .ok()
                        .and_then(|v| v.first().map(|w| w.to_string())),
                    "spell" => index
                        .spell(q, 5)
                        .ok()
                        .and_then(|v| v.first().map(|c| c.word.clone())),
                    _ => index
                        .search(q, 10)
                        .ok()
                        .and_then(|v| v.first().map(|h| h.entry.word.clone())),
                };
                micros.push(t.elapsed().as_secs_f64() * 1e6);
                if round == 0 && kind == "spell" && first.as_deref() == Some(expected.as_str()) {
                    right += 1;
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let right_first = (kind == "spell").then(|| right as f64 / chosen.len().max(1) as f64);
        report(
            "dictionary-search",
            "in-process",
            kind,
            micros,
            seconds,
            right_first,
        );
    }
    Ok(())
}

/// One keep-alive HTTP/1.1 GET; the status code.
async fn http_get(
    stream: &mut tokio::io::BufStream<tokio::net::TcpStream>,
    path: &str,
) -> anyhow::Result<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
        .await?;
    stream.flush().await?;
    let mut status = 0;
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            anyhow::bail!("the server closed the connection");
        }
        let l = line.trim_end();
        if status == 0 {
            status = l
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        } else if l.is_empty() {
            break;
        } else if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}

fn encode(q: &str) -> String {
    dictionary_search::server::page::url_path(q)
}

async fn bench_http(
    path: &std::path::Path,
    addr: &str,
    connections: usize,
    rounds: usize,
) -> anyhow::Result<()> {
    let queries = read_queries(path)?;
    for kind in ["prefix", "spell", "search"] {
        let route = match kind {
            "prefix" => "/api/suggest?q=",
            "spell" => "/api/spell?q=",
            _ => "/api/search?q=",
        };
        let paths: Vec<String> = queries
            .iter()
            .filter(|q| q.0 == kind)
            .map(|q| format!("{route}{}", encode(&q.1)))
            .collect();
        let paths = Arc::new(paths);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..connections.max(1) {
            let (paths, addr) = (paths.clone(), addr.to_string());
            tasks.push(tokio::spawn(async move {
                let mut stream =
                    tokio::io::BufStream::new(tokio::net::TcpStream::connect(&addr).await?);
                let mut micros = Vec::new();
                for _ in 0..rounds.max(1) {
                    for p in paths.iter().skip(c).step_by(connections.max(1)) {
                        let t = Instant::now();
                        let status = http_get(&mut stream, p).await?;
                        anyhow::ensure!(status == 200, "{p}: HTTP {status}");
                        micros.push(t.elapsed().as_secs_f64() * 1e6);
                    }
                }
                Ok::<_, anyhow::Error>(micros)
            }));
        }
        let mut micros = Vec::new();
        for t in tasks {
            micros.extend(t.await??);
        }
        let seconds = started.elapsed().as_secs_f64();
        report(
            "dictionary-search",
            &format!("http, {connections} connections"),
            kind,
            micros,
            seconds,
            None,
        );
    }
    Ok(())
}
