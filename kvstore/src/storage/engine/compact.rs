//! Compaction: rewriting the live records of sealed segments into new segments (each with
//! its hint file) and deleting the old ones, with a marker file that lets a crash at any step
//! be finished or rolled back at the next open. The crash argument is in
//! `docs/storage-format.md`; reads and writes go on meanwhile.

use super::*;

impl Inner {
    pub(super) fn compact(&self) -> Result<CompactionReport> {
        let _guard = self.compaction.lock().expect("compaction lock");
        self.check_poison()?;
        // Seal the active segment so that everything written so far is eligible.
        {
            let mut w = self.writer.lock().expect("writer lock");
            if w.len > SEGMENT_HEADER_BYTES {
                self.rotate(&mut w)?;
            }
        }
        let inputs = self.sealed_segments();
        if inputs.is_empty() {
            return Ok(CompactionReport::default());
        }
        let now = if self.config.expire_locally {
            self.clock.now_ms()
        } else {
            0
        };
        let mut report = CompactionReport {
            segments_in: inputs.len(),
            ..Default::default()
        };
        let mut out = CompactionOutput::new(self);
        let copied = self
            .copy_live(&inputs, now, &mut out, &mut report)
            .and_then(|copied| out.seal_all().map(|()| copied));
        let copied = match copied {
            Ok(copied) => copied,
            // Outputs nobody knows of must not stay: after later writes and compactions, the
            // old values they hold could come back at a restart.
            Err(error) => return Err(self.abandon_outputs(out.abandon(), error)),
        };
        let outputs = out.into_done();
        report.segments_out = outputs.len();
        report.bytes_after = outputs.iter().map(|(_, len, _)| *len).sum();

        // The outputs are durable. Record which inputs they replace before deleting any: a crash
        // from here on finishes the deletion at startup (deleting only some inputs could bring a
        // deleted key back, since its tombstone may be in an input deleted before its value).
        let input_ids: Vec<u64> = inputs.iter().map(|(id, _, _)| *id).collect();
        let marker = self.dir.join(COMPACTION_MARKER);
        let marked = self
            .fault(IoOp::Rename, &marker)
            .map_err(StorageError::io("writing", &marker))
            .and_then(|()| write_marker(&self.dir, &input_ids));
        if let Err(error) = marked {
            let ids = outputs.iter().map(|(id, _, _)| *id).collect();
            return Err(self.abandon_outputs(ids, error));
        }
        // From here on a failure leaves inputs that must not be forgotten: the marker lists
        // them and only a restart finishes the job, so any error poisons the engine.
        if let Err(e) = self.install_compaction(&outputs, copied, &input_ids) {
            self.poison(format!("compaction failed after recording its inputs: {e}"));
            return Err(e);
        }
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        self.counters.compaction_bytes_reclaimed.fetch_add(
            report.bytes_before.saturating_sub(report.bytes_after),
            Ordering::Relaxed,
        );
        Ok(report)
    }

    /// Copies the live records of `inputs` into `out`, ending with a `VersionMark`. Returns
    /// what moved, and the expired records it left behind (their index entries must go).
    fn copy_live(
        &self,
        inputs: &[(u64, Arc<File>, bool)],
        now: u64,
        out: &mut CompactionOutput<'_>,
        report: &mut CompactionReport,
    ) -> Result<Copied> {
        let mut copied = Copied::default();
        let mut max_version = 0;
        for (id, file, _) in inputs {
            let data = recover::read_sealed(&self.dir, *id, file)?;
            report.bytes_before += data.len() as u64;
            let path = segment::segment_path(&self.dir, *id);
            let scan = segment::scan(&path, *id, &data, self.limits, false)?;
            for chunk in scan.entries.chunks(COMPACTION_CHUNK_RECORDS) {
                let mut live: Vec<&HintEntry> = Vec::new();
                {
                    let state = self.state.read().expect("state lock");
                    for e in chunk {
                        max_version = max_version.max(e.version);
                        let at = Location {
                            segment: *id,
                            offset: e.offset,
                            len: e.len,
                        };
                        let current = state.index.get(&e.key[..]).filter(|i| i.at == at);
                        match current {
                            Some(i) if i.expired(now) => copied.expired.push((e.key.clone(), at)),
                            Some(_) => live.push(e),
                            None => {}
                        }
                    }
                }
                for e in live {
                    let bytes = &data[e.offset as usize..(e.offset + u64::from(e.len)) as usize];
                    let rec = record::decode(bytes, self.limits).map_err(|err| {
                        StorageError::Corrupt {
                            path: path.clone(),
                            offset: e.offset,
                            reason: err.to_string(),
                        }
                    })?;
                    let new_at = out.push(Record {
                        batch_continues: false,
                        ..rec
                    })?;
                    let old_at = Location {
                        segment: *id,
                        offset: e.offset,
                        len: e.len,
                    };
                    copied.moved.push((e.key.clone(), old_at, new_at));
                    report.records_kept += 1;
                }
            }
        }
        // Versions must never go backwards, even if every record that used the highest one is
        // dropped here: leave a mark.
        out.push(Record {
            kind: RecordKind::VersionMark,
            batch_continues: false,
            version: max_version,
            expires_at_ms: 0,
            key: b"",
            value: b"",
        })?;
        Ok(copied)
    }

