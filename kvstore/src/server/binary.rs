//! One binary-protocol connection: handshake, then frames in, responses out.
//!
//! The loop reads, cuts every complete frame out of the buffer, executes each in order, and
//! writes all the responses with one syscall, so a pipelining client pays one round of syscalls
//! per batch rather than per request. Under `--fsync always` the responses of a batch are held
//! until the highest version they wrote is on disk: one fsync acknowledges the whole pipeline,
//! and nothing is acknowledged before it is durable.
//!
//! Error handling follows the framing: a frame whose body is bad (unknown opcode, malformed
//! fields) gets an error response and the connection continues, because the next frame's
//! boundary is known. An oversized or impossible length loses the framing, so it gets an error
//! response and the connection is closed. A peer that stops mid-frame hits the read timeout.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{classify, flush, read_more, Context, Read};
use crate::db::{self, DbError, Store};
use crate::metrics::{Listener, Op};
use crate::wire::{ErrorCode, Request, Response};

/// What handling one frame produced.
struct Step {
    response: Response,
    /// The version that must be durable before `response` may be sent.
    durable: Option<u64>,
    /// Close the connection after sending `response`.
    close: bool,
}

impl Step {
    fn reply(response: Response) -> Step {
        Step {
            response,
            durable: None,
            close: false,
        }
    }
}

pub async fn serve_connection(ctx: Arc<Context>, mut stream: TcpStream) -> std::io::Result<()> {
    let ctx = &ctx;
    let peer = stream.peer_addr().ok();
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut handshaken = false;
    // A single node has no sessions: the client id is ignored.
    let mut session = 0;
    loop {
        // Decode every complete frame first, so that runs of single-key requests can execute
        // as one write group (one append for the whole run).
        let items: Vec<Item> = super::cut_pipeline(ctx, &mut rbuf, &mut handshaken, &mut session)
            .into_iter()
            .map(|cut| match cut {
                super::Cut::Run { id, request, .. } => Item::Request(id, request),
                super::Cut::Answer {
                    id,
                    response,
                    close,
                } => Item::Done(
                    id,
                    Step {
                        response,
                        durable: None,
                        close,
                    },
                ),
            })
            .collect();
        if items
            .iter()
            .any(|i| matches!(i, Item::Done(_, step) if step.close))
        {
            tracing::debug!(?peer, "closing the connection after this pipeline");
        }
        let mut durable = None;
        let mut close = false;
        let mut rest = items;
        while !rest.is_empty() && !close {
            let run = rest
                .iter()
                .take_while(|i| matches!(i, Item::Request(_, r) if groupable(r)))
                .count();
            let tail = rest.split_off(run.max(1));
            let steps: Vec<(u64, Step)> = if run > 0 {
                run_group(ctx, rest).await
            } else {
                rest.into_iter()
                    .map(|item| match item {
                        Item::Done(id, step) => (id, step),
                        Item::Request(id, request) => (id, execute(ctx, &ctx.db, request)),
                    })
                    .collect()
            };
            rest = tail;
            for (request_id, step) in steps {
                if step.response.encode(request_id, &mut wbuf).is_err() {
                    let response =
                        Response::error(ErrorCode::Internal, "response too large to encode");
                    response
                        .encode(request_id, &mut wbuf)
                        .expect("a short error always encodes");
                }
                durable = durable.max(step.durable);
                if step.close {
                    close = true;
                    break;
                }
            }
            if wbuf.len() >= ctx.config.write_buffer_bytes_max {
                flush(
                    ctx,
                    Listener::Binary,
                    &mut stream,
                    &mut wbuf,
                    durable.take(),
                )
                .await?;
            }
        }
        flush(ctx, Listener::Binary, &mut stream, &mut wbuf, durable).await?;
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if read_more(ctx, Listener::Binary, &mut stream, &mut rbuf).await? == Read::Closed {
            return Ok(());
        }
    }
}

/// A decoded frame: a request to execute, or one already answered (a bad body, the
/// handshake, a request before the handshake, a framing error).
enum Item {
    Request(u64, Request),
    Done(u64, Step),
}

/// Requests that may run inside a write group: they touch single keys, so a pipeline of them
/// run as one group answers exactly as if run one by one. Scans read ranges and run alone.
fn groupable(request: &Request) -> bool {
    match request {
        Request::Get { .. }
        | Request::Put { .. }
        | Request::Delete { .. }
        | Request::Incr { .. }
        | Request::Batch { .. }
        | Request::Ping { .. } => true,
        Request::Hello { .. }
        | Request::Scan { .. }
        | Request::ClusterMap { .. }
        | Request::MapChange { .. } => false,
    }
}

/// Runs a run of single-key requests: reads at once, writes through the write queue (one
/// append shared with whatever other connections are writing). If the append fails, none of
/// their writes happened, so every request of the run gets the error.
async fn run_group(ctx: &Arc<Context>, items: Vec<Item>) -> Vec<(u64, Step)> {
    let reads_only = items.iter().all(|i| {
        matches!(
            i,
            Item::Request(_, Request::Get { .. } | Request::Ping { .. })
        )
    });
    if reads_only {
        // Nothing to append: skip the writer lock, so readers never wait for writers.
        return items
            .into_iter()
            .map(|item| match item {
                Item::Request(id, request) => (id, execute(ctx, &ctx.db, request)),
                Item::Done(id, step) => (id, step),
            })
            .collect();
    }
    let ids: Vec<u64> = items
        .iter()
        .map(|i| match i {
            Item::Request(id, _) | Item::Done(id, _) => *id,
        })
        .collect();
    let job_ctx = ctx.clone();
    let result = ctx
        .writes
        .run(move |store| {
            items
                .into_iter()
                .map(|item| match item {
                    Item::Request(id, request) => (id, execute(&job_ctx, store, request)),
                    Item::Done(id, step) => (id, step),
                })
                .collect::<Vec<_>>()
        })
        .await;
    result.unwrap_or_else(|message| {
        ids.into_iter()
            .map(|id| {
                (
                    id,
                    Step::reply(Response::error(ErrorCode::Storage, message.clone())),
                )
            })
            .collect()
    })
}

/// The operation `request` is counted as in the metrics.
pub(super) fn op_of(request: &Request) -> Op {
    match request {
        Request::Get { .. } => Op::Get,
        Request::Put { .. } => Op::Put,
        Request::Delete { .. } => Op::Delete,
        Request::Incr { .. } => Op::Incr,
        Request::Scan { .. } => Op::Scan,
        Request::Batch { .. } => Op::Batch,
        Request::Hello { .. }
        | Request::Ping { .. }
        | Request::ClusterMap { .. }
        | Request::MapChange { .. } => Op::Other,
    }
}

fn execute(ctx: &Context, store: &impl Store, request: Request) -> Step {
    let started = Instant::now();
    let op = op_of(&request);
    let result = crate::op::run_request(&ctx.db, store, request);
    ctx.metrics.record_op(op, started.elapsed(), result.is_ok());
    match result {
        Ok((response, durable)) => Step {
            response,
            durable,
            close: false,
        },
        Err(error) => {
            if let DbError::Storage(e) = &error {
                tracing::warn!(error = %e, "storage error");
            }
            Step::reply(Response::error(classify(&error), error.to_string()))
        }
    }
}

/// [`run`], with an error turned into its error response.
pub fn respond(whole: &db::Db, store: &impl Store, request: Request) -> Response {
    match crate::op::run_request(whole, store, request) {
        Ok((response, _)) => response,
        Err(error) => Response::error(classify(&error), error.to_string()),
    }
}
