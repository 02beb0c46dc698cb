//! A query over the logs, as the API takes it, and what it answers. Pure.
//!
//! `GET /api/query?q=TEXT&from=&to=&limit=&order=&cursor=` with selectors `service=`,
//! `host=`, `level=` (that level and the more severe ones), `label=NAME:VALUE` (repeatable)
//! and a `regex=` filter on the message. `from` and `to` are Unix milliseconds or RFC 3339;
//! `to` is exclusive. `q` is words that must all appear (case-blind, whole words), phrases
//! in quotes, `-word` to exclude, `word*` for a prefix. The answer has `total` (every
//! matching line in the range, not only those returned), `lines`, and a `cursor` for the
//! next page when there are more.
//!
//! The live tail takes the same selectors and applies them to each record as it is indexed
//! ([`Query::matches`]), with the same meaning of `q` (whole words, phrases, exclusions).

use std::collections::BTreeMap;

use regex::Regex;
use serde::Serialize;

use crate::record::Record;
use crate::syslog::message::{parse_rfc3339, Level};

/// Lines a query returns when it names no `limit`, and at most.
pub const LIMIT_DEFAULT: usize = 100;
pub const LIMIT_MAX: usize = 5_000;
/// The longest text query or regex, in bytes.
pub const QUERY_BYTES_MAX: usize = 1_024;
/// The compiled size a regex may reach.
pub const REGEX_SIZE_MAX: usize = 1 << 20;
/// Histogram intervals at most.
pub const BINS_MAX: usize = 1_000;
/// Label selectors at most.
pub const LABEL_SELECTORS_MAX: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

/// Where the previous page ended: its last line's place in the order of lines (time, then
/// order within the source, then id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub seq: u64,
    pub id: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}.{:x}", self.ts, self.seq, self.id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let mut parts = s.split('.');
        let c = Cursor {
            ts: parts.next()?.parse().ok()?,
            seq: parts.next()?.parse().ok()?,
            id: u64::from_str_radix(parts.next()?, 16).ok()?,
        };
        parts.next().is_none().then_some(c)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Query {
    pub text: Option<String>,
    pub service: Option<String>,
    pub host: Option<String>,
    /// This level and the more severe ones.
    pub level: Option<Level>,
    pub labels: Vec<(String, String)>,
    pub regex: Option<Regex>,
    /// Inclusive, Unix milliseconds.
    pub from_ms: i64,
    /// Exclusive.
    pub to_ms: i64,
    pub limit: usize,
    pub order: Order,
    pub cursor: Option<Cursor>,
}

/// What was wrong with a query's parameters.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("parameter {name}: {why}")]
    Bad { name: String, why: String },
    #[error("the text query is not valid: {0}")]
    BadText(String),
}

fn bad(name: &str, why: impl Into<String>) -> QueryError {
    QueryError::Bad {
        name: name.to_string(),
        why: why.into(),
    }
}

