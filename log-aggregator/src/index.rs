//! The search index of an aggregator: one tantivy index per time bucket over every record
//! the store holds in it, deduplicated by record id. It is a cache of the store, kept current
//! by the journal ([`crate::feed`]). In memory ([`Indexes::default`]) it is lost with its
//! process and rebuilt from the store at start-up; on disk ([`Indexes::open`], `serve
//! --index-dir`) it survives a restart:
//!
//! ```text
//! DIR/LOCK                 held (flock) by the aggregator using the directory
//! DIR/checkpoint           "<ms>\n": every journal entry that arrived before it is committed here
//! DIR/<bucket start ms>/   one tantivy index (MmapDirectory) per bucket
//! ```
//!
//! A bucket's commit carries, as tantivy's commit payload, the bytes of each stream in it
//! (for per-stream size limits), so they are durable with the documents they count. At open,
//! each bucket's dedup ids are read back from the `id` fast field and the label values from
//! the `label` terms. A bucket that does not open (a torn directory, another schema) is
//! deleted and reported, for the caller to rebuild from the store; so is one whose directory
//! is missing, since nothing here says it existed (see `server::run`).
//!
//! Each document indexes the message (words, with positions for phrases), the stream's
//! service and host, the level, the user labels (as `name=value` terms) and the time and id
//! as fast fields; it stores the record whole, as JSON. One pass of a `Gather` collector
//! over a bucket's matches counts them, bins them for the histogram and keeps the page of
//! lines, ordered by (time, id) so that a cursor pages exactly even among equal times.
//!
//! Only the buckets that may still receive records keep an index writer (and its memory);
//! a record that arrives for an older bucket opens one for the moment.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::io::Write as _;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query as TQuery, RangeQuery,
    RegexQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::{
    DocAddress, DocId, IndexReader, IndexWriter, Score, SegmentReader, TantivyDocument, Term,
};

use crate::layout::{bucket_of, Stream, BUCKET_MS};
use crate::query::{text_terms, Answer, Cursor, Line, Order, Query};
use crate::record::{Indexable, Record};

/// The memory of one bucket's index writer (tantivy's arena; its minimum is 15 MB).
pub const WRITER_HEAP_BYTES: usize = 20_000_000;
/// How many of the newest buckets keep their writers between commits.
pub const OPEN_BUCKETS: i64 = 2;
/// The most distinct values of one label name that are indexed: past it, a new value is
/// stored with its record but not searchable by `label=` (a request id used as a label must
/// not grow the index without bound).
pub const LABEL_VALUES_MAX: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("a stored record is not valid: {0}")]
    BadRecord(String),
    #[error("the index directory {path}: {error}")]
    Dir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the index directory {0} is in use by another aggregator")]
    Locked(PathBuf),
}

fn dir_error(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |error| IndexError::Dir {
        path: path.to_path_buf(),
        error,
    }
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

#[derive(Clone, Copy)]
struct Fields {
    ts: Field,
    seq: Field,
    id: Field,
    level: Field,
    service: Field,
    host: Field,
    label: Field,
    message: Field,
    record: Field,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::builder();
    let fields = Fields {
        // Time ranges are answered from the fast field (tantivy's RangeQuery on a fast
        // field reads the column): no term per distinct millisecond, nor per record id.
        ts: s.add_i64_field("ts", FAST),
        seq: s.add_u64_field("seq", FAST),
        id: s.add_u64_field("id", FAST),
        level: s.add_u64_field("level", INDEXED | FAST),
        service: s.add_text_field("service", STRING),
        host: s.add_text_field("host", STRING),
        label: s.add_text_field("label", STRING),
        message: s.add_text_field("message", TEXT),
        record: s.add_bytes_field("record", STORED),
    };
    (s.build(), fields)
}

struct Bucket {
    /// Its directory, for an index on disk.
    dir: Option<PathBuf>,
    index: tantivy::Index,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    ids: Mutex<HashSet<u64>>,
    /// Documents were added since the last commit. Set after the writer's lock is let go, and
    /// taken before the commit locks it: no lock is ever held while waiting for the other.
    dirty: std::sync::atomic::AtomicBool,
}

/// What [`Indexes::add`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub new: usize,
    /// Records already indexed (a retry, a replay, or the journal and a rebuild overlapping).
    pub duplicates: usize,
}

/// What [`Indexes::open`] found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Buckets opened, and the lines in them.
    pub buckets: usize,
    pub lines: u64,
    /// Buckets whose directory did not open (torn, or of another schema): deleted, to be
    /// rebuilt from the store.
    pub broken: Vec<i64>,
    /// The journal position it holds everything before ([`Indexes::save_checkpoint`]).
    pub checkpoint: Option<i64>,
}

/// Every bucket's index.
pub struct Indexes {
    /// Where the buckets' indexes live (`None`: in memory), and the lock held on it.
    dir: Option<(PathBuf, std::fs::File)>,
    schema: Schema,
    fields: Fields,
    buckets: RwLock<BTreeMap<i64, Arc<Bucket>>>,
    /// The values indexed of each label name, up to [`LABEL_VALUES_MAX`].
    label_values: Mutex<std::collections::HashMap<String, HashSet<String>>>,
    /// Label values not indexed for the cap.
    pub labels_capped: std::sync::atomic::AtomicU64,
    /// The bytes of each stream's records in each bucket (for per-stream size limits).
    stream_bytes: Mutex<BTreeMap<(Stream, i64), u64>>,
    /// Documents added since the last [`Indexes::commit`] began.
    uncommitted: std::sync::atomic::AtomicUsize,
}

