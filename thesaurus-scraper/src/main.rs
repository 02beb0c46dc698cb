//! The `thesaurus-scraper` binary: parses the arguments and runs a subcommand of the library.
//!
//! - `serve-web --host ADDR:PORT=SOURCE[,options]…`: the local web the crawler crawls.

use clap::{Parser, Subcommand};
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
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> anyhow::Result<()> {
    init_logging();
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
    }
}