/// A time parameter: Unix milliseconds, or RFC 3339, or relative to now (`now-15m`, `now`).
pub fn parse_time(name: &str, s: &str, now_ms: i64) -> Result<i64, QueryError> {
    if let Some(rel) = s.strip_prefix("now") {
        if rel.is_empty() {
            return Ok(now_ms);
        }
        let ago = rel
            .strip_prefix('-')
            .and_then(parse_duration_ms)
            .ok_or_else(|| bad(name, format!("{s:?} is not now-<number><s|m|h|d>")))?;
        return Ok(now_ms - ago);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    parse_rfc3339(s).ok_or_else(|| bad(name, format!("{s:?} is neither milliseconds nor RFC 3339")))
}

/// `90s`, `15m`, `2h`, `7d` (or plain milliseconds) in milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().ok()?;
    let scale = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

impl Query {
    /// A query from URL parameters (repeated names allowed for `label`). `from` defaults to
    /// an hour before `now_ms`, `to` to a minute after it.
    pub fn from_params(params: &[(String, String)], now_ms: i64) -> Result<Query, QueryError> {
        let mut q = Query {
            from_ms: now_ms - 3_600_000,
            to_ms: now_ms + 60_000,
            limit: LIMIT_DEFAULT,
            ..Query::default()
        };
        for (name, value) in params {
            let value = value.as_str();
            match name.as_str() {
                "q" | "query" => {
                    if value.len() > QUERY_BYTES_MAX {
                        return Err(bad(name, format!("longer than {QUERY_BYTES_MAX} bytes")));
                    }
                    if !value.trim().is_empty() {
                        q.text = Some(value.trim().to_string());
                    }
                }
                "service" if !value.is_empty() => q.service = Some(value.to_string()),
                "host" if !value.is_empty() => q.host = Some(value.to_string()),
                "level" if !value.is_empty() => {
                    q.level = Some(
                        Level::from_name(value)
                            .ok_or_else(|| bad(name, format!("{value:?} is not a level")))?,
                    )
                }
                "label" => {
                    let (k, v) = value
                        .split_once(':')
                        .or_else(|| value.split_once('='))
                        .ok_or_else(|| bad(name, "not NAME:VALUE"))?;
                    if q.labels.len() == LABEL_SELECTORS_MAX {
                        return Err(bad(name, format!("more than {LABEL_SELECTORS_MAX}")));
                    }
                    q.labels.push((k.to_string(), v.to_string()));
                }
                "regex" if !value.is_empty() => {
                    if value.len() > QUERY_BYTES_MAX {
                        return Err(bad(name, format!("longer than {QUERY_BYTES_MAX} bytes")));
                    }
                    q.regex = Some(
                        regex::RegexBuilder::new(value)
                            .size_limit(REGEX_SIZE_MAX)
                            .build()
                            .map_err(|e| bad(name, e.to_string()))?,
                    );
                }
                "from" if !value.is_empty() => q.from_ms = parse_time(name, value, now_ms)?,
                "to" if !value.is_empty() => q.to_ms = parse_time(name, value, now_ms)?,
                "limit" if !value.is_empty() => {
                    q.limit = value
                        .parse::<usize>()
                        .map_err(|_| bad(name, format!("{value:?} is not a number")))?
                        .clamp(1, LIMIT_MAX)
                }
                "order" => {
                    q.order = match value {
                        "" | "newest" | "desc" | "backward" => Order::Newest,
                        "oldest" | "asc" | "forward" => Order::Oldest,
                        _ => return Err(bad(name, "newest or oldest")),
                    }
                }
                "cursor" if !value.is_empty() => {
                    q.cursor = Some(Cursor::decode(value).ok_or_else(|| bad(name, "not a cursor"))?)
                }
                // Others (the histogram's `step`, a page's own) are not the query's.
                _ => {}
            }
        }
        if q.to_ms <= q.from_ms {
            return Err(bad("to", "the range is empty (to must be after from)"));
        }
        if let Some(text) = &q.text {
            text_terms(text)?;
        }
        Ok(q)
    }

    /// Whether `r` passes the selectors (not the time range, nor the cursor).
    pub fn selects(&self, r: &Record) -> bool {
        self.service.as_ref().is_none_or(|s| *s == r.service)
            && self.host.as_ref().is_none_or(|h| *h == r.host)
            && self.level.is_none_or(|l| r.level <= l)
            && self
                .labels
                .iter()
                .all(|(k, v)| r.labels.get(k).is_some_and(|x| x == v))
            && self.regex.as_ref().is_none_or(|re| re.is_match(&r.message))
    }

    /// Whether `r` matches the whole query but its time range: selectors and text, the
    /// text read as the index reads it (whole words, case-blind).
    pub fn matches(&self, r: &Record) -> bool {
        if !self.selects(r) {
            return false;
        }
        let Some(text) = &self.text else {
            return true;
        };
        let Ok(terms) = text_terms(text) else {
            return false;
        };
        let words = tokens(&r.message);
        let has = |phrase: &[String], prefix: bool| -> bool {
            if phrase.is_empty() {
                return true;
            }
            words.windows(phrase.len()).any(|w| {
                w.iter().zip(phrase).enumerate().all(|(i, (a, b))| {
                    if prefix && i + 1 == phrase.len() {
                        a.starts_with(b.as_str())
                    } else {
                        a == b
                    }
                })
            })
        };
        terms.iter().all(|t| has(&t.words, t.prefix) != t.negated)
    }
}

/// The words of a text as the index tokenises it: runs of letters and digits, lowercased.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// One term of a text query: a word or a phrase, maybe excluded, maybe a prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub words: Vec<String>,
    pub negated: bool,
    pub prefix: bool,
}

