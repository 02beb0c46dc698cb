//! RESP2 codec: parsing client commands and encoding replies, for Redis-compatible clients.
//!
//! This module owns the byte syntax of RESP2 only: multibulk and inline commands in, replies
//! out (plus a reply parser for clients and tests). It must not know what a command means,
//! touch sockets or keep per-connection state: the server reads bytes into a `BytesMut`, cuts
//! every complete command off its front with [`parse_pipeline`], and writes what
//! [`Reply::encode`] appended. A [`Pipeline`] holds the commands' bytes in one shared chunk
//! and each argument as a span of it, so a pipelined command costs no allocation and no
//! reference counting of its own; [`parse_command`] is the one-command form.
//! Protocol errors carry Redis's own messages; the server answers `-ERR <message>` and closes
//! the connection, as Redis does.
//!
//! ```text
//!  command (multibulk): *<argc>\r\n  then argc times  $<len>\r\n<len bytes>\r\n
//!  command (inline):    words separated by spaces, ending in \n or \r\n
//!  replies:  +simple\r\n  -error\r\n  :integer\r\n  $<len>\r\n<bytes>\r\n  $-1\r\n
//!            *<count>\r\n<count replies>  *-1\r\n
//! ```

use std::borrow::Cow;
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Default limit on one bulk string. Redis allows 512 MiB; a teaching store needs far less, and
/// a small limit bounds how much memory one client can make us buffer.
pub const BULK_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;
/// Default limit on the number of arguments in one command (and elements in one reply array).
pub const ARRAY_LEN_MAX_DEFAULT: usize = 1024 * 1024;
/// Default limit on an inline command line, and on a `*` or `$` count line (Redis: 64 KiB).
pub const INLINE_BYTES_MAX_DEFAULT: usize = 64 * 1024;
/// Deepest array nesting [`parse_reply`] follows; it recurses, so this bounds its stack use.
pub const REPLY_DEPTH_MAX: usize = 32;
/// Longest piece of an offending line copied into an error, so errors stay small.
const ERROR_EXCERPT_BYTES_MAX: usize = 32;
/// Smallest encoding of one multibulk argument (`$0\r\n\r\n`), used to cap preallocation so a
/// tiny `*1000000\r\n` cannot make us allocate for a million arguments.
const MULTIBULK_ARG_BYTES_MIN: usize = 6;

/// Limits that protect the server from clients that announce huge sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespLimits {
    pub bulk_bytes_max: usize,
    pub array_len_max: usize,
    pub inline_bytes_max: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            bulk_bytes_max: BULK_BYTES_MAX_DEFAULT,
            array_len_max: ARRAY_LEN_MAX_DEFAULT,
            inline_bytes_max: INLINE_BYTES_MAX_DEFAULT,
        }
    }
}

/// A protocol error. Messages match Redis's where Redis has one; the fields say exactly what
/// was found. After any of these the stream cannot be resynchronised: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RespError {
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount { line_bytes: usize, max_bytes: usize },
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength { found: String, max_len: usize },
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount { line_bytes: usize, max_bytes: usize },
    #[error("Protocol error: expected '$', got '{}'", char::from(*found))]
    ExpectedBulk { found: u8, offset: usize },
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength { found: String, max_bytes: usize },
    #[error("Protocol error: too big inline request")]
    TooBigInline { line_bytes: usize, max_bytes: usize },
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes { offset: usize },
    #[error("Protocol error: expected CRLF at offset {offset}")]
    MissingCrlf { offset: usize },
    #[error("Protocol error: unexpected reply type byte '{}'", char::from(*found))]
    UnexpectedReplyType { found: u8, offset: usize },
    #[error("Protocol error: invalid integer reply")]
    InvalidInteger { found: String },
    #[error("Protocol error: reply line at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("Protocol error: reply nests more than {depth_max} arrays")]
    ReplyTooDeep { depth_max: usize },
}

/// A short, printable copy of an offending line for an error's `found` field.
fn excerpt(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(ERROR_EXCERPT_BYTES_MAX)]).into_owned()
}

/// Parses a decimal `i64` as strictly as Redis's `string2ll`: optional `-`, digits, no `+`,
/// no spaces, no leading zeros, no `-0`, no overflow.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut magnitude: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Where the `\r\n`-terminated line starting at `start` ends.
enum Line {
    /// The line is `buf[start..end]`; the next one starts at `end + 2`.
    Complete { end: usize },
    /// No `\r\n` yet; `buf.len() - start` bytes of the line are buffered.
    Incomplete,
}

