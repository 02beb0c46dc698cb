//! Storage engine tests through its public API: persistence across reopen, compaction (and a
//! crash at each of its steps), TTL on a manual clock, atomic batches, torn and corrupt files,
//! format versioning, and concurrent readers and writers.

mod common;
use common::{contents, file_names, TempDir};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kvstore::storage::{
    Config, Engine, FsyncPolicy, Maintenance, ManualClock, StorageError, SystemClock, FORMAT_FILE,
};

fn config() -> Config {
    Config {
        fsync: FsyncPolicy::Never,
        segment_bytes_max: 4096,
        maintenance: Maintenance::Manual,
        ..Config::default()
    }
}

fn open(dir: &Path) -> Engine {
    Engine::open(dir, config(), Arc::new(SystemClock)).expect("open")
}

fn put(e: &Engine, key: &str, value: &str) -> u64 {
    let (_, w) = e
        .write(None, |t| {
            t.put(key.as_bytes(), Bytes::copy_from_slice(value.as_bytes()), 0)
        })
        .expect("put");
    w.version.expect("a put writes")
}

fn del(e: &Engine, key: &str) {
    e.write(None, |t| t.delete(key.as_bytes())).expect("delete");
}

/// A small deterministic generator, so every run of the model test is the same.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_operations_match_a_model_across_reopens_and_compactions() {
    random_operations_match_a_model(config(), "model");
}

/// The same with the engine holding appends in memory (`write_buffer_bytes`) and writing them
/// out in pieces: reads of held values, views, rotations, compactions and reopens (a clean
/// close writes what is held) all agree with the model.
#[test]
fn random_operations_match_a_model_with_writes_held_in_memory() {
    let held = Config {
        write_buffer_bytes: 700,
        ..config()
    };
    random_operations_match_a_model(held, "model-held");
}

fn random_operations_match_a_model(config: Config, name: &str) {
    let open = |dir: &Path| Engine::open(dir, config.clone(), Arc::new(SystemClock)).unwrap();
    for seed in 1..=8u64 {
        let dir = TempDir::new(&format!("{name}-{seed}"));
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        let mut engine = open(&dir.0);
        for step in 0..1500 {
            let key = format!("key{:03}", rng.below(120));
            match rng.below(100) {
                0..=54 => {
                    let value = format!("v{step}-{}", "x".repeat(rng.below(80) as usize));
                    put(&engine, &key, &value);
                    model.insert(key, value);
                }
                55..=79 => {
                    del(&engine, &key);
                    model.remove(&key);
                }
                80..=84 => {
                    let start = format!("key{:03}", rng.below(120));
                    let end = format!("key{:03}", rng.below(120));
                    engine
                        .write(None, |t| t.delete_range(start.as_bytes(), end.as_bytes()))
                        .unwrap();
                    model.retain(|k, _| !(k >= &start && k < &end));
                }
                85..=89 => {
                    // A batch: put two keys and delete one, atomically.
                    let other = format!("key{:03}", rng.below(120));
                    let gone = format!("key{:03}", rng.below(120));
                    engine
                        .write(None, |t| {
                            t.put(key.as_bytes(), "batch-a", 0)?;
                            t.put(other.as_bytes(), "batch-b", 0)?;
                            t.delete(gone.as_bytes())
                        })
                        .unwrap();
                    model.insert(key, "batch-a".into());
                    model.insert(other, "batch-b".into());
                    model.remove(&gone);
                }
                90..=94 => {
                    engine.compact().unwrap();
                }
                _ => {
                    drop(engine);
                    engine = open(&dir.0);
                }
            }
            if step % 100 == 0 {
                assert_eq!(contents(&engine), model, "seed {seed} step {step}");
                assert_eq!(
                    view_contents(&engine),
                    model,
                    "seed {seed} step {step}, a view"
                );
                let key = format!("key{:03}", rng.below(120));
                let got = engine.get(key.as_bytes()).unwrap();
                let got = got.map(|v| String::from_utf8(v.value.to_vec()).unwrap());
                assert_eq!(
                    got.as_ref(),
                    model.get(&key),
                    "seed {seed} step {step}, {key}"
                );
            }
        }
        assert_eq!(contents(&engine), model, "seed {seed} at the end");
        drop(engine);
        assert_eq!(
            contents(&open(&dir.0)),
            model,
            "seed {seed} after a final reopen"
        );
    }
}

