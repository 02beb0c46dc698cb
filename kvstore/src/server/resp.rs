//! One RESP (Redis protocol) connection: commands in, replies out, pipelined.
//!
//! Same shape as the binary connection: every complete command in the buffer is executed in
//! order, the replies are written with one syscall, and under `--fsync always` they wait for
//! the highest version they wrote to be on disk. A protocol error gets Redis's `-ERR Protocol
//! error: ...` reply and closes the connection, as Redis does; an unknown command gets
//! `-ERR unknown command` and the connection stays open.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{flush, read_more, Context, Read};
use crate::metrics::{Listener, Op};
use crate::resp::codec::{parse_pipeline, Pipeline, Reply, RespLimits};
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
        let (pipeline, protocol_error) = parse_pipeline(&mut rbuf, &limits, PIPELINE_COMMANDS_MAX);
        let pipeline = Arc::new(pipeline);
        let facts = || facts(ctx, port);
        let mut durable = None;
        let mut close = false;
        let mut next = 0;
        while next < pipeline.len() && !close {
            // A run of plain GETs is answered straight into the write buffer.
            let gets = (next..pipeline.len())
                .take_while(|&i| commands::plain_get(pipeline.arg(i, 0), pipeline.argc(i)))
                .count();
            if gets > 0 {
                let started = Instant::now();
                let mut errors = 0;
                for i in next..next + gets {
                    if !commands::get_into(&ctx.db, pipeline.arg(i, 1), &mut wbuf) {
                        errors += 1;
                    }
                    if wbuf.len() >= ctx.config.write_buffer_bytes_max {
                        flush(ctx, Listener::Resp, &mut stream, &mut wbuf, durable.take()).await?;
                    }
                }
                let each = started.elapsed() / gets as u32;
                ctx.metrics.record_ops(Op::Get, gets as u64, errors, each);
                next += gets;
                continue;
            }
            let mut end = next;
            while end < pipeline.len() && commands::groupable(pipeline.arg(end, 0)) {
                end += 1;
            }
            let outcomes = if end > next {
                run_group(ctx, &mut session, port, &pipeline, next..end).await
            } else {
                end = next + 1;
                let started = Instant::now();
                let outcome = pipeline.with_args(next, |args| {
                    commands::execute(&ctx.db, &ctx.db, &ctx.resp, &mut session, facts, args)
                });
                let outcomes = vec![outcome];
                record_ops(ctx, &[op_of(pipeline.arg(next, 0))], started, &outcomes);
                outcomes
            };
            next = end;
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

/// Runs commands `run` of `pipeline`, all single-key: reads at once, writes through the write
/// queue (one append shared with whatever other connections are writing). If the append
/// fails, none of the writes happened, so every command of the run gets the error.
async fn run_group(
    ctx: &Arc<Context>,
    session: &mut Session,
    port: u16,
    pipeline: &Arc<Pipeline>,
    run: Range<usize>,
) -> Vec<commands::Outcome> {
    let started = Instant::now();
    let ops: Vec<Op> = run.clone().map(|i| op_of(pipeline.arg(i, 0))).collect();
    let outcomes = if run.clone().all(|i| commands::read_only(pipeline.arg(i, 0))) {
        // Nothing to append: no queue, no writer lock, so readers never wait for writers.
        let facts = || facts(ctx, port);
        run.map(|i| {
            pipeline.with_args(i, |args| {
                commands::execute(&ctx.db, &ctx.db, &ctx.resp, session, facts, args)
            })
        })
        .collect()
    } else {
        let job_ctx = ctx.clone();
        let job_pipeline = pipeline.clone();
        let count = run.len();
        let result = ctx
            .writes
            .run(move |store| {
                // Single-key commands keep no per-connection state, so a scratch session does.
                let mut scratch = Session::default();
                let ctx = &job_ctx;
                let facts = || facts(ctx, port);
                run.map(|i| {
                    job_pipeline.with_args(i, |args| {
                        commands::execute(&ctx.db, store, &ctx.resp, &mut scratch, facts, args)
                    })
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

pub(crate) fn facts(ctx: &Context, port: u16) -> ServerFacts {
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
fn record_ops(ctx: &Context, ops: &[Op], started: Instant, outcomes: &[commands::Outcome]) {
    let each = started.elapsed() / ops.len().max(1) as u32;
    // Consecutive commands of one type (the usual pipeline) are recorded together.
    let mut outcomes = outcomes.iter();
    for run in ops.chunk_by(|a, b| a == b) {
        let errors = outcomes
            .by_ref()
            .take(run.len())
            .filter(|o| matches!(o.reply, Reply::Error(_)))
            .count();
        ctx.metrics
            .record_ops(run[0], run.len() as u64, errors as u64, each);
    }
}

fn op_of(name: &[u8]) -> Op {
    // Lower-case on the stack and match once: this runs for every command of every pipeline.
    let mut buf = [0u8; 8];
    let Some(lowered) = buf.get_mut(..name.len()) else {
        return Op::Other;
    };
    lowered.copy_from_slice(name);
    lowered.make_ascii_lowercase();
    match &*lowered {
        b"get" | b"mget" | b"exists" | b"ttl" | b"pttl" => Op::Get,
        b"set" | b"setnx" | b"setex" | b"psetex" | b"mset" | b"expire" | b"pexpire" => Op::Put,
        b"del" | b"unlink" | b"flushdb" | b"flushall" => Op::Delete,
        b"incr" | b"incrby" | b"decr" | b"decrby" => Op::Incr,
        b"scan" | b"keys" => Op::Scan,
        _ => Op::Other,
    }
}
