//! Syslog over TCP: cutting a byte stream into messages, as RFC 6587 frames them. Pure: bytes
//! in, frames out, [`Decoded::Incomplete`] when more bytes are needed; the connection owns
//! the buffer and the socket.
//!
//! Two framings share one port, chosen per message the way rsyslog does:
//! - **octet counting**: `LEN SP MSG`, where `LEN` is 1 to 9 decimal digits (no leading
//!   zero) and the message is exactly `LEN` bytes (`logger --octet-count`, RFC 5425 style);
//! - **non-transparent**: the message runs to a line feed (`logger --tcp`, most senders).
//!
//! A message longer than [`LINE_BYTES_MAX`] is cut there and flagged; the rest of it is read
//! and thrown away, so one huge line costs a bounded buffer and the stream stays in step.

use bytes::{Buf, Bytes, BytesMut};

/// The longest message kept whole; longer ones are cut to this and flagged `truncated`.
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// Digits an octet count may have (a count of 999,999,999 bytes is refused long before).
const COUNT_DIGITS_MAX: usize = 9;

/// One message from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Bytes,
    /// The message was longer than [`LINE_BYTES_MAX`]: `bytes` is its start.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// More bytes are needed.
    Incomplete,
}

/// The decoder's memory between calls: the rest of an over-long message still to throw away.
#[derive(Debug, Default)]
pub struct Decoder {
    discard: Discard,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Discard {
    #[default]
    Nothing,
    /// This many more bytes of an octet-counted message.
    Bytes(usize),
    /// Up to and including the next line feed.
    Line,
}

impl Decoder {
    /// The next message in `buf` (consuming it), or `Incomplete`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        match self.discard {
            Discard::Bytes(n) => {
                let take = n.min(buf.len());
                buf.advance(take);
                if take < n {
                    self.discard = Discard::Bytes(n - take);
                    return Decoded::Incomplete;
                }
                self.discard = Discard::Nothing;
            }
            Discard::Line => match buf.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    buf.advance(at + 1);
                    self.discard = Discard::Nothing;
                }
                None => {
                    buf.clear();
                    return Decoded::Incomplete;
                }
            },
            Discard::Nothing => {}
        }
        // Blank lines and stray carriage returns or NULs between messages.
        let blank = buf
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r' | 0))
            .count();
        buf.advance(blank);
        if buf.is_empty() {
            return Decoded::Incomplete;
        }
        match octet_count(buf) {
            Count::Is(len, digits) => {
                if buf.len() < digits + 1 + len.min(LINE_BYTES_MAX) {
                    return Decoded::Incomplete;
                }
                buf.advance(digits + 1);
                if len > LINE_BYTES_MAX {
                    let bytes = buf.split_to(LINE_BYTES_MAX).freeze();
                    self.discard = Discard::Bytes(len - LINE_BYTES_MAX);
                    return Decoded::Frame(Frame {
                        bytes,
                        truncated: true,
                    });
                }
                let bytes = buf.split_to(len).freeze();
                return Decoded::Frame(Frame {
                    bytes,
                    truncated: false,
                });
            }
            Count::NeedMore => return Decoded::Incomplete,
            Count::Not => {}
        }
        match buf
            .iter()
            .take(LINE_BYTES_MAX + 1)
            .position(|b| *b == b'\n')
        {
            Some(at) => {
                let mut line = buf.split_to(at + 1);
                line.truncate(at);
                if line.last() == Some(&b'\r') {
                    line.truncate(at - 1);
                }
                Decoded::Frame(Frame {
                    bytes: line.freeze(),
                    truncated: false,
                })
            }
            None if buf.len() > LINE_BYTES_MAX => {
                let bytes = buf.split_to(LINE_BYTES_MAX).freeze();
                self.discard = Discard::Line;
                Decoded::Frame(Frame {
                    bytes,
                    truncated: true,
                })
            }
            None => Decoded::Incomplete,
        }
    }

    /// What is left when the sender closes: a last line without its line feed is a message.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if self.discard != Discard::Nothing || buf.iter().all(|b| matches!(b, b'\n' | b'\r' | 0)) {
            buf.clear();
            return None;
        }
        let len = buf.len().min(LINE_BYTES_MAX);
        let truncated = buf.len() > LINE_BYTES_MAX;
        let bytes = buf.split_to(len).freeze();
        buf.clear();
        Some(Frame { bytes, truncated })
    }
}

