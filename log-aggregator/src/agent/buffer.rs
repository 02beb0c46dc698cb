//! The agent's disk buffer: every record the agent takes is appended here (fsynced) before
//! it is shipped, and stays until an aggregator acknowledges it, across the agent's own
//! restarts. A queue of numbered lines on disk.
//!
//! **Layout.** A directory of segment files, `<first sequence number, 20 digits>.seg`, each
//! a run of NDJSON lines (the agent protocol's lines, see [`crate::ingest`]); a line's
//! sequence number is its segment's first plus its place in it. A segment is closed at
//! [`SEGMENT_BYTES_MAX`] and the next begins. `acked` holds the first sequence number not yet
//! acknowledged (written to a temporary file, fsynced, renamed): segments wholly before it
//! are deleted.
//!
//! **Crash safety.** An append writes its lines and fsyncs before it returns. A crash in the
//! middle leaves at most a partial last line in the last segment, which opening cuts off
//! (it was never acknowledged to anyone). `acked` only moves forward and is written after
//! the aggregator's acknowledgement, so a crash replays at most the last batch in flight,
//! which the aggregators store once (the records' ids are their origins).
//!
//! **A cap, and what happens at it.** The segments' bytes are bounded by the configured cap;
//! an append that would pass it is refused ([`Full`]) and the caller waits (back-pressure)
//! or, under `drop_oldest`, [`Buffer::drop_oldest`] deletes the oldest segment and counts
//! the lines lost.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A segment is closed once it holds this many bytes.
pub const SEGMENT_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// The append would pass the buffer's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

struct Segment {
    first: u64,
    path: PathBuf,
    /// Where each line starts, and the end of the last.
    starts: Vec<u64>,
    bytes: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.starts.len() as u64
    }
}

