//! The `url-shortener` binary: `serve` runs the HTTP service (links, redirects, clicks) in
//! front of the store; `load` creates the keyspace. Arguments in, the library's parts wired
//! together, nothing else.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::client::registry::{self, Service};
use kvstore::service::{init_logging, shutdown_signal};
use url_shortener::{keys, server, store};

#[derive(Parser)]
#[command(
    version,
    about = "Short links that redirect, with click counts, on the partitioned store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the HTTP API, the page, /health and /metrics.
    Serve {
        /// Client addresses of the store's nodes (any of them; comma-separated).
        #[arg(long, value_delimiter = ',', env = "KVSTORE_ADDRS", required = true)]
        store: Vec<String>,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8500")]
        listen: String,
        /// The base of the short links it hands out (default: http://LISTEN).
        #[arg(long)]
        public_url: Option<String>,
        /// Partitions of the keyspace, if this process creates it.
        #[arg(long, default_value_t = keys::PARTITIONS_DEFAULT)]
        partitions: u32,
        /// Ids reserved from the store at once.
        #[arg(long, default_value_t = server::ID_BLOCK_DEFAULT)]
        id_block: u64,
        /// How often counted clicks are added to the store, in milliseconds.
        #[arg(long, default_value_t = server::FLUSH_EVERY_DEFAULT.as_millis() as u64)]
        flush_ms: u64,
        /// Links kept in the redirect cache.
        #[arg(long, default_value_t = url_shortener::cache::CACHE_ENTRIES_DEFAULT)]
        cache_entries: usize,
    },
    /// Creates the keyspace (idempotent); loading this case study's data goes here.
    Load {
        #[arg(long, value_delimiter = ',', env = "KVSTORE_ADDRS", required = true)]
        store: Vec<String>,
        #[arg(long, default_value_t = keys::PARTITIONS_DEFAULT)]
        partitions: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging("info");
    match Cli::parse().command {
        Command::Load {
            store: addrs,
            partitions,
        } => {
            let client = ClusterClient::new(addrs, ClusterConfig::default());
            store::ensure_keyspace(&client, partitions).await?;
            tracing::info!(
                keyspace = keys::KEYSPACE,
                partitions,
                "the keyspace is ready"
            );
            Ok(())
        }
        Command::Serve {
            store: addrs,
            listen,
            public_url,
            partitions,
            id_block,
            flush_ms,
            cache_entries,
        } => {
            anyhow::ensure!(
                (1..=1_000_000).contains(&id_block),
                "--id-block is 1 to 1000000"
            );
            let client = Arc::new(ClusterClient::new(addrs, ClusterConfig::default()));
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            let addr = listener.local_addr()?;
            let settings = server::Settings {
                public_url: public_url.unwrap_or_else(|| format!("http://{addr}")),
                id_block,
                flush_every: Duration::from_millis(flush_ms.max(1)),
                cache_entries,
                pending_codes: url_shortener::clicks::PENDING_CODES_MAX_DEFAULT,
            };
            let app = server::App::new(client.clone(), settings);
            // The keyspace, then ready: retried until the store answers, while /health
            // says "starting".
            let ready = {
                let app = app.clone();
                tokio::spawn(async move {
                    loop {
                        match store::ensure_keyspace(&app.client, partitions).await {
                            Ok(()) => break,
                            Err(error) => {
                                tracing::warn!(%error, "the store is not ready yet; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                    app.ready.store(true, Ordering::SeqCst);
                    tracing::info!(%addr, "serving");
                })
            };
            let registration = registry::register(
                client,
                Service {
                    name: "url-shortener".into(),
                    url: format!("http://{addr}"),
                    health: "/health".into(),
                    keyspaces: vec![keys::KEYSPACE.into()],
                    about: "Short links that redirect, with click counts, on the partitioned store"
                        .into(),
                },
            );
            server::serve(listener, app, shutdown_signal()).await?;
            ready.abort();
            registration.withdraw().await;
            tracing::info!("stopped");
            Ok(())
        }
    }
}
