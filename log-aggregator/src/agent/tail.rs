//! Following log files: globs, rotation, truncation, partial and multi-line records.
//!
//! **Identity.** A file is its device and inode plus a fingerprint: a hash of its first
//! [`FINGERPRINT_BYTES`] bytes (or of as many as it had when first seen), plus a generation
//! that a truncation advances. A record's dedup source is that identity, so a renamed file
//! is the same file, and an inode reused by a new file (whose first bytes differ) is not.
//!
//! **Rotation.** Each poll lists the globs. A file the globs no longer name (renamed away
//! or deleted) is still open here: it is read to its end, and closed once it has not grown
//! for [`ROTATED_IDLE_MS`] (the writer has moved to the new file). A new file under the
//! name is a new identity, read from its start.
//!
//! **Truncation and copytruncate.** A file shorter than what was read of it was truncated.
//! What was written to it between the last read and the truncation is in the copy that
//! `copytruncate` made: a file in the same directory with the same first bytes and at
//! least the length read. If there is one, the rest is read from the copy under the old
//! identity; then the truncated file is read from 0 as its next generation.
//!
//! **Lines.** A line is complete at its newline; a partial last line waits (a rotated file's
//! partial line is taken when the file is closed). A line over [`LINE_BYTES_MAX`] is cut
//! there and flagged, and the rest of it skipped. With `multiline_start`, a line that does
//! not match it joins the record before (a stack trace), which is complete at the next start
//! or after [`MULTILINE_IDLE_MS`] without a new line. A record's position is the offset of its
//! first byte and its end the offset after its last line: the checkpoint of a file is the
//! end of its last acknowledged record ([`Checkpoints`]), and a restarted agent reads on from
//! there.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::config::{FileSource, ReadFrom};

/// How many first bytes make a file's fingerprint.
pub const FINGERPRINT_BYTES: usize = 256;
/// The longest line (or multi-line record) kept; the rest is cut and flagged.
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// A file the globs no longer name is closed once it has not grown for this long.
pub const ROTATED_IDLE_MS: i64 = 2_000;
/// A multi-line record is complete after this long without a new line.
pub const MULTILINE_IDLE_MS: i64 = 500;
/// The most bytes read from one file in one poll.
pub const READ_BYTES_PER_POLL: usize = 1024 * 1024;
/// Files followed at once.
pub const FILES_MAX: usize = 1_024;

/// A file's identity (see the module's comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub fp_len: usize,
    pub fp_hash: u64,
    pub generation: u32,
}

impl Identity {
    /// The dedup source of the file's records.
    pub fn source(&self) -> String {
        format!(
            "file:{}:{}:{}:{:016x}:{}",
            self.dev, self.ino, self.fp_len, self.fp_hash, self.generation
        )
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The hash of the first `len` bytes of `file` (None if it is shorter).
fn fingerprint(file: &mut File, len: usize) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(0))?;
    let mut n = 0;
    while n < len {
        match file.read(&mut buf[n..])? {
            0 => return Ok(None),
            k => n += k,
        }
    }
    Ok(Some(fnv(&buf)))
}

/// A file's read position, kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub path: String,
    pub identity: Identity,
    /// The end of the last acknowledged record.
    pub offset: u64,
    /// When it last moved (Unix ms); old ones are forgotten.
    pub updated_ms: i64,
}

/// Every file's checkpoint, by source, in `<state_dir>/checkpoints.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Checkpoints {
    pub files: BTreeMap<String, Checkpoint>,
}

/// Checkpoints not moved for this long are forgotten.
pub const CHECKPOINT_TTL_MS: i64 = 7 * 86_400_000;

