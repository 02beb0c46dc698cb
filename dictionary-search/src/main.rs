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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn serve(listen: &str, addresses: Vec<String>) -> anyhow::Result<()> {
    use dictionary_search::server::{self, replica::Replica};
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let client = Arc::new(ClusterClient::new(addresses, ClusterConfig::default()));
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
