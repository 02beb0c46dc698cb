//! A log record as the aggregator stores it (JSON, one key per record; see [`crate::layout`])
//! and as a query answers it: when, which stream, how severe, the text, and where it came
//! from. Made from a syslog message ([`Record::from_syslog`]) or a line of a file.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::layout::{Origin, Stream};
use crate::syslog::message::{Level, Message};

/// The longest message text stored; longer ones are cut and flagged.
pub const TEXT_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When it happened (Unix milliseconds): the message's own time, else when it arrived.
    pub ts: i64,
    pub host: String,
    pub service: String,
    pub level: Level,
    pub message: String,
    /// The record's dedup id ([`Origin::id`]), as its key carries it.
    pub id: u64,
    /// Its order among records of the same millisecond from the same source (the origin's
    /// position: a file offset, a message number, a line of a push).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// Why the text is raw (it did not parse), if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// The text was cut at [`TEXT_BYTES_MAX`] (or its frame at the framing's limit).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The sender's own labels (Loki stream labels, NDJSON fields, an agent's config), at
    /// most [`LABELS_MAX`] of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A record read from the store, with the JSON it was read from (its line in its chunk), so
/// that what keeps a record's JSON (the index's stored field) need not encode it again.
#[derive(Debug, Clone)]
pub struct Read {
    pub record: Record,
    pub json: Bytes,
}

/// What the index takes: a record, and its JSON as [`Record`]'s `Serialize` writes it.
pub trait Indexable {
    fn record(&self) -> &Record;
    fn json(&self) -> Cow<'_, [u8]>;
}

impl Indexable for Record {
    fn record(&self) -> &Record {
        self
    }

    fn json(&self) -> Cow<'_, [u8]> {
        Cow::Owned(serde_json::to_vec(self).expect("a record serialises"))
    }
}

impl Indexable for Read {
    fn record(&self) -> &Record {
        &self.record
    }

    fn json(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.json)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The most user labels a record keeps (the rest are dropped, in name order).
pub const LABELS_MAX: usize = 16;
/// The longest label name or value kept (longer ones are cut).
pub const LABEL_BYTES_MAX: usize = 256;

/// A service or host name when the message names none.
pub const UNKNOWN: &str = "unknown";

impl Record {
    /// A record of a syslog message that arrived at `received_ms` from `peer_host` (the
    /// sender's address, for a message without a hostname).
    pub fn from_syslog(
        m: Message,
        received_ms: i64,
        peer_host: &str,
        origin: &Origin<'_>,
        frame_truncated: bool,
    ) -> Record {
        let (message, cut) = cut(m.text);
        Record {
            ts: m.ts_ms.unwrap_or(received_ms),
            host: m.host.unwrap_or_else(|| peer_host.to_string()),
            service: m.app.unwrap_or_else(|| UNKNOWN.to_string()),
            // A message with no priority is as severe as RFC 3164 says a missing one is.
            level: m.level.unwrap_or(Level::Notice),
            message,
            id: origin.id(),
            seq: origin.position,
            parse_error: m.parse_error,
            truncated: frame_truncated || cut,
            labels: BTreeMap::new(),
        }
    }

    pub fn stream(&self) -> Stream {
        Stream {
            service: self.service.clone(),
            host: self.host.clone(),
        }
    }
}

/// `text` cut to [`TEXT_BYTES_MAX`] at a character boundary, and whether it was.
pub fn cut(text: String) -> (String, bool) {
    cut_at(text, TEXT_BYTES_MAX)
}

/// `text` cut to `max` bytes at a character boundary, and whether it was.
pub fn cut_at(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::message::parse;

    const NOW: i64 = 1_796_623_200_000;

    fn origin() -> Origin<'static> {
        Origin {
            agent: "aggregator-1",
            source: "syslog-tcp",
            position: 42,
        }
    }

    #[test]
    fn a_syslog_message_becomes_a_record_of_its_stream() {
        let m = parse(
            b"<11>1 2026-12-07T05:16:23.870Z web-1 nginx - - - upstream timed out",
            NOW,
        );
        let r = Record::from_syslog(m, NOW, "10.0.0.7", &origin(), false);
        assert_eq!((r.host.as_str(), r.service.as_str()), ("web-1", "nginx"));
        assert_eq!(
            (r.level, r.message.as_str()),
            (Level::Error, "upstream timed out")
        );
        assert_eq!(r.ts, NOW - 43 * 60_000 - 36_130);
        assert_eq!(r.id, origin().id());
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains("parse_error") && !json.contains("truncated"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
    }

    #[test]
    fn what_the_message_lacks_comes_from_the_connection() {
        let m = parse(b"not syslog at all", NOW);
        let r = Record::from_syslog(m, NOW, "10.0.0.7", &origin(), true);
        assert_eq!(
            (r.ts, r.host.as_str(), r.service.as_str()),
            (NOW, "10.0.0.7", UNKNOWN)
        );
        assert_eq!(r.message, "not syslog at all");
        assert!(r.parse_error.is_some() && r.truncated);
    }

    #[test]
    fn an_over_long_text_is_cut_at_a_character_boundary() {
        let text = "é".repeat(TEXT_BYTES_MAX);
        let (cut_text, was_cut) = cut(text);
        assert!(was_cut && cut_text.len() <= TEXT_BYTES_MAX && cut_text.chars().all(|c| c == 'é'));
    }
}