impl Checkpoints {
    pub fn load(path: &Path) -> io::Result<Checkpoints> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Checkpoints::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes them atomically (temporary file, fsync, rename).
    pub fn save(&mut self, path: &Path, now_ms: i64) -> io::Result<()> {
        self.files
            .retain(|_, c| now_ms - c.updated_ms < CHECKPOINT_TTL_MS);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serialises"))?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// An acknowledged record of `source` ended at `end`.
    pub fn advance(
        &mut self,
        source: &str,
        path: &str,
        identity: &Identity,
        end: u64,
        now_ms: i64,
    ) {
        let c = self
            .files
            .entry(source.to_string())
            .or_insert_with(|| Checkpoint {
                path: path.to_string(),
                identity: identity.clone(),
                offset: 0,
                updated_ms: now_ms,
            });
        if end > c.offset {
            c.offset = end;
            c.updated_ms = now_ms;
        }
    }
}

/// One record read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub source: String,
    pub identity: Identity,
    pub path: String,
    /// Which `[[files]]` entry.
    pub entry: usize,
    pub position: u64,
    pub end: u64,
    pub text: String,
    pub truncated: bool,
}

struct Pending {
    position: u64,
    end: u64,
    text: Vec<u8>,
    truncated: bool,
    last_ms: i64,
}

struct Followed {
    file: File,
    path: PathBuf,
    entry: usize,
    identity: Identity,
    /// The next byte to read.
    offset: u64,
    /// A partial line, and where it starts.
    partial: Vec<u8>,
    partial_start: u64,
    /// Skipping the rest of an over-long line.
    skipping: bool,
    pending: Option<Pending>,
    /// The globs no longer name it.
    rotated: bool,
    last_growth_ms: i64,
}

