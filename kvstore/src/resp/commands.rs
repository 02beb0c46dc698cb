//! The Redis commands the RESP port understands, mapped onto [`crate::db`].
//!
//! Each command is parsed from its argument list, checked the way Redis checks it (same error
//! texts, so clients and scripts that match on them keep working), and executed against the
//! `default` keyspace. Replies are built as [`Reply`] values; the connection encodes them.
//! SCAN cursors are kept in a server-wide table because our keys are ordered byte strings, not
//! hash-table slots: a cursor names the last key returned.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

use super::codec::{self, Reply};
use super::glob::glob_match;
use super::table::{self, Access};
use crate::db::{self, Db, DbError, Keyspace, ScanRange, Store, DEFAULT_KEYSPACE};
use crate::storage::StorageError;

/// Open SCAN cursors kept server-wide; the oldest is forgotten beyond this.
pub const SCAN_CURSORS_MAX: usize = 100_000;
/// Longer command names are unknown without looking further.
const COMMAND_NAME_BYTES_MAX: usize = 32;

static DEFAULT: std::sync::LazyLock<Keyspace> = std::sync::LazyLock::new(|| {
    Keyspace::new(DEFAULT_KEYSPACE).expect("the default keyspace name is valid")
});

/// Keys a SCAN step examines when COUNT is not given (Redis's default).
const SCAN_COUNT_DEFAULT: u32 = 10;

/// State shared by all RESP connections.
#[derive(Debug, Default)]
pub struct Shared {
    cursors: Mutex<Cursors>,
}

#[derive(Debug, Default)]
struct Cursors {
    next_id: u64,
    by_id: HashMap<u64, Bytes>,
    order: VecDeque<u64>,
}

impl Cursors {
    fn open(&mut self, continuation: Bytes) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.by_id.insert(id, continuation);
        self.order.push_back(id);
        while self.order.len() > SCAN_CURSORS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        id
    }
}

/// Per-connection state.
#[derive(Debug, Default)]
pub struct Session {
    pub name: Option<Bytes>,
}

/// What executing one command produced.
#[derive(Debug)]
pub struct Outcome {
    pub reply: Reply,
    /// The version that must be durable before the reply is sent.
    pub durable: Option<u64>,
    /// Close the connection after the reply (QUIT).
    pub close: bool,
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Outcome {
        Outcome {
            reply,
            durable: None,
            close: false,
        }
    }
}

/// Facts the INFO and CONFIG commands report, supplied by the server.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub uptime_seconds: u64,
    pub connected_clients: i64,
    pub total_commands: u64,
    pub fsync: String,
    pub port: u16,
}