#[test]
fn reopen_keeps_writes_overwrites_and_deletes() {
    let dir = TempDir::new("reopen");
    let e = open(&dir.0);
    put(&e, "a", "1");
    put(&e, "b", "2");
    put(&e, "a", "3");
    del(&e, "b");
    put(&e, "c", "4");
    let before = e.get(b"a").unwrap().unwrap();
    drop(e);
    let e = open(&dir.0);
    assert_eq!(e.get(b"a").unwrap(), Some(before));
    assert_eq!(e.get(b"b").unwrap(), None);
    assert_eq!(contents(&e).len(), 2);
}

#[test]
fn compaction_shrinks_the_directory_and_survives_reopen() {
    let dir = TempDir::new("compact");
    let e = open(&dir.0);
    for round in 0..20 {
        for k in 0..50 {
            put(
                &e,
                &format!("k{k}"),
                &format!("round {round} {}", "v".repeat(40)),
            );
        }
    }
    let expected = contents(&e);
    let disk_before = dir_bytes(&dir.0);
    let report = e.compact().unwrap();
    let disk_after = dir_bytes(&dir.0);
    assert!(report.segments_in > 1);
    assert!(
        disk_after * 5 < disk_before,
        "20 overwrites per key should shrink the directory by far more than 5x: {disk_before} -> {disk_after}"
    );
    assert_eq!(contents(&e), expected);
    let last = put(&e, "after", "compaction");
    drop(e);
    let e = open(&dir.0);
    let mut expected = expected;
    expected.insert("after".into(), "compaction".into());
    assert_eq!(contents(&e), expected);
    assert!(
        put(&e, "next", "x") > last,
        "versions keep growing after compaction and reopen"
    );
}

#[test]
fn versions_never_go_back_even_when_compaction_drops_the_newest_record() {
    let dir = TempDir::new("versions");
    let e = open(&dir.0);
    put(&e, "a", "1");
    let v = put(&e, "b", "2");
    del(&e, "b"); // the highest version is now a tombstone, which compaction drops
    e.compact().unwrap();
    drop(e);
    let e = open(&dir.0);
    assert!(put(&e, "c", "3") > v + 1);
}

/// Every live key and value of `e`, read through a view (as snapshots are built).
fn view_contents(e: &Engine) -> BTreeMap<String, String> {
    let view = e.view().unwrap();
    view.entries()
        .map(|entry| {
            let entry = entry.unwrap();
            let value = entry.value.expect("a view has values");
            (
                String::from_utf8(entry.key.to_vec()).unwrap(),
                String::from_utf8(value.to_vec()).unwrap(),
            )
        })
        .collect()
}

fn held_config() -> Config {
    Config {
        segment_bytes_max: 1 << 20,
        write_buffer_bytes: 64 * 1024,
        ..config()
    }
}