fn find_line(buf: &[u8], start: usize) -> Result<Line, RespError> {
    let Some(cr) = buf[start..]
        .iter()
        .position(|&b| b == b'\r')
        .map(|i| start + i)
    else {
        return Ok(Line::Incomplete);
    };
    match buf.get(cr + 1) {
        None => Ok(Line::Incomplete),
        Some(b'\n') => Ok(Line::Complete { end: cr }),
        // A bare \r inside a count line: the line can never become a valid number.
        Some(_) => Err(RespError::MissingCrlf { offset: cr }),
    }
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// One argument found while scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    /// Bytes `buf[range]` of the buffer scanned (a span of the pipeline's chunk, once the
    /// scan's offset is added).
    Span(Range<usize>),
    /// An inline argument rebuilt from quotes and escapes.
    Owned(Vec<u8>),
}

/// What scanning the front of the buffer found. A command's arguments were pushed onto the
/// vector the scanner was given.
enum Scanned {
    Incomplete,
    /// A command with no arguments (`*0\r\n`, an empty line); Redis ignores these.
    Empty {
        consumed: usize,
    },
    Command {
        consumed: usize,
    },
}

/// Complete commands cut from the front of a read buffer at once; see [`parse_pipeline`].
///
/// The commands' bytes are split off the buffer as one shared chunk, and each argument is a
/// span of it: a pipeline of N commands costs one reference count and a few vectors, not N
/// allocations and one reference count per argument.
#[derive(Debug, Default)]
pub struct Pipeline {
    chunk: Bytes,
    /// Every argument of every command, in order.
    args: Vec<Arg>,
    /// Each command's range in `args`.
    commands: Vec<Range<usize>>,
}

/// Arguments up to this many are handed to a command in an array on the stack.
const STACK_ARGS_MAX: usize = 8;

impl Pipeline {
    /// How many commands it holds.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// How many arguments command `i` has, its name included.
    pub fn argc(&self, i: usize) -> usize {
        self.commands[i].len()
    }

    /// Argument `j` of command `i`; argument 0 is the command's name (every command has one).
    pub fn arg(&self, i: usize, j: usize) -> &[u8] {
        self.resolve(&self.args[self.commands[i].start + j])
    }

    fn resolve<'a>(&'a self, arg: &'a Arg) -> &'a [u8] {
        match arg {
            Arg::Span(range) => &self.chunk[range.clone()],
            Arg::Owned(bytes) => bytes,
        }
    }

    /// Calls `f` with the arguments of command `i` as a slice of byte slices (on the stack for
    /// short commands).
    pub fn with_args<R>(&self, i: usize, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let args = &self.args[self.commands[i].clone()];
        if args.len() <= STACK_ARGS_MAX {
            let mut argv: [&[u8]; STACK_ARGS_MAX] = [&[]; STACK_ARGS_MAX];
            for (slot, arg) in argv.iter_mut().zip(args) {
                *slot = self.resolve(arg);
            }
            f(&argv[..args.len()])
        } else {
            let argv: Vec<&[u8]> = args.iter().map(|arg| self.resolve(arg)).collect();
            f(&argv)
        }
    }

    /// Command `i`'s arguments as owned slices of the chunk (for callers that keep them).
    pub fn to_bytes(&self, i: usize) -> Vec<Bytes> {
        self.args[self.commands[i].clone()]
            .iter()
            .map(|arg| match arg {
                Arg::Span(range) => self.chunk.slice(range.clone()),
                Arg::Owned(bytes) => Bytes::copy_from_slice(bytes),
            })
            .collect()
    }
}

/// Parses one command from the front of `buf`.
///
/// * `Ok(Some(args))`: one command was consumed; `args` are zero-copy slices of `buf` (except
///   inline arguments that used quotes or escapes).
/// * `Ok(None)`: no complete command yet. Nothing is consumed except leading empty commands
///   (empty lines, `*0\r\n`), which are no-ops; keeping them would let a client grow the
///   buffer forever without sending a command.
/// * `Err(_)`: a protocol error; answer `-ERR <error>` and close the connection.
///
/// Sizes are checked as soon as their count line is read, so an oversize bulk is rejected
/// without buffering its body. The parser keeps no state between calls: an incomplete command
/// is scanned again from its start on the next call (cheap unless commands are huge).
pub fn parse_command(
    buf: &mut BytesMut,
    limits: &RespLimits,
) -> Result<Option<Vec<Bytes>>, RespError> {
    let (pipeline, error) = parse_pipeline(buf, limits, 1);
    if !pipeline.is_empty() {
        return Ok(Some(pipeline.to_bytes(0)));
    }
    error.map_or(Ok(None), Err)
}