    /// Deletes the outputs of a compaction that failed before recording its inputs, and
    /// returns `error`. If even that fails, the engine is poisoned: a restart is safe (the
    /// inputs are all there), carrying on is not.
    fn abandon_outputs(&self, ids: Vec<u64>, error: StorageError) -> StorageError {
        let tmp = ids
            .iter()
            .map(|id| segment::segment_path(&self.dir, *id).with_extension("seg.tmp"));
        let tmp_removed = tmp.into_iter().all(|path| match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        });
        if !tmp_removed || delete_segments(&self.dir, &ids).is_err() {
            self.poison(format!(
                "compaction failed ({error}) and its outputs could not be removed"
            ));
        }
        tracing::error!(%error, outputs = ?ids, "compaction failed; its outputs were removed");
        error
    }

    /// Points the index at a compaction's outputs, deletes its inputs and the marker, and
    /// leaves the writer on the highest segment id.
    fn install_compaction(
        &self,
        outputs: &[(u64, u64, Arc<File>)],
        copied: Copied,
        input_ids: &[u64],
    ) -> Result<()> {
        let Copied { moved, expired } = copied;
        {
            let mut state = self.state.write().expect("state lock");
            for (id, len, file) in outputs {
                let info = SegmentInfo {
                    file: file.clone(),
                    total_bytes: *len,
                    live_bytes: 0,
                    has_hint: true,
                };
                state.segments.insert(*id, info);
            }
        }
        // Repoint the index in chunks, releasing the write lock between them: with millions of
        // keys, doing it in one go would stall every request for a long moment. Meanwhile an
        // entry may point at an input or an output; both files are open and hold the record.
        for chunk in moved.chunks(COMPACTION_CHUNK_RECORDS * 16) {
            let mut state = self.state.write().expect("state lock");
            for (key, old, new) in chunk {
                let Some(entry) = state.index.get_mut(&key[..]) else {
                    continue;
                };
                if entry.at == *old {
                    entry.at = *new;
                    if let Some(seg) = state.segments.get_mut(&new.segment) {
                        seg.live_bytes += u64::from(new.len);
                    }
                }
            }
        }
        // Expired records were not copied: their entries go too, or they would point at a
        // segment that is about to disappear.
        for chunk in expired.chunks(COMPACTION_CHUNK_RECORDS * 16) {
            let mut state = self.state.write().expect("state lock");
            for (key, old) in chunk {
                if state.index.get(&key[..]).is_some_and(|e| e.at == *old) {
                    state.remove(key);
                }
            }
        }
        // No entry points at an input any more: the rest were overwritten or deleted since,
        // and new writes go to the active segment.
        {
            let mut state = self.state.write().expect("state lock");
            for id in input_ids {
                state.segments.remove(id);
            }
        }
        let first = segment::segment_path(&self.dir, input_ids.first().copied().unwrap_or(0));
        self.fault(IoOp::Remove, &first)
            .map_err(StorageError::io("removing", &first))?;
        delete_segments(&self.dir, input_ids)?;
        remove_marker(&self.dir)?;
        // Leave the writer on the highest segment id, above the outputs just made.
        {
            let mut w = self.writer.lock().expect("writer lock");
            if w.segment < outputs.iter().map(|(id, _, _)| *id).max().unwrap_or(0) {
                self.rotate(&mut w)?;
            }
        }
        Ok(())
    }
}

/// What a compaction copied: (key, old location, new location) per record moved, and
/// (key, location) per expired record left behind.
#[derive(Default)]
struct Copied {
    moved: Vec<(Box<[u8]>, Location, Location)>,
    expired: Vec<(Box<[u8]>, Location)>,
}

/// Segments being written by a compaction, rolled over at the segment size limit. Each gets a
/// hint file; all are fsynced (with the directory) by [`CompactionOutput::finish`].
struct CompactionOutput<'a> {
    inner: &'a Inner,
    current: Option<(u64, File, Vec<u8>, Vec<HintEntry>)>,
    done: Vec<(u64, u64, Arc<File>)>,
    /// Every output id created, so that a failure can remove them all.
    started: Vec<u64>,
}

