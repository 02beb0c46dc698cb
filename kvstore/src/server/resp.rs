//! One RESP (Redis protocol) connection: commands in, replies out, pipelined.
//!
//! Same shape as the binary connection: every complete command in the buffer is executed in
//! order, the replies are written with one syscall, and under `--fsync always` they wait for
//! the highest version they wrote to be on disk. A protocol error gets Redis's `-ERR Protocol
//! error: ...` reply and closes the connection, as Redis does; an unknown command gets
//! `-ERR unknown command` and the connection stays open.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{flush, read_deadline, Context};
use crate::db::GroupDb;
use crate::metrics::{Listener, Op};
use crate::resp::codec::{parse_command, Reply, RespLimits};
use crate::resp::commands::{self, ServerFacts, Session};

/// Commands taken from the read buffer per round; the rest wait for the next round.
const PIPELINE_COMMANDS_MAX: usize = 1024;

pub async fn serve_connection(ctx: &Context, mut stream: TcpStream) -> std::io::Result<()> {
    let peer = stream.peer_addr().ok();
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let limits = RespLimits {
        bulk_bytes_max: ctx.config.resp_bulk_bytes_max,
        ..RespLimits::default()
    };
    let mut session = Session::default();
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    loop {
        // Cut every complete command out of the buffer first, so that runs of single-key
        // commands can be executed as one write group (one append for the whole run).
        let mut commands = Vec::new();
        let mut protocol_error = None;
        while commands.len() < PIPELINE_COMMANDS_MAX {
            match parse_command(&mut rbuf, &limits) {
                Ok(Some(args)) if args.is_empty() => {}
                Ok(Some(args)) => commands.push(args),
                Ok(None) => break,
                Err(error) => {
                    protocol_error = Some(error);
                    break;
                }
            }
        }
        let facts = || ServerFacts {
            uptime_seconds: ctx.started.elapsed().as_secs(),
            connected_clients: ctx.metrics.connections_active(Listener::Resp),
            total_commands: ctx.metrics.total_ops(),
            fsync: ctx.db.engine().config().fsync.to_string(),
            port,
        };
        let mut durable = None;
        let mut close = false;
        let mut rest = &commands[..];
        while !rest.is_empty() && !close {
            let run = rest
                .iter()
                .take_while(|args| commands::groupable(&args[0]))
                .count();
            let outcomes = if run > 0 {
                let (batch, tail) = rest.split_at(run);
                rest = tail;
                run_group(ctx, &mut session, facts, batch)
            } else {
                let (one, tail) = rest.split_at(1);
                rest = tail;
                let started = Instant::now();
                let outcome =
                    commands::execute(&ctx.db, &ctx.db, &ctx.resp, &mut session, facts, &one[0]);
                let outcomes = vec![outcome];
                record(ctx, one, started, &outcomes);
                outcomes
            };
            for outcome in outcomes {
                outcome.reply.encode(&mut wbuf);
                durable = durable.max(outcome.durable);
                if outcome.close {
                    close = true;
                    break;
                }
            }
            if wbuf.len() >= ctx.config.write_buffer_bytes_max {
                flush(ctx, Listener::Resp, &mut stream, &mut wbuf, durable.take()).await?;
            }
        }
        if let Some(error) = protocol_error.filter(|_| !close) {
            ctx.metrics.protocol_error(Listener::Resp);
            tracing::info!(?peer, %error, "closing RESP connection: protocol error");
            Reply::Error(format!("ERR {error}").into()).encode(&mut wbuf);
            close = true;
        }
        flush(ctx, Listener::Resp, &mut stream, &mut wbuf, durable).await?;
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if ctx.shutting_down() {
            return Ok(());
        }
        let deadline = read_deadline(ctx, !rbuf.is_empty());
        let read = tokio::select! {
            read = tokio::time::timeout(deadline, stream.read_buf(&mut rbuf)) => read,
            _ = ctx.shutdown_signal() => return Ok(()),
        };
        let n = match read {
            Ok(n) => n?,
            Err(_) => {
                ctx.metrics.timeout(Listener::Resp);
                tracing::info!(
                    ?peer,
                    timeout_ms = deadline.as_millis() as u64,
                    "closing RESP connection: timeout"
                );
                return Ok(());
            }
        };
        ctx.metrics.bytes(Listener::Resp, n, 0);
        if n == 0 {
            if !rbuf.is_empty() {
                ctx.metrics.protocol_error(Listener::Resp);
                tracing::info!(?peer, pending_bytes = rbuf.len(), "peer closed mid-command");
            }
            return Ok(());
        }
    }
}

/// Runs a run of groupable commands as one write group: one append for all their writes. If
/// the append fails, none of the writes happened, so every command of the run gets the error.
fn run_group(
    ctx: &Context,
    session: &mut Session,
    facts: impl Fn() -> ServerFacts,
    batch: &[Vec<Bytes>],
) -> Vec<commands::Outcome> {
    let started = Instant::now();
    let outcomes = if batch.iter().all(|args| commands::read_only(&args[0])) {
        // Nothing to append: skip the writer lock, so readers never wait for writers.
        batch
            .iter()
            .map(|args| commands::execute(&ctx.db, &ctx.db, &ctx.resp, session, &facts, args))
            .collect()
    } else {
        let result = ctx.db.engine().write_group(|group| {
            let store = GroupDb::new(group);
            batch
                .iter()
                .map(|args| commands::execute(&ctx.db, &store, &ctx.resp, session, &facts, args))
                .collect::<Vec<_>>()
        });
        result.map(|(outcomes, _)| outcomes).unwrap_or_else(|error| {
            tracing::warn!(%error, commands = batch.len(), "write group failed; nothing applied");
            let reply = || Reply::Error(format!("ERR {error}").into());
            batch.iter().map(|_| commands::Outcome::from(reply())).collect()
        })
    };
    record(ctx, batch, started, &outcomes);
    outcomes
}

/// Records a run of commands in the metrics. A pipelined run is timed once and its time
/// shared evenly among its commands: reading the clock per command would cost more than
/// many of the commands do.
fn record(ctx: &Context, batch: &[Vec<Bytes>], started: Instant, outcomes: &[commands::Outcome]) {
    let each = started.elapsed() / batch.len().max(1) as u32;
    for (args, outcome) in batch.iter().zip(outcomes) {
        let ok = !matches!(outcome.reply, Reply::Error(_));
        ctx.metrics.record_op(op_of(&args[0]), each, ok);
    }
}

fn op_of(name: &[u8]) -> Op {
    const OPS: [(&[&str], Op); 5] = [
        (&["get", "mget", "exists", "ttl", "pttl"], Op::Get),
        (
            &[
                "set", "setnx", "setex", "psetex", "mset", "expire", "pexpire",
            ],
            Op::Put,
        ),
        (&["del", "unlink", "flushdb", "flushall"], Op::Delete),
        (&["incr", "incrby", "decr", "decrby"], Op::Incr),
        (&["scan", "keys"], Op::Scan),
    ];
    OPS.iter()
        .find(|(names, _)| {
            names
                .iter()
                .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
        })
        .map_or(Op::Other, |(_, op)| *op)
}
