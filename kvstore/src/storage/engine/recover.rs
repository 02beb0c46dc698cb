//! Recovery: rebuilding the in-memory index from a data directory when the engine opens,
//! from hint files where a segment has one and by scanning (and checking every record of) the
//! rest; only a torn tail of the newest segment is repaired.

use super::*;

/// What recovery rebuilt from the directory.
pub(super) struct Recovered {
    pub(super) state: State,
    pub(super) last_version: u64,
    pub(super) next_segment_id: u64,
    /// The newest segment and its length, if new writes can continue in it.
    pub(super) reusable_tail: Option<(u64, u64)>,
}

pub(super) fn recover(
    dir: &Path,
    limits: RecordLimits,
    now_ms: u64,
    inline_max: u32,
) -> Result<Recovered> {
    #[derive(Clone)]
    struct Slot {
        entry: IndexEntry,
        tombstone: bool,
    }
    let ids = segment::list_segments(dir)?;
    // Compaction outputs and sealed segments get a hint once they are complete and fsynced, so
    // only the newest segment without a hint can be the one a crash interrupted mid-append.
    let mut hints = BTreeMap::new();
    for &id in &ids {
        let path = segment::segment_path(dir, id);
        let len = fs::metadata(&path)
            .map_err(StorageError::io("reading size of", &path))?
            .len();
        if let Some(entries) = segment::read_hint(dir, id, len) {
            hints.insert(id, entries);
        }
    }
    let torn_candidate = ids.iter().rev().find(|id| !hints.contains_key(id)).copied();

    // Every point record, in file order; sorted and reduced to the newest per key below.
    let mut records: Vec<(Box<[u8]>, Slot)> = Vec::new();
    let mut ranges: Vec<(KeyRange, u64)> = Vec::new();
    let mut segments = BTreeMap::new();
    let mut last_version = 0;
    let mut tail_len = 0;
    for &id in &ids {
        let file = segment::open_segment(dir, id)?;
        let path = segment::segment_path(dir, id);
        let (entries, len, has_hint) = match hints.remove(&id) {
            Some(entries) => {
                let len = file
                    .metadata()
                    .map_err(StorageError::io("reading size of", &path))?;
                (entries, len.len(), true)
            }
            None => {
                let data = read_file(dir, id, &file)?;
                let scan = segment::scan(&path, id, &data, limits, Some(id) == torn_candidate)?;
                if let Some(reason) = &scan.torn_tail {
                    let dropped = data.len() as u64 - scan.valid_len;
                    tracing::warn!(
                        segment = %path.display(),
                        dropped_bytes = dropped,
                        valid_bytes = scan.valid_len,
                        %reason,
                        "torn tail truncated: {dropped} bytes dropped"
                    );
                    file.set_len(scan.valid_len)
                        .map_err(StorageError::io("truncating", &path))?;
                }
                // A segment without a hint may hold writes that never reached the disk (the
                // process died before an fsync): make them durable before building on them.
                file.sync_all()
                    .map_err(StorageError::io("syncing", &path))?;
                (scan.entries, scan.valid_len, false)
            }
        };
        if len < SEGMENT_HEADER_BYTES {
            // A segment whose creation was cut short holds nothing: remove it.
            drop(file);
            fs::remove_file(&path).map_err(StorageError::io("removing", &path))?;
            continue;
        }
        for e in entries {
            last_version = last_version.max(e.version);
            let at = Location {
                segment: id,
                offset: e.offset,
                len: e.len,
            };
            let entry = IndexEntry {
                at,
                version: e.version,
                expires_at_ms: e.expires_at_ms,
                inline: None,
            };
            match e.kind {
                RecordKind::Put | RecordKind::Delete => {
                    let tombstone = e.kind == RecordKind::Delete;
                    records.push((e.key, Slot { entry, tombstone }));
                }
                RecordKind::DeleteRange => ranges.push(((e.key, e.aux), e.version)),
                RecordKind::VersionMark => {}
            }
        }
        segments.insert(
            id,
            SegmentInfo {
                file: Arc::new(file),
                total_bytes: len,
                live_bytes: 0,
                has_hint,
            },
        );
        tail_len = len;
    }

    // For each key the highest version wins, whatever file it is in; on a tie the later file
    // (the same record can be on disk twice: a compaction's output and its input, after a
    // crash between them; either copy is correct). A stable sort keeps file order among
    // equals, and a compacted segment is already in key order, so the sort mostly merges
    // sorted runs; the index is then built from sorted keys in one pass, rather than by a
    // million searches of a growing tree.
    records.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(a.1.entry.version.cmp(&b.1.entry.version))
    });
    let mut live: Vec<(IndexKey, IndexEntry)> = Vec::with_capacity(records.len());
    let mut records = records.into_iter().peekable();
    while let Some((key, slot)) = records.next() {
        if records.peek().is_some_and(|(next, _)| *next == key) {
            continue; // a newer record of the key follows
        }
        if !slot.tombstone && !slot.entry.expired(now_ms) {
            live.push((IndexKey::from(&key[..]), slot.entry));
        }
    }
    let mut state = State {
        index: live.into_iter().collect(),
        expiring: BTreeSet::new(),
        segments,
        // Where the active segment's end is, the engine decides once recovery is done.
        tail: Default::default(),
    };
    for (key, entry) in &state.index {
        if entry.expires_at_ms != 0 {
            state.expiring.insert((entry.expires_at_ms, key.clone()));
        }
        if let Some(seg) = state.segments.get_mut(&entry.at.segment) {
            seg.live_bytes += u64::from(entry.at.len);
        }
    }
    for ((start, end), version) in &ranges {
        state.remove_range(start, end, *version);
    }
    load_inline_values(dir, &mut state, inline_max)?;
    let newest = state.segments.keys().next_back().copied();
    // Keep appending to the newest segment if it is the one that was being written.
    let reusable_tail = newest
        .filter(|id| Some(*id) == torn_candidate && tail_len > 0)
        .map(|id| (id, tail_len));
    Ok(Recovered {
        reusable_tail,
        state,
        last_version,
        next_segment_id: newest.map_or(1, |id| id + 1),
    })
}

