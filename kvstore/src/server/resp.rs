//! One RESP (Redis protocol) connection: commands in, replies out, pipelined.
//!
//! Same shape as the binary connection: every complete command in the buffer is executed in
//! order, the replies are written with one syscall, and under `--fsync always` they wait for
//! the highest version they wrote to be on disk. A protocol error gets Redis's `-ERR Protocol
//! error: ...` reply and closes the connection, as Redis does; an unknown command gets
//! `-ERR unknown command` and the connection stays open.

use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{flush, read_deadline, Context};
use crate::metrics::{Listener, Op};
use crate::resp::codec::{parse_command, Reply, RespLimits};
use crate::resp::commands::{self, ServerFacts, Session};

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
        let mut durable = None;
        let mut close = false;
        loop {
            let args = match parse_command(&mut rbuf, &limits) {
                Ok(Some(args)) => args,
                Ok(None) => break,
                Err(error) => {
                    ctx.metrics.protocol_error(Listener::Resp);
                    tracing::info!(?peer, %error, "closing RESP connection: protocol error");
                    Reply::Error(format!("ERR {error}").into()).encode(&mut wbuf);
                    close = true;
                    break;
                }
            };
            if args.is_empty() {
                continue;
            }
            let started = Instant::now();
            let facts = || ServerFacts {
                uptime_seconds: ctx.started.elapsed().as_secs(),
                connected_clients: ctx.metrics.connections_active(Listener::Resp),
                total_commands: ctx.metrics.total_ops(),
                fsync: ctx.db.engine().config().fsync.to_string(),
                port,
            };
            let outcome = commands::execute(&ctx.db, &ctx.resp, &mut session, facts, &args);
            let ok = !matches!(outcome.reply, Reply::Error(_));
            ctx.metrics
                .record_op(op_of(&args[0]), started.elapsed(), ok);
            outcome.reply.encode(&mut wbuf);
            durable = durable.max(outcome.durable);
            if outcome.close {
                close = true;
                break;
            }
            if wbuf.len() >= ctx.config.write_buffer_bytes_max {
                flush(ctx, Listener::Resp, &mut stream, &mut wbuf, durable.take()).await?;
            }
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

fn op_of(name: &[u8]) -> Op {
    match name.to_ascii_lowercase().as_slice() {
        b"get" | b"mget" | b"exists" | b"ttl" | b"pttl" => Op::Get,
        b"set" | b"setnx" | b"setex" | b"psetex" | b"mset" | b"expire" | b"pexpire" => Op::Put,
        b"del" | b"unlink" | b"flushdb" | b"flushall" => Op::Delete,
        b"incr" | b"incrby" | b"decr" | b"decrby" => Op::Incr,
        b"scan" | b"keys" => Op::Scan,
        _ => Op::Other,
    }
}
