//! The Rust client, the CLI and the HTTP admin port against a real server: pipelined
//! concurrency, compare-and-set, atomic batches, paged scans, TTL, documented exit codes,
//! metrics, and graceful shutdown that finishes in-flight writes.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kvstore::client::{ClientError, PutOptions, ScanOptions};
use kvstore::wire::{BatchOp, Condition, ErrorCode, Response, ScanRange};
use tests::harness::{connect, kvstore_bin, runtime, Server, ServerOptions, TempDir};

#[test]
fn one_connection_carries_many_concurrent_requests() {
    let rt = runtime();
    let dir = TempDir::new("pipeline");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    rt.block_on(async {
        let client = connect(&server).await;
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let client = client.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        let key = format!("t{t}-{i}");
                        client
                            .put("pipe", key.as_bytes(), key.as_bytes())
                            .await
                            .unwrap();
                        let got = client.get("pipe", key.as_bytes()).await.unwrap().unwrap();
                        assert_eq!(
                            got.value,
                            key.as_bytes(),
                            "each response reaches its caller"
                        );
                    }
                    client.incr("pipe", b"counter", 1).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            client.incr("pipe", b"counter", 0).await.unwrap(),
            64,
            "increments are atomic"
        );
    });
}

#[test]
fn compare_and_set_batches_scans_and_ttl() {
    let rt = runtime();
    let dir = TempDir::new("api");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    rt.block_on(async {
        let c = connect(&server).await;
        // CAS: create-if-absent with version 0, then swap only from the version we read.
        let created = c.cas("ks", b"doc", 0, b"v1").await.unwrap();
        assert!(created.applied);
        assert!(!c.cas("ks", b"doc", 0, b"again").await.unwrap().applied);
        let stale = c
            .cas("ks", b"doc", created.version + 100, b"v2")
            .await
            .unwrap();
        assert_eq!((stale.applied, stale.version), (false, created.version));
        let swapped = c.cas("ks", b"doc", created.version, b"v2").await.unwrap();
        assert!(swapped.applied && swapped.version > created.version);
        let got = c.get("ks", b"doc").await.unwrap().unwrap();
        assert_eq!((&got.value[..], got.version), (&b"v2"[..], swapped.version));

        // A batch is all or nothing.
        let ops = vec![
            BatchOp::Put {
                key: "x".into(),
                value: "1".into(),
                ttl_ms: None,
                condition: Condition::None,
            },
            BatchOp::Put {
                key: "doc".into(),
                value: "lost".into(),
                ttl_ms: None,
                condition: Condition::IfAbsent,
            },
        ];
        match c.batch("ks", ops).await.unwrap() {
            Response::BatchOk {
                applied: false,
                failed_op: Some(1),
                ..
            } => {}
            other => panic!("expected the second op to fail, got {other:?}"),
        }
        assert!(c.get("ks", b"x").await.unwrap().is_none());

        // Keyspaces are separate; scans page in key order with a continuation token.
        for i in 0..30 {
            c.put("ks", format!("item:{i:02}").as_bytes(), b"v")
                .await
                .unwrap();
            c.put("other", format!("item:{i:02}").as_bytes(), b"v")
                .await
                .unwrap();
        }
        let mut keys = Vec::new();
        let mut continuation = None;
        loop {
            let options = ScanOptions {
                range: ScanRange {
                    prefix: Some(Bytes::from("item:")),
                    ..Default::default()
                },
                limit: 7,
                continuation: continuation.take(),
                keys_only: true,
                ..Default::default()
            };
            let page = c.scan("ks", options).await.unwrap();
            keys.extend(
                page.entries
                    .into_iter()
                    .map(|e| String::from_utf8(e.key.to_vec()).unwrap()),
            );
            match page.continuation {
                Some(t) => continuation = Some(t),
                None => break,
            }
        }
        assert_eq!(
            keys,
            (0..30).map(|i| format!("item:{i:02}")).collect::<Vec<_>>()
        );

        // TTL: the key is there, then (polling, not sleeping a fixed time) it is gone.
        let options = PutOptions {
            ttl_ms: Some(300),
            condition: Condition::None,
        };
        c.put_with("ks", b"ephemeral", b"soon gone", options)
            .await
            .unwrap();
        let first = c.get("ks", b"ephemeral").await.unwrap().unwrap();
        assert!(first.expires_at_ms.is_some());
        let mut gone = false;
        for _ in 0..300 {
            if c.get("ks", b"ephemeral").await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone, "the key expired");

        // Typed errors for bad arguments.
        match c.incr("ks", b"doc", 1).await {
            Err(ClientError::Server {
                code: ErrorCode::NotAnInteger,
                ..
            }) => {}
            other => panic!("expected NotAnInteger, got {other:?}"),
        }
        match c.get("bad keyspace!", b"k").await {
            Err(ClientError::Server {
                code: ErrorCode::InvalidArgument,
                message,
            }) => {
                assert!(message.contains("keyspace"), "{message}")
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    });
}

fn cli(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(kvstore_bin())
        .args(args)
        .args(["--addr", &server.addr.to_string()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_prints_results_and_exits_with_documented_codes() {
    let dir = TempDir::new("cli");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    let (code, out, _) = cli(&server, &["put", "greeting", "hello world"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("OK version "), "{out}");
    assert_eq!(
        cli(&server, &["get", "greeting"]),
        (0, "hello world\n".into(), String::new())
    );
    let (code, _, err) = cli(&server, &["get", "nope"]);
    assert_eq!((code, err.trim()), (1, "kvstore: key not found: nope"));
    let (code, _, err) = cli(&server, &["put", "greeting", "x", "--if-absent"]);
    assert_eq!(code, 5, "{err}");
    assert_eq!(cli(&server, &["incr", "n", "--by", "-3"]).1, "-3\n");
    let (code, _, err) = cli(&server, &["incr", "greeting"]);
    assert_eq!(code, 4, "server refusal: {err}");
    assert_eq!(cli(&server, &["del", "greeting"]).0, 0);
    assert_eq!(cli(&server, &["del", "greeting"]).0, 1);
    assert_eq!(cli(&server, &["scan"]).1, "n\t-3\n");
    let (code, _, err) = cli(&server, &["get", "k", "--keyspace", "no spaces allowed"]);
    assert_eq!(code, 4, "{err}");

    // A server that is not there.
    let out = Command::new(kvstore_bin())
        .args(["ping", "--addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

fn curl(url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (body.trim_end().to_string(), status.to_string())
}

#[test]
fn health_metrics_and_status_over_http() {
    let rt = runtime();
    let dir = TempDir::new("http");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    rt.block_on(async {
        let c = connect(&server).await;
        for i in 0..10 {
            c.put("default", format!("k{i}").as_bytes(), b"v")
                .await
                .unwrap();
        }
        c.get("default", b"k1").await.unwrap();
    });
    let base = format!("http://{}", server.http);
    assert_eq!(curl(&format!("{base}/health")), ("ok".into(), "200".into()));
    let (metrics, status) = curl(&format!("{base}/metrics"));
    assert_eq!(status, "200");
    for line in [
        "kvstore_ops_total{op=\"put\"} 10",
        "kvstore_ops_total{op=\"get\"} 1",
        "kvstore_keys 10",
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
    assert!(metrics.contains("kvstore_op_duration_seconds_bucket{op=\"put\",le=\"+Inf\"} 10"));
    let (body, _) = curl(&format!("{base}/status"));
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["storage"]["keys"], 10);
    assert_eq!(status["fsync"], "always");
    let compact = Command::new("curl")
        .args(["-s", "-X", "POST", &format!("{base}/admin/compact")])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&compact.stdout).unwrap();
    assert_eq!(report["records_kept"], 10);
}

#[test]
fn sigterm_finishes_in_flight_writes_and_flushes() {
    let rt = runtime();
    let dir = TempDir::new("graceful");
    let mut server = Server::start(&dir.path, ServerOptions::fsync_never()).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let status = rt.block_on(async {
        let client = connect(&server).await;
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let client = client.clone();
                let acked = acked.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for i in 0.. {
                        let key = format!("g{w}-{i}");
                        match client.put("default", key.as_bytes(), b"v").await {
                            Ok(_) => {
                                acked.fetch_add(1, Ordering::Relaxed);
                                mine.push(key);
                            }
                            Err(_) => break,
                        }
                    }
                    mine
                })
            })
            .collect();
        while acked.load(Ordering::Relaxed) < 500 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status = server.terminate(Duration::from_secs(20)).unwrap();
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        (status, all)
    });
    let (status, acked_keys) = status;
    assert!(
        status.success(),
        "graceful exit: {status}\n{}",
        server.log()
    );
    assert!(
        server.log().contains("shutdown complete"),
        "{}",
        server.log()
    );
    // fsync=never, yet a clean shutdown flushed everything acknowledged.
    server.restart().unwrap();
    rt.block_on(async {
        let client = connect(&server).await;
        for key in &acked_keys {
            assert!(
                client
                    .get("default", key.as_bytes())
                    .await
                    .unwrap()
                    .is_some(),
                "{key} lost"
            );
        }
    });
}

/// Requests pipelined in one write run as one write group on the server: each write must still
/// get its own version, and a later request must see the earlier ones.
#[test]
fn pipelined_writes_keep_their_own_versions() {
    use bytes::BytesMut;
    use kvstore::wire::{Request, Response};
    use std::io::{Read, Write};
    let dir = TempDir::new("binary-pipeline");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    let put = |v: &str| Request::Put {
        keyspace: "default".into(),
        key: "k".into(),
        value: Bytes::copy_from_slice(v.as_bytes()),
        ttl_ms: None,
        condition: Condition::None,
    };
    let get = Request::Get {
        keyspace: "default".into(),
        key: "k".into(),
        consistency: Default::default(),
    };
    let mut out = BytesMut::new();
    Request::Hello {
        min_version: 1,
        max_version: 1,
        client_name: "t".into(),
        client_id: 0,
    }
    .encode(1, &mut out)
    .unwrap();
    put("one").encode(2, &mut out).unwrap();
    put("two").encode(3, &mut out).unwrap();
    get.encode(4, &mut out).unwrap();
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.write_all(&out).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let mut buf = BytesMut::from(&raw[..]);
    let mut responses = Vec::new();
    while let Some(frame) = kvstore::wire::decode_frame(&mut buf, 1 << 20).unwrap() {
        responses.push(Response::decode(&frame).unwrap());
    }
    let [_, Response::PutOk { version: v1, .. }, Response::PutOk { version: v2, .. }, Response::GetOk {
        found: Some(got), ..
    }] = &responses[..]
    else {
        panic!("unexpected responses {responses:?}");
    };
    assert!(v2 > v1, "each write has its own version: {v1} then {v2}");
    assert_eq!((&got.value[..], got.version), (&b"two"[..], *v2));
}

/// Under `--fsync always` the writes of all connections are grouped by one queue task; many
/// connections incrementing one counter must still lose and duplicate nothing: the values
/// returned are exactly 1 to 1600.
#[test]
fn writes_from_many_connections_grouped_together_stay_atomic() {
    let rt = runtime();
    let dir = TempDir::new("many-connections");
    let server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    let values = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let client = connect(&server).await; // one connection each
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..200 {
                    seen.push(client.incr("default", b"counter", 1).await.unwrap());
                }
                seen
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let mut sorted = values.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=1600).collect::<Vec<i64>>(),
        "every increment applied exactly once"
    );
}
