//! One RESP (Redis protocol) connection: commands in, replies out, pipelined.
//!
//! Same shape as the binary connection: every complete command in the buffer is executed in
//! order, the replies are written with one syscall, and under `--fsync always` they wait for
//! the highest version they wrote to be on disk. A protocol error gets Redis's `-ERR Protocol
//! error: ...` reply and closes the connection, as Redis does; an unknown command gets
//! `-ERR unknown command` and the connection stays open.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{flush, read_more, Context, Read};
use crate::metrics::{Listener, Op};
use crate::resp::codec::{parse_command, Reply, RespLimits};
use crate::resp::commands::{self, ServerFacts, Session};

/// Commands taken from the read buffer per round; the rest wait for the next round.
const PIPELINE_COMMANDS_MAX: usize = 1024;

pub async fn serve_connection(ctx: Arc<Context>, mut stream: TcpStream) -> std::io::Result<()> {
    let ctx = &ctx;
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
        let facts = || facts(ctx, port);
        let mut durable = None;
        let mut close = false;
        let mut rest = commands.into_iter().peekable();
        while rest.peek().is_some() && !close {
            let mut run = Vec::new();
            while let Some(args) = rest.next_if(|args| commands::groupable(&args[0])) {
                run.push(args);
            }
            let outcomes = if !run.is_empty() {
                run_group(ctx, &mut session, port, run).await
            } else {
                let one = vec![rest.next().expect("peeked above")];
                let started = Instant::now();
                let outcome =
                    commands::execute(&ctx.db, &ctx.db, &ctx.resp, &mut session, facts, &one[0]);
                let outcomes = vec![outcome];
                record(ctx, &one, started, &outcomes);
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
        if read_more(ctx, Listener::Resp, &mut stream, &mut rbuf).await? == Read::Closed {
            return Ok(());
        }
    }
}

/// Runs a run of single-key commands: reads at once, writes through the write queue (one
/// append shared with whatever other connections are writing). If the append fails, none of
/// the writes happened, so every command of the run gets the error.
async fn run_group(
    ctx: &Arc<Context>,
    session: &mut Session,
    port: u16,
    batch: Vec<Vec<Bytes>>,
) -> Vec<commands::Outcome> {
    let started = Instant::now();
    let ops: Vec<Op> = batch.iter().map(|args| op_of(&args[0])).collect();
    let outcomes = if batch.iter().all(|args| commands::read_only(&args[0])) {
        // Nothing to append: no queue, no writer lock, so readers never wait for writers.
        let facts = || facts(ctx, port);
        batch
            .iter()
            .map(|args| commands::execute(&ctx.db, &ctx.db, &ctx.resp, session, facts, args))
            .collect()
    } else {
        let job_ctx = ctx.clone();
        let count = batch.len();
        let result = ctx
            .writes
            .run(move |store| {
                // Single-key commands keep no per-connection state, so a scratch session does.
                let mut scratch = Session::default();
                let ctx = &job_ctx;
                let facts = || facts(ctx, port);
                batch
                    .iter()
                    .map(|args| {
                        commands::execute(&ctx.db, store, &ctx.resp, &mut scratch, facts, args)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        result.unwrap_or_else(|error| {
            let reply = || Reply::Error(format!("ERR {error}").into());
            (0..count)
                .map(|_| commands::Outcome::from(reply()))
                .collect()
        })
    };
    record_ops(ctx, &ops, started, &outcomes);
    outcomes
}

fn facts(ctx: &Context, port: u16) -> ServerFacts {
    ServerFacts {
        uptime_seconds: ctx.started.elapsed().as_secs(),
        connected_clients: ctx.metrics.connections_active(Listener::Resp),
        total_commands: ctx.metrics.total_ops(),
        fsync: ctx.db.engine().config().fsync.to_string(),
        port,
    }
}

/// Records a run of commands in the metrics. A pipelined run is timed once and its time
/// shared evenly among its commands: reading the clock per command would cost more than
/// many of the commands do.
fn record(ctx: &Context, batch: &[Vec<Bytes>], started: Instant, outcomes: &[commands::Outcome]) {
    let ops: Vec<Op> = batch.iter().map(|args| op_of(&args[0])).collect();
    record_ops(ctx, &ops, started, outcomes);
}

fn record_ops(ctx: &Context, ops: &[Op], started: Instant, outcomes: &[commands::Outcome]) {
    let each = started.elapsed() / ops.len().max(1) as u32;
    for (op, outcome) in ops.iter().zip(outcomes) {
        let ok = !matches!(outcome.reply, Reply::Error(_));
        ctx.metrics.record_op(*op, each, ok);
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
