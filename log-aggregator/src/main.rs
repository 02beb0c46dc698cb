//! The `log-aggregator` binary: `serve` runs an aggregator node in front of the store;
//! `parse` reads syslog messages (one per line, or a TCP capture with either RFC 6587
//! framing) from stdin and prints each as JSON, as the aggregator stores it.

use std::io::Read;

use bytes::BytesMut;
use clap::{Parser, Subcommand};
use kvstore::service::{init_logging, shutdown_signal};
use log_aggregator::syslog::{frame, message};

#[derive(Parser)]
#[command(
    version,
    about = "Collect, store and search the logs of a handful of machines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs an aggregator node: ingest over HTTP and syslog, store, index, query.
    Serve {
        /// Client addresses of the store's nodes (any of them; comma-separated).
        #[arg(long, value_delimiter = ',', env = "KVSTORE_ADDRS")]
        store: Vec<String>,
        /// The HTTP API, page, /health and /metrics.
        #[arg(long, default_value = "127.0.0.1:8390")]
        http: String,
        /// Syslog over TCP (RFC 6587, octet counting or newline framing).
        #[arg(long)]
        syslog_tcp: Option<String>,
        /// Syslog over UDP.
        #[arg(long)]
        syslog_udp: Option<String>,
        /// The token an HTTP push must carry (`Authorization: Bearer TOKEN`).
        #[arg(long, env = "LOG_INGEST_TOKEN")]
        ingest_token: String,
        /// This aggregator's name (default: hostname:http-port); unique per aggregator.
        #[arg(long)]
        name: Option<String>,
        /// Partitions of the `logs` keyspace, if this aggregator creates it.
        #[arg(long, default_value_t = 64)]
        partitions: u32,
        /// How long lines are kept (e.g. 7d, 12h).
        #[arg(long, default_value = "7d", value_parser = duration)]
        retention: i64,
        /// HTTP pushes stored at once; more are answered 429 with Retry-After.
        #[arg(long, default_value_t = log_aggregator::server::PUSHES_IN_FLIGHT_DEFAULT)]
        pushes_in_flight: usize,
        /// How often retention runs.
        #[arg(long, default_value = "1m", value_parser = duration)]
        retention_every: i64,
        /// A stream's (service and host's) most bytes kept: past it, its oldest 10-minute
        /// buckets are deleted (its newest is always kept).
        #[arg(long)]
        stream_bytes_max: Option<u64>,
        /// Keep the search index in this directory, so that a restart reads it back and
        /// catches up from the store's journal instead of indexing every line again (one
        /// directory per aggregator; without it, the index is in memory).
        #[arg(long)]
        index_dir: Option<std::path::PathBuf>,
    },
    /// Runs the agent of one machine: follows files, takes syslog and NDJSON, buffers on
    /// disk, ships to the aggregators.
    Agent {
        /// The agent's TOML config (see the README's log-aggregator section).
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Appends the logs of a made-up web service to a file, at a steady rate, until stopped
    /// (a workload for the agent to follow).
    Generate {
        #[arg(long)]
        out: std::path::PathBuf,
        /// Records per second.
        #[arg(long, default_value_t = 20)]
        rate: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stop after this many records (default: never).
        #[arg(long)]
        count: Option<u64>,
    },
    /// The query benchmark: loads generated lines into an aggregator over HTTP, then times
    /// text searches over them (see bench/logs.sh).
    BenchQuery {
        /// The aggregator's HTTP address.
        #[arg(long)]
        http: String,
        #[arg(long, env = "LOG_INGEST_TOKEN")]
        ingest_token: String,
        #[arg(long, default_value_t = 10_000_000)]
        lines: usize,
        /// Pushes in flight during the load.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// How many times each search is timed.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
    },
    /// Parses syslog messages from stdin and prints each as JSON.
    Parse,
}

fn duration(s: &str) -> Result<i64, String> {
    log_aggregator::query::parse_duration_ms(s)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("{s:?} is not a duration such as 90s, 15m, 12h, 7d"))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            store,
            http,
            syslog_tcp,
            syslog_udp,
            ingest_token,
            name,
            partitions,
            retention,
            pushes_in_flight,
            retention_every,
            stream_bytes_max,
            index_dir,
        } => {
            init_logging("info");
            anyhow::ensure!(!store.is_empty(), "--store needs at least one address");
            anyhow::ensure!(!ingest_token.is_empty(), "--ingest-token must not be empty");
            let config = log_aggregator::server::run::ServeConfig {
                store,
                http,
                syslog_tcp,
                syslog_udp,
                token: ingest_token,
                name,
                partitions,
                retention_ms: retention,
                pushes_in_flight,
                retention_every_ms: retention_every,
                stream_bytes_max,
                index_dir,
            };
            tokio::runtime::Runtime::new()?.block_on(log_aggregator::server::run::serve(
                config,
                shutdown_signal(),
            ))
        }
        Command::Agent { config } => {
            init_logging("info");
            let config = log_aggregator::agent::config::Config::load(&config)?;
            tokio::runtime::Runtime::new()?
                .block_on(log_aggregator::agent::run::run(config, shutdown_signal()))
        }
        Command::Generate {
            out,
            rate,
            seed,
            count,
        } => {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&out)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", out.display()))?;
            let mut g = log_aggregator::generate::Generator::new(seed);
            let every = std::time::Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let mut written = 0u64;
            while count.is_none_or(|c| written < c) {
                let now = log_aggregator::server::now_ms();
                let record = g.record(&log_aggregator::generate::iso_time(now));
                writeln!(file, "{record}")?;
                written += 1;
                std::thread::sleep(every);
            }
            Ok(())
        }
        Command::BenchQuery {
            http,
            ingest_token,
            lines,
            in_flight,
            rounds,
        } => tokio::runtime::Runtime::new()?.block_on(log_aggregator::bench::run(
            &http,
            &ingest_token,
            lines,
            in_flight.max(1),
            rounds.max(1),
        )),
        Command::Parse => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let mut buf = BytesMut::from(&input[..]);
            let mut decoder = frame::Decoder::default();
            let print = |f: frame::Frame| -> anyhow::Result<()> {
                let mut m = serde_json::to_value(message::parse(&f.bytes, now_ms))?;
                m["truncated"] = serde_json::Value::Bool(f.truncated);
                println!("{m}");
                Ok(())
            };
            while let frame::Decoded::Frame(f) = decoder.decode(&mut buf) {
                print(f)?;
            }
            if let Some(f) = decoder.finish(&mut buf) {
                print(f)?;
            }
            Ok(())
        }
    }
}