impl<'a> CompactionOutput<'a> {
    fn new(inner: &'a Inner) -> Self {
        CompactionOutput {
            inner,
            current: None,
            done: Vec::new(),
            started: Vec::new(),
        }
    }

    fn push(&mut self, rec: Record<'_>) -> Result<Location> {
        let len = rec.encoded_len() as u64;
        let full = self.current.as_ref().is_some_and(|(_, _, buf, _)| {
            SEGMENT_HEADER_BYTES + buf.len() as u64 + len > self.inner.config.segment_bytes_max
                && !buf.is_empty()
        });
        if full {
            self.seal()?;
        }
        if self.current.is_none() {
            let id = self.inner.next_segment_id.fetch_add(1, Ordering::SeqCst);
            let path = segment::segment_path(&self.inner.dir, id).with_extension("seg.tmp");
            self.started.push(id);
            self.inner
                .fault(IoOp::Create, &path)
                .map_err(StorageError::io("creating", &path))?;
            let file = segment::create_segment_file(&path, id)?;
            self.current = Some((id, file, Vec::new(), Vec::new()));
        }
        let (id, _, buf, hints) = self.current.as_mut().expect("created above");
        let offset = SEGMENT_HEADER_BYTES + buf.len() as u64;
        debug_assert!(!rec.batch_continues);
        rec.encode(buf);
        debug_assert_eq!(
            buf[(offset - SEGMENT_HEADER_BYTES) as usize + 12] & BATCH_CONTINUES,
            0
        );
        hints.push(HintEntry {
            kind: rec.kind,
            version: rec.version,
            expires_at_ms: rec.expires_at_ms,
            offset,
            len: len as u32,
            key: rec.key.into(),
            aux: [].into(),
        });
        Ok(Location {
            segment: *id,
            offset,
            len: len as u32,
        })
    }

    fn seal(&mut self) -> Result<()> {
        let Some((id, file, buf, hints)) = self.current.take() else {
            return Ok(());
        };
        let path = segment::segment_path(&self.inner.dir, id);
        self.inner
            .fault(IoOp::WriteOutput, &path)
            .and_then(|()| file.write_all_at(&buf, SEGMENT_HEADER_BYTES))
            .map_err(StorageError::io("writing compacted segment", &path))?;
        file.sync_all()
            .map_err(StorageError::io("syncing compacted segment", &path))?;
        let len = SEGMENT_HEADER_BYTES + buf.len() as u64;
        segment::write_hint(&self.inner.dir, id, len, &hints)?;
        // The hint's name must be durable before the segment's: a named segment without its
        // hint would pass for the writer's segment at recovery.
        segment::sync_dir(&self.inner.dir)?;
        // The segment takes its real name only now, with its hint beside it: a segment without a
        // hint is always the writer's, which is what recovery relies on to find a torn tail.
        let tmp = path.with_extension("seg.tmp");
        self.inner
            .fault(IoOp::Rename, &tmp)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(StorageError::io("renaming compacted segment", &tmp))?;
        self.done.push((id, len, Arc::new(file)));
        Ok(())
    }

    /// Seals the last output and makes the directory entries durable.
    fn seal_all(&mut self) -> Result<()> {
        self.seal()?;
        segment::sync_dir(&self.inner.dir)
    }

    /// The sealed outputs: (id, length, file).
    fn into_done(self) -> Vec<(u64, u64, Arc<File>)> {
        self.done
    }

    /// Gives up: the ids of every output created, whatever state it reached, for deletion.
    fn abandon(self) -> Vec<u64> {
        self.started
    }
}

fn write_marker(dir: &Path, ids: &[u64]) -> Result<()> {
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    write_atomically(dir, COMPACTION_MARKER, &text)
}

fn remove_marker(dir: &Path) -> Result<()> {
    let path = dir.join(COMPACTION_MARKER);
    fs::remove_file(&path).map_err(StorageError::io("removing", &path))?;
    segment::sync_dir(dir)
}

fn delete_segments(dir: &Path, ids: &[u64]) -> Result<()> {
    for &id in ids {
        for path in [segment::segment_path(dir, id), segment::hint_path(dir, id)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StorageError::Io {
                        action: "removing",
                        path,
                        source: e,
                    })
                }
            }
        }
    }
    segment::sync_dir(dir)
}

/// A compaction that crashed after recording its inputs: delete them now, before recovery reads.
pub(super) fn finish_interrupted_compaction(dir: &Path) -> Result<()> {
    let path = dir.join(COMPACTION_MARKER);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StorageError::Io {
                action: "reading",
                path,
                source: e,
            })
        }
    };
    let ids: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    tracing::info!(segments = ?ids, "finishing a compaction interrupted by a crash");
    delete_segments(dir, &ids)?;
    remove_marker(dir)
}