fn err(message: impl Into<String>) -> Reply {
    Reply::Error(message.into().into())
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

fn wrong_args(name: &str) -> Reply {
    err(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

fn syntax_error() -> Reply {
    err("ERR syntax error")
}

fn not_integer() -> Reply {
    err("ERR value is not an integer or out of range")
}

fn db_error(error: DbError) -> Reply {
    match error {
        DbError::NotAnInteger => not_integer(),
        DbError::Overflow => err("ERR increment or decrement would overflow"),
        DbError::Storage(
            e @ (StorageError::KeyTooLarge { .. } | StorageError::ValueTooLarge { .. }),
        ) => err(format!("ERR {e}")),
        other => {
            tracing::warn!(error = %other, "RESP command failed");
            err(format!("ERR {other}"))
        }
    }
}

fn parse_i64(arg: &[u8]) -> Option<i64> {
    db::parse_counter(arg).ok()
}

fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

/// Whether the command named `name` only reads single keys, so a run of them needs no write
/// group at all (see [`super::table`]).
pub fn read_only(name: &[u8]) -> bool {
    super::table::lookup(name).is_some_and(|s| s.groupable && s.access != Access::Write)
}

/// Whether the command named `name` may run inside a write group (see
/// [`super::table::Spec::groupable`]).
pub fn groupable(name: &[u8]) -> bool {
    super::table::lookup(name).is_some_and(|s| s.groupable)
}

/// Whether command `args` (given as its name and argument count) is a plain `GET key`, which
/// a connection may answer with [`get_into`] instead of [`execute`].
pub fn plain_get(name: &[u8], argc: usize) -> bool {
    argc == 2 && name.eq_ignore_ascii_case(b"get")
}

/// Answers `GET key` straight into `dst`: the value goes from the index to the reply buffer
/// with no `Reply` or allocation in between (GET is most of what a cache serves). Returns
/// false if the reply is an error.
pub fn get_into(db: &Db, key: &[u8], dst: &mut BytesMut) -> bool {
    match db.get_with(&DEFAULT, key, |value| match value {
        Some(value) => codec::put_bulk(dst, value),
        None => Reply::Null.encode(dst),
    }) {
        Ok(()) => true,
        Err(error) => {
            db_error(error).encode(dst);
            false
        }
    }
}

/// Runs one command. `args[0]` is the command name. Single-key commands go through `store`
/// (the [`Db`] itself, or a [`GroupDb`](crate::db::GroupDb) when the connection runs a pipeline
/// as a write group); commands that are not [`groupable`] use `db` and must not be called
/// inside a group.
pub fn execute<S: Store>(
    db: &Db,
    store: &S,
    shared: &Shared,
    session: &mut Session,
    facts: impl FnOnce() -> ServerFacts,
    args: &[&[u8]],
) -> Outcome {
    let Some(first) = args.first() else {
        return err("ERR empty command").into();
    };
    // Lower-case the name on the stack: this runs for every command of every pipeline.
    let mut name_buf = [0u8; COMMAND_NAME_BYTES_MAX];
    let name = match first.get(..) {
        Some(n) if n.len() <= COMMAND_NAME_BYTES_MAX => {
            name_buf[..n.len()].copy_from_slice(n);
            name_buf[..n.len()].make_ascii_lowercase();
            std::str::from_utf8(&name_buf[..n.len()]).unwrap_or("")
        }
        _ => "",
    };
    let ks: &Keyspace = &DEFAULT;
    let rest = &args[1..];
    // Only what the table knows runs: a command must be classified (read, write, no data)
    // before any path may execute it.
    let Some(spec) = table::COMMANDS.iter().find(|s| s.name == name) else {
        return unknown_command(first, rest).into();
    };
    if spec.access == Access::Write {
        // The same path a cluster takes, minus the log: plan, execute, answer.
        return match plan_write(name, rest, store.now_ms()) {
            Ok((op, form)) => {
                let (outcome, version) = crate::op::execute(db, store, op);
                written(render(form, outcome), version)
            }
            Err(reply) => reply.into(),
        };
    }
    let result = match name {
        "ping" => match rest {
            [] => Ok(Reply::Simple("PONG".into()).into()),
            [msg] => Ok(Reply::Bulk(Bytes::copy_from_slice(msg)).into()),
            _ => Ok(wrong_args("ping").into()),
        },
        "echo" => match rest {
            [msg] => Ok(Reply::Bulk(Bytes::copy_from_slice(msg)).into()),
            _ => Ok(wrong_args("echo").into()),
        },
        "quit" => {
            return Outcome {
                reply: ok(),
                durable: None,
                close: true,
            }
        }
        "get" => match rest {
            [key] => store.get(ks, key).map(|v| match v {
                Some(item) => Reply::Bulk(item.value).into(),
                None => Reply::Null.into(),
            }),
            _ => Ok(wrong_args("get").into()),
        },
        "exists" => {
            if rest.is_empty() {
                Ok(wrong_args("exists").into())
            } else {
                rest.iter()
                    .try_fold(0i64, |n, key| Ok(n + store.get(ks, key)?.is_some() as i64))
                    .map(|n: i64| Reply::Integer(n).into())
            }
        }
        "type" => match rest {
            [key] => store
                .get(ks, key)
                .map(|v| Reply::Simple(if v.is_some() { "string" } else { "none" }.into()).into()),
            _ => Ok(wrong_args("type").into()),
        },
        "mget" => {
            if rest.is_empty() {
                Ok(wrong_args("mget").into())
            } else {
                rest.iter()
                    .map(|key| {
                        store
                            .get(ks, key)
                            .map(|v| v.map_or(Reply::Null, |i| Reply::Bulk(i.value)))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|items| Reply::Array(items).into())
            }
        }
        "ttl" | "pttl" => match rest {
            [key] => store.get(ks, key).map(|v| {
                let n = match v {
                    None => -2,
                    Some(item) => match item.expires_at_ms {
                        None => -1,
                        Some(at) => {
                            let left = at.saturating_sub(store.now_ms());
                            let left = i64::try_from(left).unwrap_or(i64::MAX);
                            if name == "ttl" {
                                left.saturating_add(500) / 1000
                            } else {
                                left
                            }
                        }
                    },
                };
                Reply::Integer(n).into()
            }),
            _ => Ok(wrong_args(name).into()),
        },
        "scan" => scan(db, shared, ks, rest),
        "keys" => match rest {
            [pattern] => keys(db, ks, pattern),
            _ => Ok(wrong_args("keys").into()),
        },
        "dbsize" => Ok(Reply::Integer(db.count(ks) as i64).into()),
        "select" => match rest {
            [index] if &index[..] == b"0" => Ok(ok().into()),
            [_] => Ok(err("ERR DB index is out of range").into()),
            _ => Ok(wrong_args("select").into()),
        },
        "info" => {
            let sections: Vec<String> = rest.iter().map(|a| lower(a)).collect();
            Ok(Reply::Bulk(info(db, ks, &facts(), &sections).into()).into())
        }
        "config" => Ok(config(rest, &facts()).into()),
        "command" => Ok(match rest.first().map(|a| lower(a)).as_deref() {
            None => Reply::Array(table::COMMANDS.iter().map(command_info).collect()),
            Some("info") => Reply::Array(
                rest[1..]
                    .iter()
                    .map(|name| table::lookup(name).map_or(Reply::NullArray, command_info))
                    .collect(),
            ),
            Some("docs") => Reply::Array(Vec::new()),
            Some("count") => Reply::Integer(table::COMMANDS.len() as i64),
            Some(_) => err("ERR unknown subcommand or wrong number of arguments for 'command'"),
        }
        .into()),
        "client" => Ok(client(session, rest).into()),
        "hello" => Ok(err("NOPROTO this server speaks RESP2 only").into()),
        _ => Ok(unknown_command(first, rest).into()),
    };
    result.unwrap_or_else(|e| db_error(e).into())
}

/// A command's `COMMAND` entry, as Redis 2.8.13 and later give it: name, arity (negative:
/// at least that many arguments, the name included), flags, first key, last key (-1: the
/// last argument) and step. Cluster clients (redis-py's `RedisCluster`) find the keys of a
/// command, and so its slot, from these.
fn command_info(spec: &table::Spec) -> Reply {
    use table::{Access, Keys};
    let (arity, first, last, step) = match spec.keys {
        Keys::None => (-1, 0, 0, 0),
        Keys::First => (-2, 1, 1, 1),
        Keys::All => (-2, 1, -1, 1),
        Keys::Pairs => (-3, 1, -1, 2),
    };
    let flag = match spec.access {
        Access::Read => "readonly",
        Access::Write => "write",
        Access::NoData => "fast",
    };
    Reply::Array(vec![
        Reply::Bulk(spec.name.into()),
        Reply::Integer(arity),
        Reply::Array(vec![Reply::Simple(flag.into())]),
        Reply::Integer(first),
        Reply::Integer(last),
        Reply::Integer(step),
    ])
}

fn written(reply: Reply, version: Option<u64>) -> Outcome {
    Outcome {
        reply,
        durable: version,
        close: false,
    }
}

fn unknown_command(name: &[u8], rest: &[&[u8]]) -> Reply {
    let args: String = rest
        .iter()
        .take(20)
        .map(|a| format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(128)])))
        .collect();
    err(format!(
        "ERR unknown command '{}', with args beginning with: {args}",
        String::from_utf8_lossy(&name[..name.len().min(128)])
    ))
}

/// `now_ms` is asked only for a relative expiry (EX, PX): a plain SET reads no clock.
/// A relative expiry in milliseconds (`amount` seconds when `seconds`), or `None` if it or
/// the deadline it makes would overflow: Redis answers those with "invalid expire time".
fn expire_ms(amount: i64, seconds: bool, now_ms: u64) -> Option<i64> {
    let ms = if seconds {
        amount.checked_mul(1000)?
    } else {
        amount
    };
    i64::try_from(now_ms).ok()?.checked_add(ms)?;
    Some(ms)
}

fn invalid_expire(command: &str) -> Reply {
    err(format!("ERR invalid expire time in '{command}' command"))
}

/// How a Redis write's [`Outcome`](crate::op::Outcome) is answered, decided when the command
/// is planned (the same operation answers differently: SET, SETNX and SETEX all put).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyForm {
    /// `+OK`.
    Ok,
    /// `+OK` if the put applied, else a null (SET with NX or XX).
    OkOrNull,
    /// `:1` if the put applied, else `:0` (SETNX).
    Applied,
    /// The counter's new value (INCR and friends).
    Counter,
    /// How many keys existed (DEL).
    Count,
    /// `:1` if the key existed (EXPIRE, PERSIST).
    Changed,
}

