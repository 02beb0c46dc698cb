//! `thesaurus-scraper build`: the crawl's stored pages to a thesaurus, as a map/reduce whose
//! intermediate data lives in the store.
//!
//! 1. **Map.** Mapper `i` of `M` reads the pages of crawl partitions `i, i+M, …`, counts
//!    (see [`super::counts`]) and writes its counts split by reduce shard (the shard that owns
//!    a word is a hash of it): keyspace `thesaurus`, keys `m:{<shard>}:<build>:<mapper>:<chunk>`,
//!    then a marker `k:{<build>}:<mapper>`. The same mapper over the same pages writes the same
//!    keys, so a mapper run twice (after a crash) counts nothing twice; a resumed build skips
//!    mappers whose marker is written.
//! 2. **Reduce.** Each shard's partials (one partition: the shard is the hash tag) are merged
//!    into rows: a word's count, its context counts, its pattern partners with evidence.
//! 3. **Vectors and neighbours** (see [`super::vectors`]) over all rows, written with
//!    `put_many`: `v:{word}` (the PPMI vector, for similarity), `n:{word}` (neighbours by the
//!    combined score, with evidence), `d:{word}` (by cosine alone: the baseline the eval
//!    compares with), and `t:{thesaurus}` (what was built, from what). The build's partials are
//!    deleted last.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kvstore::client::cluster::ClusterClient;
use kvstore::client::ScanOptions;
use kvstore::partition::map::KeyspaceSpec;
use kvstore::wire::{Condition, Consistency, ScanRange};
use serde::{Deserialize, Serialize};

use super::counts::{self, Counts, Partial, Row};
use super::vectors::{self, Neighbour, Params};
use super::wordnet::WordNet;
use crate::crawl::frontier::{self as crawl_store, PageRecord};

pub const KEYSPACE: &str = "thesaurus";
pub const INFO_KEY: &str = "t:{thesaurus}";
/// Pair and pattern entries per stored partial (a few MB of JSON at most).
pub const PARTIAL_ENTRIES_MAX: usize = 60_000;
/// Pages read per scan of the crawl.
const PAGE_SCAN: u32 = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildOptions {
    pub mappers: u32,
    pub shards: u32,
    pub window: usize,
    pub params: Params,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            mappers: 2,
            shards: 16,
            window: 2,
            params: Params::default(),
        }
    }
}

/// What a build made, stored at [`INFO_KEY`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildInfo {
    pub build: u64,
    pub finished: bool,
    pub pages: u64,
    pub tokens: u64,
    pub vocabulary: u64,
    pub words_with_neighbours: u64,
    pub built_ms: u64,
    pub seconds: f64,
    pub options: Option<BuildOptions>,
    /// The crawl's pages fetched with text when the build began.
    #[serde(default)]
    pub crawl_done: u64,
}

/// A stored vector: its contexts and weights (unit length).
pub type StoredVector = Vec<(String, f32)>;

/// A word's entry as stored at `n:{word}`: how often the crawl has it, its neighbours.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub word: String,
    pub count: u64,
    pub neighbours: Vec<Neighbour>,
}

pub fn vector_key(word: &str) -> String {
    format!("v:{{{word}}}")
}
pub fn neighbours_key(word: &str) -> String {
    format!("n:{{{word}}}")
}
pub fn baseline_key(word: &str) -> String {
    format!("d:{{{word}}}")
}
fn partial_prefix(shard: u32, build: u64) -> String {
    format!("m:{{{shard}}}:{build}:")
}
fn partial_key(shard: u32, build: u64, mapper: u32, chunk: usize) -> String {
    format!("m:{{{shard}}}:{build}:{mapper}:{chunk:05}")
}
fn marker_key(build: u64, mapper: u32) -> String {
    format!("k:{{{build}}}:{mapper}")
}

/// The reduce shard that owns a word.
pub fn shard_of(word: &str, shards: u32) -> u32 {
    let h = word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h % u64::from(shards.max(1))) as u32
}

/// A dictionary page's headword: the title before ` — ` when it is one word.
pub fn headword(title: &str) -> Option<String> {
    let (h, _) = title.split_once(" — ")?;
    let h = h.trim().to_lowercase();
    (!h.is_empty() && h.chars().all(char::is_alphabetic)).then_some(h)
}

