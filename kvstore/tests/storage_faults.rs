//! The engine's failure paths, driven by injected IO faults (`storage::fault`): a failed append,
//! a failed fsync (in the syncer and at rotation), and a compaction failing before and after it
//! records its inputs. Each checks what the caller is told, whether writes continue or stop as
//! documented, and that a restart finds everything that was acknowledged, and nothing that was
//! deleted.

mod common;
use common::{contents, file_names, TempDir};

use std::collections::BTreeMap;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kvstore::storage::fault::{FailNth, FaultInjector, IoOp};
use kvstore::storage::{Config, Engine, FsyncPolicy, Maintenance, StorageError, SystemClock};

fn config(fsync: FsyncPolicy, faults: Option<Arc<dyn FaultInjector>>) -> Config {
    Config {
        fsync,
        segment_bytes_max: 2048,
        maintenance: Maintenance::Manual,
        faults,
        ..Config::default()
    }
}

fn open(dir: &Path, config: Config) -> Engine {
    Engine::open(dir, config, Arc::new(SystemClock)).expect("open")
}

fn put(e: &Engine, key: &str, value: &str) -> Result<u64, StorageError> {
    let value = Bytes::copy_from_slice(value.as_bytes());
    let (_, w) = e.write(None, |t| t.put(key.as_bytes(), value, 0))?;
    Ok(w.version.expect("a put writes"))
}

#[test]
fn a_failed_append_fails_that_write_only() {
    let dir = TempDir::new("append");
    let faults: Arc<dyn FaultInjector> = Arc::new(FailNth::once(IoOp::Append, 3));
    let e = open(&dir.0, config(FsyncPolicy::Never, Some(faults)));
    put(&e, "a", "1").unwrap();
    put(&e, "b", "2").unwrap();
    let failed = put(&e, "c", "3").unwrap_err();
    assert!(failed.to_string().contains("injected fault"), "{failed}");
    assert_eq!(
        e.get(b"c").unwrap(),
        None,
        "nothing of the failed write is visible"
    );
    put(&e, "d", "4").unwrap();
    let expected: BTreeMap<String, String> = [("a", "1"), ("b", "2"), ("d", "4")]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    assert_eq!(contents(&e), expected);
    drop(e);
    assert_eq!(
        contents(&open(&dir.0, config(FsyncPolicy::Never, None))),
        expected
    );
}

#[test]
fn a_failed_fsync_fails_its_waiters_and_stops_writes() {
    let dir = TempDir::new("fsync");
    let faults: Arc<dyn FaultInjector> = Arc::new(FailNth::from(IoOp::Sync, 2));
    let e = open(&dir.0, config(FsyncPolicy::Always, Some(faults)));
    let v1 = put(&e, "durable", "1").unwrap();
    e.wait_durable(v1).unwrap();
    let v2 = put(&e, "unsure", "2").unwrap();
    let waited = e.wait_durable(v2);
    assert!(
        matches!(waited, Err(StorageError::Poisoned { .. })),
        "{waited:?}"
    );
    // Async waiters are woken with the error too, not left waiting forever.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let waited = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), e.wait_durable_async(v2)).await
    });
    assert!(
        matches!(waited, Ok(Err(StorageError::Poisoned { .. }))),
        "{waited:?}"
    );
    assert!(matches!(
        put(&e, "later", "3"),
        Err(StorageError::Poisoned { .. })
    ));
    drop(e);
    // A restart re-reads the log: what was acknowledged is there.
    let e = open(&dir.0, config(FsyncPolicy::Always, None));
    assert!(e.get(b"durable").unwrap().is_some());
    put(&e, "later", "3").unwrap();
}

#[test]
fn a_failed_fsync_at_rotation_fails_the_write_and_stops_writes() {
    let dir = TempDir::new("rotate");
    // With fsync=never the only fsync on the write path is the one sealing a full segment.
    let faults: Arc<dyn FaultInjector> = Arc::new(FailNth::from(IoOp::Sync, 1));
    let e = open(&dir.0, config(FsyncPolicy::Never, Some(faults)));
    let mut acked = Vec::new();
    let error = loop {
        let key = format!("k{:03}", acked.len());
        match put(&e, &key, &"v".repeat(100)) {
            Ok(_) => acked.push(key),
            Err(error) => break error,
        }
        assert!(acked.len() < 100, "2 KiB segments must rotate");
    };
    assert!(
        matches!(
            error,
            StorageError::Poisoned { .. } | StorageError::Io { .. }
        ),
        "{error}"
    );
    assert!(matches!(
        put(&e, "after", "x"),
        Err(StorageError::Poisoned { .. })
    ));
    drop(e);
    let e = open(&dir.0, config(FsyncPolicy::Never, None));
    for key in &acked {
        assert!(e.get(key.as_bytes()).unwrap().is_some(), "{key}");
    }
}