/// Parses and checks the Redis write command `name` (lower case) with arguments `rest`, the
/// way Redis checks it, into the operation it stands for and how to answer its outcome; or
/// the error reply Redis gives (wrong arguments, syntax, an invalid expire time). `now_ms`
/// only bounds expire times (so that a deadline cannot overflow); the deadline itself is
/// computed when the operation runs, at its own time.
pub fn plan_write(
    name: &str,
    rest: &[&[u8]],
    now_ms: u64,
) -> Result<(crate::op::Op, ReplyForm), Reply> {
    use crate::op::Op;
    let keyspace = || DEFAULT_KEYSPACE.to_string();
    let put = |key: &[u8], value: &[u8], ttl_ms, condition| {
        Op::Request(crate::wire::Request::Put {
            keyspace: keyspace(),
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            ttl_ms,
            condition,
        })
    };
    let incr = |key: &[u8], delta| {
        Op::Request(crate::wire::Request::Incr {
            keyspace: keyspace(),
            key: Bytes::copy_from_slice(key),
            delta,
        })
    };
    let expiry = |key: &[u8], ttl_ms| Op::SetExpiry {
        keyspace: keyspace(),
        key: Bytes::copy_from_slice(key),
        ttl_ms,
    };
    use crate::wire::Condition as C;
    Ok(match (name, rest) {
        ("set", [key, value, options @ ..]) => {
            let (ttl_ms, condition) = set_options(options, now_ms)?;
            let answer = if condition == C::None {
                ReplyForm::Ok
            } else {
                ReplyForm::OkOrNull
            };
            (put(key, value, ttl_ms, condition), answer)
        }
        ("setnx", [key, value]) => (put(key, value, None, C::IfAbsent), ReplyForm::Applied),
        ("setex" | "psetex", [key, ttl, value]) => {
            let t = parse_i64(ttl).ok_or_else(not_integer)?;
            match expire_ms(t, name == "setex", now_ms) {
                Some(ms) if ms > 0 => (put(key, value, Some(ms as u64), C::None), ReplyForm::Ok),
                _ => return Err(invalid_expire(name)),
            }
        }
        ("del" | "unlink", keys) if !keys.is_empty() => (
            Op::DeleteKeys {
                keyspace: keyspace(),
                keys: keys.iter().map(|k| Bytes::copy_from_slice(k)).collect(),
            },
            ReplyForm::Count,
        ),
        ("mset", pairs) if !pairs.is_empty() && pairs.len().is_multiple_of(2) => {
            let ops = pairs
                .chunks(2)
                .map(|kv| crate::wire::BatchOp::Put {
                    key: Bytes::copy_from_slice(kv[0]),
                    value: Bytes::copy_from_slice(kv[1]),
                    ttl_ms: None,
                    condition: C::None,
                })
                .collect();
            let batch = crate::wire::Request::Batch {
                keyspace: keyspace(),
                ops,
            };
            (Op::Request(batch), ReplyForm::Ok)
        }
        ("incr", [key]) => (incr(key, 1), ReplyForm::Counter),
        ("decr", [key]) => (incr(key, -1), ReplyForm::Counter),
        ("incrby" | "decrby", [key, delta]) => {
            let d = parse_i64(delta).ok_or_else(not_integer)?;
            let d = if name == "incrby" {
                d
            } else {
                d.checked_neg()
                    .ok_or_else(|| err("ERR decrement would overflow"))?
            };
            (incr(key, d), ReplyForm::Counter)
        }
        ("expire" | "pexpire", [key, ttl]) => {
            let t = parse_i64(ttl).ok_or_else(not_integer)?;
            let ms = expire_ms(t, name == "expire", now_ms).ok_or_else(|| invalid_expire(name))?;
            (expiry(key, Some(ms)), ReplyForm::Changed)
        }
        ("persist", [key]) => (expiry(key, None), ReplyForm::Changed),
        ("flushdb" | "flushall", []) => (
            Op::Flush {
                keyspace: keyspace(),
            },
            ReplyForm::Ok,
        ),
        ("flushdb" | "flushall", [mode]) if ["async", "sync"].contains(&lower(mode).as_str()) => (
            Op::Flush {
                keyspace: keyspace(),
            },
            ReplyForm::Ok,
        ),
        ("flushdb" | "flushall", _) => return Err(syntax_error()),
        _ => return Err(wrong_args(name)),
    })
}