async fn scan_all(
    client: &ClusterClient,
    keyspace: &str,
    partition: Option<u32>,
    prefix: &str,
    page: u32,
    mut each: impl FnMut(kvstore::wire::Entry) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut continuation = None;
    loop {
        let options = ScanOptions {
            range: ScanRange {
                prefix: Some(Bytes::from(prefix.to_string())),
                ..ScanRange::default()
            },
            limit: page,
            continuation,
            keys_only: false,
            consistency: Some(Consistency::Linearizable),
        };
        let result = match partition {
            Some(p) => client.scan_partition(keyspace, p, options).await?,
            None => client.scan(keyspace, options).await?,
        };
        for e in result.entries {
            each(e)?;
        }
        continuation = result.continuation;
        if continuation.is_none() {
            return Ok(());
        }
    }
}

async fn save_info(client: &ClusterClient, info: &BuildInfo) -> anyhow::Result<()> {
    let value = serde_json::to_vec(info)?;
    client
        .put(KEYSPACE, INFO_KEY.as_bytes(), &value, Condition::None)
        .await?;
    Ok(())
}

/// Deletes every key of the thesaurus keyspace under `prefix`.
async fn delete_prefix(client: &ClusterClient, prefix: &str) -> anyhow::Result<()> {
    let mut keys = Vec::new();
    scan_all(client, KEYSPACE, None, prefix, 256, |e| {
        keys.push(e.key);
        Ok(())
    })
    .await?;
    for k in keys {
        client.delete(KEYSPACE, &k).await?;
    }
    Ok(())
}