/// Fills in the inline copies of small values after recovery, reading each segment that holds
/// any once, sequentially, instead of one positional read per key.
fn load_inline_values(dir: &Path, state: &mut State, inline_max: u32) -> Result<()> {
    let small = |e: &IndexEntry, key: &[u8]| {
        (e.at.len as usize) <= record::RECORD_HEADER_BYTES + key.len() + inline_max as usize
    };
    let mut by_segment: BTreeMap<u64, Vec<IndexKey>> = BTreeMap::new();
    for (key, e) in &state.index {
        if small(e, key) {
            by_segment
                .entry(e.at.segment)
                .or_default()
                .push(key.clone());
        }
    }
    for (id, keys) in by_segment {
        let data = read_file(dir, id, &state.segments[&id].file)?;
        for key in keys {
            let entry = state.index.get_mut(&key).expect("collected from the index");
            let start = entry.at.offset as usize;
            let bytes = &data[start..start + entry.at.len as usize];
            let rec =
                record::decode(bytes, RecordLimits::FORMAT).map_err(|e| StorageError::Corrupt {
                    path: segment::segment_path(dir, id),
                    offset: entry.at.offset,
                    reason: e.to_string(),
                })?;
            entry.inline = Some(Bytes::copy_from_slice(rec.value));
        }
    }
    Ok(())
}

pub(super) fn read_file(dir: &Path, id: u64, file: &File) -> Result<Vec<u8>> {
    let path = segment::segment_path(dir, id);
    let len = file
        .metadata()
        .map_err(StorageError::io("reading size of", &path))?
        .len();
    let mut data = vec![0u8; len as usize];
    file.read_exact_at(&mut data, 0)
        .map_err(StorageError::io("reading", &path))?;
    Ok(data)
}

/// A sealed segment's bytes, for the passes that read a whole segment once (hint writing,
/// compaction): mapped rather than copied. Profiled under a log flood, copying each sealed
/// segment into a fresh buffer (the read, and the page faults of the new allocation) was nine
/// tenths of hint writing; a mapping shares the page cache's pages. `None`: an empty file
/// (which cannot be mapped).
pub(super) struct SealedBytes(Option<memmap2::Mmap>);

impl std::ops::Deref for SealedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}

/// Maps sealed segment `id`.
pub(super) fn read_sealed(dir: &Path, id: u64, file: &File) -> Result<SealedBytes> {
    let path = segment::segment_path(dir, id);
    let len = file
        .metadata()
        .map_err(StorageError::io("reading size of", &path))?
        .len();
    if len == 0 {
        return Ok(SealedBytes(None));
    }
    // SAFETY: a sealed segment is never written or truncated again: appends go to the active
    // segment only (the one file ever cut back, on a failed append), and compaction writes
    // new files and deletes its inputs, which a mapping outlives. (Another process truncating
    // the file would fault this one; the data directory is this process's, under its lock.)
    let map = unsafe { memmap2::Mmap::map(file) }.map_err(StorageError::io("mapping", &path))?;
    Ok(SealedBytes(Some(map)))
}