/// Fills several segments with overwritten and deleted keys, so a compaction has several
/// outputs and tombstones to drop.
fn churn(e: &Engine) -> BTreeMap<String, String> {
    let mut model = BTreeMap::new();
    for round in 0..4 {
        for k in 0..40 {
            let key = format!("key{k:02}");
            if (k + round) % 4 == 0 {
                e.write(None, |t| t.delete(key.as_bytes())).unwrap();
                model.remove(&key);
            } else {
                let value = format!("round {round} {}", "z".repeat(60));
                put(e, &key, &value).unwrap();
                model.insert(key, value);
            }
        }
    }
    model
}

#[test]
fn a_compaction_failing_before_its_marker_leaves_no_outputs_behind() {
    for (op, nth) in [(IoOp::WriteOutput, 2), (IoOp::Rename, 2), (IoOp::Create, 2)] {
        let dir = TempDir::new(&format!("compact-before-{op:?}"));
        // Set up without faults, then reopen with the fault armed for the compaction alone.
        let model = churn(&open(&dir.0, config(FsyncPolicy::Never, None)));
        let faults = Arc::new(FailNth::once(op, nth));
        let shared: Arc<dyn FaultInjector> = faults.clone();
        let e = open(&dir.0, config(FsyncPolicy::Never, Some(shared)));
        let before: Vec<String> = file_names(&dir.0);
        let failed = e.compact();
        assert!(
            failed.is_err(),
            "{op:?}: the injected fault fails the compaction"
        );
        assert!(faults.seen() >= nth, "{op:?} #{nth} was reached");
        // Only the segment the compaction rotated to may be new; no output survives.
        let new: Vec<String> = file_names(&dir.0)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        assert!(
            new.len() <= 1 && new.iter().all(|f| f.ends_with(".seg")),
            "{op:?}: {new:?}"
        );
        assert_eq!(contents(&e), model, "{op:?}: nothing changes for readers");

        // The scenario that orphaned outputs would break: delete keys an output held, let a
        // later compaction drop the tombstones, restart. The deleted keys must stay deleted.
        let mut model = model;
        for key in ["key01", "key02", "key03"] {
            e.write(None, |t| t.delete(key.as_bytes())).unwrap();
            model.remove(key);
        }
        e.compact().unwrap();
        assert_eq!(contents(&e), model, "{op:?}");
        drop(e);
        assert_eq!(
            contents(&open(&dir.0, config(FsyncPolicy::Never, None))),
            model,
            "{op:?}"
        );
    }
}

#[test]
fn a_compaction_failing_after_its_marker_poisons_and_a_restart_finishes_it() {
    let dir = TempDir::new("compact-after");
    let model = churn(&open(&dir.0, config(FsyncPolicy::Never, None)));
    let faults: Arc<dyn FaultInjector> = Arc::new(FailNth::once(IoOp::Remove, 1));
    let e = open(&dir.0, config(FsyncPolicy::Never, Some(faults)));
    assert!(e.compact().is_err());
    assert!(matches!(
        put(&e, "x", "y"),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(
        e.compact().is_err(),
        "no second compaction may overwrite the marker"
    );
    assert_eq!(contents(&e), model, "reads go on");
    drop(e);
    let e = open(&dir.0, config(FsyncPolicy::Never, None));
    assert!(
        !file_names(&dir.0).contains(&"COMPACTION_DONE".to_string()),
        "the restart finished it"
    );
    assert_eq!(contents(&e), model);
    put(&e, "x", "y").unwrap();
}

/// With appends held in memory (`write_buffer_bytes`) a failed write of what is held fails the
/// sync that asked for it, not the writes: they stay readable and held, and the next sync
/// writes them (from the same offset, over whatever part the failure left).
#[test]
fn a_failed_write_of_held_appends_fails_the_sync_and_the_next_one_writes_them() {
    let dir = TempDir::new("held-append");
    let faults: Arc<dyn FaultInjector> = Arc::new(FailNth::once(IoOp::Append, 1));
    let held = Config {
        segment_bytes_max: 1 << 20,
        write_buffer_bytes: 64 * 1024,
        ..config(FsyncPolicy::Never, Some(faults))
    };
    let e = open(&dir.0, held.clone());
    let value = "h".repeat(100);
    for k in 0..20 {
        put(&e, &format!("k{k:02}"), &value).unwrap();
    }
    let failed = e.sync().unwrap_err();
    assert!(failed.to_string().contains("injected fault"), "{failed}");
    assert_eq!(e.get(b"k07").unwrap().unwrap().value, value.as_bytes());
    put(&e, "after", "1").unwrap();
    e.sync().unwrap();
    let expected = contents(&e);
    assert_eq!(expected.len(), 21);
    drop(e);
    assert_eq!(contents(&open(&dir.0, held)), expected);
}