impl Default for Indexes {
    fn default() -> Self {
        let (schema, fields) = schema();
        Indexes {
            dir: None,
            schema,
            fields,
            buckets: RwLock::new(BTreeMap::new()),
            label_values: Mutex::new(std::collections::HashMap::new()),
            labels_capped: std::sync::atomic::AtomicU64::new(0),
            stream_bytes: Mutex::new(BTreeMap::new()),
            uncommitted: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

/// Histogram bins for a query: `count` intervals of `step_ms` from `from_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bins {
    pub from_ms: i64,
    pub step_ms: i64,
    pub count: usize,
}

impl Indexes {
    fn bucket(&self, start: i64) -> Result<Arc<Bucket>> {
        if let Some(b) = self.buckets.read().expect("buckets").get(&start) {
            return Ok(b.clone());
        }
        let mut buckets = self.buckets.write().expect("buckets");
        if let Some(b) = buckets.get(&start) {
            return Ok(b.clone());
        }
        let (index, dir) = match &self.dir {
            None => (tantivy::Index::create_in_ram(self.schema.clone()), None),
            Some((root, _)) => {
                let dir = bucket_dir(root, start);
                std::fs::create_dir_all(&dir).map_err(dir_error(&dir))?;
                let index = tantivy::Index::create_in_dir(&dir, self.schema.clone())?;
                (index, Some(dir))
            }
        };
        let b = Arc::new(Bucket::new(dir, index, HashSet::new())?);
        buckets.insert(start, b.clone());
        Ok(b)
    }

    /// Opens the index kept in `dir` (creating the directory if need be), which no other
    /// aggregator may be using. What it found says which buckets the caller must rebuild.
    pub fn open(dir: &Path) -> Result<(Indexes, Opened)> {
        std::fs::create_dir_all(dir).map_err(dir_error(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(dir_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(IndexError::Locked(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(dir_error(&lock_path)(e)),
        }
        let mut indexes = Indexes {
            dir: Some((dir.to_path_buf(), lock)),
            ..Indexes::default()
        };
        let mut opened = Opened {
            checkpoint: read_checkpoint(dir),
            ..Opened::default()
        };
        let mut starts: Vec<i64> = std::fs::read_dir(dir)
            .map_err(dir_error(dir))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        starts.sort_unstable();
        let buckets = indexes.buckets.get_mut().expect("buckets");
        for start in starts {
            let path = bucket_dir(dir, start);
            match open_bucket(&path, &indexes.schema, indexes.fields) {
                Ok((bucket, streams, labels)) => {
                    opened.buckets += 1;
                    opened.lines += bucket.reader.searcher().num_docs();
                    let sizes = indexes.stream_bytes.get_mut().expect("stream bytes");
                    for (stream, bytes) in streams {
                        sizes.insert((stream, start), bytes);
                    }
                    let values = indexes.label_values.get_mut().expect("label values");
                    for (name, value) in labels {
                        let v = values.entry(name).or_default();
                        if v.len() < LABEL_VALUES_MAX {
                            v.insert(value);
                        }
                    }
                    buckets.insert(start, Arc::new(bucket));
                }
                Err(error) => {
                    tracing::warn!(bucket = start, dir = %path.display(), %error,
                        "a bucket's index does not open; deleting it, to be rebuilt from the store");
                    std::fs::remove_dir_all(&path).map_err(dir_error(&path))?;
                    opened.broken.push(start);
                }
            }
        }
        Ok((indexes, opened))
    }

    /// Records that every journal entry that arrived before `ms` is committed in this index
    /// (written to a new file, synced, and renamed over the old: never torn). In memory, a
    /// no-op.
    pub fn save_checkpoint(&self, ms: i64) -> Result<()> {
        let Some((dir, _)) = &self.dir else {
            return Ok(());
        };
        let path = dir.join("checkpoint");
        let next = dir.join("checkpoint.next");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&next)?;
            writeln!(f, "{ms}")?;
            f.sync_all()?;
            std::fs::rename(&next, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(dir_error(&path))
    }

    /// Whether the index is kept on disk.
    pub fn on_disk(&self) -> bool {
        self.dir.is_some()
    }

    /// Indexes the records not indexed yet, telling `on_new` of each; searchable after the
    /// next [`Indexes::commit`]. A record read from the store brings its JSON along
    /// ([`crate::record::Read`]), which the index keeps as it is.
    pub fn add<R: Indexable>(
        &self,
        records: &[R],
        mut on_new: impl FnMut(&Record),
    ) -> Result<Added> {
        let mut added = Added::default();
        let mut by_bucket: BTreeMap<i64, Vec<&R>> = BTreeMap::new();
        for r in records {
            by_bucket
                .entry(bucket_of(r.record().ts))
                .or_default()
                .push(r);
        }
        let f = self.fields;
        for (start, records) in by_bucket {
            let b = self.bucket(start)?;
            let mut ids = b.ids.lock().expect("ids");
            let mut writer = b.writer.lock().expect("writer");
            let before = added.new;
            for item in records {
                let r = item.record();
                if !ids.insert(r.id) {
                    added.duplicates += 1;
                    continue;
                }
                if writer.is_none() {
                    *writer = Some(b.index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?);
                }
                let mut doc = TantivyDocument::default();
                doc.add_i64(f.ts, r.ts);
                doc.add_u64(f.seq, r.seq);
                doc.add_u64(f.id, r.id);
                doc.add_u64(f.level, u64::from(r.level.severity()));
                doc.add_text(f.service, &r.service);
                doc.add_text(f.host, &r.host);
                for (k, v) in &r.labels {
                    if self.label_indexed(k, v) {
                        doc.add_text(f.label, format!("{k}={v}"));
                    }
                }
                doc.add_text(f.message, &r.message);
                doc.add_bytes(f.record, &item.json());
                writer.as_ref().expect("opened").add_document(doc)?;
                *self
                    .stream_bytes
                    .lock()
                    .expect("stream bytes")
                    .entry((r.stream(), start))
                    .or_default() += record_bytes(r);
                on_new(r);
                added.new += 1;
            }
            drop(writer);
            drop(ids);
            if added.new > before {
                b.dirty.store(true, std::sync::atomic::Ordering::Release);
                self.uncommitted
                    .fetch_add(added.new - before, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(added)
    }

    /// Documents added since the last commit began (not yet searchable, or becoming so).
    pub fn uncommitted(&self) -> usize {
        self.uncommitted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `name=value` is indexed: a value seen before, or a new one under the cap.
    fn label_indexed(&self, name: &str, value: &str) -> bool {
        let mut all = self.label_values.lock().expect("label values");
        let values = all.entry(name.to_string()).or_default();
        if values.contains(value) {
            return true;
        }
        if values.len() < LABEL_VALUES_MAX {
            values.insert(value.to_string());
            return true;
        }
        self.labels_capped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        false
    }

    /// Makes what was added searchable; closes the writers of buckets past the open ones.
    pub fn commit(&self, now_ms: i64) -> Result<()> {
        self.uncommitted
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let open_from = bucket_of(now_ms) - (OPEN_BUCKETS - 1) * BUCKET_MS;
        let buckets: Vec<(i64, Arc<Bucket>)> = self
            .buckets
            .read()
            .expect("buckets")
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (start, b) in buckets {
            let dirty = b.dirty.swap(false, std::sync::atomic::Ordering::AcqRel);
            let mut writer = b.writer.lock().expect("writer");
            if dirty {
                if let Some(w) = writer.as_mut() {
                    self.commit_bucket(start, w)?;
                }
                b.reader.reload()?;
            }
            if start < open_from {
                if let Some(mut w) = writer.take() {
                    // What was added after the flag was taken goes in before it closes.
                    self.commit_bucket(start, &mut w)?;
                    b.reader.reload()?;
                    w.wait_merging_threads()?;
                }
            }
        }
        Ok(())
    }

    /// Commits a bucket's writer (whose lock the caller holds, so the sizes match the
    /// documents), with the bytes of each stream in it as the commit's payload.
    fn commit_bucket(&self, start: i64, writer: &mut IndexWriter) -> Result<()> {
        let sizes = self.stream_bytes.lock().expect("stream bytes");
        let mut streams: Vec<(&str, &str, u64)> = Vec::new();
        for ((stream, bucket), bytes) in sizes.iter() {
            if *bucket == start {
                streams.push((&stream.service, &stream.host, *bytes));
            }
        }
        let payload = serde_json::json!({ "streams": streams }).to_string();
        drop(sizes);
        let mut commit = writer.prepare_commit()?;
        commit.set_payload(&payload);
        commit.commit()?;
        Ok(())
    }

    /// Forgets every bucket that starts before `start` (retention), and deletes its files.
    pub fn drop_before(&self, start: i64) -> usize {
        let mut buckets = self.buckets.write().expect("buckets");
        let keep = buckets.split_off(&start);
        let dropped = buckets.len();
        for b in buckets.values() {
            if let Some(dir) = &b.dir {
                // (A search still holding it keeps its mapped files until it ends.)
                if let Err(error) = std::fs::remove_dir_all(dir) {
                    tracing::warn!(dir = %dir.display(), %error, "could not delete a bucket's index");
                }
            }
        }
        *buckets = keep;
        self.stream_bytes
            .lock()
            .expect("stream bytes")
            .retain(|(_, b), _| *b >= start);
        dropped
    }

    /// The oldest buckets of each stream that put it over `bytes_max` (never its newest),
    /// oldest first: what a per-stream size limit deletes.
    pub fn over_limit(&self, bytes_max: u64) -> Vec<(Stream, i64)> {
        let sizes = self.stream_bytes.lock().expect("stream bytes");
        let mut per_stream: BTreeMap<&Stream, Vec<(i64, u64)>> = BTreeMap::new();
        for ((stream, bucket), bytes) in sizes.iter() {
            per_stream
                .entry(stream)
                .or_default()
                .push((*bucket, *bytes));
        }
        let mut out = Vec::new();
        for (stream, buckets) in per_stream {
            let mut total: u64 = buckets.iter().map(|(_, b)| b).sum();
            for (bucket, bytes) in &buckets[..buckets.len() - 1] {
                if total <= bytes_max {
                    break;
                }
                total -= bytes;
                out.push((stream.clone(), *bucket));
            }
        }
        out
    }

    /// Removes `stream`'s records of `bucket` from the index.
    pub fn drop_stream_bucket(&self, stream: &Stream, bucket: i64) -> Result<()> {
        let Some(b) = self.buckets.read().expect("buckets").get(&bucket).cloned() else {
            return Ok(());
        };
        let f = self.fields;
        let term = term_query;
        let query = BooleanQuery::new(vec![
            (Occur::Must, term(f.service, &stream.service)),
            (Occur::Must, term(f.host, &stream.host)),
        ]);
        let mut writer = b.writer.lock().expect("writer");
        let opened = writer.is_none();
        if opened {
            *writer = Some(b.index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?);
        }
        let w = writer.as_mut().expect("opened");
        w.delete_query(Box::new(query))?;
        self.stream_bytes
            .lock()
            .expect("stream bytes")
            .remove(&(stream.clone(), bucket));
        self.commit_bucket(bucket, w)?;
        b.reader.reload()?;
        if opened {
            if let Some(w) = writer.take() {
                w.wait_merging_threads()?;
            }
        }
        Ok(())
    }

    /// The buckets indexed, and the lines in each.
    pub fn sizes(&self) -> Vec<(i64, u64)> {
        self.buckets
            .read()
            .expect("buckets")
            .iter()
            .map(|(k, b)| (*k, b.reader.searcher().num_docs()))
            .collect()
    }

    /// Whether `start`'s bucket has an index (it may be empty).
    pub fn has(&self, start: i64) -> bool {
        self.buckets.read().expect("buckets").contains_key(&start)
    }

    /// The tantivy query of `q`'s selectors, text and time range.
    fn tantivy_query(&self, q: &Query) -> Box<dyn TQuery> {
        let f = self.fields;
        let mut must: Vec<(Occur, Box<dyn TQuery>)> = vec![(
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(f.ts, q.from_ms)),
                Bound::Excluded(Term::from_field_i64(f.ts, q.to_ms)),
            )),
        )];
        let term = term_query;
        if let Some(s) = &q.service {
            must.push((Occur::Must, term(f.service, s)));
        }
        if let Some(h) = &q.host {
            must.push((Occur::Must, term(f.host, h)));
        }
        for (k, v) in &q.labels {
            must.push((Occur::Must, term(f.label, &format!("{k}={v}"))));
        }
        if let Some(level) = q.level {
            must.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Unbounded,
                    Bound::Included(Term::from_field_u64(f.level, u64::from(level.severity()))),
                )),
            ));
        }
        for t in q
            .text
            .as_deref()
            .map(text_terms)
            .and_then(|r| r.ok())
            .unwrap_or_default()
        {
            let occur = if t.negated {
                Occur::MustNot
            } else {
                Occur::Must
            };
            let terms: Vec<Term> = t
                .words
                .iter()
                .map(|w| Term::from_field_text(f.message, w))
                .collect();
            let sub: Box<dyn TQuery> = match (terms.len(), t.prefix) {
                (1, false) => Box::new(TermQuery::new(terms[0].clone(), IndexRecordOption::Basic)),
                (1, true) => {
                    match RegexQuery::from_pattern(&format!("{}.*", t.words[0]), f.message) {
                        Ok(r) => Box::new(r),
                        Err(_) => continue,
                    }
                }
                (_, false) => Box::new(PhraseQuery::new(terms)),
                (_, true) => Box::new(PhrasePrefixQuery::new(terms)),
            };
            must.push((occur, sub));
        }
        if must.iter().all(|(o, _)| *o == Occur::MustNot) {
            must.push((Occur::Must, Box::new(AllQuery)));
        }
        Box::new(BooleanQuery::new(must))
    }

    /// Answers `q`: the total in its range, one page of lines, and `bins` counts if asked.
    pub fn search(&self, q: &Query, bins: Option<Bins>) -> Result<(Answer, Vec<u64>)> {
        let buckets: Vec<(i64, Arc<Bucket>)> = {
            let all = self.buckets.read().expect("buckets");
            all.range(bucket_of(q.from_ms)..q.to_ms)
                .map(|(k, b)| (*k, b.clone()))
                .collect()
        };
        let query = self.tantivy_query(q);
        let mut total = 0u64;
        let mut after_cursor = 0u64;
        let mut counts = vec![0u64; bins.map_or(0, |b| b.count)];
        // The page so far: (its place in the order, bucket position, address).
        let mut page: Vec<(Place, usize, DocAddress)> = Vec::new();
        let mut searchers = Vec::with_capacity(buckets.len());
        for (i, (_, b)) in buckets.iter().enumerate() {
            let searcher = b.reader.searcher();
            let gather = Gather {
                fields: self.fields,
                regex: q.regex.clone(),
                order: q.order,
                cursor: q.cursor,
                limit: q.limit,
                bins,
            };
            let fruit = searcher.search(&*query, &gather)?;
            total += fruit.count;
            after_cursor += fruit.after_cursor;
            for (c, n) in counts.iter_mut().zip(&fruit.bins) {
                *c += n;
            }
            page.extend(fruit.top.into_iter().map(|(place, a)| (place, i, a)));
            searchers.push(searcher);
        }
        match q.order {
            Order::Newest => page.sort_by_key(|&(place, ..)| Reverse(place)),
            Order::Oldest => page.sort_by_key(|&(place, ..)| place),
        }
        page.truncate(q.limit);
        let mut lines = Vec::with_capacity(page.len());
        for &(_, i, address) in &page {
            let doc: TantivyDocument = searchers[i].doc(address)?;
            let bytes = doc
                .get_first(self.fields.record)
                .and_then(|v| v.as_bytes())
                .ok_or_else(|| IndexError::BadRecord("no stored record".into()))?;
            let r: Record =
                serde_json::from_slice(bytes).map_err(|e| IndexError::BadRecord(e.to_string()))?;
            lines.push(Line::from(r));
        }
        let cursor = (after_cursor > lines.len() as u64)
            .then(|| {
                page.last()
                    .map(|&((ts, seq, id), ..)| Cursor { ts, seq, id }.encode())
            })
            .flatten();
        Ok((
            Answer {
                total,
                lines,
                cursor,
            },
            counts,
        ))
    }
}

impl Bucket {
    fn new(dir: Option<PathBuf>, index: tantivy::Index, ids: HashSet<u64>) -> Result<Bucket> {
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()?;
        Ok(Bucket {
            dir,
            index,
            reader,
            writer: Mutex::new(None),
            ids: Mutex::new(ids),
            dirty: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

fn bucket_dir(root: &Path, start: i64) -> PathBuf {
    root.join(start.to_string())
}

/// The checkpoint in `dir`, if one was saved and reads as one.
fn read_checkpoint(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join("checkpoint"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A bucket's index opened from its directory: the bucket with its dedup ids, the bytes of
/// each stream (its last commit's payload), and the label values indexed.
type OpenedBucket = (Bucket, Vec<(Stream, u64)>, Vec<(String, String)>);

fn open_bucket(path: &Path, schema: &Schema, f: Fields) -> Result<OpenedBucket> {
    let index = tantivy::Index::open_in_dir(path)?;
    if index.schema() != *schema {
        return Err(IndexError::BadRecord(
            "the index was made with another schema".into(),
        ));
    }
    let payload = index.load_metas()?.payload.unwrap_or_default();
    let mut streams = Vec::new();
    if !payload.is_empty() {
        let value: serde_json::Value = serde_json::from_str(&payload)
            .map_err(|e| IndexError::BadRecord(format!("the commit's payload: {e}")))?;
        for s in value["streams"].as_array().into_iter().flatten() {
            if let (Some(service), Some(host), Some(bytes)) =
                (s[0].as_str(), s[1].as_str(), s[2].as_u64())
            {
                let (service, host) = (service.to_string(), host.to_string());
                streams.push((Stream { service, host }, bytes));
            }
        }
    }
    let bucket = Bucket::new(Some(path.to_path_buf()), index, HashSet::new())?;
    let searcher = bucket.reader.searcher();
    let mut ids = HashSet::new();
    let mut labels = Vec::new();
    for segment in searcher.segment_readers() {
        let column = segment.fast_fields().u64("id")?;
        ids.extend(segment.doc_ids_alive().filter_map(|doc| column.first(doc)));
        let terms = segment.inverted_index(f.label)?;
        let mut stream = terms.terms().stream().map_err(dir_error(path))?;
        while stream.advance() {
            if let Some((name, value)) = std::str::from_utf8(stream.key())
                .ok()
                .and_then(|t| t.split_once('='))
            {
                labels.push((name.to_string(), value.to_string()));
            }
        }
    }
    drop(searcher);
    *bucket.ids.lock().expect("ids") = ids;
    Ok((bucket, streams, labels))
}

/// A query for the documents whose `field` holds the term `text` exactly.
fn term_query(field: Field, text: &str) -> Box<dyn TQuery> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::Basic,
    ))
}

/// What a record counts for a size limit: its text and its names, about as stored.
fn record_bytes(r: &Record) -> u64 {
    (r.message.len()
        + r.host.len()
        + r.service.len()
        + r.labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + 64) as u64
}

/// One pass over a bucket's matches: the count, the histogram, the page.
struct Gather {
    fields: Fields,
    regex: Option<regex::Regex>,
    order: Order,
    cursor: Option<Cursor>,
    limit: usize,
    bins: Option<Bins>,
}

struct Gathered {
    count: u64,
    /// Matches past the cursor (all of them without one).
    after_cursor: u64,
    bins: Vec<u64>,
    top: Vec<(Place, DocAddress)>,
}

/// A line's place in the order of lines: time, order within its source, id.
type Place = (i64, u64, u64);

struct GatherSegment {
    segment: u32,
    ts: tantivy::columnar::Column<i64>,
    seq: tantivy::columnar::Column<u64>,
    id: tantivy::columnar::Column<u64>,
    store: Option<tantivy::store::StoreReader>,
    record: Field,
    regex: Option<regex::Regex>,
    newest: bool,
    cursor: Option<Place>,
    limit: usize,
    bins: Option<Bins>,
    count: u64,
    after_cursor: u64,
    counts: Vec<u64>,
    /// The best `limit` so far, the worst on top: keyed so that a max-heap pops the worst.
    heap: BinaryHeap<((u64, u64, u64), DocId)>,
}

/// A place as unsigned numbers in the same order, turned around for newest first: the
/// heap's key, the worst (to drop first) the greatest.
fn rank(place: Place, newest: bool) -> (u64, u64, u64) {
    let (ts, seq, id) = place;
    let ts = (ts as u64) ^ (1 << 63);
    if newest {
        (!ts, !seq, !id)
    } else {
        (ts, seq, id)
    }
}

impl Collector for Gather {
    type Fruit = Gathered;
    type Child = GatherSegment;

    fn for_segment(&self, segment: u32, reader: &SegmentReader) -> tantivy::Result<GatherSegment> {
        let ff = reader.fast_fields();
        Ok(GatherSegment {
            segment,
            ts: ff.i64("ts")?,
            seq: ff.u64("seq")?,
            id: ff.u64("id")?,
            store: match self.regex {
                Some(_) => Some(reader.get_store_reader(16)?),
                None => None,
            },
            record: self.fields.record,
            regex: self.regex.clone(),
            newest: self.order == Order::Newest,
            cursor: self.cursor.map(|c| (c.ts, c.seq, c.id)),
            limit: self.limit,
            bins: self.bins,
            count: 0,
            after_cursor: 0,
            counts: vec![0; self.bins.map_or(0, |b| b.count)],
            heap: BinaryHeap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Gathered>) -> tantivy::Result<Gathered> {
        let mut out = Gathered {
            count: 0,
            after_cursor: 0,
            bins: vec![0; self.bins.map_or(0, |b| b.count)],
            top: Vec::new(),
        };
        for f in fruits {
            out.count += f.count;
            out.after_cursor += f.after_cursor;
            for (a, b) in out.bins.iter_mut().zip(&f.bins) {
                *a += b;
            }
            out.top.extend(f.top);
        }
        Ok(out)
    }
}

impl GatherSegment {
    fn passes_regex(&self, doc: DocId) -> bool {
        let (Some(re), Some(store)) = (&self.regex, &self.store) else {
            return true;
        };
        let Ok(d) = store.get::<TantivyDocument>(doc) else {
            return false;
        };
        d.get_first(self.record)
            .and_then(|v| v.as_bytes())
            .and_then(|b| serde_json::from_slice::<Record>(b).ok())
            .is_some_and(|r| re.is_match(&r.message))
    }
}

impl SegmentCollector for GatherSegment {
    type Fruit = Gathered;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if !self.passes_regex(doc) {
            return;
        }
        let ts = self.ts.first(doc).unwrap_or(0);
        self.count += 1;
        if let Some(b) = self.bins {
            let bin = (ts - b.from_ms).div_euclid(b.step_ms);
            if (0..b.count as i64).contains(&bin) {
                self.counts[bin as usize] += 1;
            }
        }
        let place = (
            ts,
            self.seq.first(doc).unwrap_or(0),
            self.id.first(doc).unwrap_or(0),
        );
        if let Some(c) = self.cursor {
            if (self.newest && place >= c) || (!self.newest && place <= c) {
                return;
            }
        }
        self.after_cursor += 1;
        let ranked = rank(place, self.newest);
        if self.heap.len() < self.limit {
            self.heap.push((ranked, doc));
        } else if self.heap.peek().is_some_and(|&(worst, _)| ranked < worst) {
            self.heap.pop();
            self.heap.push((ranked, doc));
        }
    }

    fn harvest(self) -> Gathered {
        let segment = self.segment;
        let top = self
            .heap
            .into_iter()
            .map(|(_, doc)| {
                let place = (
                    self.ts.first(doc).unwrap_or(0),
                    self.seq.first(doc).unwrap_or(0),
                    self.id.first(doc).unwrap_or(0),
                );
                (place, DocAddress::new(segment, doc))
            })
            .collect();
        Gathered {
            count: self.count,
            after_cursor: self.after_cursor,
            bins: self.counts,
            top,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::message::Level;

    const T0: i64 = 1_796_623_200_000; // a bucket's start

    fn rec(ts: i64, id: u64, service: &str, level: Level, message: &str) -> Record {
        Record {
            ts,
            host: "web-1".into(),
            service: service.into(),
            level,
            message: message.into(),
            id,
            seq: 0,
            parse_error: None,
            truncated: false,
            labels: [(
                "env".to_string(),
                if id.is_multiple_of(2) { "prod" } else { "dev" }.to_string(),
            )]
            .into(),
        }
    }

    fn query(pairs: &[(&str, &str)]) -> Query {
        let mut params: Vec<(String, String)> = vec![
            ("from".into(), T0.to_string()),
            ("to".into(), (T0 + 3 * BUCKET_MS).to_string()),
        ];
        params.extend(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        Query::from_params(&params, T0).unwrap()
    }

    fn indexed(records: &[Record]) -> Indexes {
        let ix = Indexes::default();
        ix.add(records, |_| {}).unwrap();
        ix.commit(T0).unwrap();
        ix
    }

    fn sample() -> Vec<Record> {
        let mut rs = Vec::new();
        for i in 0..300u64 {
            let ts = T0 + (i as i64) * 6_000; // 30 minutes: three buckets
            let (service, level, msg) = match i % 3 {
                0 => (
                    "api",
                    Level::Error,
                    format!("upstream timed out after {i}ms"),
                ),
                1 => ("api", Level::Info, format!("GET /users/{i} 200")),
                _ => ("db", Level::Warning, format!("slow query took {i}ms")),
            };
            rs.push(rec(ts, i, service, level, &msg));
        }
        rs
    }

    #[test]
    fn lines_added_since_the_last_commit_are_counted_once_each() {
        let ix = Indexes::default();
        let rs = sample();
        ix.add(&rs[..100], |_| {}).unwrap();
        ix.add(&rs[..150], |_| {}).unwrap(); // 100 duplicates
        assert_eq!(ix.uncommitted(), 150);
        ix.commit(T0).unwrap();
        assert_eq!(ix.uncommitted(), 0);
        ix.add(&rs[150..], |_| {}).unwrap();
        assert_eq!(ix.uncommitted(), 150);
    }

    #[test]
    fn a_query_counts_every_match_and_pages_the_newest_first() {
        let ix = indexed(&sample());
        assert_eq!(ix.sizes().len(), 3, "three buckets");
        let (a, _) = ix
            .search(&query(&[("q", "timed out"), ("limit", "7")]), None)
            .unwrap();
        assert_eq!(a.total, 100);
        assert_eq!(a.lines.len(), 7);
        assert_eq!(a.lines[0].message, "upstream timed out after 297ms");
        assert!(a.lines.windows(2).all(|w| w[0].ts > w[1].ts));
        // Paging visits every match once, in order.
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut pairs = vec![("q", "timed"), ("limit", "33")];
            if let Some(c) = &cursor {
                pairs.push(("cursor", c.as_str()));
            }
            let (a, _) = ix.search(&query(&pairs), None).unwrap();
            assert_eq!(a.total, 100, "the total is the range's, whatever the page");
            seen.extend(a.lines.iter().map(|l| l.ts));
            match a.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 100);
        assert!(seen.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn lines_of_one_millisecond_keep_their_order_in_the_source_across_pages() {
        let mut rs = Vec::new();
        for i in 0..20u64 {
            let mut r = rec(
                T0 + 7,
                1000 - i * 37 % 19,
                "api",
                Level::Info,
                &format!("n{i}"),
            );
            r.id = (i * 7919) % 101; // ids in no particular order
            r.seq = i * 100;
            rs.push(r);
        }
        let ix = indexed(&rs);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut pairs = vec![("limit", "6")];
            if let Some(c) = &cursor {
                pairs.push(("cursor", c.as_str()));
            }
            let (a, _) = ix.search(&query(&pairs), None).unwrap();
            seen.extend(a.lines.iter().map(|l| l.message.clone()));
            match a.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let want: Vec<String> = (0..20).rev().map(|i| format!("n{i}")).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn selectors_levels_labels_regex_and_order() {
        let ix = indexed(&sample());
        let total = |pairs: &[(&str, &str)]| ix.search(&query(pairs), None).unwrap().0.total;
        assert_eq!(total(&[]), 300);
        assert_eq!(total(&[("service", "db")]), 100);
        assert_eq!(total(&[("level", "warning")]), 200, "warnings and errors");
        assert_eq!(total(&[("level", "error")]), 100);
        assert_eq!(total(&[("label", "env:prod")]), 150);
        assert_eq!(total(&[("q", "slow -query")]), 0);
        assert_eq!(total(&[("q", "use*")]), 100, "a prefix");
        assert_eq!(total(&[("q", "\"took 29ms\"")]), 1, "a phrase");
        assert_eq!(total(&[("q", "\"29ms took\"")]), 0, "in its order");
        assert_eq!(
            total(&[("q", "\"took 29*\"")]),
            5,
            "29, 290, 293, 296, 299: a phrase prefix"
        );
        assert_eq!(total(&[("regex", r"after \d{3}ms$")]), 66);
        let (a, _) = ix
            .search(
                &query(&[("order", "oldest"), ("limit", "2"), ("service", "db")]),
                None,
            )
            .unwrap();
        assert_eq!(a.lines[0].message, "slow query took 2ms");
        // A time range inside a bucket.
        let (a, _) = ix
            .search(
                &Query::from_params(
                    &[
                        ("from".to_string(), (T0 + 60_000).to_string()),
                        ("to".to_string(), (T0 + 120_000).to_string()),
                    ],
                    T0,
                )
                .unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(a.total, 10);
    }

    #[test]
    fn the_histogram_bins_the_matches_and_duplicates_are_indexed_once() {
        let rs = sample();
        let ix = indexed(&rs);
        let added = ix.add(&rs[..50], |_| {}).unwrap();
        assert_eq!(
            added,
            Added {
                new: 0,
                duplicates: 50
            }
        );
        ix.commit(T0).unwrap();
        let bins = Bins {
            from_ms: T0,
            step_ms: 5 * 60_000,
            count: 6,
        };
        let (a, counts) = ix
            .search(&query(&[("service", "api")]), Some(bins))
            .unwrap();
        assert_eq!(a.total, 200);
        assert_eq!(counts, vec![34, 33, 33, 34, 33, 33]);
        assert_eq!(counts.iter().sum::<u64>(), 200);
    }

    #[test]
    fn a_label_with_too_many_values_stops_growing_the_index() {
        let rs: Vec<Record> = (0..LABEL_VALUES_MAX as u64 + 50)
            .map(|i| {
                let mut r = rec(T0 + i as i64, i, "api", Level::Info, "request served");
                r.labels.insert("request_id".into(), format!("r{i}"));
                r
            })
            .collect();
        let ix = indexed(&rs);
        let total = |label: &str| {
            ix.search(&query(&[("label", label)]), None)
                .unwrap()
                .0
                .total
        };
        assert_eq!(total("request_id:r7"), 1);
        assert_eq!(
            total("request_id:r1010"),
            0,
            "past the cap: stored, not indexed"
        );
        assert_eq!(total("env:prod"), 525, "other labels are not affected");
        assert_eq!(
            ix.labels_capped.load(std::sync::atomic::Ordering::Relaxed),
            50
        );
        // Still found by text, and returned whole.
        let (a, _) = ix
            .search(&query(&[("q", "served"), ("limit", "1")]), None)
            .unwrap();
        assert_eq!(a.total, LABEL_VALUES_MAX as u64 + 50);
        assert_eq!(a.lines[0].labels["request_id"], "r1049");
    }

    #[test]
    fn a_stream_over_its_size_limit_loses_its_oldest_buckets_first() {
        let ix = indexed(&sample()); // 3 buckets; api 200 records, db 100
        let api = Stream {
            service: "api".into(),
            host: "web-1".into(),
        };
        assert_eq!(ix.over_limit(u64::MAX), vec![]);
        let over = ix.over_limit(1);
        assert_eq!(
            over.len(),
            4,
            "both streams, all but their newest bucket: {over:?}"
        );
        assert_eq!(over[0], (api.clone(), T0));
        ix.drop_stream_bucket(&api, T0).unwrap();
        let total = |pairs: &[(&str, &str)]| ix.search(&query(pairs), None).unwrap().0.total;
        assert_eq!(
            total(&[("service", "api")]),
            133,
            "api's first bucket (67) went"
        );
        assert_eq!(total(&[("service", "db")]), 100, "db's did not");
        assert!(!ix.over_limit(1).contains(&(api, T0)));
    }

    /// A node indexes what it stored itself while its feed commits: the two must never wait
    /// on each other (they took the writer's and the dirty flag's locks in opposite orders).
    #[test]
    fn adding_and_committing_at_once_never_deadlock() {
        let ix = Arc::new(Indexes::default());
        let (done, finished) = std::sync::mpsc::channel();
        let adder = {
            let (ix, done) = (ix.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..300u64 {
                    ix.add(&[rec(T0 + i as i64, i, "api", Level::Info, "m")], |_| {})
                        .unwrap();
                }
                done.send(()).unwrap();
            })
        };
        let committer = {
            let ix = ix.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    ix.commit(T0).unwrap();
                }
                done.send(()).unwrap();
            })
        };
        for _ in 0..2 {
            finished
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("add and commit deadlocked");
        }
        adder.join().unwrap();
        committer.join().unwrap();
        ix.commit(T0).unwrap();
        assert_eq!(ix.search(&query(&[]), None).unwrap().0.total, 300);
    }

    #[test]
    fn old_buckets_are_dropped_and_closed_ones_still_take_late_records() {
        let ix = indexed(&sample());
        ix.commit(T0 + 10 * BUCKET_MS).unwrap(); // every writer closes
        ix.add(
            &[rec(T0 + 5, 10_000, "api", Level::Error, "late arrival")],
            |_| {},
        )
        .unwrap();
        ix.commit(T0 + 10 * BUCKET_MS).unwrap();
        assert_eq!(
            ix.search(&query(&[("q", "late")]), None).unwrap().0.total,
            1
        );
        assert_eq!(ix.drop_before(T0 + BUCKET_MS), 1);
        assert_eq!(ix.search(&query(&[]), None).unwrap().0.total, 200);
    }

    // ----- On disk ----------------------------------------------------------------------

    fn on_disk(dir: &Path, records: &[Record]) -> Indexes {
        let (ix, opened) = Indexes::open(dir).unwrap();
        assert_eq!(opened, Opened::default(), "a new directory holds nothing");
        ix.add(records, |_| {}).unwrap();
        ix.commit(T0).unwrap();
        ix
    }

    #[test]
    fn an_index_on_disk_opens_again_with_its_lines_ids_sizes_and_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let records = sample();
        let ix = on_disk(tmp.path(), &records);
        ix.save_checkpoint(T0 + 42).unwrap();
        let (answer, _) = ix.search(&query(&[("q", "timed out")]), None).unwrap();
        let limits = ix.over_limit(1);
        drop(ix);

        let (ix, opened) = Indexes::open(tmp.path()).unwrap();
        assert_eq!(opened.buckets, 3);
        assert_eq!(opened.lines, 300);
        assert!(opened.broken.is_empty());
        assert_eq!(opened.checkpoint, Some(T0 + 42));
        let (again, _) = ix.search(&query(&[("q", "timed out")]), None).unwrap();
        assert_eq!(again.total, answer.total);
        assert_eq!(again.lines.len(), answer.lines.len());
        assert_eq!(ix.over_limit(1), limits, "the streams' sizes came back");
        let label = ix.search(&query(&[("label", "env:prod")]), None).unwrap().0;
        assert_eq!(label.total, 150, "labels are searchable");
        let added = ix.add(&records, |_| {}).unwrap();
        assert_eq!(
            added,
            Added {
                new: 0,
                duplicates: 300
            },
            "the dedup ids came back"
        );
    }

    #[test]
    fn lines_added_but_not_committed_are_not_there_after_a_crash_and_can_be_added_again() {
        let tmp = tempfile::tempdir().unwrap();
        let records = sample();
        let ix = on_disk(tmp.path(), &records[..100]);
        ix.add(&records[100..], |_| {}).unwrap(); // no commit: the process dies
        drop(ix);
        let (ix, opened) = Indexes::open(tmp.path()).unwrap();
        assert_eq!(opened.lines, 100);
        let added = ix.add(&records, |_| {}).unwrap();
        assert_eq!((added.new, added.duplicates), (200, 100));
        ix.commit(T0).unwrap();
        let all = ix.search(&query(&[]), None).unwrap().0;
        assert_eq!(all.total, 300);
    }

    #[test]
    fn a_second_aggregator_cannot_use_the_same_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = Indexes::open(tmp.path()).unwrap();
        match Indexes::open(tmp.path()) {
            Err(IndexError::Locked(dir)) => assert_eq!(dir, tmp.path()),
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("opened twice"),
        }
    }

    #[test]
    fn a_bucket_that_does_not_open_is_deleted_and_reported_the_others_open() {
        let tmp = tempfile::tempdir().unwrap();
        drop(on_disk(tmp.path(), &sample()));
        let torn = tmp.path().join((T0 + BUCKET_MS).to_string());
        std::fs::write(torn.join("meta.json"), b"{ torn").unwrap();
        let (ix, opened) = Indexes::open(tmp.path()).unwrap();
        assert_eq!(opened.broken, vec![T0 + BUCKET_MS]);
        assert_eq!(opened.buckets, 2);
        assert!(!torn.exists(), "deleted, to be rebuilt");
        assert!(!ix.has(T0 + BUCKET_MS));
        assert!(ix.has(T0) && ix.has(T0 + 2 * BUCKET_MS));
    }

    #[test]
    fn retention_deletes_a_bucket_s_files() {
        let tmp = tempfile::tempdir().unwrap();
        let ix = on_disk(tmp.path(), &sample());
        assert_eq!(ix.drop_before(T0 + BUCKET_MS), 1);
        assert!(!tmp.path().join(T0.to_string()).exists());
        drop(ix);
        let (_, opened) = Indexes::open(tmp.path()).unwrap();
        assert_eq!(opened.buckets, 2);
        assert_eq!(opened.lines, 200);
    }
}