/// A text query's terms: `word`, `"a phrase"`, `-excluded`, `prefix*`.
pub fn text_terms(text: &str) -> Result<Vec<Term>, QueryError> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let negated = rest.starts_with('-');
        if negated {
            rest = &rest[1..];
        }
        let (raw, next) = if let Some(r) = rest.strip_prefix('"') {
            let end = r
                .find('"')
                .ok_or_else(|| QueryError::BadText("a quote is not closed".into()))?;
            (&r[..end], &r[end + 1..])
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let prefix = raw.trim_end().ends_with('*');
        let words = tokens(raw);
        if !words.is_empty() {
            out.push(Term {
                words,
                negated,
                prefix,
            });
        }
        rest = next.trim_start();
    }
    if !out.is_empty() && out.iter().all(|t| t.negated) {
        return Err(QueryError::BadText(
            "only exclusions: name at least one word to find".into(),
        ));
    }
    Ok(out)
}

/// One line of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub ts: i64,
    pub host: String,
    pub service: String,
    pub level: Level,
    pub message: String,
    pub id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl From<Record> for Line {
    fn from(r: Record) -> Line {
        Line {
            ts: r.ts,
            host: r.host,
            service: r.service,
            level: r.level,
            message: r.message,
            id: format!("{:016x}", r.id),
            labels: r.labels,
            parse_error: r.parse_error,
            truncated: r.truncated,
        }
    }
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Lines matching in the whole range.
    pub total: u64,
    pub lines: Vec<Line>,
    /// The next page's cursor, if there are more lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_623_200_000;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn record(service: &str, level: Level, message: &str) -> Record {
        Record {
            ts: NOW,
            host: "web-1".into(),
            service: service.into(),
            level,
            message: message.into(),
            id: 1,
            seq: 0,
            parse_error: None,
            truncated: false,
            labels: [("env".to_string(), "prod".to_string())].into(),
        }
    }

    #[test]
    fn parameters_make_a_query_and_bad_ones_say_what_is_wrong() {
        let q = Query::from_params(
            &params(&[
                ("q", "timeout"),
                ("service", "api"),
                ("level", "warn"),
                ("label", "env:prod"),
                ("from", "now-15m"),
                ("to", "2026-12-31T00:00:00Z"),
                ("limit", "999999"),
                ("order", "oldest"),
            ]),
            NOW,
        )
        .unwrap();
        assert_eq!(q.from_ms, NOW - 15 * 60_000);
        assert_eq!(q.to_ms, parse_rfc3339("2026-12-31T00:00:00Z").unwrap());
        assert_eq!(
            (q.limit, q.order, q.level),
            (LIMIT_MAX, Order::Oldest, Some(Level::Warning))
        );
        for (p, says) in [
            (("level", "loud"), "level"),
            (("regex", "(unclosed"), "regex"),
            (("from", "yesterday"), "from"),
            (("label", "novalue"), "label"),
            (("cursor", "zz"), "cursor"),
            (("q", "\"open"), "quote"),
            (("q", "-only"), "exclusions"),
        ] {
            let e = Query::from_params(&params(&[p]), NOW)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{p:?}: {e}");
        }
        let e = Query::from_params(&params(&[("from", "now"), ("to", "now-1h")]), NOW)
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn a_record_matches_by_selectors_and_whole_words() {
        let r = record(
            "api",
            Level::Error,
            "Upstream timed out after 30s (GET /users)",
        );
        let q = |pairs: &[(&str, &str)]| Query::from_params(&params(pairs), NOW).unwrap();
        assert!(q(&[("q", "timed OUT")]).matches(&r));
        assert!(q(&[("q", "\"timed out\" users")]).matches(&r));
        assert!(
            !q(&[("q", "\"out timed\"")]).matches(&r),
            "a phrase is in order"
        );
        assert!(!q(&[("q", "time")]).matches(&r), "whole words");
        assert!(q(&[("q", "time*")]).matches(&r), "a prefix");
        assert!(!q(&[("q", "timed -users")]).matches(&r));
        assert!(
            q(&[("level", "warning")]).matches(&r),
            "error is more severe"
        );
        assert!(!q(&[("level", "critical")]).matches(&r));
        assert!(!q(&[("service", "db")]).matches(&r));
        assert!(q(&[("label", "env:prod")]).matches(&r));
        assert!(!q(&[("label", "env:dev")]).matches(&r));
        assert!(q(&[("regex", r"after \d+s")]).matches(&r));
        assert!(!q(&[("regex", r"^after")]).matches(&r));
    }

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor {
            ts: NOW,
            seq: 7,
            id: 0xdead_beef,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(parse_duration_ms("7d"), Some(7 * 86_400_000));
        assert_eq!(parse_duration_ms("7w"), None);
    }
}