/// SET's options: EX/PX (a TTL) and NX/XX (a condition), each at most once.
fn set_options(
    options: &[&[u8]],
    now_ms: u64,
) -> Result<(Option<u64>, crate::wire::Condition), Reply> {
    use crate::wire::Condition as C;
    let mut ttl_ms = None;
    let mut condition = C::None;
    let mut i = 0;
    while i < options.len() {
        match lower(options[i]).as_str() {
            unit @ ("ex" | "px") if ttl_ms.is_none() => {
                let arg = options.get(i + 1).ok_or_else(syntax_error)?;
                let t = parse_i64(arg).ok_or_else(not_integer)?;
                match expire_ms(t, unit == "ex", now_ms) {
                    Some(ms) if ms > 0 => ttl_ms = Some(ms as u64),
                    _ => return Err(invalid_expire("set")),
                }
                i += 2;
            }
            "nx" if condition == C::None => {
                condition = C::IfAbsent;
                i += 1;
            }
            "xx" if condition == C::None => {
                condition = C::IfPresent;
                i += 1;
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok((ttl_ms, condition))
}

/// The reply a planned write gets for `outcome`.
pub fn render(form: ReplyForm, outcome: crate::op::Outcome) -> Reply {
    use crate::op::Outcome as O;
    use crate::wire::Response as R;
    match (form, outcome) {
        (_, O::Response(R::Error { code, message }) | O::Failed { code, message }) => match code {
            crate::wire::ErrorCode::NotAnInteger if message.contains("overflow") => {
                err("ERR increment or decrement would overflow")
            }
            crate::wire::ErrorCode::NotAnInteger => not_integer(),
            _ => err(format!("ERR {message}")),
        },
        (ReplyForm::OkOrNull, O::Response(R::PutOk { applied: false, .. })) => Reply::Null,
        (ReplyForm::Applied, O::Response(R::PutOk { applied, .. })) => {
            Reply::Integer(i64::from(applied))
        }
        (ReplyForm::Counter, O::Response(R::IncrOk { value, .. })) => Reply::Integer(value),
        (ReplyForm::Count, O::Deleted { count }) => Reply::Integer(count as i64),
        (ReplyForm::Changed, O::Expiry { changed }) => Reply::Integer(i64::from(changed)),
        (ReplyForm::Ok | ReplyForm::OkOrNull, _) => ok(),
        (form, outcome) => err(format!(
            "ERR internal: outcome {outcome:?} does not answer as {form:?}"
        )),
    }
}

/// The literal bytes a glob pattern must start with, to narrow a scan to a prefix.
fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| b"*?[\\".contains(b))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

fn scan(db: &Db, shared: &Shared, ks: &Keyspace, rest: &[&[u8]]) -> Result<Outcome, DbError> {
    let [cursor, options @ ..] = rest else {
        return Ok(wrong_args("scan").into());
    };
    let Some(cursor) = std::str::from_utf8(cursor)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return Ok(err("ERR invalid cursor").into());
    };
    let mut pattern: Option<&[u8]> = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut i = 0;
    while i < options.len() {
        let arg = options.get(i + 1);
        match (lower(options[i]).as_str(), arg) {
            ("match", Some(p)) => pattern = Some(p),
            ("count", Some(n)) => match parse_i64(n) {
                Some(n) if n >= 1 => count = n.min(i64::from(db::SCAN_LIMIT_MAX)) as u32,
                Some(_) => return Ok(syntax_error().into()),
                None => return Ok(not_integer().into()),
            },
            ("type", Some(t)) if lower(t) == "string" => {}
            ("type", Some(_)) => {
                return Ok(Reply::Array(vec![Reply::Bulk("0".into()), Reply::Array(vec![])]).into())
            }
            _ => return Ok(syntax_error().into()),
        }
        i += 2;
    }
    let continuation = if cursor == 0 {
        None
    } else {
        let cursors = shared.cursors.lock().expect("cursor table lock");
        match cursors.by_id.get(&cursor) {
            Some(token) => Some(token.clone()),
            None => return Ok(err("ERR invalid cursor").into()),
        }
    };
    let range = ScanRange {
        prefix: pattern.map(|p| Bytes::copy_from_slice(literal_prefix(p))),
        ..ScanRange::default()
    };
    let page = db.scan(ks, &range, count, continuation.as_deref(), true)?;
    let keys: Vec<Reply> = page
        .items
        .into_iter()
        .filter(|item| pattern.is_none_or(|p| glob_match(p, &item.key)))
        .map(|item| Reply::Bulk(item.key))
        .collect();
    let next = match page.continuation {
        Some(token) => shared
            .cursors
            .lock()
            .expect("cursor table lock")
            .open(token),
        None => 0,
    };
    Ok(Reply::Array(vec![
        Reply::Bulk(next.to_string().into()),
        Reply::Array(keys),
    ])
    .into())
}

fn keys(db: &Db, ks: &Keyspace, pattern: &[u8]) -> Result<Outcome, DbError> {
    let range = ScanRange {
        prefix: Some(Bytes::copy_from_slice(literal_prefix(pattern))),
        ..ScanRange::default()
    };
    let mut out = Vec::new();
    let mut token: Option<Bytes> = None;
    loop {
        let page = db.scan(ks, &range, db::SCAN_LIMIT_MAX, token.as_deref(), true)?;
        out.extend(
            page.items
                .into_iter()
                .filter(|i| glob_match(pattern, &i.key))
                .map(|i| Reply::Bulk(i.key)),
        );
        match page.continuation {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(Reply::Array(out).into())
}

fn client(session: &mut Session, rest: &[&[u8]]) -> Reply {
    match (rest.first().map(|a| lower(a)).as_deref(), rest.len()) {
        (Some("setname"), 2) => {
            let name = &rest[1];
            if name.iter().any(|b| *b <= b' ' || *b > b'~') {
                return err(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            session.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
            ok()
        }
        (Some("getname"), 1) => session.name.clone().map_or(Reply::Null, Reply::Bulk),
        (Some("setinfo"), 3) => ok(),
        (Some(sub), _) => err(format!(
            "ERR unknown subcommand or wrong number of arguments for 'client|{sub}' command"
        )),
        (None, _) => wrong_args("client"),
    }
}

fn config(rest: &[&[u8]], facts: &ServerFacts) -> Reply {
    match (rest.first().map(|a| lower(a)).as_deref(), rest.len()) {
        (Some("get"), n) if n >= 2 => {
            // What redis-benchmark and common clients ask for, answered truthfully for this
            // server: persistence is our own log, not RDB snapshots.
            let appendonly = if facts.fsync == "never" { "no" } else { "yes" };
            let appendfsync = match facts.fsync.as_str() {
                "always" => "always",
                "never" => "no",
                _ => "everysec",
            };
            let params: [(&str, String); 8] = [
                ("save", String::new()),
                ("appendonly", appendonly.into()),
                ("appendfsync", appendfsync.into()),
                ("databases", "1".into()),
                ("maxmemory", "0".into()),
                ("maxclients", "1024".into()),
                ("port", facts.port.to_string()),
                ("timeout", "0".into()),
            ];
            let mut out = Vec::new();
            for pattern in &rest[1..] {
                for (name, value) in &params {
                    if glob_match(&lower(pattern).into_bytes(), name.as_bytes()) {
                        out.push(Reply::Bulk(Bytes::from_static(name.as_bytes())));
                        out.push(Reply::Bulk(Bytes::from(value.clone())));
                    }
                }
            }
            Reply::Array(out)
        }
        (Some("resetstat"), 1) => ok(),
        (Some("set"), _) => err("ERR CONFIG SET is not supported; restart with new flags"),
        (Some(sub), _) => err(format!(
            "ERR unknown subcommand or wrong number of arguments for 'config|{sub}' command"
        )),
        (None, _) => wrong_args("config"),
    }
}

/// INFO's text: all sections, or only those named (as Redis does).
fn info(db: &Db, ks: &Keyspace, facts: &ServerFacts, sections: &[String]) -> String {
    let text = info_all(db, ks, facts);
    let everything = ["all", "everything", "default"];
    if sections.is_empty() || sections.iter().any(|s| everything.contains(&s.as_str())) {
        return text;
    }
    text.split("\r\n\r\n")
        .filter(|block| {
            let title = block
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("# ")
                .to_lowercase();
            sections.contains(&title)
        })
        .map(|block| format!("{}\r\n", block.trim_end()))
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn info_all(db: &Db, ks: &Keyspace, facts: &ServerFacts) -> String {
    let stats = db.engine().stats();
    let keys = db.count(ks);
    format!(
        "# Server\r\n\
         redis_version:7.0.0\r\n\
         kvstore_version:{version}\r\n\
         redis_mode:standalone\r\n\
         os:{os}\r\n\
         process_id:{pid}\r\n\
         tcp_port:{port}\r\n\
         uptime_in_seconds:{uptime}\r\n\
         \r\n# Clients\r\n\
         connected_clients:{clients}\r\n\
         \r\n# Persistence\r\n\
         fsync_policy:{fsync}\r\n\
         segments:{segments}\r\n\
         disk_bytes:{disk}\r\n\
         compactions:{compactions}\r\n\
         \r\n# Stats\r\n\
         total_commands_processed:{commands}\r\n\
         \r\n# Keyspace\r\n\
         db0:keys={keys}\r\n",
        version = env!("CARGO_PKG_VERSION"),
        os = std::env::consts::OS,
        pid = std::process::id(),
        port = facts.port,
        uptime = facts.uptime_seconds,
        clients = facts.connected_clients,
        fsync = facts.fsync,
        segments = stats.segments,
        disk = stats.disk_bytes,
        compactions = stats.compactions,
        commands = facts.total_commands,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_stops_at_the_first_glob_character() {
        for (pattern, prefix) in [
            ("user:*", "user:"),
            ("a?c", "a"),
            ("*", ""),
            ("plain", "plain"),
            ("x[ab]", "x"),
            ("q\\*", "q"),
        ] {
            assert_eq!(
                literal_prefix(pattern.as_bytes()),
                prefix.as_bytes(),
                "{pattern}"
            );
        }
    }
}
