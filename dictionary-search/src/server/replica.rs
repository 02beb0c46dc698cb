//! A search replica's index and how it follows the store: at start-up, and whenever the
//! dataset record's version changes, it reads every entry (at follower consistency, any
//! replica of each partition will do), checks that what it read hashes to that version
//! (a follower lagging behind a load gives another hash: it tries again shortly), builds the
//! indexes off the async threads and swaps them in whole. Requests meanwhile use the old
//! index; before the first is built they get a 503.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kvstore::client::cluster::ClusterClient;
use kvstore::wire::Consistency;

use crate::index::Index;
use crate::{dataset, store};

/// How often a replica looks for a new dataset version.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// What the replica is doing, for `/health` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub building: bool,
    /// The store has no dataset record yet (nothing loaded).
    pub no_dataset: bool,
    pub last_error: Option<String>,
    pub build_seconds: f64,
    pub builds: u64,
}

pub struct Replica {
    client: Arc<ClusterClient>,
    index: RwLock<Option<Arc<Index>>>,
    status: Mutex<Status>,
}

impl Replica {
    pub fn new(client: Arc<ClusterClient>) -> Replica {
        Replica {
            client,
            index: RwLock::new(None),
            status: Mutex::new(Status::default()),
        }
    }

    /// A replica serving `index` (tests, and a replica built from files).
    pub fn with_index(client: Arc<ClusterClient>, index: Index) -> Replica {
        let replica = Replica::new(client);
        *replica.index.write().expect("index lock") = Some(Arc::new(index));
        replica
    }

    /// The index requests use now, if one is built.
    pub fn index(&self) -> Option<Arc<Index>> {
        self.index.read().expect("index lock").clone()
    }

    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().expect("status lock"));
    }

    /// Follows the store until `shutdown` resolves.
    pub async fn maintain(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "could not refresh the index from the store; retrying");
                self.set_status(|s| s.last_error = Some(error));
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
        }
    }

    /// Rebuilds the index if the store's dataset version differs from the one served.
    pub async fn refresh(&self) -> Result<(), String> {
        let info = store::dataset_info(&self.client, Consistency::Follower)
            .await
            .map_err(|e| e.to_string())?;
        let Some(info) = info else {
            self.set_status(|s| s.no_dataset = true);
            return Err("the store holds no dictionary yet: run `dictionary-search load`".into());
        };
        if self.index().is_some_and(|ix| ix.version == info.version) {
            return Ok(());
        }
        self.set_status(|s| {
            s.no_dataset = false;
            s.building = true;
        });
        let result = self.build(&info).await;
        self.set_status(|s| s.building = false);
        result
    }

    async fn build(&self, info: &store::DatasetInfo) -> Result<(), String> {
        let started = Instant::now();
        tracing::info!(version = %info.version, entries = info.entries, "reading the dictionary from the store");
        let total = info.entries;
        let progress = move |n: u64| {
            let seconds = started.elapsed().as_secs_f64().max(0.001);
            let rate = n as f64 / seconds;
            let eta = (total.saturating_sub(n)) as f64 / rate.max(1.0);
            tracing::info!(
                read = n,
                total,
                rate = format!("{rate:.0}/s"),
                eta_s = format!("{eta:.0}"),
                "reading entries"
            );
        };
        let entries = store::read_all(self.client.clone(), Consistency::Follower, &progress)
            .await
            .map_err(|e| e.to_string())?;
        let version = info.version.clone();
        let index = tokio::task::spawn_blocking(move || {
            let by_key = entries
                .into_iter()
                .map(|e| (crate::entry::Entry::key_of(&e.word), e))
                .collect();
            let read_version = dataset::version(&by_key);
            if read_version != version {
                return Err(format!(
                    "read {} entries hashing to {read_version}, not {version}: a replica still \
                     catching up with a load",
                    by_key.len()
                ));
            }
            tracing::info!(entries = by_key.len(), "building the indexes");
            Ok(Index::build(&version, by_key.into_values().collect()))
        })
        .await
        .map_err(|e| format!("the index build failed: {e}"))??;
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(version = %index.version, entries = index.len(), seconds = format!("{seconds:.1}"), "serving a new index");
        *self.index.write().expect("index lock") = Some(Arc::new(index));
        self.set_status(|s| {
            s.build_seconds = seconds;
            s.builds += 1;
            s.last_error = None;
        });
        Ok(())
    }
}
