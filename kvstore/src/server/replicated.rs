//! Connections of a cluster node: the same two protocols, with writes going through Raft and
//! reads waiting for the consistency they ask for.
//!
//! Every request is first routed to its partition's Raft group by the node's cluster map
//! ([`crate::partition::route`]). A write becomes a log entry carrying the request itself
//! ([`crate::node::command`]); the connection proposes every write of a pipeline at once and
//! answers them in order as they apply, so a pipelining client keeps many in the log
//! together. A request for a group this node does not lead is refused with a redirect:
//! `NotLeader` with the leader's address (binary), or `-MOVED SLOT HOST:PORT` (RESP, as Redis
//! Cluster does; `redis-cli -c` follows it). A read waits
//! until this replica may serve it ([`Node::read`]), then reads the local engine; it first
//! waits for the writes before it on the same connection, so a client always reads its own
//! writes.
//!
//! Binary sessions: a client that sent a `client_id` in `HELLO` gets at-most-once writes, with
//! each frame's request id as the session's sequence number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{flush, read_more, Context, Read};
use crate::metrics::{Listener, Op};
use crate::node::command::Command;
use crate::node::state::Reply;
use crate::node::{Consistency, Node, NodeError};
use crate::op::Outcome;
use crate::partition::map::GroupId;
use crate::resp::codec::{parse_pipeline, Reply as RespReply, RespLimits};
use crate::resp::commands::{self, ReplyForm, Session};
use crate::resp::table;
use crate::wire::DEFAULT_KEYSPACE;
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

