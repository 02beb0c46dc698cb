//! What the `kvstore` binary's subcommands do: `serve` (open the data directory, bind the
//! listeners, run until SIGINT/SIGTERM) and the client commands (`get`, `put`, `del`, `scan`,
//! `incr`, `ping`) over the binary protocol. Argument parsing stays in `main.rs`.
//!
//! Client commands exit with a code a shell script can branch on; see [`exit`].

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::client::{Client, ClientConfig, ClientError, PutOptions, ScanOptions};
use crate::db::Db;
use crate::server::{self, Listeners, ServerConfig};
use crate::storage::{self, Engine, SystemClock};
use crate::wire::{Condition, ScanRange};

/// Exit codes of the client subcommands.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// `get`: the key does not exist. `del`: the key did not exist.
    pub const NOT_FOUND: i32 = 1;
    /// Bad arguments (reported by the argument parser).
    pub const USAGE: i32 = 2;
    /// The server could not be reached, or the connection broke, or it timed out.
    pub const UNAVAILABLE: i32 = 3;
    /// The server refused the request (the message says why).
    pub const SERVER_ERROR: i32 = 4;
    /// A conditional write (`--if-absent`, `--if-present`, `--if-version`) did not apply.
    pub const CONDITION_FAILED: i32 = 5;
}

/// Everything `kvstore serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub resp_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub storage: storage::Config,
    pub server: ServerConfig,
    /// Written (JSON with the bound addresses) once every listener is bound.
    pub ready_file: Option<PathBuf>,
}

/// Runs a server until SIGINT or SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let engine = {
        let dir = options.data_dir.clone();
        let config = options.storage.clone();
        tokio::task::spawn_blocking(move || Engine::open(&dir, config, Arc::new(SystemClock)))
            .await?
            .with_context(|| format!("opening data directory {}", options.data_dir.display()))?
    };
    let bind = |addr: SocketAddr, what: &'static str| async move {
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the {what} listener to {addr}"))
    };
    let binary = bind(options.listen, "binary-protocol").await?;
    let resp = match options.resp_listen {
        Some(addr) => Some(bind(addr, "RESP").await?),
        None => None,
    };
    let http = match options.http_listen {
        Some(addr) => Some(bind(addr, "HTTP").await?),
        None => None,
    };
    let addr_of = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let ready = serde_json::json!({
        "pid": std::process::id(),
        "listen": addr_of(&binary),
        "resp_listen": resp.as_ref().map(addr_of),
        "http_listen": http.as_ref().map(addr_of),
    });
    tracing::info!(
        listen = %addr_of(&binary),
        resp = %resp.as_ref().map(addr_of).unwrap_or_default(),
        http = %http.as_ref().map(addr_of).unwrap_or_default(),
        data_dir = %options.data_dir.display(),
        fsync = %options.storage.fsync,
        "kvstore serving"
    );
    if let Some(path) = &options.ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ready.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    let listeners = Listeners { binary, resp, http };
    server::run(
        listeners,
        Db::new(engine),
        options.server,
        shutdown_signal(),
    )
    .await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

/// A client subcommand.
#[derive(Debug, Clone)]
pub enum Command {
    Ping,
    Get {
        key: Bytes,
    },
    Put {
        key: Bytes,
        value: Bytes,
        ttl_ms: Option<u64>,
        condition: Condition,
    },
    Del {
        key: Bytes,
    },
    Incr {
        key: Bytes,
        by: i64,
    },
    Scan {
        range: ScanRange,
        limit: Option<u64>,
        keys_only: bool,
    },
}

/// Runs a client subcommand, printing its result; returns the exit code.
pub async fn run_client(addr: &str, keyspace: &str, timeout_ms: u64, command: Command) -> i32 {
    let config = ClientConfig {
        request_timeout_ms: timeout_ms,
        ..ClientConfig::default()
    };
    let client = match Client::connect(addr, config).await {
        Ok(client) => client,
        Err(error) => return fail(&error, addr),
    };
    match execute(&client, keyspace, command).await {
        Ok(code) => code,
        Err(error) => fail(&error, addr),
    }
}

async fn execute(client: &Client, ks: &str, command: Command) -> Result<i32, ClientError> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Ping => {
            let started = std::time::Instant::now();
            client.ping().await?;
            let _ = writeln!(
                out,
                "PONG from {} in {:?}",
                client.server_name(),
                started.elapsed()
            );
        }
        Command::Get { key } => match client.get(ks, &key).await? {
            Some(found) => {
                let _ = out.write_all(&found.value);
                let _ = out.write_all(b"\n");
            }
            None => {
                eprintln!("kvstore: key not found: {}", String::from_utf8_lossy(&key));
                return Ok(exit::NOT_FOUND);
            }
        },
        Command::Put {
            key,
            value,
            ttl_ms,
            condition,
        } => {
            let r = client
                .put_with(ks, &key, &value, PutOptions { ttl_ms, condition })
                .await?;
            if !r.applied {
                eprintln!(
                    "kvstore: condition failed; not written (current version {})",
                    r.version
                );
                return Ok(exit::CONDITION_FAILED);
            }
            let _ = writeln!(out, "OK version {}", r.version);
        }
        Command::Del { key } => {
            if !client.delete(ks, &key).await? {
                eprintln!("kvstore: key not found: {}", String::from_utf8_lossy(&key));
                return Ok(exit::NOT_FOUND);
            }
            let _ = writeln!(out, "deleted");
        }
        Command::Incr { key, by } => {
            let _ = writeln!(out, "{}", client.incr(ks, &key, by).await?);
        }
        Command::Scan {
            range,
            limit,
            keys_only,
        } => {
            let mut left = limit.unwrap_or(u64::MAX);
            let mut continuation = None;
            while left > 0 {
                let options = ScanOptions {
                    range: range.clone(),
                    limit: left.min(1000) as u32,
                    continuation: continuation.take(),
                    keys_only,
                    ..ScanOptions::default()
                };
                let page = client.scan(ks, options).await?;
                for entry in &page.entries {
                    let _ = out.write_all(&entry.key);
                    if let Some(value) = &entry.value {
                        let _ = out.write_all(b"\t");
                        let _ = out.write_all(value);
                    }
                    let _ = out.write_all(b"\n");
                }
                left = left.saturating_sub(page.entries.len() as u64);
                match page.continuation {
                    Some(token) => continuation = Some(token),
                    None => break,
                }
            }
        }
    }
    Ok(exit::OK)
}

fn fail(error: &ClientError, addr: &str) -> i32 {
    eprintln!("kvstore: {error}");
    match error {
        ClientError::Server { .. } => exit::SERVER_ERROR,
        ClientError::Connect { .. } => {
            eprintln!("kvstore: is a server running at {addr}? (kvstore serve --listen {addr})");
            exit::UNAVAILABLE
        }
        _ => exit::UNAVAILABLE,
    }
}
