//! Connections of a cluster node: the same two protocols, with writes going through Raft and
//! reads waiting for the consistency they ask for.
//!
//! A write becomes a log entry carrying the request itself ([`crate::node::command`]); the
//! connection proposes every write of a pipeline at once and answers them in order as they
//! apply, so a pipelining client keeps many in the log together. A write that reaches a
//! follower is refused with a redirect: `NotLeader` with the leader's address (binary), or
//! `-MOVED 0 HOST:PORT` (RESP, as Redis Cluster does; `redis-cli -c` follows it). A read waits
//! until this replica may serve it ([`Node::read`]), then reads the local engine; it first
//! waits for the writes before it on the same connection, so a client always reads its own
//! writes.
//!
//! Binary sessions: a client that sent a `client_id` in `HELLO` gets at-most-once writes, with
//! each frame's request id as the session's sequence number.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{flush, read_more, Context, Read};
use crate::metrics::Listener;
use crate::node::command::Command;
use crate::node::state::Reply;
use crate::node::{Consistency, Node, NodeError, DEFAULT_GROUP};
use crate::op::Outcome;
use crate::resp::codec::{parse_pipeline, Reply as RespReply, RespLimits};
use crate::resp::commands::{self, ReplyForm, Session};
use crate::resp::table;
use crate::wire::{self, ErrorCode, Request, Response};

/// A node error as a binary-protocol error response.
pub fn error_response(error: &NodeError) -> Response {
    let code = match error {
        NodeError::NotLeader { .. } => ErrorCode::NotLeader,
        // Not hosted here: another node may host it (partitioning will redirect precisely).
        NodeError::Unavailable(_) | NodeError::Dropped | NodeError::UnknownGroup { .. } => {
            ErrorCode::Unavailable
        }
        // Both mean "the outcome is unknown"; a client with a session retries safely.
        NodeError::Timeout(_) | NodeError::Unknown(_) => ErrorCode::Timeout,
        NodeError::Busy => ErrorCode::Busy,
        NodeError::Stopped(_) => ErrorCode::ShuttingDown,
    };
    Response::error(code, error.to_string())
}

/// A node error as a Redis error reply.
fn error_reply(error: &NodeError) -> RespReply {
    match error {
        NodeError::NotLeader {
            address: Some(a), ..
        } => match &a.resp {
            Some(resp) => RespReply::Error(format!("MOVED 0 {resp}").into()),
            None => RespReply::Error(format!("ERR {error}").into()),
        },
        NodeError::NotLeader { .. }
        | NodeError::Unavailable(_)
        | NodeError::Dropped
        | NodeError::UnknownGroup { .. } => RespReply::Error(format!("TRYAGAIN {error}").into()),
        other => RespReply::Error(format!("ERR {other}").into()),
    }
}

/// An answer in the making: ready, or waiting for a proposal to apply. `K` is what the
/// connection needs to answer it: the request id (binary protocol) or how the reply is formed
/// from the outcome (RESP).
enum Pending<T, K> {
    Ready(K, T),
    Proposal(K, crate::node::Answer<Reply>),
}

async fn settle<T, K: Copy>(
    pending: &mut Vec<Pending<T, K>>,
    timeout: Duration,
    convert: impl Fn(K, Result<Reply, NodeError>) -> T,
    mut emit: impl FnMut(K, T),
) {
    for p in pending.drain(..) {
        match p {
            Pending::Ready(k, answer) => emit(k, answer),
            Pending::Proposal(k, rx) => emit(k, convert(k, Node::wait(rx, timeout).await)),
        }
    }
}

pub async fn serve_binary(
    ctx: Arc<Context>,
    node: Node,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let ctx = &ctx;
    let timeout = Duration::from_millis(ctx.config.request_timeout_ms);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut handshaken = false;
    let mut client_id = 0u64;
    let convert = |_, result: Result<Reply, NodeError>| match result {
        Ok(Reply::Wire(response)) => response,
        Ok(_) => Response::error(ErrorCode::Internal, "a reply of another kind to a frame"),
        Err(error) => error_response(&error),
    };
    loop {
        let mut pending: Vec<Pending<Response, u64>> = Vec::new();
        let mut close = false;
        for cut in super::cut_pipeline(ctx, &mut rbuf, &mut handshaken, &mut client_id) {
            let (id, request, frame) = match cut {
                super::Cut::Run { id, request, frame } => (id, request, frame),
                super::Cut::Answer {
                    id,
                    response,
                    close: fatal,
                } => {
                    pending.push(Pending::Ready(id, response));
                    close |= fatal;
                    continue;
                }
            };
            match request {
                Request::Ping { payload } => {
                    pending.push(Pending::Ready(id, Response::Pong { payload }))
                }
                request if request.is_write() => {
                    // The log entry carries the frame as it arrived.
                    let session = (client_id != 0).then_some((client_id, id));
                    let data = Command::wire_frame(session, node.now_ms(), &frame);
                    pending.push(Pending::Proposal(id, node.propose(DEFAULT_GROUP, data)));
                }
                request => {
                    // A read: first the writes before it, so it sees them.
                    settle(&mut pending, timeout, convert, |id, r| {
                        encode(&mut wbuf, id, &r)
                    })
                    .await;
                    let consistency = match &request {
                        Request::Get { consistency, .. } | Request::Scan { consistency, .. } => {
                            *consistency
                        }
                        _ => Consistency::Linearizable,
                    };
                    let response =
                        match Node::wait(node.read(DEFAULT_GROUP, consistency), timeout).await {
                            Ok(staleness) => {
                                let db = node
                                    .db(DEFAULT_GROUP)
                                    .expect("a node hosts the default group");
                                let mut response = super::binary::respond(&db, &db, request);
                                if consistency == Consistency::Follower {
                                    let lag = Some(wire::ReadLag {
                                        entries: staleness.entries_behind,
                                        ms: staleness.since_leader_ms,
                                    });
                                    if let Response::GetOk { lag: l, .. }
                                    | Response::ScanOk { lag: l, .. } = &mut response
                                    {
                                        *l = lag;
                                    }
                                }
                                response
                            }
                            Err(error) => error_response(&error),
                        };
                    pending.push(Pending::Ready(id, response));
                }
            }
        }
        settle(&mut pending, timeout, convert, |id, r| {
            encode(&mut wbuf, id, &r)
        })
        .await;
        flush(ctx, Listener::Binary, &mut stream, &mut wbuf, None).await?;
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if read_more(ctx, Listener::Binary, &mut stream, &mut rbuf).await? == Read::Closed {
            return Ok(());
        }
    }
}

