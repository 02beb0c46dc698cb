//! One background thread for many engines: the periodic fsync of `FsyncPolicy::Interval` and
//! the maintenance (expiry, hint files, compaction) of every engine registered with it.
//!
//! An engine opened alone starts a syncer and a maintenance thread of its own. A node that
//! hosts many Raft groups, each with its own state machine and engine, would then run two
//! threads per group; with [`Config::background`](crate::storage::Config::background) set,
//! its engines share one [`Background`] instead, however many there are. The pool holds only
//! weak references: an engine that closes simply drops out. `FsyncPolicy::Always` keeps its
//! own syncer (group commit waits on it; the pool's round is far too coarse for that).

use std::sync::{Condvar, Weak};
use std::time::Instant;

use super::*;

/// How often the pool's thread looks at its engines.
const ROUND: Duration = Duration::from_millis(20);

/// A background thread shared by engines.
pub struct Background {
    shared: Arc<PoolState>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engines = self.shared.engines.lock().expect("pool lock").len();
        f.debug_struct("Background")
            .field("engines", &engines)
            .finish()
    }
}

#[derive(Default)]
struct PoolState {
    engines: Mutex<Vec<Registered>>,
    stop: Mutex<bool>,
    wake: Condvar,
}

struct Registered {
    inner: Weak<Inner>,
    next_sync: Option<Instant>,
    next_maintenance: Option<Instant>,
}

impl Background {
    /// Starts the shared thread.
    pub fn start() -> Arc<Background> {
        let shared = Arc::new(PoolState::default());
        let state = shared.clone();
        let handle = spawn("kv-background", move || state.run());
        Arc::new(Background {
            shared,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// How many open engines use the pool.
    pub fn engines(&self) -> usize {
        let engines = self.shared.engines.lock().expect("pool lock");
        engines
            .iter()
            .filter(|r| r.inner.strong_count() > 0)
            .count()
    }

    pub(super) fn register(&self, inner: &Arc<Inner>) {
        let now = Instant::now();
        let next_sync = match inner.config.fsync {
            FsyncPolicy::Interval { ms } => Some(now + Duration::from_millis(ms.max(1))),
            _ => None,
        };
        let next_maintenance = (inner.config.maintenance == Maintenance::Background)
            .then(|| now + Duration::from_millis(inner.config.maintenance_interval_ms.max(10)));
        self.shared
            .engines
            .lock()
            .expect("pool lock")
            .push(Registered {
                inner: Arc::downgrade(inner),
                next_sync,
                next_maintenance,
            });
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        *self.shared.stop.lock().expect("stop lock") = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.handle.lock().expect("handle lock").take() {
            let _ = handle.join();
        }
    }
}

impl PoolState {
    fn run(&self) {
        lower_thread_priority();
        loop {
            {
                let stop = self.stop.lock().expect("stop lock");
                let (stop, _) = self.wake.wait_timeout(stop, ROUND).expect("stop lock");
                if *stop {
                    return;
                }
            }
            // Take what is due under the lock, do the work outside it (a compaction may take
            // a while, and engines register meanwhile).
            let now = Instant::now();
            let mut due = Vec::new();
            {
                let mut engines = self.engines.lock().expect("pool lock");
                engines.retain(|r| r.inner.strong_count() > 0);
                for r in engines.iter_mut() {
                    let Some(inner) = r.inner.upgrade() else {
                        continue;
                    };
                    let sync = r.next_sync.is_some_and(|t| t <= now);
                    let maintain = r.next_maintenance.is_some_and(|t| t <= now);
                    if sync {
                        let ms = match inner.config.fsync {
                            FsyncPolicy::Interval { ms } => ms.max(1),
                            _ => 1000,
                        };
                        r.next_sync = Some(now + Duration::from_millis(ms));
                    }
                    if maintain {
                        let every = inner.config.maintenance_interval_ms.max(10);
                        r.next_maintenance = Some(now + Duration::from_millis(every));
                    }
                    if sync || maintain {
                        due.push((inner, sync, maintain));
                    }
                }
            }
            for (inner, sync, maintain) in due {
                if sync && inner.appended.load(Ordering::SeqCst) > inner.durable_version() {
                    if let Err(error) = inner.sync_now() {
                        tracing::error!(%error, "fsync failed; refusing further writes");
                    }
                }
                if maintain {
                    inner.maintain_once();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Config, Engine, FsyncPolicy, SystemClock};

    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
    }

    /// A hundred engines on one pool add one thread, not two hundred, and the pool still
    /// fsyncs each of them on its interval.
    #[test]
    fn many_engines_share_one_background_thread() {
        let pool = Background::start();
        let before = threads();
        let dirs: Vec<_> = (0..100)
            .map(|_| crate::test_dir::TestDir::new("background"))
            .collect();
        let config = Config {
            fsync: FsyncPolicy::Interval { ms: 10 },
            maintenance_interval_ms: 10,
            background: Some(pool.clone()),
            ..Config::default()
        };
        let engines: Vec<Engine> = dirs
            .iter()
            .map(|d| Engine::open(&**d, config.clone(), Arc::new(SystemClock)).unwrap())
            .collect();
        assert_eq!(pool.engines(), 100);
        assert!(
            threads() <= before + 2,
            "{} threads for 100 engines (from {before})",
            threads()
        );
        for engine in &engines {
            engine.write(None, |txn| txn.put(b"k", b"v", 0)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while engines
            .iter()
            .any(|e| e.stats().durable_version < e.stats().last_version)
        {
            assert!(Instant::now() < deadline, "the pool synced every engine");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(engines);
        // The pool's thread may hold an engine for the round it is in: it drops out then.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.engines() > 0 {
            assert!(Instant::now() < deadline, "closed engines drop out");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