/// Cuts up to `commands_max` complete commands off the front of `buf`, as [`parse_command`]
/// would one at a time. Returns them, and the protocol error that stopped the parse if one
/// did: the commands before it are valid and should still be answered, as Redis does, before
/// the error reply closes the connection. Leading empty commands are consumed too.
pub fn parse_pipeline(
    buf: &mut BytesMut,
    limits: &RespLimits,
    commands_max: usize,
) -> (Pipeline, Option<RespError>) {
    let mut args = Vec::new();
    let mut commands = Vec::new();
    let mut pos = 0;
    let mut error = None;
    while commands.len() < commands_max {
        let Some(&first) = buf.get(pos) else { break };
        let rest = &buf[pos..];
        let first_arg = args.len();
        let scanned = if first == b'*' {
            scan_multibulk(rest, limits, &mut args)
        } else {
            scan_inline(rest, limits, &mut args)
        };
        match scanned {
            Ok(Scanned::Incomplete) => {
                args.truncate(first_arg);
                break;
            }
            Ok(Scanned::Empty { consumed }) => {
                args.truncate(first_arg);
                pos += consumed;
            }
            Ok(Scanned::Command { consumed }) => {
                for arg in &mut args[first_arg..] {
                    if let Arg::Span(range) = arg {
                        *range = range.start + pos..range.end + pos;
                    }
                }
                commands.push(first_arg..args.len());
                pos += consumed;
            }
            Err(e) => {
                args.truncate(first_arg);
                error = Some(e);
                break;
            }
        }
    }
    let chunk = if commands.is_empty() {
        buf.advance(pos); // only empty commands
        Bytes::new()
    } else {
        buf.split_to(pos).freeze()
    };
    let pipeline = Pipeline {
        chunk,
        args,
        commands,
    };
    (pipeline, error)
}

fn scan_multibulk(
    buf: &[u8],
    limits: &RespLimits,
    args: &mut Vec<Arg>,
) -> Result<Scanned, RespError> {
    let Line::Complete { end } = find_line(buf, 1)? else {
        if buf.len() > limits.inline_bytes_max {
            return Err(RespError::TooBigMultibulkCount {
                line_bytes: buf.len(),
                max_bytes: limits.inline_bytes_max,
            });
        }
        return Ok(Scanned::Incomplete);
    };
    let invalid_length = || RespError::InvalidMultibulkLength {
        found: excerpt(&buf[1..end]),
        max_len: limits.array_len_max,
    };
    let count = parse_i64(&buf[1..end]).ok_or_else(invalid_length)?;
    let mut pos = end + 2;
    if count <= 0 {
        return Ok(Scanned::Empty { consumed: pos });
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|&count| count <= limits.array_len_max)
        .ok_or_else(invalid_length)?;
    args.reserve(count.min(buf.len() / MULTIBULK_ARG_BYTES_MIN));
    for _ in 0..count {
        // Check the type byte as soon as it arrives rather than waiting for the whole line.
        match buf.get(pos) {
            None => return Ok(Scanned::Incomplete),
            Some(b'$') => {}
            Some(&found) => return Err(RespError::ExpectedBulk { found, offset: pos }),
        }
        let Line::Complete { end } = find_line(buf, pos + 1)? else {
            let line_bytes = buf.len() - pos;
            if line_bytes > limits.inline_bytes_max {
                let max_bytes = limits.inline_bytes_max;
                return Err(RespError::TooBigBulkCount {
                    line_bytes,
                    max_bytes,
                });
            }
            return Ok(Scanned::Incomplete);
        };
        let length_text = &buf[pos + 1..end];
        let length = parse_i64(length_text)
            .and_then(|length| usize::try_from(length).ok())
            .filter(|&length| length <= limits.bulk_bytes_max)
            .ok_or_else(|| RespError::InvalidBulkLength {
                found: excerpt(length_text),
                max_bytes: limits.bulk_bytes_max,
            })?;
        let start = end + 2;
        // length <= bulk_bytes_max, and buf.len() bounds start, so this cannot overflow.
        let data_end = start + length;
        if buf.len() < data_end + 2 {
            return Ok(Scanned::Incomplete);
        }
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(RespError::MissingCrlf { offset: data_end });
        }
        args.push(Arg::Span(start..data_end));
        pos = data_end + 2;
    }
    Ok(Scanned::Command { consumed: pos })
}

fn scan_inline(buf: &[u8], limits: &RespLimits, args: &mut Vec<Arg>) -> Result<Scanned, RespError> {
    let too_big = |line_bytes| RespError::TooBigInline {
        line_bytes,
        max_bytes: limits.inline_bytes_max,
    };
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.inline_bytes_max {
            return Err(too_big(buf.len()));
        }
        return Ok(Scanned::Incomplete);
    };
    // Like Redis, accept both "\n" and "\r\n" line endings.
    let line_end = if newline > 0 && buf[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    };
    if line_end > limits.inline_bytes_max {
        return Err(too_big(line_end));
    }
    let before = args.len();
    split_inline_args(&buf[..line_end], args)?;
    let consumed = newline + 1;
    if args.len() == before {
        Ok(Scanned::Empty { consumed })
    } else {
        Ok(Scanned::Command { consumed })
    }
}