enum Count {
    /// An octet count: the message's length and the count's digits.
    Is(usize, usize),
    NeedMore,
    Not,
}

/// Whether `buf` starts with `LEN SP` (LEN: 1-9 digits, no leading zero).
fn octet_count(buf: &[u8]) -> Count {
    if !matches!(buf.first(), Some(b'1'..=b'9')) {
        return Count::Not;
    }
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > COUNT_DIGITS_MAX {
        return Count::Not;
    }
    match buf.get(digits) {
        None => Count::NeedMore,
        Some(b' ') => {
            let len = std::str::from_utf8(&buf[..digits])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Count::Is(len, digits)
        }
        Some(_) => Count::Not,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Decoded::Frame(f) = d.decode(&mut buf) {
                out.push((String::from_utf8_lossy(&f.bytes).into_owned(), f.truncated));
            }
        }
        if let Some(f) = d.finish(&mut buf) {
            out.push((String::from_utf8_lossy(&f.bytes).into_owned(), f.truncated));
        }
        out
    }

    fn plain(v: &[&str]) -> Vec<(String, bool)> {
        v.iter().map(|s| (s.to_string(), false)).collect()
    }

    #[test]
    fn both_framings_on_one_stream_in_any_chunks() {
        // What `logger --tcp` and `logger --tcp --octet-count` send.
        let stream = b"<13>Dec  7 05:16:23 vm myapp: one\n51 <13>1 2026-12-07T05:16:23.8+00:00 vm app - - - two\n<13>three\r\n\n";
        let expected = plain(&[
            "<13>Dec  7 05:16:23 vm myapp: one",
            "<13>1 2026-12-07T05:16:23.8+00:00 vm app - - - two\n",
            "<13>three",
        ]);
        assert_eq!(frames(&[stream]), expected);
        // Byte by byte, the same.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(&bytes), expected);
    }

    #[test]
    fn a_last_line_without_its_line_feed_counts_when_the_sender_closes() {
        assert_eq!(frames(&[b"one\ntwo"]), plain(&["one", "two"]));
        assert_eq!(frames(&[b"one\n\n"]), plain(&["one"]));
    }

    #[test]
    fn digits_not_followed_by_a_space_are_a_line() {
        assert_eq!(
            frames(&[b"2026-12-07 a plain line\n"]),
            plain(&["2026-12-07 a plain line"])
        );
        assert_eq!(
            frames(&[b"0 zero is no count\n"]),
            plain(&["0 zero is no count"])
        );
    }

    #[test]
    fn an_over_long_message_is_cut_flagged_and_the_stream_stays_in_step() {
        let long = vec![b'x'; LINE_BYTES_MAX + 10];
        let mut stream = long.clone();
        stream.extend_from_slice(b"\nnext\n");
        let got = frames(&stream.chunks(4096).collect::<Vec<_>>());
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.len(), got[0].1), (LINE_BYTES_MAX, true));
        assert_eq!(got[1], ("next".to_string(), false));
        // The same, octet-counted: 10 MiB announced, cut, the rest skipped.
        let big = 10 * 1024 * 1024;
        let mut stream = format!("{big} ").into_bytes();
        stream.extend(std::iter::repeat_n(b'y', big));
        stream.extend_from_slice(b"4 next");
        let got = frames(&stream.chunks(65536).collect::<Vec<_>>());
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.len(), got[0].1), (LINE_BYTES_MAX, true));
        assert_eq!(got[1], ("next".to_string(), false));
    }

    #[test]
    fn binary_garbage_comes_out_as_lines_not_errors() {
        let got = frames(&[&[0xff, 0xfe, 0x00, b'\n', 0x80, b'x', b'\n']]);
        assert_eq!(got.len(), 2);
    }
}
