//! Crash recovery with a real `kvstore serve` process: SIGKILL in the middle of a stream of
//! acknowledged writes, then tails damaged by hand (truncated, overwritten with garbage) and a
//! record damaged in the middle of a segment.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tests::harness::{connect, runtime, Server, ServerOptions, TempDir};

fn segments(server: &Server) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = fs::read_dir(&server.data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

#[test]
fn sigkill_during_acknowledged_writes_loses_none_of_them() {
    let rt = runtime();
    let dir = TempDir::new("sigkill");
    let mut server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();

    rt.block_on(async {
        let client = connect(&server).await;
        let mut writers = Vec::new();
        for w in 0..16 {
            let client = client.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("w{w:02}-{i:06}");
                    let value = format!("value of {key} {}", "x".repeat(i % 200));
                    match client
                        .put("default", key.as_bytes(), value.as_bytes())
                        .await
                    {
                        Ok(_) => {
                            acked.lock().unwrap().insert(key, value);
                        }
                        Err(_) => break, // the server died under us: outcome unknown, not acked
                    }
                }
            }));
        }
        // Let a few thousand writes be acknowledged, then kill the server mid-stream.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < 3000 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill().unwrap();
        for w in writers {
            w.await.unwrap();
        }
    });

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 3000,
        "only {} writes were acknowledged",
        acked.len()
    );
    server.restart().unwrap();
    rt.block_on(async {
        let client = connect(&server).await;
        let mut missing = Vec::new();
        for (key, value) in &acked {
            match client.get("default", key.as_bytes()).await.unwrap() {
                Some(found) if found.value == value.as_bytes() => {}
                other => missing.push((key.clone(), other.map(|v| v.value))),
            }
        }
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged writes lost or wrong after SIGKILL, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
    });
}

/// Writes `n` keys, then SIGKILLs the server.
fn populate_and_kill(server: &mut Server, rt: &tokio::runtime::Runtime, n: usize) {
    rt.block_on(async {
        let client = connect(server).await;
        for i in 0..n {
            client
                .put("default", format!("key{i:03}").as_bytes(), b"some value")
                .await
                .unwrap();
        }
    });
    server.kill().unwrap();
}

fn count_keys(server: &Server, rt: &tokio::runtime::Runtime, n: usize) -> Vec<bool> {
    rt.block_on(async {
        let client = connect(server).await;
        let mut present = Vec::new();
        for i in 0..n {
            present.push(
                client
                    .get("default", format!("key{i:03}").as_bytes())
                    .await
                    .unwrap()
                    .is_some(),
            );
        }
        present
    })
}

#[test]
fn a_tail_truncated_by_hand_is_cut_at_the_last_whole_record() {
    let rt = runtime();
    let dir = TempDir::new("truncated");
    let mut server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    populate_and_kill(&mut server, &rt, 50);
    let seg = segments(&server).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    server.restart().unwrap();
    let present = count_keys(&server, &rt, 50);
    assert!(
        present[..49].iter().all(|p| *p),
        "every record before the cut survives"
    );
    assert!(!present[49], "the torn last record is dropped");
    let log = server.log();
    assert!(
        log.contains("torn tail truncated"),
        "recovery says what it dropped:\n{log}"
    );
    assert!(log.contains("bytes dropped"), "{log}");
}

#[test]
fn a_tail_overwritten_with_garbage_is_dropped_and_the_rest_survives() {
    let rt = runtime();
    let dir = TempDir::new("garbage");
    let mut server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    populate_and_kill(&mut server, &rt, 50);
    let seg = segments(&server).pop().unwrap();
    let mut data = fs::read(&seg).unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    data.extend_from_slice(&garbage);
    fs::write(&seg, &data).unwrap();

    server.restart().unwrap();
    assert!(count_keys(&server, &rt, 50).iter().all(|p| *p));
    assert!(
        server.log().contains("4096 bytes dropped"),
        "{}",
        server.log()
    );
}

#[test]
fn corruption_in_the_middle_of_a_segment_stops_startup_with_file_and_offset() {
    let rt = runtime();
    let dir = TempDir::new("midcorrupt");
    let mut server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    populate_and_kill(&mut server, &rt, 50);
    let seg = segments(&server).pop().unwrap();
    let mut data = fs::read(&seg).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    fs::write(&seg, &data).unwrap();

    let (status, log) = server.start_expecting_failure().unwrap();
    assert!(!status.success());
    assert!(log.contains("corrupt data in"), "{log}");
    assert!(
        log.contains(&seg.display().to_string()),
        "names the segment: {log}"
    );
    assert!(log.contains("at byte offset"), "names the offset: {log}");
}

#[test]
fn a_data_directory_of_an_unknown_format_version_is_refused() {
    let rt = runtime();
    let dir = TempDir::new("format");
    let mut server = Server::start(&dir.path, ServerOptions::default()).unwrap();
    populate_and_kill(&mut server, &rt, 1);
    fs::write(
        server.data_dir.join("KVSTORE_FORMAT"),
        "kvstore data directory\nformat_version=7\n",
    )
    .unwrap();
    let (status, log) = server.start_expecting_failure().unwrap();
    assert!(!status.success());
    assert!(log.contains("format version 7"), "{log}");
}
