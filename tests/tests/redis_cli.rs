//! Real Redis clients, unchanged, against the RESP port: a scripted `redis-cli` session whose
//! replies are checked line by line, `redis-cli --scan` paging through many keys, and a short
//! `redis-benchmark` run (a compatibility check, not a timing: speed lives in bench/).

use std::io::Write;
use std::process::{Command, Stdio};

use tests::harness::{Server, ServerOptions, TempDir};

fn redis_tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{name} is not installed: run scripts/install-test-deps.sh (Debian package redis-tools)"
    );
    Command::new(name)
}

fn redis_cli(server: &Server, args: &[&str], stdin: &str) -> String {
    let mut child = redis_tool("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &server.resp.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "redis-cli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_scripted_redis_cli_session_gets_redis_replies() {
    let dir = TempDir::new("redis-cli");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    // (command, the lines redis-cli prints for its reply in non-interactive mode)
    let script: &[(&str, &[&str])] = &[
        ("PING", &["PONG"]),
        ("SET k v", &["OK"]),
        ("GET k", &["v"]),
        ("GET missing", &[""]),
        ("SET k v2 NX", &[""]),
        ("SET k v2 XX", &["OK"]),
        ("GET k", &["v2"]),
        ("SET t v EX 100", &["OK"]),
        ("TTL t", &["100"]),
        ("EXPIRE k 1000", &["1"]),
        ("TTL k", &["1000"]),
        ("EXPIRE missing 10", &["0"]),
        ("DEL k missing", &["1"]),
        ("EXISTS t t missing", &["2"]),
        ("MSET a 1 b 2", &["OK"]),
        ("MGET a b missing", &["1", "2", ""]),
        ("INCR a", &["2"]),
        ("INCRBY a 40", &["42"]),
        (
            "INCR t",
            &["ERR value is not an integer or out of range", ""],
        ),
        ("DBSIZE", &["3"]),
        ("ECHO hello", &["hello"]),
        ("CLIENT SETNAME tester", &["OK"]),
        ("CLIENT GETNAME", &["tester"]),
        ("CONFIG GET appendonly", &["appendonly", "yes"]),
        ("SCAN 0 MATCH a* COUNT 100", &["0", "a"]),
        (
            "FOO bar",
            &[
                "ERR unknown command 'FOO', with args beginning with: 'bar' ",
                "",
            ],
        ),
        ("PERSIST t", &["1"]),
        ("TTL t", &["-1"]),
        ("SET p v PX 100000", &["OK"]),
        (
            "SET big v EX 9223372036854775807",
            &["ERR invalid expire time in 'set' command", ""],
        ),
        (
            "EXPIRE p 9223372036854775807",
            &["ERR invalid expire time in 'expire' command", ""],
        ),
        ("DBSIZE", &["4"]),
        ("FLUSHDB", &["OK"]),
        ("DBSIZE", &["0"]),
    ];
    let input: String = script.iter().map(|(cmd, _)| format!("{cmd}\n")).collect();
    let expected: Vec<&str> = script
        .iter()
        .flat_map(|(_, lines)| lines.iter().copied())
        .collect();
    let output = redis_cli(&server, &[], &input);
    let got: Vec<&str> = output.lines().collect();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "line {i} differs; whole output:\n{output}");
    }
    assert_eq!(got.len(), expected.len(), "whole output:\n{output}");

    let info = redis_cli(&server, &["INFO", "keyspace"], "");
    assert_eq!(
        info.trim(),
        "# Keyspace\r\ndb0:keys=0",
        "INFO keyspace shows only that section"
    );
    let info = redis_cli(&server, &["INFO"], "");
    for section in [
        "# Server",
        "# Clients",
        "# Persistence",
        "# Stats",
        "# Keyspace",
    ] {
        assert!(info.contains(section), "{info}");
    }
}

#[test]
fn redis_cli_scan_pages_through_every_key_once() {
    let dir = TempDir::new("redis-scan");
    let server = Server::start(&dir.path, ServerOptions::fsync_never()).unwrap();
    let mut input = String::new();
    for i in 0..250 {
        input.push_str(&format!("SET user:{i:03} x\nSET other:{i:03} y\n"));
    }
    redis_cli(&server, &[], &input);
    let keys = redis_cli(&server, &["--scan", "--pattern", "user:*"], "");
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    let want: Vec<String> = (0..250).map(|i| format!("user:{i:03}")).collect();
    assert_eq!(keys, want);
}

