//! The `log-aggregator` binary. So far one subcommand, `parse`: reads syslog messages (one
//! per line, or a TCP capture with either RFC 6587 framing) from stdin and prints each as
//! JSON, as the aggregator will store it.

use std::io::Read;

use bytes::BytesMut;
use clap::{Parser, Subcommand};
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
    /// Parses syslog messages from stdin and prints each as JSON.
    Parse,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