/// Whitespace between inline arguments, as C's `isspace`.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Splits an inline command line with the rules of Redis's `sdssplitargs`: arguments are
/// separated by whitespace; `"..."` supports `\n \r \t \b \a \xHH` and `\<any>` escapes;
/// `'...'` supports only `\'`; a closing quote must be followed by whitespace or the end.
fn split_inline_args(line: &[u8], args: &mut Vec<Arg>) -> Result<(), RespError> {
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let start = i;
        loop {
            match line.get(i) {
                None | Some(b' ' | b'\n' | b'\r' | b'\t') => {
                    args.push(Arg::Span(start..i));
                    break;
                }
                Some(&quote @ (b'"' | b'\'')) => {
                    // Text before the quote joins the argument: ab"cd" is `abcd`. A closing
                    // quote always ends the argument, so this is the argument's last part.
                    let mut bytes = line[start..i].to_vec();
                    i = read_quoted(line, i, quote, &mut bytes)?;
                    args.push(Arg::Owned(bytes));
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
}

/// Reads a quoted section starting at the opening quote `line[open]`, appending its content
/// to `out`, and returns the index just after the closing quote.
fn read_quoted(line: &[u8], open: usize, quote: u8, out: &mut Vec<u8>) -> Result<usize, RespError> {
    let unbalanced = RespError::UnbalancedQuotes { offset: open };
    let mut i = open + 1;
    loop {
        let Some(&byte) = line.get(i) else {
            return Err(unbalanced);
        };
        let next = line.get(i + 1).copied();
        if byte == quote {
            // "a"b is an error in Redis, not the argument `ab`.
            if next.is_some_and(|next| !is_space(next)) {
                return Err(unbalanced);
            }
            return Ok(i + 1);
        }
        if byte == b'\\' && quote == b'"' {
            if let (Some(b'x'), Some(high), Some(low)) =
                (next, hex(line.get(i + 2)), hex(line.get(i + 3)))
            {
                out.push((high << 4) | low);
                i += 4;
                continue;
            }
            if let Some(escaped) = next {
                out.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => b'\x08',
                    b'a' => b'\x07',
                    other => other,
                });
                i += 2;
                continue;
            }
        }
        if byte == b'\\' && quote == b'\'' && next == Some(b'\'') {
            out.push(b'\'');
            i += 2;
            continue;
        }
        out.push(byte);
        i += 1;
    }
}

fn hex(byte: Option<&u8>) -> Option<u8> {
    let digit = char::from(*byte?).to_digit(16)?;
    u8::try_from(digit).ok()
}

/// Appends `args` as a multibulk command, the way a client sends it.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], dst: &mut BytesMut) {
    put_number_line(dst, b'*', false, args.len() as u64);
    for arg in args {
        put_bulk(dst, arg.as_ref());
    }
}

