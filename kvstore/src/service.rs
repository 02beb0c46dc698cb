//! What every long-running binary of the suite does the same way, the store's nodes and the
//! case studies' services alike: log with `tracing` to stderr (the level from `RUST_LOG`),
//! and stop gracefully on SIGINT or SIGTERM. Behind the `service` feature, so an application
//! that links the lean client gets it without the store.

/// Logs to stderr at `default_level` (`info`, `warn`, …) unless `RUST_LOG` says otherwise,
/// with colours only when stderr is a terminal (a log file gets plain text).
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGINT or SIGTERM, and logs which came.
///
/// # Panics
/// If the SIGTERM handler cannot be installed (outside a Tokio runtime with signals).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