/// The bytes of `dir`'s segment files.
fn segment_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Writes held in memory are not in the file until the limit, a sync or a close, and reads
/// (point, scan, view) serve them meanwhile; after a sync and after a reopen they are on disk.
#[test]
fn writes_held_in_memory_are_read_from_memory_and_reach_the_file_at_a_sync() {
    let dir = TempDir::new("held");
    let e = Engine::open(&dir.0, held_config(), Arc::new(SystemClock)).unwrap();
    let empty = segment_bytes(&dir.0);
    let value = "v".repeat(200); // longer than the inline limit: read from its record
    for k in 0..100 {
        put(&e, &format!("k{k:03}"), &format!("{k}-{value}"));
    }
    assert_eq!(
        segment_bytes(&dir.0),
        empty,
        "100 small writes are still held"
    );
    assert_eq!(
        e.get(b"k042").unwrap().unwrap().value,
        format!("42-{value}").as_bytes()
    );
    assert_eq!(contents(&e).len(), 100);
    assert_eq!(view_contents(&e), contents(&e));
    e.sync().unwrap();
    let synced = segment_bytes(&dir.0);
    assert!(
        synced > empty + 100 * 200,
        "a sync writes what is held: {synced}"
    );
    // Past the limit, what is held is written without a sync.
    for k in 100..500 {
        put(&e, &format!("k{k:03}"), &format!("{k}-{value}"));
    }
    assert!(
        segment_bytes(&dir.0) > synced,
        "the limit writes what is held"
    );
    let before = contents(&e);
    drop(e);
    let e = Engine::open(&dir.0, held_config(), Arc::new(SystemClock)).unwrap();
    assert_eq!(contents(&e), before, "a clean close writes what is held");
}

