//! The one table of the Redis commands the RESP port knows: for each, what it does to the
//! data (reads it, writes it, or touches none), where its keys are, and whether it may share a
//! write group with its neighbours in a pipeline.
//!
//! Every path that must tell one kind of command from another asks here: [`super::commands`]
//! refuses a command that is not in the table, the single node groups a pipeline's commands
//! by [`Spec::groupable`], and a cluster node sends exactly the [`Access::Write`] commands
//! through the Raft log (the rest run on the node's own engine). A write command marked as a
//! read would run on one replica only and silently diverge from the others, so
//! `tests::every_command_does_what_its_entry_says` runs every entry against a real engine and
//! checks that reads leave it unchanged and writes change it; a command the executor knows
//! but the table does not is unreachable (and caught by the same test's count).

/// What a command does to the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads keys or the keyspace; never changes data. On a cluster node it runs after the
    /// read barrier its consistency asks for.
    Read,
    /// Changes data. On a cluster node it is logged and applied on every replica.
    Write,
    /// Answers without reading data (PING, INFO, CLIENT): no read barrier.
    NoData,
}

/// Where a command's keys are among its arguments (the command name is argument 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// No key (or the whole keyspace: SCAN, FLUSHDB).
    None,
    /// Argument 1.
    First,
    /// Every argument from 1 on (DEL, EXISTS, MGET).
    All,
    /// Every other argument from 1 on (MSET key value key value ...).
    Pairs,
}

/// One command's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Lower case.
    pub name: &'static str,
    pub access: Access,
    pub keys: Keys,
    /// Reads and writes single keys only, so a pipeline of such commands run as one write
    /// group answers exactly as if run one at a time. Everything that reads or changes the
    /// keyspace as a whole (SCAN, DBSIZE, FLUSHDB) or ends the connection (QUIT) runs alone.
    pub groupable: bool,
}

const fn spec(name: &'static str, access: Access, keys: Keys, groupable: bool) -> Spec {
    Spec {
        name,
        access,
        keys,
        groupable,
    }
}

use Access::{NoData, Read, Write};

/// Every command, in no particular order.
pub const COMMANDS: &[Spec] = &[
    spec("ping", NoData, Keys::None, true),
    spec("echo", NoData, Keys::None, true),
    spec("quit", NoData, Keys::None, false),
    spec("get", Read, Keys::First, true),
    spec("set", Write, Keys::First, true),
    spec("setnx", Write, Keys::First, true),
    spec("setex", Write, Keys::First, true),
    spec("psetex", Write, Keys::First, true),
    spec("del", Write, Keys::All, true),
    spec("unlink", Write, Keys::All, true),
    spec("exists", Read, Keys::All, true),
    spec("type", Read, Keys::First, true),
    spec("mget", Read, Keys::All, true),
    spec("mset", Write, Keys::Pairs, true),
    spec("incr", Write, Keys::First, true),
    spec("decr", Write, Keys::First, true),
    spec("incrby", Write, Keys::First, true),
    spec("decrby", Write, Keys::First, true),
    spec("expire", Write, Keys::First, true),
    spec("pexpire", Write, Keys::First, true),
    spec("persist", Write, Keys::First, true),
    spec("ttl", Read, Keys::First, true),
    spec("pttl", Read, Keys::First, true),
    spec("scan", Read, Keys::None, false),
    spec("keys", Read, Keys::None, false),
    spec("dbsize", Read, Keys::None, false),
    spec("flushdb", Write, Keys::None, false),
    spec("flushall", Write, Keys::None, false),
    spec("select", NoData, Keys::None, false),
    spec("info", NoData, Keys::None, false),
    spec("config", NoData, Keys::None, false),
    spec("command", NoData, Keys::None, false),
    spec("client", NoData, Keys::None, false),
    spec("hello", NoData, Keys::None, false),
];