/// A node error as a Redis error reply; `slot` is the slot of the command's keys, for a
/// redirect.
fn error_reply(error: &NodeError, slot: u16) -> RespReply {
    match error {
        NodeError::NotLeader {
            address: Some(a), ..
        } => match &a.resp {
            Some(resp) => RespReply::Error(format!("MOVED {slot} {resp}").into()),
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
    /// One command proposed to several groups (FLUSHDB on every partition this node leads):
    /// answered by the last, unless one fails.
    Proposals(K, Vec<crate::node::Answer<Reply>>),
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
            Pending::Proposals(k, answers) => {
                let mut outcome = Err(NodeError::Unknown(crate::node::UnknownOutcome::NoReply));
                for (i, rx) in answers.into_iter().enumerate() {
                    let result = Node::wait(rx, timeout).await;
                    // The first error stands; otherwise the last answer.
                    if i == 0 || outcome.is_ok() {
                        outcome = result;
                    }
                }
                emit(k, convert(k, outcome))
            }
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
    // Every request is keyed by its id, its operation and when it arrived, so that its
    // answer is counted in /metrics (`kvstore_ops_total`, errors, latency) when it is sent.
    let convert = |_, result: Result<Reply, NodeError>| match result {
        Ok(Reply::Wire(response)) => response,
        Ok(_) => Response::error(ErrorCode::Internal, "a reply of another kind to a frame"),
        Err(error) => error_response(&error),
    };
    loop {
        let mut pending: Vec<Pending<Response, Key>> = Vec::new();
        let mut close = false;
        for cut in super::cut_pipeline(ctx, &mut rbuf, &mut handshaken, &mut client_id) {
            let (id, request, frame) = match cut {
                super::Cut::Run { id, request, frame } => {
                    let op = super::binary::op_of(&request);
                    ((id, op, Instant::now()), request, frame)
                }
                super::Cut::Answer {
                    id,
                    response,
                    close: fatal,
                } => {
                    pending.push(Pending::Ready((id, Op::Other, Instant::now()), response));
                    close |= fatal;
                    continue;
                }
            };
            match request {
                Request::Ping { payload } => {
                    pending.push(Pending::Ready(id, Response::Pong { payload }))
                }
                Request::ClusterMap { known_version } => {
                    let map = node.map_for_clients();
                    let map = (map.version > known_version).then(|| map.encode());
                    pending.push(Pending::Ready(id, Response::ClusterMapOk { map }))
                }
                Request::MapChange { change } => {
                    let response = match crate::partition::change::MapChange::decode(&change) {
                        Ok(change) => match super::control::change_map(&node, &change).await {
                            Ok(map) => Response::ClusterMapOk {
                                map: Some(map.encode()),
                            },
                            Err(response) => response,
                        },
                        Err(error) => {
                            Response::error(ErrorCode::InvalidArgument, error.to_string())
                        }
                    };
                    pending.push(Pending::Ready(id, response));
                }
                request if request.is_write() => {
                    match routed_group(ctx, &node, &request, &frame).await {
                        Ok(group) => {
                            // The log entry carries the frame as it arrived.
                            let session = (client_id != 0).then_some((client_id, id.0));
                            let data = Command::wire_frame(session, node.now_ms(), &frame);
                            pending.push(Pending::Proposal(id, node.propose(group, data)));
                        }
                        Err(response) => pending.push(Pending::Ready(id, response)),
                    }
                }
                request => {
                    // A read: first the writes before it, so it sees them.
                    settle(&mut pending, timeout, convert, |k, r| {
                        answer(ctx, &mut wbuf, k, &r)
                    })
                    .await;
                    let consistency =
                        crate::partition::route::read_consistency(&node.map(), &request);
                    let group = match routed_group(ctx, &node, &request, &frame).await {
                        Ok(group) => group,
                        Err(response) => {
                            pending.push(Pending::Ready(id, response));
                            continue;
                        }
                    };
                    let response = match Node::wait(node.read(group, consistency), timeout).await {
                        Ok(staleness) => {
                            let Some(db) = node.db(group) else {
                                let error = node.redirect(group);
                                pending.push(Pending::Ready(id, error_response(&error)));
                                continue;
                            };
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
        settle(&mut pending, timeout, convert, |k, r| {
            answer(ctx, &mut wbuf, k, &r)
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

/// The group `request` is for, if this node hosts it; else the redirect or the error that
/// answers it.
async fn hosted_group(node: &Node, request: &Request) -> Result<GroupId, Response> {
    let route = match crate::partition::route::route(&node.map(), request) {
        Err(Response::Error {
            code: ErrorCode::UnknownKeyspace,
            ..
        }) => {
            // Perhaps created a moment ago: this node's map may not have it yet.
            super::control::refresh_map(node).await;
            crate::partition::route::route(&node.map(), request)?
        }
        routed => routed?,
    };
    if node.hosts(route.group) {
        Ok(route.group)
    } else {
        Err(error_response(&node.redirect(route.group)))
    }
}

/// [`hosted_group`], refusing a request routed by a stale map: one whose frame carries an
/// epoch of the partition ([`crate::wire::message::ROUTING_EPOCH_FIELD`]) older than this
/// node's replica is at. The answer names the current epoch, so the client learns it at once.
/// Then the keyspace's limits ([`super::limits`]): a request this node will serve counts
/// against them.
async fn routed_group(
    ctx: &Context,
    node: &Node,
    request: &Request,
    frame: &crate::wire::Frame,
) -> Result<GroupId, Response> {
    let group = hosted_group(node, request).await?;
    let sent = crate::wire::message::routing_epoch(&frame.body)
        .map_err(|e| Response::error(ErrorCode::Malformed, e.to_string()))?;
    if let (Some(sent), Some(current)) = (sent, node.epoch(group)) {
        if sent < current {
            return Err(Response::error(
                ErrorCode::StaleEpoch,
                crate::wire::message::stale_epoch_message(group, sent, current),
            ));
        }
    }
    if let Some((keyspace, ops, adds)) = super::limits::shape(request) {
        ctx.limits
            .check(&node.map(), node.id(), keyspace, ops, adds)?;
    }
    Ok(group)
}

/// A binary request as the connection tracks it: its id, its operation, when it arrived.
type Key = (u64, Op, Instant);

/// Counts `response` to request `k` in the node's metrics and encodes it.
fn answer(ctx: &Context, wbuf: &mut BytesMut, k: Key, response: &Response) {
    let (id, op, started) = k;
    let ok = !matches!(response, Response::Error { .. });
    ctx.metrics.record_op(op, started.elapsed(), ok);
    encode(wbuf, id, response);
}

fn encode(wbuf: &mut BytesMut, id: u64, response: &Response) {
    if response.encode(id, wbuf).is_err() {
        Response::error(ErrorCode::Internal, "response too large to encode")
            .encode(id, wbuf)
            .expect("a short error always encodes");
    }
}

/// The groups of the keyspace `default` (the RESP port's) whose leader this node is.
fn led_groups(node: &Node) -> Vec<GroupId> {
    let map = node.map();
    let Ok(ks) = map.keyspace(crate::wire::DEFAULT_KEYSPACE) else {
        return Vec::new();
    };
    let groups = ks.groups();
    node.status()
        .groups
        .iter()
        .filter(|g| g.role == "leader" && groups.contains(&g.group))
        .map(|g| g.group)
        .collect()
}

/// The group and slot of a command's keys, which must share one slot (as Redis Cluster
/// requires of a multi-key command); else `-CROSSSLOT`.
fn resp_slot(node: &Node, keys: &[&[u8]]) -> Result<(GroupId, u16), RespReply> {
    let map = node.map();
    let ks = map
        .keyspace(crate::wire::DEFAULT_KEYSPACE)
        .map_err(|e| RespReply::Error(format!("CLUSTERDOWN {e}").into()))?;
    let slot = crate::partition::slot(keys[0]);
    if keys[1..].iter().any(|k| crate::partition::slot(k) != slot) {
        return Err(RespReply::Error(
            "CROSSSLOT Keys in request don't hash to the same slot".into(),
        ));
    }
    Ok((ks.group_of_slot(slot), slot))
}

/// A keyless read (KEYS, DBSIZE, SCAN, RANDOMKEY) over `groups`: DBSIZE sums and KEYS joins
/// their answers; the others need one partition (a keyspace of one, or an error).
#[allow(clippy::too_many_arguments)]
async fn keyless_read(
    node: &Node,
    ctx: &Context,
    session: &mut Session,
    pipeline: &crate::resp::codec::Pipeline,
    i: usize,
    groups: &[GroupId],
    consistency: Consistency,
    timeout: Duration,
) -> RespReply {
    let name = String::from_utf8_lossy(pipeline.arg(i, 0)).to_ascii_lowercase();
    let merges = matches!(name.as_str(), "dbsize" | "keys");
    let map = node.map();
    let (partitions, first) = map
        .keyspace(crate::wire::DEFAULT_KEYSPACE)
        .map_or((1, crate::node::DEFAULT_GROUP), |ks| {
            (ks.partitions, ks.group(0))
        });
    // One partition: it is the keyspace, and a follower redirects to its leader.
    let one = [first];
    let groups = if partitions == 1 { &one[..] } else { groups };
    if !merges && partitions > 1 {
        return RespReply::Error(
            format!(
                "ERR {} over the {partitions} partitions of a partitioned keyspace is not \
                 served on the RESP port; use KEYS (per node) or the binary client's merged scan",
                name.to_ascii_uppercase()
            )
            .into(),
        );
    }
    let mut total = 0i64;
    let mut keys = Vec::new();
    let mut single = None;
    for &group in groups {
        if let Err(error) = Node::wait(node.read(group, consistency), timeout).await {
            return error_reply(&error, 0);
        }
        let Some(db) = node.db(group) else { continue };
        let facts = || super::resp::facts(ctx, 0);
        let outcome = pipeline.with_args(i, |args| {
            commands::execute(&db, &db, &ctx.resp, session, facts, args)
        });
        match outcome.reply {
            RespReply::Integer(n) if name == "dbsize" => total += n,
            RespReply::Array(found) if name == "keys" => keys.extend(found),
            other => single = Some(other),
        }
    }
    match name.as_str() {
        "dbsize" => RespReply::Integer(total),
        "keys" => RespReply::Array(keys),
        _ => single.unwrap_or(RespReply::Null),
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
    // A proposal's answer is formed from its reply form and, for a redirect, its slot.
    let convert = |(form, slot): (ReplyForm, u16), result: Result<Reply, NodeError>| match result {
        Ok(Reply::Wire(response)) => commands::render(form, Outcome::Response(response)),
        Ok(Reply::Outcome(outcome)) => commands::render(form, outcome),
        Ok(Reply::Peer { .. }) => {
            RespReply::Error("ERR a reply of another kind to a Redis command".into())
        }
        Err(error) => error_reply(&error, slot),
    };
    // Answers that are ready need no form; any will do.
    let ready = (ReplyForm::Ok, 0);
    loop {
        let (pipeline, protocol_error) =
            parse_pipeline(&mut rbuf, &limits, super::PIPELINE_FRAMES_MAX);
        let mut pending: Vec<Pending<RespReply, (ReplyForm, u16)>> = Vec::new();
        let mut close = false;
        for i in 0..pipeline.len() {
            let name = pipeline.arg(i, 0);
            if name.eq_ignore_ascii_case(b"readonly") {
                consistency = Consistency::Follower;
                pending.push(Pending::Ready(ready, RespReply::ok()));
            } else if name.eq_ignore_ascii_case(b"readwrite") {
                consistency = ctx.config.read_consistency;
                pending.push(Pending::Ready(ready, RespReply::ok()));
            } else if name.eq_ignore_ascii_case(b"asking") {
                // Nothing moves mid-slot here (a partition moves whole), so ASKING has
                // nothing to allow; accepted, as clients send it after an -ASK.
                pending.push(Pending::Ready(ready, RespReply::ok()));
            } else if name.eq_ignore_ascii_case(b"cluster") {
                let reply = pipeline.with_args(i, |args| super::resp_cluster::cluster(&node, args));
                pending.push(Pending::Ready(ready, reply));
            } else if table::is_write(name) {
                // Planned here, at the edge: the log carries the operation, and a malformed
                // command is answered without reaching it.
                let now = node.now_ms();
                let planned = pipeline.with_args(i, |args| {
                    let name = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
                    commands::plan_write(&name, &args[1..], now)
                });
                let (op, form) = match planned {
                    Ok(planned) => planned,
                    Err(reply) => {
                        pending.push(Pending::Ready(ready, reply));
                        continue;
                    }
                };
                let data = Command::op(None, now, &op);
                let keys = op.keys();
                if keys.is_empty() {
                    // FLUSHDB: every partition this node leads (as a Redis Cluster master
                    // flushes its own slots).
                    let groups = led_groups(&node);
                    let answers: Vec<_> = groups
                        .iter()
                        .map(|&g| node.propose(g, data.clone()))
                        .collect();
                    if answers.is_empty() {
                        pending.push(Pending::Ready(ready, RespReply::ok()));
                    } else {
                        pending.push(Pending::Proposals((form, 0), answers));
                    }
                    continue;
                }
                match resp_slot(&node, &keys) {
                    Ok((group, slot)) if node.hosts(group) => {
                        let (ops, adds) = super::limits::op_shape(&op);
                        let map = node.map();
                        let checked =
                            ctx.limits
                                .check(&map, node.id(), DEFAULT_KEYSPACE, ops, adds);
                        if let Err(refusal) = checked {
                            let reply = super::limits::resp_refusal(refusal);
                            pending.push(Pending::Ready(ready, reply));
                            continue;
                        }
                        let answer = node.propose(group, data);
                        pending.push(Pending::Proposal((form, slot), answer));
                    }
                    Ok((group, slot)) => {
                        let reply = error_reply(&node.redirect(group), slot);
                        pending.push(Pending::Ready(ready, reply));
                    }
                    Err(reply) => pending.push(Pending::Ready(ready, reply)),
                }
            } else {
                settle(&mut pending, timeout, convert, |_, r| r.encode(&mut wbuf)).await;
                let facts = || super::resp::facts(ctx, port);
                let reply = if !name.eq_ignore_ascii_case(b"quit") {
                    let keys: Vec<Vec<u8>> = pipeline.with_args(i, |args| {
                        table::lookup(args[0])
                            .map(|spec| spec.keys(args).iter().map(|k| k.to_vec()).collect())
                            .unwrap_or_default()
                    });
                    let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
                    if !resp_touches_data(name) {
                        let db = ctx.current_db();
                        let outcome = pipeline.with_args(i, |args| {
                            commands::execute(&db, &db, &ctx.resp, &mut session, facts, args)
                        });
                        close = outcome.close;
                        outcome.reply
                    } else if keys.is_empty() {
                        // KEYS, DBSIZE, SCAN: over the partitions this node serves.
                        let groups = match consistency {
                            Consistency::Follower => node.groups(),
                            _ => led_groups(&node),
                        };
                        keyless_read(
                            &node,
                            ctx,
                            &mut session,
                            &pipeline,
                            i,
                            &groups,
                            consistency,
                            timeout,
                        )
                        .await
                    } else {
                        let routed = resp_slot(&node, &keys);
                        // A read this node will serve counts against the keyspace's rate.
                        let refused = match &routed {
                            Ok((group, _)) if node.hosts(*group) => {
                                let map = node.map();
                                let keyspace = DEFAULT_KEYSPACE;
                                ctx.limits.check(&map, node.id(), keyspace, 1, false).err()
                            }
                            _ => None,
                        };
                        match routed {
                            Err(reply) => reply,
                            Ok(_) if refused.is_some() => {
                                super::limits::resp_refusal(refused.expect("just matched"))
                            }
                            Ok((group, slot)) => {
                                match Node::wait(node.read(group, consistency), timeout).await {
                                    Ok(_) => match node.db(group) {
                                        Some(db) => {
                                            let outcome = pipeline.with_args(i, |args| {
                                                commands::execute(
                                                    &db,
                                                    &db,
                                                    &ctx.resp,
                                                    &mut session,
                                                    facts,
                                                    args,
                                                )
                                            });
                                            close = outcome.close;
                                            outcome.reply
                                        }
                                        None => error_reply(&node.redirect(group), slot),
                                    },
                                    Err(NodeError::UnknownGroup { .. }) => {
                                        error_reply(&node.redirect(group), slot)
                                    }
                                    Err(error) => error_reply(&error, slot),
                                }
                            }
                        }
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
