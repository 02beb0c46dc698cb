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
use crate::db::{
    self, BatchOp, Condition, Db, DbError, Keyspace, ScanRange, Store, DEFAULT_KEYSPACE,
};
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
    if !table::COMMANDS.iter().any(|s| s.name == name) {
        return unknown_command(first, rest).into();
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
        "set" => set(store, ks, rest, || store.now_ms()),
        "setnx" => match rest {
            [key, value] => store
                .put(ks, key, value, None, Condition::IfAbsent)
                .map(|(o, w)| written(Reply::Integer(o.applied as i64), w.version)),
            _ => Ok(wrong_args("setnx").into()),
        },
        "setex" | "psetex" => match rest {
            [key, ttl, value] => match parse_i64(ttl) {
                Some(t) => match expire_ms(t, name == "setex", store.now_ms()) {
                    Some(ms) if ms > 0 => store
                        .put(ks, key, value, Some(ms as u64), Condition::None)
                        .map(|(_, w)| written(ok(), w.version)),
                    _ => Ok(invalid_expire(name).into()),
                },
                None => Ok(not_integer().into()),
            },
            _ => Ok(wrong_args(name).into()),
        },
        "del" | "unlink" => {
            if rest.is_empty() {
                Ok(wrong_args(name).into())
            } else {
                delete_many(store, ks, rest)
            }
        }
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
        "mset" => {
            if rest.is_empty() || !rest.len().is_multiple_of(2) {
                Ok(wrong_args("mset").into())
            } else {
                let ops: Vec<BatchOp> = rest
                    .chunks(2)
                    .map(|kv| BatchOp::Put {
                        key: Bytes::copy_from_slice(kv[0]),
                        value: Bytes::copy_from_slice(kv[1]),
                        ttl_ms: None,
                        condition: Condition::None,
                    })
                    .collect();
                store.batch(ks, &ops).map(|(_, w)| written(ok(), w.version))
            }
        }
        "incr" | "decr" => match rest {
            [key] => incr(store, ks, key, if name == "incr" { 1 } else { -1 }),
            _ => Ok(wrong_args(name).into()),
        },
        "incrby" | "decrby" => match rest {
            [key, delta] => match parse_i64(delta) {
                Some(d) if name == "incrby" => incr(store, ks, key, d),
                Some(d) => match d.checked_neg() {
                    Some(d) => incr(store, ks, key, d),
                    None => Ok(err("ERR decrement would overflow").into()),
                },
                None => Ok(not_integer().into()),
            },
            _ => Ok(wrong_args(name).into()),
        },
        "expire" | "pexpire" => match rest {
            [key, ttl] => match parse_i64(ttl) {
                Some(t) => match expire_ms(t, name == "expire", store.now_ms()) {
                    Some(ms) => store
                        .set_expiry(ks, key, Some(ms))
                        .map(|(existed, w)| written(Reply::Integer(existed as i64), w.version)),
                    None => Ok(invalid_expire(name).into()),
                },
                None => Ok(not_integer().into()),
            },
            _ => Ok(wrong_args(name).into()),
        },
        "persist" => match rest {
            [key] => store
                .set_expiry(ks, key, None)
                .map(|(changed, w)| written(Reply::Integer(changed as i64), w.version)),
            _ => Ok(wrong_args("persist").into()),
        },
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
        "flushdb" | "flushall" => match rest {
            [] => store.flush(ks).map(|w| written(ok(), w.version)),
            [mode] if ["async", "sync"].contains(&lower(mode).as_str()) => {
                store.flush(ks).map(|w| written(ok(), w.version))
            }
            _ => Ok(syntax_error().into()),
        },
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
            None | Some("docs") | Some("info") => Reply::Array(Vec::new()),
            Some("count") => Reply::Integer(0),
            Some(_) => err("ERR unknown subcommand or wrong number of arguments for 'command'"),
        }
        .into()),
        "client" => Ok(client(session, rest).into()),
        "hello" => Ok(err("NOPROTO this server speaks RESP2 only").into()),
        _ => Ok(unknown_command(first, rest).into()),
    };
    result.unwrap_or_else(|e| db_error(e).into())
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
fn set(
    store: &impl Store,
    ks: &Keyspace,
    rest: &[&[u8]],
    now_ms: impl Fn() -> u64,
) -> Result<Outcome, DbError> {
    let [key, value, options @ ..] = rest else {
        return Ok(wrong_args("set").into());
    };
    let mut ttl_ms = None;
    let mut condition = Condition::None;
    let mut i = 0;
    while i < options.len() {
        match lower(options[i]).as_str() {
            unit @ ("ex" | "px") if ttl_ms.is_none() => {
                let Some(arg) = options.get(i + 1) else {
                    return Ok(syntax_error().into());
                };
                let Some(t) = parse_i64(arg) else {
                    return Ok(not_integer().into());
                };
                match expire_ms(t, unit == "ex", now_ms()) {
                    Some(ms) if ms > 0 => ttl_ms = Some(ms as u64),
                    _ => return Ok(invalid_expire("set").into()),
                }
                i += 2;
            }
            "nx" if condition == Condition::None => {
                condition = Condition::IfAbsent;
                i += 1;
            }
            "xx" if condition == Condition::None => {
                condition = Condition::IfPresent;
                i += 1;
            }
            _ => return Ok(syntax_error().into()),
        }
    }
    let (outcome, w) = store.put(ks, key, value, ttl_ms, condition)?;
    Ok(written(
        if outcome.applied { ok() } else { Reply::Null },
        w.version,
    ))
}

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

fn incr(store: &impl Store, ks: &Keyspace, key: &[u8], delta: i64) -> Result<Outcome, DbError> {
    let ((value, _), w) = store.incr(ks, key, delta)?;
    Ok(written(Reply::Integer(value), w.version))
}

fn delete_many(store: &impl Store, ks: &Keyspace, keys: &[&[u8]]) -> Result<Outcome, DbError> {
    let mut deleted = 0;
    let mut last = None;
    for key in keys {
        let (out, w) = store.delete(ks, key, Condition::None)?;
        deleted += out.existed as i64;
        last = last.max(w.version);
    }
    Ok(written(Reply::Integer(deleted), last))
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