#[test]
fn redis_benchmark_runs_unchanged() {
    let dir = TempDir::new("redis-benchmark");
    let server = Server::start(&dir.path, ServerOptions::fsync_never()).unwrap();
    let out = redis_tool("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.resp.port().to_string()])
        .args([
            "-t",
            "set,get,incr,mset",
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            "4",
            "-q",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for test in ["SET:", "GET:", "INCR:", "MSET (10 keys):"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(test) && l.contains("requests per second")),
            "no result line for {test}:\n{text}"
        );
    }
    assert!(!text.contains("ERR"), "{text}");
}

/// A pipeline sent in one write runs as write groups on the server (runs of single-key
/// commands, broken by commands like DBSIZE); the replies must be exactly those of running the
/// commands one at a time.
#[test]
fn a_pipeline_answers_exactly_as_one_command_at_a_time() {
    use std::io::Read;
    let dir = TempDir::new("resp-pipeline");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    let commands: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["TYPE", "a"],
        &["INCR", "a"],
        &["GET", "a"],
        &["SET", "a", "x", "NX"],
        &["SET", "b", "2", "XX"],
        &["MSET", "b", "2", "c", "3"],
        &["DBSIZE"],
        &["DEL", "a", "c"],
        &["EXISTS", "a", "b", "c"],
        &["INCR", "b"],
        &["INCR", "b"],
        &["GET", "b"],
        &["DBSIZE"],
    ];
    let expected = "+OK\r\n+string\r\n:2\r\n$1\r\n2\r\n$-1\r\n$-1\r\n+OK\r\n:3\r\n:2\r\n:1\r\n:3\r\n:4\r\n$1\r\n4\r\n:1\r\n";
    let mut input = Vec::new();
    for cmd in commands {
        input.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
        for arg in *cmd {
            input.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    let mut s = std::net::TcpStream::connect(server.resp).unwrap();
    s.write_all(&input).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, expected);
}

/// Nothing pipelined after QUIT runs, as in Redis.
#[test]
fn nothing_after_quit_runs() {
    use std::io::Read;
    let dir = TempDir::new("resp-quit");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    let mut s = std::net::TcpStream::connect(server.resp).unwrap();
    s.write_all(b"SET a 1\r\nQUIT\r\nSET b 2\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "+OK\r\n+OK\r\n");
    assert_eq!(redis_cli(&server, &["EXISTS", "a", "b"], "").trim(), "1");
}

/// A cluster, through clients nobody here wrote: `redis-cli` gets `-MOVED` from a follower
/// and, with `-c`, follows it to the leader; `READONLY` turns on follower reads; and the
/// `kvstore` CLI follows the binary protocol's redirect.
#[test]
fn redis_cli_and_the_kvstore_cli_find_a_clusters_leader() {
    use tests::cluster::{Cluster, ClusterOptions};
    let cluster = Cluster::start("clients", ClusterOptions::default()).unwrap();
    let leader = cluster
        .wait_for_leader(std::time::Duration::from_secs(20))
        .unwrap();
    let follower = cluster.node(if leader == 1 { 2 } else { 1 });
    let leader_resp = cluster.node(leader).resp;

    // The redirect names the key's slot, as Redis Cluster's does.
    let slot = kvstore::partition::slot(b"k");
    let out = redis_cli(follower, &[], "SET k v\n");
    assert_eq!(out.trim(), format!("MOVED {slot} {leader_resp}"));
    let out = redis_cli(follower, &["-c"], "SET k v\nINCR n\nGET k\n");
    assert_eq!(
        out,
        format!("-> Redirected to slot [{slot}] located at {leader_resp}\nOK\n1\nv\n")
    );
    // A linearizable read on the follower waits until it has applied the writes; then a
    // follower read there sees them too.
    assert_eq!(redis_cli(follower, &[], "GET k\n"), "v\n");
    assert_eq!(redis_cli(follower, &[], "READONLY\nGET n\n"), "OK\n1\n");

    let kvstore = |args: &[&str]| {
        let out = Command::new(tests::harness::kvstore_bin())
            .args(args)
            .args(["--addr", &follower.addr.to_string()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = kvstore(&["put", "k2", "v2"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("OK version "), "{out}");
    assert_eq!(kvstore(&["get", "k2"]), (Some(0), "v2\n".to_string()));

    // Each node's /metrics (read with curl) says who leads and how far it has applied.
    let metrics = |id: u64| {
        let url = format!("http://{}/metrics", cluster.node(id).http);
        let out = Command::new("curl").args(["-sf", &url]).output().unwrap();
        assert!(out.status.success(), "curl {url}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(metrics(leader).contains("kvstore_raft_is_leader{group=\"1\"} 1"));
    let follower_id = if leader == 1 { 2 } else { 1 };
    let text = metrics(follower_id);
    assert!(
        text.contains("kvstore_raft_is_leader{group=\"1\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE kvstore_raft_messages_total counter"),
        "{text}"
    );
}