pub struct Buffer {
    dir: PathBuf,
    cap: u64,
    segments: VecDeque<Segment>,
    /// The last segment, open for appending.
    writer: Option<File>,
    acked: u64,
    /// Lines deleted unsent under `drop_oldest`.
    pub dropped: u64,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir`, capped at `cap` bytes.
    pub fn open(dir: &Path, cap: u64) -> io::Result<Buffer> {
        std::fs::create_dir_all(dir)?;
        let acked = match std::fs::read_to_string(dir.join("acked")) {
            Ok(s) => s.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a sequence number: {s:?}",
                        dir.join("acked").display()
                    ),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        firsts.sort();
        let mut segments = VecDeque::new();
        for first in firsts {
            let path = segment_path(dir, first);
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            let mut starts = Vec::new();
            let mut at = 0usize;
            while let Some(nl) = bytes[at..].iter().position(|&b| b == b'\n') {
                starts.push(at as u64);
                at += nl + 1;
            }
            if at < bytes.len() {
                // A partial last line: a crash in the middle of an append. Cut it off.
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(at as u64)?;
                f.sync_all()?;
            }
            segments.push_back(Segment {
                first,
                path,
                starts,
                bytes: at as u64,
            });
        }
        let mut buffer = Buffer {
            dir: dir.to_path_buf(),
            cap,
            segments,
            writer: None,
            acked,
            dropped: 0,
        };
        buffer.delete_acked()?;
        Ok(buffer)
    }

    /// The next sequence number an append gives.
    pub fn next_seq(&self) -> u64 {
        self.segments
            .back()
            .map_or(self.acked, |s| s.end())
            .max(self.acked)
    }

    /// The first sequence number not acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The first sequence number still on disk.
    pub fn first_seq(&self) -> u64 {
        self.segments.front().map_or(self.acked, |s| s.first)
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Lines not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.next_seq() - self.acked.max(self.first_seq())
    }

    /// Appends `lines` (each without its newline) and fsyncs; their sequence numbers follow
    /// on from [`Buffer::next_seq`]. Refused whole if it would pass the cap.
    pub fn append(&mut self, lines: &[Vec<u8>]) -> io::Result<Result<(), Full>> {
        let size: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        if self.bytes() + size > self.cap && !lines.is_empty() {
            return Ok(Err(Full));
        }
        let mut dirty = false;
        for line in lines {
            let need_new = match self.segments.back() {
                None => true,
                Some(s) => s.bytes >= SEGMENT_BYTES_MAX,
            };
            if need_new {
                if let Some(w) = self.writer.take() {
                    w.sync_all()?;
                }
                let first = self.next_seq();
                let path = segment_path(&self.dir, first);
                let f = OpenOptions::new().create(true).append(true).open(&path)?;
                sync_dir(&self.dir)?;
                self.writer = Some(f);
                self.segments.push_back(Segment {
                    first,
                    path,
                    starts: Vec::new(),
                    bytes: 0,
                });
            }
            if self.writer.is_none() {
                let s = self.segments.back().expect("a segment");
                self.writer = Some(OpenOptions::new().append(true).open(&s.path)?);
            }
            let w = self.writer.as_mut().expect("open");
            let mut data = Vec::with_capacity(line.len() + 1);
            data.extend(line.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
            data.push(b'\n');
            w.write_all(&data)?;
            let s = self.segments.back_mut().expect("a segment");
            s.starts.push(s.bytes);
            s.bytes += data.len() as u64;
            dirty = true;
        }
        if dirty {
            self.writer.as_ref().expect("open").sync_data()?;
        }
        Ok(Ok(()))
    }

    /// Lines from sequence number `from` on (from the first not acknowledged, if `from` is
    /// before it), at most `bytes_max` bytes of them (but at least one): each with its number.
    pub fn read(&self, from: u64, bytes_max: usize) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut seq = from.max(self.first_seq()).max(self.acked);
        for s in &self.segments {
            if seq >= s.end() {
                continue;
            }
            let i = (seq - s.first) as usize;
            let start = s.starts[i];
            let mut f = File::open(&s.path)?;
            f.seek(SeekFrom::Start(start))?;
            let mut chunk = vec![0u8; (s.bytes - start).min(bytes_max as u64 + 1) as usize];
            let n = read_full(&mut f, &mut chunk)?;
            chunk.truncate(n);
            let mut at = 0;
            while let Some(nl) = chunk[at..].iter().position(|&b| b == b'\n') {
                if !out.is_empty() && size + nl + 1 > bytes_max {
                    return Ok(out);
                }
                out.push((seq, chunk[at..at + nl].to_vec()));
                size += nl + 1;
                seq += 1;
                at += nl + 1;
            }
            if at == 0 && out.is_empty() {
                // One line longer than bytes_max: read it whole.
                let end = s.starts.get(i + 1).copied().unwrap_or(s.bytes);
                let mut line = vec![0u8; (end - start) as usize];
                f.seek(SeekFrom::Start(start))?;
                f.read_exact(&mut line)?;
                line.pop();
                out.push((seq, line));
                return Ok(out);
            }
            if size >= bytes_max || seq < s.end() {
                return Ok(out);
            }
        }
        Ok(out)
    }

    /// Everything before `through` is acknowledged: persisted, and whole segments deleted.
    pub fn ack(&mut self, through: u64) -> io::Result<()> {
        if through <= self.acked {
            return Ok(());
        }
        self.acked = through;
        let tmp = self.dir.join("acked.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(through.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("acked"))?;
        sync_dir(&self.dir)?;
        self.delete_acked()
    }

    fn delete_acked(&mut self) -> io::Result<()> {
        while let Some(s) = self.segments.front() {
            // The last segment stays while it is the one appended to.
            if s.end() > self.acked || self.segments.len() == 1 && s.bytes < SEGMENT_BYTES_MAX {
                break;
            }
            std::fs::remove_file(&s.path)?;
            self.segments.pop_front();
            if self.segments.is_empty() {
                self.writer = None;
            }
        }
        Ok(())
    }

    /// Deletes the oldest segment unsent (`drop_oldest` at the cap); the lines lost. The
    /// segment appended to is never dropped.
    pub fn drop_oldest(&mut self) -> io::Result<u64> {
        if self.segments.len() < 2 {
            return Ok(0);
        }
        let s = self.segments.pop_front().expect("two segments");
        std::fs::remove_file(&s.path)?;
        let lost = s.end() - self.acked.max(s.first);
        self.dropped += lost;
        if self.acked < s.end() {
            self.ack(s.end())?;
        }
        Ok(lost)
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("agent-buffer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn lines(from: usize, n: usize) -> Vec<Vec<u8>> {
        (from..from + n)
            .map(|i| format!("{{\"msg\":\"line {i}\"}}").into_bytes())
            .collect()
    }

    #[test]
    fn lines_are_read_in_order_and_survive_a_reopen_until_acked() {
        let d = dir("reopen");
        let mut b = Buffer::open(&d, 1 << 30).unwrap();
        b.append(&lines(0, 10)).unwrap().unwrap();
        let got = b.read(0, 1 << 20).unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(got[3], (3, b"{\"msg\":\"line 3\"}".to_vec()));
        b.ack(4).unwrap();
        drop(b);
        let mut b = Buffer::open(&d, 1 << 30).unwrap();
        assert_eq!((b.acked(), b.next_seq(), b.pending()), (4, 10, 6));
        let got = b.read(b.acked(), 1 << 20).unwrap();
        assert_eq!(got.first().unwrap().0, 4);
        b.append(&lines(10, 2)).unwrap().unwrap();
        assert_eq!(b.read(11, 100).unwrap()[0].0, 11);
        // A small read stops at its size, but returns at least one line.
        assert_eq!(b.read(4, 40).unwrap().len(), 2);
        assert_eq!(b.read(4, 1).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_last_line_is_cut_off_on_open() {
        let d = dir("torn");
        let mut b = Buffer::open(&d, 1 << 30).unwrap();
        b.append(&lines(0, 3)).unwrap().unwrap();
        drop(b);
        let seg = segment_path(&d, 0);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"msg\":\"half").unwrap();
        let mut b = Buffer::open(&d, 1 << 30).unwrap();
        assert_eq!(b.next_seq(), 3);
        b.append(&lines(3, 1)).unwrap().unwrap();
        let got = b.read(0, 1 << 20).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3].1, b"{\"msg\":\"line 3\"}".to_vec());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn segments_roll_are_deleted_once_acked_and_the_cap_holds() {
        let d = dir("roll");
        let big = vec![b'x'; 1024 * 1024];
        let mut b = Buffer::open(&d, 3 * SEGMENT_BYTES_MAX).unwrap();
        for _ in 0..20 {
            b.append(std::slice::from_ref(&big)).unwrap().unwrap();
        }
        assert!(b.segments.len() >= 2, "rolled");
        let files = || std::fs::read_dir(&d).unwrap().count();
        let before = files();
        b.ack(b.next_seq() - 1).unwrap();
        assert!(files() < before, "acked segments deleted");
        assert_eq!(b.read(0, 10).unwrap()[0].0, 19, "from the first on disk");
        // At the cap an append is refused whole; dropping the oldest makes room.
        let mut refused = false;
        for _ in 0..40 {
            if b.append(std::slice::from_ref(&big)).unwrap().is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused && b.bytes() <= b.cap());
        let lost = b.drop_oldest().unwrap();
        assert!(lost > 0 && b.dropped == lost);
        assert!(b.append(std::slice::from_ref(&big)).unwrap().is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