/// Lists the files a glob names: `*` and `?` in the file name, the directory literal.
pub fn glob(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    if !name.contains(['*', '?']) {
        return if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Whether `text` matches `pattern` (`*` any run, `?` any one character).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

pub struct Tailer {
    entries: Vec<(FileSource, Option<Regex>)>,
    followed: BTreeMap<(u64, u64), Followed>,
    first_scan: bool,
}

impl Tailer {
    pub fn new(entries: Vec<FileSource>) -> Tailer {
        let entries = entries
            .into_iter()
            .map(|e| {
                let re = e
                    .multiline_start
                    .as_deref()
                    .map(|r| Regex::new(r).expect("validated with the config"));
                (e, re)
            })
            .collect();
        Tailer {
            entries,
            followed: BTreeMap::new(),
            first_scan: true,
        }
    }

    /// The `[[files]]` entry `i`.
    pub fn entry(&self, i: usize) -> &FileSource {
        &self.entries[i].0
    }

    /// Files followed now.
    pub fn followed(&self) -> usize {
        self.followed.len()
    }

    /// One poll: finds new, rotated and truncated files, reads what was added, and returns
    /// the complete records. `checkpoints` says where a file seen again resumes.
    pub fn poll(&mut self, checkpoints: &Checkpoints, now_ms: i64) -> Vec<FileRecord> {
        let mut out = Vec::new();
        let mut named: BTreeMap<(u64, u64), (PathBuf, usize)> = BTreeMap::new();
        for (i, (e, _)) in self.entries.iter().enumerate() {
            for pattern in &e.paths {
                for path in glob(pattern) {
                    if let Ok(m) = std::fs::metadata(&path) {
                        named.entry((m.dev(), m.ino())).or_insert((path, i));
                    }
                }
            }
        }
        for (key, f) in self.followed.iter_mut() {
            match named.get(key) {
                Some((path, _)) => {
                    f.rotated = false;
                    f.path = path.clone();
                }
                None => f.rotated = true,
            }
        }
        for (key, (path, entry)) in &named {
            if self.followed.contains_key(key) || self.followed.len() >= FILES_MAX {
                continue;
            }
            match self.open(path, *entry, checkpoints, now_ms) {
                Ok(Some(f)) => {
                    tracing::info!(path = %path.display(), source = %f.identity.source(), offset = f.offset, "following a file");
                    self.followed.insert(*key, f);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot follow a file")
                }
            }
        }
        self.first_scan = false;
        let mut closed = Vec::new();
        for (key, f) in self.followed.iter_mut() {
            let regex = self.entries[f.entry].1.as_ref();
            if let Err(error) = read_file(f, regex, now_ms, &mut out) {
                tracing::warn!(path = %f.path.display(), %error, "reading a file failed");
            }
            flush_idle(f, now_ms, &mut out);
            if f.rotated && now_ms - f.last_growth_ms >= ROTATED_IDLE_MS {
                finish(f, &mut out);
                tracing::info!(path = %f.path.display(), source = %f.identity.source(), "closed a rotated file");
                closed.push(*key);
            }
        }
        for key in closed {
            self.followed.remove(&key);
        }
        out
    }

    /// Opens a file the globs name for the first time: resumed from its checkpoint if its
    /// identity has one, else from its start (or its end, under `read_from = "end"` on the
    /// first scan). An empty file waits (it has no fingerprint yet).
    fn open(
        &self,
        path: &Path,
        entry: usize,
        checkpoints: &Checkpoints,
        now_ms: i64,
    ) -> io::Result<Option<Followed>> {
        let mut file = File::open(path)?;
        let m = file.metadata()?;
        if m.len() == 0 {
            return Ok(None);
        }
        // A checkpoint of this inode whose fingerprint still matches: the same file.
        let mut resume = None;
        for c in checkpoints.files.values() {
            let id = &c.identity;
            if (id.dev, id.ino) == (m.dev(), m.ino())
                && fingerprint(&mut file, id.fp_len)? == Some(id.fp_hash)
                && resume
                    .as_ref()
                    .is_none_or(|r: &Checkpoint| r.identity.generation < id.generation)
            {
                resume = Some(c.clone());
            }
        }
        let (identity, mut offset) = match resume {
            Some(c) => (c.identity, c.offset),
            None => {
                let fp_len = (m.len() as usize).min(FINGERPRINT_BYTES);
                let fp_hash = fingerprint(&mut file, fp_len)?.expect("the file is this long");
                let identity = Identity {
                    dev: m.dev(),
                    ino: m.ino(),
                    fp_len,
                    fp_hash,
                    generation: 0,
                };
                let start = match self.entries[entry].0.read_from {
                    ReadFrom::End if self.first_scan => m.len(),
                    _ => 0,
                };
                (identity, start)
            }
        };
        if offset > m.len() {
            // Truncated while the agent was down: what was lost before is not here.
            offset = 0;
        }
        Ok(Some(Followed {
            file,
            path: path.to_path_buf(),
            entry,
            identity,
            offset,
            partial: Vec::new(),
            partial_start: offset,
            skipping: false,
            pending: None,
            rotated: false,
            last_growth_ms: now_ms,
        }))
    }
}

/// Reads what `f` gained (handling a truncation first).
fn read_file(
    f: &mut Followed,
    regex: Option<&Regex>,
    now_ms: i64,
    out: &mut Vec<FileRecord>,
) -> io::Result<()> {
    let len = f.file.metadata()?.len();
    // Shorter than what was read: truncated. Grown, but its first bytes changed: truncated
    // and written again past where it was (between two polls).
    let rewritten = len > f.offset
        && f.offset > 0
        && fingerprint(&mut f.file, f.identity.fp_len)? != Some(f.identity.fp_hash);
    if len < f.offset || rewritten {
        truncated(f, regex, now_ms, out)?;
    }
    let len = f.file.metadata()?.len();
    if len <= f.offset {
        return Ok(());
    }
    let want = ((len - f.offset) as usize).min(READ_BYTES_PER_POLL);
    let mut buf = vec![0u8; want];
    f.file.seek(SeekFrom::Start(f.offset))?;
    let mut n = 0;
    while n < want {
        match f.file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    if n > 0 {
        f.last_growth_ms = now_ms;
    }
    let start = f.offset;
    f.offset += n as u64;
    take_lines(f, &buf, start, regex, now_ms, out);
    Ok(())
}

/// Splits `buf` (the file's bytes from `start`) into lines, joined into records.
fn take_lines(
    f: &mut Followed,
    buf: &[u8],
    start: u64,
    regex: Option<&Regex>,
    now_ms: i64,
    out: &mut Vec<FileRecord>,
) {
    let mut at = 0;
    while at < buf.len() {
        let nl = buf[at..].iter().position(|&b| b == b'\n');
        let end = nl.map_or(buf.len(), |p| at + p);
        if f.skipping {
            if nl.is_some() {
                f.skipping = false;
                f.partial_start = start + end as u64 + 1;
            }
            at = end + 1;
            continue;
        }
        if f.partial.is_empty() {
            f.partial_start = start + at as u64;
        }
        let room = LINE_BYTES_MAX.saturating_sub(f.partial.len());
        let piece = &buf[at..end];
        if piece.len() > room {
            // Over-long: cut here, skip the rest of the line.
            f.partial.extend_from_slice(&piece[..room]);
            let line = std::mem::take(&mut f.partial);
            let line_end = start + end as u64 + u64::from(nl.is_some());
            line_done(f, line, f.partial_start, line_end, true, regex, now_ms, out);
            f.skipping = nl.is_none();
            at = end + 1;
            continue;
        }
        f.partial.extend_from_slice(piece);
        match nl {
            Some(_) => {
                let mut line = std::mem::take(&mut f.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line_end = start + end as u64 + 1;
                line_done(
                    f,
                    line,
                    f.partial_start,
                    line_end,
                    false,
                    regex,
                    now_ms,
                    out,
                );
                at = end + 1;
            }
            None => break, // a partial line: wait for its newline
        }
    }
}

/// A complete line: a record of its own, or joined to the one pending.
#[allow(clippy::too_many_arguments)]
fn line_done(
    f: &mut Followed,
    line: Vec<u8>,
    position: u64,
    end: u64,
    cut: bool,
    regex: Option<&Regex>,
    now_ms: i64,
    out: &mut Vec<FileRecord>,
) {
    let Some(re) = regex else {
        out.push(record(f, position, end, &line, cut));
        return;
    };
    let starts = re.is_match(&String::from_utf8_lossy(&line));
    if let (false, Some(p)) = (starts, f.pending.as_mut()) {
        let room = LINE_BYTES_MAX.saturating_sub(p.text.len() + 1);
        if room == 0 || line.len() > room {
            p.truncated = true;
            p.text.push(b'\n');
            p.text.extend_from_slice(&line[..line.len().min(room)]);
        } else {
            p.text.push(b'\n');
            p.text.extend_from_slice(&line);
        }
        p.truncated |= cut;
        p.end = end;
        p.last_ms = now_ms;
        return;
    }
    if let Some(p) = f.pending.take() {
        out.push(record(f, p.position, p.end, &p.text, p.truncated));
    }
    f.pending = Some(Pending {
        position,
        end,
        text: line,
        truncated: cut,
        last_ms: now_ms,
    });
}

fn record(f: &Followed, position: u64, end: u64, text: &[u8], truncated: bool) -> FileRecord {
    FileRecord {
        source: f.identity.source(),
        identity: f.identity.clone(),
        path: f.path.display().to_string(),
        entry: f.entry,
        position,
        end,
        text: String::from_utf8_lossy(text).into_owned(),
        truncated,
    }
}

/// A pending multi-line record with no new line for a while is complete.
fn flush_idle(f: &mut Followed, now_ms: i64, out: &mut Vec<FileRecord>) {
    if f.pending
        .as_ref()
        .is_some_and(|p| now_ms - p.last_ms >= MULTILINE_IDLE_MS)
    {
        let p = f.pending.take().expect("checked");
        out.push(record(f, p.position, p.end, &p.text, p.truncated));
    }
}

/// The file is done with (rotated away, or truncated): its pending record and its partial
/// last line are complete.
fn finish(f: &mut Followed, out: &mut Vec<FileRecord>) {
    if let Some(p) = f.pending.take() {
        out.push(record(f, p.position, p.end, &p.text, p.truncated));
    }
    if !f.partial.is_empty() && !f.skipping {
        let line = std::mem::take(&mut f.partial);
        out.push(record(f, f.partial_start, f.offset, &line, false));
    }
    f.partial.clear();
    f.skipping = false;
}

/// `f` is shorter than what was read of it: reads the rest from a copy made by
/// copytruncate, if there is one, then starts the next generation at 0.
fn truncated(
    f: &mut Followed,
    regex: Option<&Regex>,
    now_ms: i64,
    out: &mut Vec<FileRecord>,
) -> io::Result<()> {
    if let Some(mut copy) = find_copy(f)? {
        let len = copy.metadata()?.len();
        let mut buf = Vec::new();
        copy.seek(SeekFrom::Start(f.offset))?;
        copy.take(len - f.offset).read_to_end(&mut buf)?;
        let start = f.offset;
        f.offset += buf.len() as u64;
        take_lines(f, &buf, start, regex, now_ms, out);
        tracing::info!(path = %f.path.display(), bytes = buf.len(), "read the end of a truncated file from its copy");
    }
    finish(f, out);
    tracing::info!(path = %f.path.display(), "the file was truncated; reading it again from its start");
    f.identity.generation += 1;
    // The new content's own fingerprint, over what it has now (none, if it is empty: the
    // generation keeps the identities apart).
    let len = f.file.metadata()?.len() as usize;
    f.identity.fp_len = len.min(FINGERPRINT_BYTES);
    f.identity.fp_hash = fingerprint(&mut f.file, f.identity.fp_len)?.unwrap_or(0);
    f.offset = 0;
    f.partial_start = 0;
    Ok(())
}

/// A file beside `f` with `f`'s first bytes and at least the length read of it.
fn find_copy(f: &Followed) -> io::Result<Option<File>> {
    let Some(dir) = f.path.parent() else {
        return Ok(None);
    };
    for e in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        let path = e.path();
        let Ok(m) = e.metadata() else { continue };
        if !m.is_file() || (m.dev(), m.ino()) == (f.identity.dev, f.identity.ino) {
            continue;
        }
        if m.len() < f.offset {
            continue;
        }
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        if fingerprint(&mut file, f.identity.fp_len)? == Some(f.identity.fp_hash) {
            return Ok(Some(file));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A scratch directory with `app.log` holding `text`, removed on drop.
    struct Scene {
        d: PathBuf,
        log: PathBuf,
    }

    impl Drop for Scene {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.d);
        }
    }

    fn scene(name: &str, text: &str) -> Scene {
        let d = std::env::temp_dir().join(format!("agent-tail-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let log = d.join("app.log");
        append(&log, text);
        Scene { d, log }
    }

    fn tailer(d: &Path, multiline: Option<&str>) -> Tailer {
        Tailer::new(vec![FileSource {
            paths: vec![format!("{}/*.log", d.display())],
            service: Some("app".into()),
            multiline_start: multiline.map(String::from),
            labels: BTreeMap::new(),
            read_from: ReadFrom::Beginning,
        }])
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn texts(rs: &[FileRecord]) -> Vec<String> {
        rs.iter().map(|r| r.text.clone()).collect()
    }

    #[test]
    fn globs_match_names() {
        assert!(wildcard("*.log", "app.log"));
        assert!(wildcard("app-?.log", "app-1.log"));
        assert!(!wildcard("*.log", "app.log.1"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("a*b", "ac"));
    }

    #[test]
    fn lines_partial_lines_and_positions() {
        let s = scene("lines", "one\ntwo\nthr");
        let (d, log) = (s.d.clone(), s.log.clone());
        let mut t = tailer(&d, None);
        let cps = Checkpoints::default();
        let rs = t.poll(&cps, 0);
        assert_eq!(texts(&rs), ["one", "two"]);
        assert_eq!((rs[1].position, rs[1].end), (4, 8));
        append(&log, "ee\n");
        let rs = t.poll(&cps, 10);
        assert_eq!(texts(&rs), ["three"]);
        assert_eq!((rs[0].position, rs[0].end), (8, 14));
    }

    #[test]
    fn a_restart_resumes_at_the_checkpoint_and_a_reused_inode_is_a_new_file() {
        let s = scene("resume", "first line of the file\nsecond\n");
        let (d, log) = (s.d.clone(), s.log.clone());
        let mut t = tailer(&d, None);
        let rs = t.poll(&Checkpoints::default(), 0);
        let mut cps = Checkpoints::default();
        cps.advance(&rs[0].source, &rs[0].path, &rs[0].identity, rs[0].end, 0);
        // A new agent, from the checkpoint: the second line again, not the first.
        append(&log, "third\n");
        let mut t = tailer(&d, None);
        assert_eq!(texts(&t.poll(&cps, 0)), ["second", "third"]);
        // The same inode with other first bytes is another file, read from its start.
        std::fs::write(&log, "different content entirely\n").unwrap();
        let mut t = tailer(&d, None);
        let rs = t.poll(&cps, 0);
        assert_eq!(texts(&rs), ["different content entirely"]);
        assert_ne!(rs[0].source, cps.files.keys().next().unwrap().clone());
    }

    #[test]
    fn a_renamed_file_is_drained_before_it_is_closed() {
        let s = scene("rename", "a\n");
        let (d, log) = (s.d.clone(), s.log.clone());
        let mut t = tailer(&d, None);
        let cps = Checkpoints::default();
        assert_eq!(texts(&t.poll(&cps, 0)), ["a"]);
        std::fs::rename(&log, d.join("app.log.1")).unwrap();
        append(
            &d.join("app.log.1"),
            "b (written late to the old file)\npartial",
        );
        append(&log, "c\n");
        let rs = t.poll(&cps, 100);
        assert_eq!(texts(&rs), ["b (written late to the old file)", "c"]);
        assert_eq!(t.followed(), 2);
        let rs = t.poll(&cps, 100 + ROTATED_IDLE_MS);
        assert_eq!(
            texts(&rs),
            ["partial"],
            "its partial line, when it is closed"
        );
        assert_eq!(t.followed(), 1);
    }

    #[test]
    fn copytruncate_reads_the_rest_from_the_copy_then_the_new_generation() {
        let s = scene("copytruncate", "l1\nl2\n");
        let (d, log) = (s.d.clone(), s.log.clone());
        let mut t = tailer(&d, None);
        let cps = Checkpoints::default();
        let first = t.poll(&cps, 0);
        assert_eq!(texts(&first), ["l1", "l2"]);
        append(&log, "l3\n");
        // logrotate's copytruncate: copy, then truncate; then the writer goes on.
        std::fs::copy(&log, d.join("app.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, "l4\n");
        let rs = t.poll(&cps, 10);
        assert_eq!(texts(&rs), ["l3", "l4"]);
        assert_eq!(
            rs[0].source, first[0].source,
            "the copy's rest is the old file's"
        );
        assert_ne!(rs[1].source, first[0].source, "the next generation");
        assert_eq!(rs[1].position, 0);
    }

    #[test]
    fn a_file_truncated_and_regrown_between_polls_is_caught_by_its_first_bytes() {
        let s = scene("regrown", "old 1\n");
        let (d, log) = (s.d.clone(), s.log.clone());
        let mut t = tailer(&d, None);
        let cps = Checkpoints::default();
        assert_eq!(texts(&t.poll(&cps, 0)), ["old 1"]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, "new 1 is longer\nnew 2\n");
        let rs = t.poll(&cps, 10);
        assert_eq!(texts(&rs), ["new 1 is longer", "new 2"]);
        assert_eq!(rs[0].identity.generation, 1);
    }

    #[test]
    fn stack_traces_join_and_long_lines_are_cut() {
        let s = scene(
            "multiline",
            "2026-12-07 boom\n  at a()\n  at b()\n2026-12-07 next\n",
        );
        let (d, log) = (s.d.clone(), s.log.clone());
        let mut t = tailer(&d, Some(r"^\d{4}-"));
        let cps = Checkpoints::default();
        let rs = t.poll(&cps, 0);
        assert_eq!(texts(&rs), ["2026-12-07 boom\n  at a()\n  at b()"]);
        assert_eq!(t.poll(&cps, 100), [], "the last record waits for more");
        let rs = t.poll(&cps, MULTILINE_IDLE_MS + 1);
        assert_eq!(texts(&rs), ["2026-12-07 next"]);
        let long = "x".repeat(LINE_BYTES_MAX + 10);
        append(&log, &format!("2026 {long}\nafter\n"));
        let mut t = tailer(&d, None);
        let rs = t.poll(&cps, 0);
        let cut = rs.iter().find(|r| r.truncated).unwrap();
        assert_eq!(cut.text.len(), LINE_BYTES_MAX);
        assert_eq!(rs.last().unwrap().text, "after");
    }
}
