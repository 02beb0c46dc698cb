//! The dictionary in a real 3-node store: a slice of the real entries (parsed from the
//! installed WordNet, GCIDE, CMUdict and wordfreq files) loaded into the `dictionary`
//! keyspace, read back partition by partition, loaded again idempotently, replaced by a
//! changed dataset, and loaded while a store node is killed: nothing is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dictionary_search::entry::Entry;
use dictionary_search::{dataset, store};
use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::wire::Consistency;
use tests::cluster::{Cluster, ClusterOptions};
use tests::dictionary::slice;
use tests::harness::runtime;

fn read_back(rt: &tokio::runtime::Runtime, client: &Arc<ClusterClient>) -> BTreeMap<String, Entry> {
    rt.block_on(store::read_all(
        client.clone(),
        Consistency::Linearizable,
        &|_| {},
    ))
    .unwrap()
    .into_iter()
    .map(|e| (Entry::key_of(&e.word), e))
    .collect()
}

#[test]
fn the_dictionary_loads_into_the_store_once_and_survives_a_node_killed_mid_load() {
    let entries = slice(400);
    assert!(entries.len() > 500, "{} entries", entries.len());
    let version = dataset::version(&entries);
    // A second parse of the same files gives the same dataset version.
    assert_eq!(dataset::version(&slice(400)), version);

    let mut cluster = Cluster::start("dictionary-store", ClusterOptions::default()).unwrap();
    cluster.wait_for_leader(Duration::from_secs(30)).unwrap();
    let rt = runtime();
    let client = Arc::new(ClusterClient::new(
        cluster.client_addresses(),
        ClusterConfig::default(),
    ));
    rt.block_on(store::ensure_keyspace(&client, 16)).unwrap();
    let map = rt.block_on(client.current_map()).unwrap();
    assert_eq!(map.keyspace(store::KEYSPACE).unwrap().partitions, 16);

    let report = rt
        .block_on(store::load(
            client.clone(),
            &entries,
            &version,
            false,
            &|_| {},
        ))
        .unwrap();
    assert_eq!(report.written, entries.len() as u64);
    assert!(!report.already_loaded);
    assert_eq!(
        read_back(&rt, &client),
        entries,
        "every entry reads back as written"
    );
    let info = rt
        .block_on(store::dataset_info(&client, Consistency::Linearizable))
        .unwrap()
        .unwrap();
    assert_eq!(
        (info.version.as_str(), info.entries),
        (version.as_str(), entries.len() as u64)
    );

    // The same data again: nothing to write.
    let again = rt
        .block_on(store::load(
            client.clone(),
            &entries,
            &version,
            false,
            &|_| {},
        ))
        .unwrap();
    assert!(again.already_loaded);
    assert_eq!(again.written, 0);

    // A changed dataset: ten entries gone, one changed. The gone ones are deleted.
    let mut changed = entries.clone();
    let gone: Vec<String> = changed
        .keys()
        .skip(3)
        .step_by(7)
        .take(10)
        .cloned()
        .collect();
    for k in &gone {
        changed.remove(k);
    }
    changed.get_mut("goose").unwrap().frequency = 1.0;
    let changed_version = dataset::version(&changed);
    assert_ne!(changed_version, version);
    let report = rt
        .block_on(store::load(
            client.clone(),
            &changed,
            &changed_version,
            false,
            &|_| {},
        ))
        .unwrap();
    assert_eq!(report.deleted, 10);
    assert_eq!(read_back(&rt, &client), changed);

    // A node dies in the middle of a load: the load still completes, and every entry is there.
    let (written_tx, written_rx) = std::sync::mpsc::channel();
    let load = {
        let (client, entries, version) = (client.clone(), entries.clone(), version.clone());
        let count = std::sync::atomic::AtomicU64::new(0);
        let written_tx = std::sync::Mutex::new(written_tx);
        rt.spawn(async move {
            let progress = |_| {
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if n == 100 {
                    let _ = written_tx.lock().unwrap().send(());
                    // Hold this write's task until the node is dead: the rest come after.
                    std::thread::sleep(Duration::from_millis(200));
                }
            };
            store::load(client, &entries, &version, true, &progress).await
        })
    };
    written_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("100 entries written");
    cluster.kill(2).unwrap();
    let report = rt.block_on(load).unwrap().unwrap();
    assert_eq!(report.written, entries.len() as u64);
    assert_eq!(
        report.deleted, 0,
        "the ten are back, nothing else to delete"
    );
    assert_eq!(
        read_back(&rt, &client),
        entries,
        "nothing lost with a node down"
    );
    let info = rt
        .block_on(store::dataset_info(&client, Consistency::Linearizable))
        .unwrap()
        .unwrap();
    assert_eq!(info.version, version);
}