/// Runs a whole build; `progress` hears each phase's news.
pub async fn build(
    client: Arc<ClusterClient>,
    wordnet: Arc<WordNet>,
    options: BuildOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<BuildInfo> {
    let started = Instant::now();
    let mut spec = KeyspaceSpec::new(KEYSPACE);
    spec.partitions = 64;
    spec.read_consistency = Consistency::Follower;
    client.ensure_keyspace(spec).await?;
    // Resume an unfinished build with the same options, else start one.
    let previous = client
        .get(KEYSPACE, INFO_KEY.as_bytes(), Consistency::Linearizable)
        .await?
        .and_then(|v| serde_json::from_slice::<BuildInfo>(&v.value).ok());
    let same = |i: &BuildInfo| {
        i.options
            .as_ref()
            .is_some_and(|o| serde_json::to_string(o).ok() == serde_json::to_string(&options).ok())
    };
    let build = match &previous {
        Some(i) if !i.finished && same(i) => {
            progress(&format!("resuming build {}", i.build));
            i.build
        }
        _ => crate::crawl::now_ms(),
    };
    let crawl_done = crate::crawl::status(&crate::crawl::frontier::Frontier::new(client.clone()))
        .await?
        .totals
        .done;
    let mut info = BuildInfo {
        build,
        options: Some(options.clone()),
        crawl_done,
        ..BuildInfo::default()
    };
    save_info(&client, &info).await?;

    // 1. Map.
    let crawl_partitions = client.partitions(crawl_store::KEYSPACE).await?;
    let mut mappers = tokio::task::JoinSet::new();
    for m in 0..options.mappers {
        let marker = marker_key(build, m);
        if client
            .get(KEYSPACE, marker.as_bytes(), Consistency::Linearizable)
            .await?
            .is_some()
        {
            progress(&format!("mapper {m}: done in an earlier run"));
            continue;
        }
        let (client, wordnet, options) = (client.clone(), wordnet.clone(), options.clone());
        mappers.spawn(async move {
            let mut counts = Counts::default();
            let lemma = |t: &str| wordnet.lemma(t);
            let mut p = m;
            while p < crawl_partitions {
                let mut pages = Vec::new();
                scan_all(
                    &client,
                    crawl_store::KEYSPACE,
                    Some(p),
                    "p:{",
                    PAGE_SCAN,
                    |e| {
                        let key = String::from_utf8_lossy(&e.key).to_string();
                        let page: PageRecord =
                            crawl_store::decode(&key, e.value.as_deref().unwrap_or_default())?;
                        pages.push(page);
                        Ok(())
                    },
                )
                .await?;
                tokio::task::block_in_place(|| {
                    for page in &pages {
                        let h = headword(&page.title);
                        counts.add_page(&page.text, h.as_deref(), options.window, &lemma);
                    }
                });
                p += options.mappers;
            }
            let (pages, tokens) = (counts.pages, counts.tokens);
            let parts = tokio::task::block_in_place(|| {
                counts.into_partials(options.shards, PARTIAL_ENTRIES_MAX, |w| {
                    shard_of(w, options.shards)
                })
            });
            // What an earlier, interrupted run of this mapper wrote goes first: its chunks
            // may have been cut differently (hash maps iterate in a random order).
            for shard in 0..options.shards {
                let prefix = format!("{}{m}:", partial_prefix(shard, build));
                delete_prefix(&client, &prefix).await?;
            }
            let mut writes = Vec::new();
            for (shard, chunks) in parts {
                for (i, chunk) in chunks.iter().enumerate() {
                    writes.push((
                        Bytes::from(partial_key(shard, build, m, i)),
                        Bytes::from(serde_json::to_vec(chunk)?),
                    ));
                }
            }
            client.put_many(KEYSPACE, writes, 4).await?;
            client
                .put(
                    KEYSPACE,
                    marker_key(build, m).as_bytes(),
                    b"done",
                    Condition::None,
                )
                .await?;
            anyhow::Ok((m, pages, tokens))
        });
    }
    while let Some(done) = mappers.join_next().await {
        let (m, pages, tokens) = done??;
        progress(&format!(
            "mapper {m}: {pages} pages, {tokens} tokens counted"
        ));
    }

    // 2. Reduce, shard by shard.
    let mut rows: HashMap<String, Row> = HashMap::new();
    for shard in 0..options.shards {
        let mut shard_rows: HashMap<String, Row> = HashMap::new();
        scan_all(
            &client,
            KEYSPACE,
            None,
            &partial_prefix(shard, build),
            16,
            |e| {
                let part: Partial = serde_json::from_slice(e.value.as_deref().unwrap_or_default())?;
                info.pages += part.pages;
                info.tokens += part.tokens;
                counts::merge(&mut shard_rows, part);
                Ok(())
            },
        )
        .await?;
        rows.extend(shard_rows);
    }
    progress(&format!(
        "reduced: {} pages, {} tokens, {} distinct words",
        info.pages,
        info.tokens,
        rows.len()
    ));

    // 3. Vectors and neighbours.
    let p = options.params;
    let (vectors, lists) = tokio::task::block_in_place(|| {
        let v = vectors::ppmi(&rows, &p);
        let post = vectors::postings(&v);
        let ids: Vec<u32> = (0..v.words.len() as u32).collect();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let chunk = ids.len().div_ceil(threads).max(1);
        let lists: Vec<(u32, Vec<Neighbour>, Vec<String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .chunks(chunk)
                .map(|part| {
                    let (v, post, rows) = (&v, &post, &rows);
                    s.spawn(move || {
                        part.iter()
                            .map(|&w| {
                                let row = &rows[&v.words[w as usize]];
                                let n = vectors::neighbours(v, post, row, w, &p);
                                let d = vectors::nearest(v, post, w, 10, p.postings_max)
                                    .into_iter()
                                    .map(|(o, _)| v.words[o as usize].clone())
                                    .collect();
                                (w, n, d)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a neighbour thread"))
                .collect()
        });
        (v, lists)
    });
    info.vocabulary = vectors.words.len() as u64;
    progress(&format!("vectors: {} words; writing", info.vocabulary));
    let mut writes = Vec::with_capacity(lists.len() * 3);
    for (w, n, d) in &lists {
        let word = &vectors.words[*w as usize];
        let vec: StoredVector = vectors.vecs[*w as usize]
            .iter()
            .map(|(c, x)| (vectors.words[*c as usize].clone(), *x))
            .collect();
        writes.push((
            Bytes::from(vector_key(word)),
            Bytes::from(serde_json::to_vec(&vec)?),
        ));
        if !n.is_empty() {
            info.words_with_neighbours += 1;
            let entry = Entry {
                word: word.clone(),
                count: vectors.counts[*w as usize],
                neighbours: n.clone(),
            };
            writes.push((
                Bytes::from(neighbours_key(word)),
                Bytes::from(serde_json::to_vec(&entry)?),
            ));
            writes.push((
                Bytes::from(baseline_key(word)),
                Bytes::from(serde_json::to_vec(d)?),
            ));
        }
    }
    client.put_many(KEYSPACE, writes, 8).await?;

    // The partials are spent.
    for shard in 0..options.shards {
        delete_prefix(&client, &partial_prefix(shard, build)).await?;
    }
    info.finished = true;
    info.built_ms = crate::crawl::now_ms();
    info.seconds = started.elapsed().as_secs_f64();
    save_info(&client, &info).await?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headwords_come_from_dictionary_titles_only() {
        assert_eq!(headword("Goose — GCIDE").as_deref(), Some("goose"));
        assert_eq!(headword("memory leak — The Jargon File"), None);
        assert_eq!(headword("About SQLite"), None);
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("goose", 16), shard_of("goose", 16));
        let used: std::collections::HashSet<u32> = [
            "a",
            "b",
            "goose",
            "gander",
            "fool",
            "simpleton",
            "car",
            "road",
        ]
        .iter()
        .map(|w| shard_of(w, 4))
        .collect();
        assert!(used.len() >= 3);
    }
}