fn encode(wbuf: &mut BytesMut, id: u64, response: &Response) {
    if response.encode(id, wbuf).is_err() {
        Response::error(ErrorCode::Internal, "response too large to encode")
            .encode(id, wbuf)
            .expect("a short error always encodes");
    }
}

/// Whether a Redis command reads data, and so must wait for its consistency's read barrier
/// (an unknown command is answered with an error; it waits like a read, harmlessly).
fn resp_touches_data(name: &[u8]) -> bool {
    !matches!(table::lookup(name), Some(s) if s.access == table::Access::NoData)
}

pub async fn serve_resp(
    ctx: Arc<Context>,
    node: Node,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    let ctx = &ctx;
    let timeout = Duration::from_millis(ctx.config.request_timeout_ms);
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let limits = RespLimits {
        bulk_bytes_max: ctx.config.resp_bulk_bytes_max,
        ..RespLimits::default()
    };
    let mut session = Session::default();
    // READONLY switches this connection to follower reads, READWRITE back (Redis Cluster's
    // commands for reading from replicas).
    let mut consistency = ctx.config.read_consistency;
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let convert = |form, result: Result<Reply, NodeError>| match result {
        Ok(Reply::Wire(response)) => commands::render(form, Outcome::Response(response)),
        Ok(Reply::Outcome(outcome)) => commands::render(form, outcome),
        Ok(Reply::Peer { .. }) => {
            RespReply::Error("ERR a reply of another kind to a Redis command".into())
        }
        Err(error) => error_reply(&error),
    };
    // Answers that are ready need no form; any will do.
    let ready = ReplyForm::Ok;
    loop {
        let (pipeline, protocol_error) =
            parse_pipeline(&mut rbuf, &limits, super::PIPELINE_FRAMES_MAX);
        let mut pending: Vec<Pending<RespReply, ReplyForm>> = Vec::new();
        let mut close = false;
        for i in 0..pipeline.len() {
            let name = pipeline.arg(i, 0);
            if name.eq_ignore_ascii_case(b"readonly") {
                consistency = Consistency::Follower;
                pending.push(Pending::Ready(ready, RespReply::ok()));
            } else if name.eq_ignore_ascii_case(b"readwrite") {
                consistency = ctx.config.read_consistency;
                pending.push(Pending::Ready(ready, RespReply::ok()));
            } else if table::is_write(name) {
                // Planned here, at the edge: the log carries the operation, and a malformed
                // command is answered without reaching it.
                let now = node.now_ms();
                let planned = pipeline.with_args(i, |args| {
                    let name = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
                    commands::plan_write(&name, &args[1..], now)
                });
                match planned {
                    Ok((op, form)) => {
                        let data = Command::op(None, now, &op);
                        pending.push(Pending::Proposal(form, node.propose(DEFAULT_GROUP, data)));
                    }
                    Err(reply) => pending.push(Pending::Ready(ready, reply)),
                }
            } else {
                settle(&mut pending, timeout, convert, |_, r| r.encode(&mut wbuf)).await;
                let facts = || super::resp::facts(ctx, port);
                let reply = if !name.eq_ignore_ascii_case(b"quit") {
                    let barrier = if resp_touches_data(name) {
                        Node::wait(node.read(DEFAULT_GROUP, consistency), timeout)
                            .await
                            .map(|_| ())
                    } else {
                        Ok(())
                    };
                    match barrier {
                        Ok(_) => {
                            let db = node
                                .db(DEFAULT_GROUP)
                                .expect("a node hosts the default group");
                            let outcome = pipeline.with_args(i, |args| {
                                commands::execute(&db, &db, &ctx.resp, &mut session, facts, args)
                            });
                            close = outcome.close;
                            outcome.reply
                        }
                        Err(error) => error_reply(&error),
                    }
                } else {
                    close = true;
                    RespReply::ok()
                };
                pending.push(Pending::Ready(ready, reply));
                if close {
                    break;
                }
            }
        }
        settle(&mut pending, timeout, convert, |_, r| r.encode(&mut wbuf)).await;
        if let Some(error) = protocol_error.filter(|_| !close) {
            ctx.metrics.protocol_error(Listener::Resp);
            RespReply::Error(format!("ERR {error}").into()).encode(&mut wbuf);
            close = true;
        }
        flush(ctx, Listener::Resp, &mut stream, &mut wbuf, None).await?;
        if close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if read_more(ctx, Listener::Resp, &mut stream, &mut rbuf).await? == Read::Closed {
            return Ok(());
        }
    }
}
