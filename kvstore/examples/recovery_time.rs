//! Measures how long `Engine::open` takes to recover a data directory of N keys (default one
//! million), once from hint files and once by scanning the segments (hints deleted).
//!
//!     cargo run --release -p kvstore --example recovery_time -- [KEYS] [VALUE_BYTES]
//!
//! Prints one line per measurement; `bench/recovery-time.sh` runs it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kvstore::storage::{Config, Engine, FsyncPolicy, Maintenance, SystemClock};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let value_bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("kvstore-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        fsync: FsyncPolicy::Never,
        maintenance: Maintenance::Manual,
        ..Config::default()
    };

    let started = Instant::now();
    {
        let engine = Engine::open(&dir, config.clone(), Arc::new(SystemClock))?;
        let value = Bytes::from(vec![b'v'; value_bytes]);
        for chunk in 0..keys.div_ceil(1000) {
            engine.write(None, |txn| {
                for i in chunk * 1000..((chunk + 1) * 1000).min(keys) {
                    txn.put(format!("user:{i:010}").as_bytes(), value.clone(), 0)?;
                }
                Ok::<_, kvstore::storage::StorageError>(())
            })?;
        }
        engine.compact()?; // leaves compacted segments, each with its hint file
    }
    let disk: u64 = std::fs::read_dir(&dir)?
        .map(|e| {
            e.map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .unwrap_or(0)
        })
        .sum();
    println!(
        "loaded {keys} keys of {value_bytes}-byte values in {:.2} s ({} MiB on disk)",
        started.elapsed().as_secs_f64(),
        disk >> 20
    );

    let timed_open = |label: &str| -> Result<(), Box<dyn std::error::Error>> {
        let started = Instant::now();
        let engine = Engine::open(&dir, config.clone(), Arc::new(SystemClock))?;
        let elapsed = started.elapsed();
        let stats = engine.stats();
        assert_eq!(stats.keys, keys, "every key recovered");
        println!(
            "open with {label}: {:.3} s for {} keys",
            elapsed.as_secs_f64(),
            stats.keys
        );
        Ok(())
    };
    timed_open("hint files")?;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "hint") {
            std::fs::remove_file(path)?;
        }
    }
    timed_open("a full scan (hints deleted)")?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
