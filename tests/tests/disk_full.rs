//! A full disk, for real: the data directory is a small tmpfs. Writes that do not fit get a
//! typed error that says why, nothing half-written is left behind, reads and other clients
//! keep being served, writes resume once there is room, and every acknowledged write survives
//! a restart.

use bytes::Bytes;
use kvstore::client::ClientError;
use kvstore::wire::ErrorCode;
use tests::harness::{connect, runtime, Server, ServerOptions, TempDir, TmpfsMount};

#[test]
fn a_full_disk_fails_writes_cleanly_and_loses_nothing() {
    let rt = runtime();
    let dir = TempDir::new("disk-full");
    let disk = TmpfsMount::new(&dir.path.join("data"), 4 * 1024 * 1024).unwrap();
    // Ballast we can delete later to make room again.
    std::fs::write(disk.path.join("ballast"), vec![0u8; 1024 * 1024]).unwrap();
    let mut server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    let value = Bytes::from(vec![b'x'; 64 * 1024]);

    let acked = rt.block_on(async {
        let client = connect(&server).await;
        let mut acked = Vec::new();
        let error = loop {
            let key = format!("k{:04}", acked.len());
            match client.put("default", key.as_bytes(), &value).await {
                Ok(_) => acked.push(key),
                Err(error) => break error,
            }
            assert!(acked.len() < 1000, "a 4 MiB disk cannot hold 64 MiB");
        };
        match &error {
            ClientError::Server {
                code: ErrorCode::Storage,
                message,
            } => {
                assert!(message.contains("No space left on device"), "{message}")
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
        // The process keeps serving: reads, pings, and other connections.
        assert!(client
            .get("default", acked[0].as_bytes())
            .await
            .unwrap()
            .is_some());
        let other = connect(&server).await;
        other.ping().await.unwrap();
        assert_eq!(other.get("default", b"nope").await.unwrap(), None);
        acked
    });
    assert!(acked.len() > 10, "some writes fit: {}", acked.len());

    // Make room: writes work again (the failed append left nothing behind).
    std::fs::remove_file(disk.path.join("ballast")).unwrap();
    rt.block_on(async {
        let client = connect(&server).await;
        client
            .put("default", b"after", b"room again")
            .await
            .unwrap();
    });

    // Every acknowledged write is there after a restart.
    server.restart().unwrap();
    rt.block_on(async {
        let client = connect(&server).await;
        for key in &acked {
            let got = client.get("default", key.as_bytes()).await.unwrap();
            assert_eq!(got.map(|v| v.value.len()), Some(value.len()), "{key}");
        }
        assert!(client.get("default", b"after").await.unwrap().is_some());
    });
    drop(server);
}

/// A cluster node fails stop instead: once its Raft log cannot be written it exits with the
/// reason (its peers carry on without it), and after room is made it restarts with every
/// acknowledged write.
#[test]
fn a_cluster_node_whose_log_cannot_be_written_stops_and_loses_nothing() {
    let rt = runtime();
    let dir = TempDir::new("disk-full-node");
    let disk = TmpfsMount::new(&dir.path.join("data"), 4 * 1024 * 1024).unwrap();
    std::fs::write(disk.path.join("ballast"), vec![0u8; 1024 * 1024]).unwrap();
    let peer = tests::harness::free_ports(1)[0];
    let options = ServerOptions {
        args: [
            "--node-id",
            "1",
            "--peers",
            &format!("1=127.0.0.1:{peer}"),
            "--peer-listen",
            &format!("127.0.0.1:{peer}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..ServerOptions::default()
    };
    let mut server = Server::start(&dir.path, options).unwrap();
    let value = vec![b'x'; 64 * 1024];
    let acked = rt.block_on(async {
        let client = kvstore::client::cluster::ClusterClient::new(
            vec![server.addr.to_string()],
            kvstore::client::cluster::ClusterConfig {
                deadline_ms: 3_000,
                ..Default::default()
            },
        );
        let mut acked = Vec::new();
        loop {
            let key = format!("k{:04}", acked.len());
            match client
                .put("default", key.as_bytes(), &value, Default::default())
                .await
            {
                Ok(_) => acked.push(key),
                Err(_) => break,
            }
            assert!(acked.len() < 1000, "a 4 MiB disk cannot hold 64 MiB");
        }
        acked
    });
    assert!(acked.len() > 10, "some writes fit: {}", acked.len());
    let stopped = tests::harness::wait_until(std::time::Duration::from_secs(10), || {
        server.log().contains("the node stopped")
    });
    assert!(stopped, "the node stopped:\n{}", server.log());
    assert!(
        server.log().contains("No space left on device"),
        "{}",
        server.log()
    );

    std::fs::remove_file(disk.path.join("ballast")).unwrap();
    server.restart().unwrap();
    rt.block_on(async {
        let client = kvstore::client::cluster::ClusterClient::new(
            vec![server.addr.to_string()],
            Default::default(),
        );
        for key in &acked {
            let got = client
                .get(
                    "default",
                    key.as_bytes(),
                    kvstore::wire::Consistency::Linearizable,
                )
                .await
                .unwrap();
            assert_eq!(got.map(|v| v.value.len()), Some(value.len()), "{key}");
        }
    });
}