/// The entry of the command named `name` (any case), if the port knows it.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    COMMANDS
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Whether the command named `name` changes data (an unknown command does not: it is
/// answered with an error and changes nothing).
pub fn is_write(name: &[u8]) -> bool {
    lookup(name).is_some_and(|s| s.access == Access::Write)
}

impl Spec {
    /// The keys among `args` (argument 0 is the command name).
    pub fn keys<'a>(&self, args: &[&'a [u8]]) -> Vec<&'a [u8]> {
        let rest = args.get(1..).unwrap_or_default();
        match self.keys {
            Keys::None => Vec::new(),
            Keys::First => rest.iter().take(1).copied().collect(),
            Keys::All => rest.to_vec(),
            Keys::Pairs => rest.iter().step_by(2).copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::resp::codec::Reply;
    use crate::resp::commands::{execute, ServerFacts, Session, Shared};
    use crate::storage::{self, Engine, SystemClock};

    /// Arguments that make each command do its work, on a keyspace holding `k` = 1, `j` = 2
    /// and `t` = 3 with a TTL (so that DEL deletes, EXPIRE expires, PERSIST persists, INCR
    /// counts). Every entry needs one.
    fn sample(name: &str) -> &'static [&'static str] {
        match name {
            "ping" | "quit" | "scan" | "dbsize" | "flushdb" | "flushall" | "command" => &[],
            "echo" => &["hi"],
            "get" | "type" | "ttl" | "pttl" | "incr" | "decr" => &["k"],
            "persist" => &["t"],
            "set" | "setnx" => &["n", "v"],
            "setex" | "psetex" => &["k", "100", "v"],
            "del" | "unlink" | "exists" | "mget" => &["k", "j"],
            "mset" => &["a", "1", "b", "2"],
            "incrby" | "decrby" => &["k", "5"],
            "expire" | "pexpire" => &["k", "100"],
            "keys" => &["*"],
            "select" => &["0"],
            "info" => &["keyspace"],
            "config" => &["get", "maxmemory"],
            "client" => &["setname", "x"],
            "hello" => &["2"],
            other => panic!("no sample arguments for {other}: add some"),
        }
    }

    fn facts() -> ServerFacts {
        ServerFacts {
            uptime_seconds: 0,
            connected_clients: 0,
            total_commands: 0,
            fsync: String::new(),
            port: 0,
        }
    }

    #[test]
    fn every_command_does_what_its_entry_says() {
        for spec in COMMANDS {
            let dir = crate::test_dir::TestDir::new("table");
            let config = storage::Config {
                fsync: storage::FsyncPolicy::Never,
                ..storage::Config::default()
            };
            let db =
                Db::new(Engine::open(&*dir, config, std::sync::Arc::new(SystemClock)).unwrap());
            let shared = Shared::default();
            let mut session = Session::default();
            let setup: [&[&str]; 3] = [
                &["SET", "k", "1"],
                &["SET", "j", "2"],
                &["SET", "t", "3", "PX", "100000"],
            ];
            for setup in setup {
                let args: Vec<&[u8]> = setup.iter().map(|a| a.as_bytes()).collect();
                execute(&db, &db, &shared, &mut session, facts, &args);
            }
            let before = db.engine().stats().last_version;
            let mut args: Vec<&[u8]> = vec![spec.name.as_bytes()];
            args.extend(sample(spec.name).iter().map(|a| a.as_bytes()));
            let outcome = execute(&db, &db, &shared, &mut session, facts, &args);
            if let Reply::Error(e) = &outcome.reply {
                assert!(!e.contains("unknown command"), "{}: {e}", spec.name);
            }
            let after = db.engine().stats().last_version;
            match spec.access {
                Access::Write => assert!(after > before, "{} wrote nothing", spec.name),
                Access::Read | Access::NoData => {
                    assert_eq!(
                        after, before,
                        "{} is marked {:?} but wrote",
                        spec.name, spec.access
                    )
                }
            }
            assert_eq!(lookup(spec.name.to_uppercase().as_bytes()), Some(spec));
        }
    }

    #[test]
    fn a_command_the_table_does_not_know_is_refused() {
        let dir = crate::test_dir::TestDir::new("table");
        let db = Db::new(
            Engine::open(
                &*dir,
                storage::Config::default(),
                std::sync::Arc::new(SystemClock),
            )
            .unwrap(),
        );
        let args: [&[u8]; 3] = [b"append", b"k", b"v"];
        let outcome = execute(
            &db,
            &db,
            &Shared::default(),
            &mut Session::default(),
            facts,
            &args,
        );
        assert!(
            matches!(&outcome.reply, Reply::Error(e) if e.contains("unknown command")),
            "{:?}",
            outcome.reply
        );
        assert!(!is_write(b"append"));
    }

    #[test]
    fn keys_are_found_where_the_entry_says() {
        let args: [&[u8]; 5] = [b"MSET", b"a", b"1", b"b", b"2"];
        let keys: Vec<&[u8]> = lookup(b"mset").unwrap().keys(&args);
        assert_eq!(keys, [&b"a"[..], b"b"]);
        let args: [&[u8]; 4] = [b"SET", b"k", b"v", b"NX"];
        assert_eq!(lookup(b"set").unwrap().keys(&args), [&b"k"[..]]);
        let args: [&[u8]; 3] = [b"DEL", b"x", b"y"];
        assert_eq!(lookup(b"del").unwrap().keys(&args).len(), 2);
        assert!(lookup(b"scan").unwrap().keys(&[b"SCAN", b"0"]).is_empty());
    }
}