// ---------------------------------------------------------------------------------------------
// Replies.

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`; borrowed for constant replies like `OK`, so the hot path does not allocate.
    Simple(Cow<'static, str>),
    /// `-text`; by convention the text starts with a code such as `ERR` or `WRONGTYPE`.
    Error(Cow<'static, str>),
    Integer(i64),
    Bulk(Bytes),
    /// `$-1`: a missing value.
    Null,
    /// `*-1`: a missing array.
    NullArray,
    Array(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Self {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    /// An error reply; include the code, e.g. `Reply::error("ERR unknown command")`.
    pub fn error(message: impl Into<Cow<'static, str>>) -> Self {
        Reply::Error(message.into())
    }

    /// Appends this reply to `dst`.
    ///
    /// Line breaks inside simple strings and errors are written as spaces (as Redis does for
    /// errors): otherwise a message quoting client input could inject extra replies.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Reply::Simple(text) => put_text_line(dst, b'+', text),
            Reply::Error(text) => put_text_line(dst, b'-', text),
            Reply::Integer(value) => {
                put_number_line(dst, b':', *value < 0, value.unsigned_abs());
            }
            Reply::Bulk(bytes) => put_bulk(dst, bytes),
            Reply::Null => dst.put_slice(b"$-1\r\n"),
            Reply::NullArray => dst.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                put_number_line(dst, b'*', false, items.len() as u64);
                for item in items {
                    item.encode(dst);
                }
            }
        }
    }
}

fn put_text_line(dst: &mut BytesMut, prefix: u8, text: &str) {
    dst.put_u8(prefix);
    if text.bytes().any(|b| b == b'\r' || b == b'\n') {
        dst.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        dst.put_slice(text.as_bytes());
    }
    dst.put_slice(b"\r\n");
}

/// Writes `bytes` as a bulk string.
pub fn put_bulk(dst: &mut BytesMut, bytes: &[u8]) {
    put_number_line(dst, b'$', false, bytes.len() as u64);
    dst.put_slice(bytes);
    dst.put_slice(b"\r\n");
}

/// Writes `<prefix>[-]<magnitude>\r\n` through a stack buffer: this is on every reply's path,
/// and formatting machinery (`write!`) is measurably slower here.
fn put_number_line(dst: &mut BytesMut, prefix: u8, negative: bool, mut magnitude: u64) {
    // u64::MAX has 20 digits; one more byte for the sign.
    let mut digits = [0u8; 21];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        start -= 1;
        digits[start] = b'-';
    }
    dst.put_u8(prefix);
    dst.put_slice(&digits[start..]);
    dst.put_slice(b"\r\n");
}

/// Parses one reply from the front of `buf` (the client side; used by tests and tools).
///
/// `Ok(None)` when incomplete, with `buf` untouched. Bulk payloads are copied out of the
/// buffer, which keeps this simple; the server's hot path never calls it. Uses the default
/// [`RespLimits`] and follows at most [`REPLY_DEPTH_MAX`] nested arrays.
pub fn parse_reply(buf: &mut BytesMut) -> Result<Option<Reply>, RespError> {
    let limits = RespLimits::default();
    match parse_reply_at(buf, 0, 0, &limits)? {
        Some((reply, consumed)) => {
            buf.advance(consumed);
            Ok(Some(reply))
        }
        None => Ok(None),
    }
}

/// Parses the reply at `pos`, returning it and the position just after it.
fn parse_reply_at(
    buf: &[u8],
    pos: usize,
    depth: usize,
    limits: &RespLimits,
) -> Result<Option<(Reply, usize)>, RespError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Line::Complete { end } = find_line(buf, pos + 1)? else {
        return Ok(None);
    };
    let line = &buf[pos + 1..end];
    let next = end + 2;
    let text = || match std::str::from_utf8(line) {
        Ok(text) => Ok(Cow::Owned(text.to_owned())),
        Err(_) => Err(RespError::InvalidUtf8 { offset: pos }),
    };
    let reply = match kind {
        b'+' => Reply::Simple(text()?),
        b'-' => Reply::Error(text()?),
        b':' => Reply::Integer(parse_i64(line).ok_or_else(|| RespError::InvalidInteger {
            found: excerpt(line),
        })?),
        b'$' => {
            if line == b"-1" {
                return Ok(Some((Reply::Null, next)));
            }
            let length = parse_i64(line)
                .and_then(|length| usize::try_from(length).ok())
                .filter(|&length| length <= limits.bulk_bytes_max)
                .ok_or_else(|| RespError::InvalidBulkLength {
                    found: excerpt(line),
                    max_bytes: limits.bulk_bytes_max,
                })?;
            let data_end = next + length;
            if buf.len() < data_end + 2 {
                return Ok(None);
            }
            if &buf[data_end..data_end + 2] != b"\r\n" {
                return Err(RespError::MissingCrlf { offset: data_end });
            }
            return Ok(Some((
                Reply::Bulk(Bytes::copy_from_slice(&buf[next..data_end])),
                data_end + 2,
            )));
        }
        b'*' => {
            if line == b"-1" {
                return Ok(Some((Reply::NullArray, next)));
            }
            let count = parse_i64(line)
                .and_then(|count| usize::try_from(count).ok())
                .filter(|&count| count <= limits.array_len_max)
                .ok_or_else(|| RespError::InvalidMultibulkLength {
                    found: excerpt(line),
                    max_len: limits.array_len_max,
                })?;
            if count > 0 && depth >= REPLY_DEPTH_MAX {
                return Err(RespError::ReplyTooDeep {
                    depth_max: REPLY_DEPTH_MAX,
                });
            }
            // Each element takes at least 3 bytes (":0\r\n" is 4), which caps preallocation.
            let mut items = Vec::with_capacity(count.min(buf.len() / 3));
            let mut pos = next;
            for _ in 0..count {
                let Some((item, after)) = parse_reply_at(buf, pos, depth + 1, limits)? else {
                    return Ok(None);
                };
                items.push(item);
                pos = after;
            }
            return Ok(Some((Reply::Array(items), pos)));
        }
        found => return Err(RespError::UnexpectedReplyType { found, offset: pos }),
    };
    Ok(Some((reply, next)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn limits() -> RespLimits {
        RespLimits::default()
    }

    fn encoded(reply: &Reply) -> Vec<u8> {
        let mut dst = BytesMut::new();
        reply.encode(&mut dst);
        dst.to_vec()
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|word| Bytes::copy_from_slice(word.as_bytes()))
            .collect()
    }

    /// Parses every command in `input` and checks the commands and what is left over.
    fn check(input: &[u8], expected: &[&[&str]], left: &[u8]) {
        let mut buf = BytesMut::from(input);
        let mut commands = Vec::new();
        while let Some(command) = parse_command(&mut buf, &limits()).expect("valid input") {
            commands.push(command);
        }
        let expected: Vec<_> = expected.iter().map(|words| args(words)).collect();
        assert_eq!(
            commands,
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            &buf[..],
            left,
            "left over from {:?}",
            String::from_utf8_lossy(input)
        );
    }

    fn check_error(input: &[u8], limits: RespLimits, expected: RespError, message: &str) {
        let mut buf = BytesMut::from(input);
        let error = parse_command(&mut buf, &limits).expect_err("protocol error");
        assert_eq!(
            error,
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(error.to_string(), message);
    }

    #[test]
    fn reply_encodings_are_byte_exact() {
        let cases: &[(Reply, &[u8])] = &[
            (Reply::ok(), b"+OK\r\n"),
            (Reply::Simple("PONG".into()), b"+PONG\r\n"),
            (Reply::error("ERR bad"), b"-ERR bad\r\n"),
            (Reply::error("ERR a\r\nb".to_owned()), b"-ERR a  b\r\n"),
            (Reply::Integer(0), b":0\r\n"),
            (Reply::Integer(-42), b":-42\r\n"),
            (Reply::Integer(i64::MAX), b":9223372036854775807\r\n"),
            (Reply::Integer(i64::MIN), b":-9223372036854775808\r\n"),
            (Reply::Bulk(Bytes::from_static(b"hi")), b"$2\r\nhi\r\n"),
            (Reply::Bulk(Bytes::new()), b"$0\r\n\r\n"),
            (Reply::Null, b"$-1\r\n"),
            (Reply::NullArray, b"*-1\r\n"),
            (Reply::Array(vec![]), b"*0\r\n"),
            (
                Reply::Array(vec![Reply::Integer(1), Reply::Array(vec![Reply::Null])]),
                b"*2\r\n:1\r\n*1\r\n$-1\r\n",
            ),
        ];
        for (reply, bytes) in cases {
            assert_eq!(encoded(reply), *bytes, "{reply:?}");
        }
    }

    #[test]
    fn multibulk_commands() {
        check(b"*1\r\n$4\r\nPING\r\n", &[&["PING"]], b"");
        check(
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
            &[&["SET", "k", ""]],
            b"",
        );
        // Bulk data is binary: it may contain CR and LF.
        check(b"*1\r\n$4\r\na\r\nb\r\n", &[&["a\r\nb"]], b"");
    }

    #[test]
    fn a_multibulk_split_at_every_byte_waits_then_parses() {
        let input = b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n";
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            assert_eq!(parse_command(&mut buf, &limits()), Ok(None), "cut at {cut}");
            assert_eq!(
                &buf[..],
                &input[..cut],
                "cut at {cut} must leave the buffer untouched"
            );
            buf.extend_from_slice(&input[cut..]);
            assert_eq!(
                parse_command(&mut buf, &limits()),
                Ok(Some(args(&["GET", "key:1"])))
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn arguments_are_slices_of_the_receive_buffer() {
        let mut buf = BytesMut::from(&b"*1\r\n$5\r\nhello\r\nrest"[..]);
        let buffer_start = buf.as_ptr() as usize;
        let command = parse_command(&mut buf, &limits())
            .expect("valid")
            .expect("complete");
        assert_eq!(
            command[0].as_ptr() as usize,
            buffer_start + 8,
            "no copy was made"
        );
        assert_eq!(&buf[..], b"rest");
    }

    #[test]
    fn inline_commands() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"PING\r\n", &["PING"]),
            (b"PING\n", &["PING"]),
            (b"  set   a  b \t\r\n", &["set", "a", "b"]),
            (b"set \"a b\" 'c d'\r\n", &["set", "a b", "c d"]),
            (b"echo \"\\x41\\n\\t\\\"q\\\\\"\n", &["echo", "A\n\t\"q\\"]),
            (b"echo \"\\xZZ\"\n", &["echo", "xZZ"]),
            (b"echo 'it\\'s' 'a\\nb'\n", &["echo", "it's", "a\\nb"]),
            (b"echo ab\"cd\" \"\"\n", &["echo", "abcd", ""]),
        ];
        for (input, words) in cases {
            check(input, &[words], b"");
        }
    }

    #[test]
    fn empty_commands_are_skipped_and_consumed() {
        check(b"\r\n\n   \r\n*0\r\n*-1\r\nPING\r\n", &[&["PING"]], b"");
        // Only no-ops are consumed when the next command is incomplete.
        check(b"\r\n*0\r\n*1\r\n$4\r\nPI", &[], b"*1\r\n$4\r\nPI");
    }

    #[test]
    fn pipelined_commands_in_one_buffer() {
        check(
            b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$3\r\nGE",
            &[&["PING"], &["ECHO", "hi"], &["GET", "k"]],
            b"*1\r\n$3\r\nGE",
        );
    }

    #[test]
    fn protocol_errors_carry_redis_messages() {
        let small = RespLimits {
            bulk_bytes_max: 10,
            array_len_max: 3,
            inline_bytes_max: 16,
        };
        let invalid_mbulk = "Protocol error: invalid multibulk length";
        let invalid_bulk = "Protocol error: invalid bulk length";
        let unbalanced = "Protocol error: unbalanced quotes in request";
        let cases: Vec<(&[u8], RespError, &str)> = vec![
            (
                b"*x\r\n",
                RespError::InvalidMultibulkLength {
                    found: "x".into(),
                    max_len: 3,
                },
                invalid_mbulk,
            ),
            (
                b"*4\r\n",
                RespError::InvalidMultibulkLength {
                    found: "4".into(),
                    max_len: 3,
                },
                invalid_mbulk,
            ),
            (
                b"*01\r\n",
                RespError::InvalidMultibulkLength {
                    found: "01".into(),
                    max_len: 3,
                },
                invalid_mbulk,
            ),
            (
                b"*1\r\nx",
                RespError::ExpectedBulk {
                    found: b'x',
                    offset: 4,
                },
                "Protocol error: expected '$', got 'x'",
            ),
            (
                b"*1\r\n$-1\r\n",
                RespError::InvalidBulkLength {
                    found: "-1".into(),
                    max_bytes: 10,
                },
                invalid_bulk,
            ),
            (
                b"*1\r\n$+1\r\n",
                RespError::InvalidBulkLength {
                    found: "+1".into(),
                    max_bytes: 10,
                },
                invalid_bulk,
            ),
            (
                b"*1\r\n$1\r\nab\r\n",
                RespError::MissingCrlf { offset: 9 },
                "Protocol error: expected CRLF at offset 9",
            ),
            (
                b"*1\r\n$1\rx",
                RespError::MissingCrlf { offset: 6 },
                "Protocol error: expected CRLF at offset 6",
            ),
            (
                b"*11111111111111111",
                RespError::TooBigMultibulkCount {
                    line_bytes: 18,
                    max_bytes: 16,
                },
                "Protocol error: too big mbulk count string",
            ),
            (
                b"*1\r\n$1111111111111111",
                RespError::TooBigBulkCount {
                    line_bytes: 17,
                    max_bytes: 16,
                },
                "Protocol error: too big bulk count string",
            ),
            (
                b"GET aaaaaaaaaaaaaa",
                RespError::TooBigInline {
                    line_bytes: 18,
                    max_bytes: 16,
                },
                "Protocol error: too big inline request",
            ),
            (
                b"GET aaaaaaaaaaaaaa\r\n",
                RespError::TooBigInline {
                    line_bytes: 18,
                    max_bytes: 16,
                },
                "Protocol error: too big inline request",
            ),
            (
                b"GET \"abc\r\n",
                RespError::UnbalancedQuotes { offset: 4 },
                unbalanced,
            ),
            (
                b"GET 'abc\r\n",
                RespError::UnbalancedQuotes { offset: 4 },
                unbalanced,
            ),
            (
                b"GET \"a\"b\r\n",
                RespError::UnbalancedQuotes { offset: 4 },
                unbalanced,
            ),
        ];
        for (input, error, message) in cases {
            check_error(input, small, error, message);
        }
    }

    #[test]
    fn an_oversize_bulk_is_rejected_from_its_header_alone() {
        let error = RespError::InvalidBulkLength {
            found: "4194305".into(),
            max_bytes: BULK_BYTES_MAX_DEFAULT,
        };
        let message = "Protocol error: invalid bulk length";
        check_error(b"*1\r\n$4194305\r\n", limits(), error, message);
        // At the limit, the parser simply waits for the body.
        let mut buf = BytesMut::from(&b"*1\r\n$4194304\r\n"[..]);
        assert_eq!(parse_command(&mut buf, &limits()), Ok(None));
    }

    #[test]
    fn parse_reply_reads_every_kind() {
        let mut buf = BytesMut::from(
            &b"+OK\r\n-ERR x\r\n:-5\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*2\r\n:1\r\n*0\r\n$1"[..],
        );
        let expected = [
            Reply::ok(),
            Reply::error("ERR x"),
            Reply::Integer(-5),
            Reply::Bulk(Bytes::from_static(b"abc")),
            Reply::Null,
            Reply::NullArray,
            Reply::Array(vec![Reply::Integer(1), Reply::Array(vec![])]),
        ];
        for reply in expected {
            assert_eq!(parse_reply(&mut buf), Ok(Some(reply)));
        }
        assert_eq!(parse_reply(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"$1");
    }

    #[test]
    fn parse_reply_errors() {
        let deep = "*1\r\n".repeat(REPLY_DEPTH_MAX + 1) + ":1\r\n";
        let cases: Vec<(&[u8], RespError)> = vec![
            (
                b"?\r\n",
                RespError::UnexpectedReplyType {
                    found: b'?',
                    offset: 0,
                },
            ),
            (
                b":1.5\r\n",
                RespError::InvalidInteger {
                    found: "1.5".into(),
                },
            ),
            (b"+\xff\r\n", RespError::InvalidUtf8 { offset: 0 }),
            (
                deep.as_bytes(),
                RespError::ReplyTooDeep {
                    depth_max: REPLY_DEPTH_MAX,
                },
            ),
        ];
        for (input, error) in cases {
            assert_eq!(parse_reply(&mut BytesMut::from(input)), Err(error));
        }
    }

    fn any_reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            "[^\r\n]{0,10}".prop_map(|text| Reply::Simple(text.into())),
            "[^\r\n]{0,10}".prop_map(|text| Reply::Error(text.into())),
            any::<i64>().prop_map(Reply::Integer),
            vec(any::<u8>(), 0..16).prop_map(|bytes| Reply::Bulk(bytes.into())),
            Just(Reply::Null),
            Just(Reply::NullArray),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| vec(inner, 0..4).prop_map(Reply::Array))
    }

    proptest! {
        #[test]
        fn multibulk_commands_round_trip_across_any_split(
            commands in vec(vec(vec(any::<u8>(), 0..20), 1..5), 1..4),
            split in any::<prop::sample::Index>(),
        ) {
            let mut stream = BytesMut::new();
            for command in &commands {
                encode_command(command, &mut stream);
            }
            let split = split.index(stream.len() + 1);
            let mut buf = BytesMut::from(&stream[..split]);
            let mut parsed = Vec::new();
            while let Some(command) = parse_command(&mut buf, &limits()).expect("valid") {
                parsed.push(command);
            }
            buf.extend_from_slice(&stream[split..]);
            while let Some(command) = parse_command(&mut buf, &limits()).expect("valid") {
                parsed.push(command);
            }
            let parsed: Vec<Vec<Vec<u8>>> = parsed
                .into_iter()
                .map(|command| command.into_iter().map(|arg| arg.to_vec()).collect())
                .collect();
            prop_assert_eq!(parsed, commands);
            prop_assert!(buf.is_empty());
        }

        /// Cutting a whole pipeline at once gives exactly what parsing it one command at a
        /// time gives: the same arguments, the same leftover bytes, the same error, whatever
        /// mix of multibulk, inline (quoted or not) and empty commands it holds.
        #[test]
        fn a_pipeline_parses_as_its_commands_one_at_a_time(
            pieces in vec(prop::sample::select(vec![
                &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n"[..],
                b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
                b"PING\r\n",
                b"SET \"a b\" 'c\\'d'\n",
                b"\r\n",
                b"*0\r\n",
                b"*-1\r\n",
                b"*1\r\n$x\r\n",
                b"GET \"open\r\n",
            ]), 0..12),
            cut in any::<prop::sample::Index>(),
            commands_max in 1usize..6,
        ) {
            let stream: Vec<u8> = pieces.concat();
            let stream = &stream[..cut.index(stream.len() + 1)];
            let mut one_by_one = Vec::new();
            let mut buf = BytesMut::from(stream);
            let expected_error = loop {
                match parse_command(&mut buf, &limits()) {
                    Ok(Some(args)) => {
                        one_by_one.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
                    }
                    Ok(None) => break None,
                    Err(error) => break Some(error),
                }
            };
            let mut piped = Vec::new();
            let mut pbuf = BytesMut::from(stream);
            let error = loop {
                let (pipeline, error) = parse_pipeline(&mut pbuf, &limits(), commands_max);
                for i in 0..pipeline.len() {
                    let args = pipeline.with_args(i, |args| {
                        args.iter().map(|a| a.to_vec()).collect::<Vec<_>>()
                    });
                    prop_assert_eq!(pipeline.arg(i, 0), &args[0][..]);
                    prop_assert_eq!(
                        pipeline.to_bytes(i).iter().map(|a| a.to_vec()).collect::<Vec<_>>(),
                        args.clone()
                    );
                    piped.push(args);
                }
                if error.is_some() || pipeline.is_empty() {
                    break error;
                }
            };
            prop_assert_eq!(piped, one_by_one);
            let failed = error.is_some();
            prop_assert_eq!(error, expected_error);
            if !failed {
                prop_assert_eq!(&pbuf[..], &buf[..]);
            }
        }

        #[test]
        fn replies_round_trip(replies in vec(any_reply(), 1..4)) {
            let mut buf = BytesMut::new();
            for reply in &replies {
                reply.encode(&mut buf);
            }
            let mut parsed = Vec::new();
            while let Some(reply) = parse_reply(&mut buf).expect("valid") {
                parsed.push(reply);
            }
            prop_assert_eq!(parsed, replies);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..128)) {
            let small = RespLimits { bulk_bytes_max: 64, array_len_max: 8, inline_bytes_max: 32 };
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = parse_command(&mut buf, &small) {}
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = parse_reply(&mut buf) {}
        }

        #[test]
        fn resp_shaped_garbage_never_panics(
            pieces in vec(
                prop_oneof![
                    Just(&b"*"[..]), Just(&b"$"[..]), Just(&b"\r\n"[..]), Just(&b"\""[..]),
                    Just(&b"'"[..]), Just(&b"\\"[..]), Just(&b"1"[..]), Just(&b"-1"[..]),
                    Just(&b" "[..]), Just(&b"x"[..]), Just(&b"\\x4"[..]), Just(&b"\n"[..]),
                ],
                0..40,
            ),
        ) {
            let data = pieces.concat();
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = parse_command(&mut buf, &limits()) {}
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = parse_reply(&mut buf) {}
        }
    }
}