/// A crash loses what is held, never more: everything before the last sync survives, and what
/// a restart finds is the writes in order up to some point (the state a replayed log starts
/// from), each whole. The crash is a child process (this test, run again) that aborts.
#[test]
fn a_crash_loses_only_writes_held_since_the_last_sync() {
    const CHILD: &str = "KVSTORE_TEST_HELD_CRASH_DIR";
    let value = |k: usize| format!("{k}-{}", "w".repeat(150));
    if let Some(dir) = std::env::var_os(CHILD) {
        let e = Engine::open(Path::new(&dir), held_config(), Arc::new(SystemClock)).unwrap();
        for k in 0..1000 {
            put(&e, &format!("k{k:04}"), &value(k));
            if k == 600 {
                e.sync().unwrap();
            }
        }
        std::process::abort();
    }
    let dir = TempDir::new("held-crash");
    fs::create_dir_all(&dir.0).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_crash_loses_only_writes_held_since_the_last_sync",
            "--test-threads=1",
        ])
        .env(CHILD, &dir.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborts");
    let e = Engine::open(&dir.0, held_config(), Arc::new(SystemClock)).unwrap();
    let found = contents(&e);
    let n = found.len();
    assert!(n > 600, "everything up to the sync survives: {n} keys");
    assert!(
        n < 1000,
        "the writes held since the last sync are lost: {n} keys"
    );
    let expected: BTreeMap<String, String> =
        (0..n).map(|k| (format!("k{k:04}"), value(k))).collect();
    assert_eq!(found, expected, "a prefix of the writes, each whole");
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Rebuilds, from a copy taken before a compaction and the directory after it, the directory as
/// a crash would leave it at each step of the compaction, and checks that each opens with the
/// same contents.
#[test]
fn a_crash_at_any_step_of_compaction_loses_nothing() {
    let base = TempDir::new("crash-compact");
    let live = base.0.join("live");
    let before = base.0.join("before");
    let e = open(&live);
    for round in 0..6 {
        for k in 0..40 {
            if (k + round) % 5 == 0 {
                del(&e, &format!("k{k}"));
            } else {
                put(
                    &e,
                    &format!("k{k}"),
                    &format!("r{round}-{}", "z".repeat(30)),
                );
            }
        }
    }
    e.write(None, |t| t.delete_range(b"k3", b"k4")).unwrap();
    let expected = contents(&e);
    e.sync().unwrap();
    copy_dir(&live, &before);
    let old_segments: Vec<String> = file_names(&before)
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    e.compact().unwrap();
    drop(e);
    let after_names = file_names(&live);
    let outputs: Vec<&String> = after_names
        .iter()
        .filter(|n| !file_names(&before).contains(n) && n.ends_with(".seg"))
        .filter(|n| after_names.contains(&n.replace(".seg", ".hint"))) // not the new active one
        .collect();
    assert!(!outputs.is_empty());

    let scenario = |name: &str, build: &dyn Fn(&Path)| {
        let dir = base.0.join(name);
        copy_dir(&before, &dir);
        build(&dir);
        let e = open(&dir);
        assert_eq!(contents(&e), expected, "crash scenario {name}");
        assert!(
            !dir.join("COMPACTION_DONE").exists(),
            "{name}: marker finished"
        );
    };
    let add_outputs = |dir: &Path| {
        for out in &outputs {
            fs::copy(live.join(out), dir.join(out)).unwrap();
            let hint = out.replace(".seg", ".hint");
            fs::copy(live.join(&hint), dir.join(&hint)).unwrap();
        }
    };
    scenario("half-written-output", &|dir| {
        let data = fs::read(live.join(outputs[0])).unwrap();
        fs::write(
            dir.join(format!("{}.tmp", outputs[0])),
            &data[..data.len() / 2],
        )
        .unwrap();
    });
    scenario("outputs-without-marker", &|dir| add_outputs(dir));
    let marker: String = old_segments
        .iter()
        .map(|n| format!("{}\n", n.trim_end_matches(".seg").parse::<u64>().unwrap()))
        .collect();
    scenario("marker-written", &|dir| {
        add_outputs(dir);
        fs::write(dir.join("COMPACTION_DONE"), &marker).unwrap();
    });
    scenario("some-inputs-deleted", &|dir| {
        add_outputs(dir);
        fs::write(dir.join("COMPACTION_DONE"), &marker).unwrap();
        for old in old_segments.iter().rev().take(old_segments.len() / 2) {
            fs::remove_file(dir.join(old)).unwrap();
        }
    });
}

#[test]
fn ttl_expires_on_the_engine_clock() {
    let dir = TempDir::new("ttl");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let e = Engine::open(&dir.0, config(), clock.clone()).unwrap();
    e.write(None, |t| t.put(b"short", "s", 1_000_500)).unwrap();
    e.write(None, |t| t.put(b"forever", "f", 0)).unwrap();
    assert_eq!(
        e.get(b"short").unwrap().unwrap().expires_at_ms,
        Some(1_000_500)
    );
    clock.advance_ms(499);
    assert!(e.get(b"short").unwrap().is_some());
    clock.advance_ms(1);
    assert_eq!(e.get(b"short").unwrap(), None, "expired at its deadline");
    assert_eq!(e.scan(b"", b"", 10, true).unwrap().len(), 1);
    assert_eq!(e.count(b"", b""), 1);
    assert_eq!(e.purge_expired(), 1);
    drop(e);
    let e = Engine::open(&dir.0, config(), clock).unwrap();
    assert_eq!(e.get(b"short").unwrap(), None, "still expired after reopen");
    assert!(e.get(b"forever").unwrap().is_some());
}

#[test]
fn a_failed_transaction_writes_nothing() {
    let dir = TempDir::new("txn");
    let e = open(&dir.0);
    put(&e, "a", "1");
    let result: Result<((), _), StorageError> = e.write(None, |t| {
        t.put(b"a", "2", 0)?;
        t.put(&vec![b'k'; 70_000], "too long a key", 0)
    });
    assert!(matches!(
        result,
        Err(StorageError::KeyTooLarge { len: 70_000, .. })
    ));
    assert_eq!(&e.get(b"a").unwrap().unwrap().value[..], b"1");
}

#[test]
fn truncated_tail_is_dropped_and_earlier_writes_survive() {
    let dir = TempDir::new("torn");
    let e = open(&dir.0);
    put(&e, "first", "1");
    put(&e, "second", "2");
    drop(e);
    let seg = newest_segment(&dir.0);
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let e = open(&dir.0);
    assert!(e.get(b"first").unwrap().is_some());
    assert_eq!(e.get(b"second").unwrap(), None, "the torn record is gone");
    put(&e, "third", "3");
    drop(e);
    let e = open(&dir.0);
    assert_eq!(
        contents(&e).keys().cloned().collect::<Vec<_>>(),
        ["first", "third"]
    );
}

#[test]
fn garbage_tail_is_dropped() {
    let dir = TempDir::new("garbage");
    let e = open(&dir.0);
    put(&e, "kept", "1");
    drop(e);
    let seg = newest_segment(&dir.0);
    let mut data = fs::read(&seg).unwrap();
    data.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    fs::write(&seg, &data).unwrap();
    let e = open(&dir.0);
    assert_eq!(contents(&e).len(), 1);
}

#[test]
fn corruption_in_the_middle_is_reported_with_file_and_offset() {
    let dir = TempDir::new("corrupt");
    let e = open(&dir.0);
    put(&e, "a", "1");
    put(&e, "b", "2");
    put(&e, "c", "3");
    drop(e);
    let seg = newest_segment(&dir.0);
    let mut data = fs::read(&seg).unwrap();
    let second = 16 + 29 + 1 + 1; // segment header, then the first record: header, key, value
    data[second + 29] ^= 0x55; // the second record's key; a valid third record follows
    fs::write(&seg, &data).unwrap();
    match Engine::open(&dir.0, config(), Arc::new(SystemClock)) {
        Err(StorageError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, second as u64);
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn unknown_format_version_is_refused_clearly() {
    let dir = TempDir::new("format");
    drop(open(&dir.0));
    fs::write(
        dir.0.join(FORMAT_FILE),
        "kvstore data directory\nformat_version=99\n",
    )
    .unwrap();
    let err = Engine::open(&dir.0, config(), Arc::new(SystemClock)).unwrap_err();
    assert!(matches!(err, StorageError::UnsupportedFormat { .. }));
    let message = err.to_string();
    assert!(
        message.contains("99") && message.contains("version 1"),
        "{message}"
    );
}

#[test]
fn a_directory_is_opened_by_one_engine_at_a_time() {
    let dir = TempDir::new("lock");
    let _first = open(&dir.0);
    assert!(matches!(
        Engine::open(&dir.0, config(), Arc::new(SystemClock)),
        Err(StorageError::Locked { .. })
    ));
}

#[test]
fn hints_are_used_after_restart_and_agree_with_a_scan() {
    let dir = TempDir::new("hints");
    let e = open(&dir.0);
    for k in 0..300 {
        put(&e, &format!("k{k:04}"), "some value that fills segments");
    }
    assert!(e.write_missing_hints().unwrap() > 0);
    let expected = contents(&e);
    drop(e);
    assert!(file_names(&dir.0).iter().any(|n| n.ends_with(".hint")));
    assert_eq!(contents(&open(&dir.0)), expected);
}

#[test]
fn group_commit_makes_concurrent_writes_durable_with_shared_fsyncs() {
    let dir = TempDir::new("group");
    let cfg = Config {
        fsync: FsyncPolicy::Always,
        ..config()
    };
    let e = Engine::open(&dir.0, cfg, Arc::new(SystemClock)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let key = format!("t{t}-{i}");
                    let (_, w) = e
                        .write(None, |txn| txn.put(key.as_bytes(), "v", 0))
                        .unwrap();
                    e.wait_durable(w.version.unwrap()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = e.stats();
    assert_eq!(stats.keys, 400);
    assert!(stats.durable_version >= 400);
    assert!(
        stats.fsyncs <= 400,
        "never more than one fsync per write: {}",
        stats.fsyncs
    );
}

#[test]
fn readers_see_whole_batches_while_writers_run() {
    let dir = TempDir::new("concurrent");
    let e = open(&dir.0);
    let writer = {
        let e = e.clone();
        std::thread::spawn(move || {
            for i in 0..2000u32 {
                let v = Bytes::from(i.to_string());
                e.write(None, |t| {
                    t.put(b"x", v.clone(), 0)?;
                    t.put(b"y", v.clone(), 0)
                })
                .unwrap();
                if i % 500 == 0 {
                    e.compact().unwrap();
                }
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let pair = e.scan(b"x", b"z", 2, false).unwrap();
        if pair.len() == 2 {
            assert_eq!(pair[0].value, pair[1].value, "a batch is seen whole");
            assert_eq!(pair[0].version, pair[1].version);
        }
        reads += 1;
    }
    writer.join().unwrap();
}

fn newest_segment(dir: &Path) -> PathBuf {
    let name = file_names(dir)
        .into_iter()
        .rfind(|n| n.ends_with(".seg"))
        .unwrap();
    dir.join(name)
}

#[test]
fn lowering_a_limit_keeps_older_records_readable() {
    let dir = TempDir::new("limits");
    let e = open(&dir.0);
    put(&e, "big", &"v".repeat(1000));
    drop(e);
    let lower = Config {
        value_bytes_max: 100,
        ..config()
    };
    let e = Engine::open(&dir.0, lower, Arc::new(SystemClock)).unwrap();
    assert_eq!(
        e.get(b"big").unwrap().unwrap().value.len(),
        1000,
        "still readable"
    );
    let too_big = e.write(None, |t| t.put(b"new", Bytes::from(vec![b'x'; 101]), 0));
    assert!(matches!(
        too_big,
        Err(StorageError::ValueTooLarge { len: 101, max: 100 })
    ));
    let over_format = Config {
        value_bytes_max: u32::MAX,
        ..config()
    };
    drop(e);
    assert!(matches!(
        Engine::open(&dir.0, over_format, Arc::new(SystemClock)),
        Err(StorageError::InvalidConfig(_))
    ));
}

#[test]
fn a_hint_without_its_segment_is_removed_at_startup() {
    let dir = TempDir::new("orphan-hint");
    let e = open(&dir.0);
    put(&e, "a", "1");
    drop(e);
    // As a compaction that crashed between writing an output's hint and renaming the output
    // would leave it: a hint for a segment id that is about to be reused.
    fs::write(dir.0.join("0000000099.hint"), b"stale").unwrap();
    fs::write(dir.0.join("0000000099.seg.tmp"), b"partial").unwrap();
    let e = open(&dir.0);
    assert!(!dir.0.join("0000000099.hint").exists());
    assert!(!dir.0.join("0000000099.seg.tmp").exists());
    assert_eq!(contents(&e).len(), 1);
}

#[test]
fn a_write_group_behaves_like_its_transactions_one_at_a_time() {
    let dir = TempDir::new("group");
    let e = open(&dir.0);
    put(&e, "old", "gone soon");
    let before = e.stats().last_version;
    let ((), written) = e
        .write_group(|g| {
            let (_, a) = g.txn(None, |t| t.put(b"a", "1", 0)).unwrap();
            // The next transaction sees the previous one's write, with its version.
            let (seen, b) = g
                .txn(None, |t| {
                    let a = t.get(b"a")?.expect("visible inside the group");
                    t.put(b"b", a.value.clone(), 0)?;
                    Ok::<_, StorageError>(a.version)
                })
                .unwrap();
            assert_eq!(Some(seen), a.version);
            assert!(
                b.version > a.version,
                "each transaction has its own version"
            );
            // A failing transaction leaves no trace.
            let failed: Result<((), _), StorageError> = g.txn(None, |t| {
                t.put(b"c", "never", 0)?;
                t.put(&vec![b'k'; 70_000], "too long a key", 0)
            });
            assert!(failed.is_err());
            assert_eq!(g.read(b"c").unwrap(), None);
            // A read-only transaction takes no version.
            let (_, none) = g.txn(None, |t| t.get(b"a").map(|_| ())).unwrap();
            assert_eq!(none.version, None);
            // Ranges and later writes in range, in order.
            g.txn(None, |t| t.delete_range(b"a", b"p")).unwrap();
            assert_eq!(g.read(b"a").unwrap(), None);
            g.txn(None, |t| t.put(b"b", "2", 0)).unwrap();
            // Nothing is visible outside the group before it is appended.
            assert_eq!(g.read(b"old").unwrap(), None);
        })
        .unwrap();
    assert_eq!(written.version, Some(before + 4));
    let expected: BTreeMap<String, String> = [("b".to_string(), "2".to_string())].into();
    assert_eq!(contents(&e), expected);
    drop(e);
    assert_eq!(
        contents(&open(&dir.0)),
        expected,
        "and the same after a reopen"
    );
}

#[test]
fn active_expiry_follows_ttls_that_change() {
    let dir = TempDir::new("expiry-index");
    let clock = Arc::new(ManualClock::new(10_000));
    let e = Engine::open(&dir.0, config(), clock.clone()).unwrap();
    let put_ttl = |key: &str, deadline: u64| {
        e.write(None, |t| t.put(key.as_bytes(), "v", deadline))
            .unwrap();
    };
    put_ttl("a", 10_100);
    put_ttl("a", 10_200); // deadline moved later
    put_ttl("b", 10_100);
    put_ttl("c", 0);
    put_ttl("d", 10_100);
    put_ttl("d", 0); // TTL removed by an overwrite
    put_ttl("gone", 10_100);
    del(&e, "gone"); // deleted before it expired
    clock.advance_ms(150);
    assert_eq!(e.purge_expired(), 1, "only b is due");
    assert_eq!(
        contents(&e).keys().cloned().collect::<Vec<_>>(),
        ["a", "c", "d"]
    );
    clock.advance_ms(100);
    assert_eq!(e.purge_expired(), 1, "then a");
    assert_eq!(e.purge_expired(), 0, "nothing twice");
    assert_eq!(e.stats().keys, 2);
}

#[test]
fn compaction_drops_expired_keys_that_were_not_purged_yet() {
    let dir = TempDir::new("expired-compaction");
    let clock = Arc::new(ManualClock::new(50_000));
    let e = Engine::open(&dir.0, config(), clock.clone()).unwrap();
    e.write(None, |t| t.put(b"short", "gone soon", 50_100))
        .unwrap();
    e.write(None, |t| t.put(b"long", "stays", 0)).unwrap();
    clock.advance_ms(200); // expired, but nobody has purged it
    e.compact().unwrap();
    assert_eq!(e.get(b"short").unwrap(), None);
    assert_eq!(
        e.stats().keys,
        1,
        "the expired entry left the index with its segment"
    );
    // Reads that race a compaction with an older "now" must not find a dangling entry.
    assert_eq!(e.scan(b"", b"", 10, false).unwrap().len(), 1);
    drop(e);
    let e = Engine::open(&dir.0, config(), clock).unwrap();
    assert_eq!(contents(&e).keys().cloned().collect::<Vec<_>>(), ["long"]);
}

/// A transaction that stages many keys (past the point where its staging area starts keeping
/// an index), overwrites some, and deletes a range in the middle, reads its own writes exactly
/// as a map would, and commits exactly that, before and after a reopen.
#[test]
fn a_large_transaction_reads_its_own_writes_like_a_map() {
    let dir = TempDir::new("large-txn");
    let e = open(&dir.0);
    put(&e, "k050", "before");
    let mut model = BTreeMap::new();
    model.insert("k050".to_string(), "before".to_string());
    e.write(None, |t| {
        for round in 0..3 {
            for i in (0..100).step_by(round + 1) {
                let (key, value) = (format!("k{i:03}"), format!("v{round}-{i}"));
                t.put(key.as_bytes(), value.as_bytes(), 0)?;
                model.insert(key, value);
            }
            if round == 1 {
                t.delete_range(b"k040", b"k060")?;
                model.retain(|k, _| !(k.as_str() >= "k040" && k.as_str() < "k060"));
                t.delete(b"k001")?;
                model.remove("k001");
            }
            for i in 0..100 {
                let key = format!("k{i:03}");
                let seen = t.get(key.as_bytes())?.map(|v| v.value.to_vec());
                assert_eq!(
                    seen.as_deref(),
                    model.get(&key).map(|v| v.as_bytes()),
                    "{key} in round {round}"
                );
            }
        }
        Ok::<_, StorageError>(())
    })
    .unwrap();
    assert_eq!(contents(&e), model);
    drop(e);
    assert_eq!(contents(&open(&dir.0)), model);
}
