//! What arrives over HTTP, made into records: NDJSON (the agents' protocol, and any shipper
//! that writes JSON lines) and the Loki push API. Pure.
//!
//! **Nothing is dropped.** An NDJSON line that is not a JSON object is kept whole as the text
//! of a record with `parse_error` set, like a syslog message that parses as neither format.
//! A Loki push is JSON as a whole: one that does not parse is refused with a typed error
//! (the pusher still has it and can fix it); only the body as a whole is refused, never part.
//!
//! **Every record gets a dedup id** ([`Origin::id`]) that a retry of the same push gives
//! again, so the store keeps it once:
//! - an agent's line names its `source` (a file and its identity) and `position` (the byte
//!   offset): the id is (agent, source, position);
//! - any other NDJSON push may carry an `Idempotency-Key` header: the id is (key, line
//!   number); without one the aggregator names the push itself, and a retry is a new push;
//! - a Loki entry's id is its stream's labels, its time and its line, as Loki's own
//!   deduplication of identical entries.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::layout::Origin;
use crate::record::{self, Record, LABELS_MAX, LABEL_BYTES_MAX, UNKNOWN};
use crate::syslog::message::{parse_rfc3339, Level};

/// The largest push body, after decompression.
pub const PUSH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The most lines (or Loki entries) in one push.
pub const PUSH_LINES_MAX: usize = 100_000;

/// Why a push was refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    #[error("the push is {bytes} bytes, more than the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the push has more than {limit} lines")]
    TooManyLines { limit: usize },
    #[error("the Loki push is not valid: {0}")]
    BadLoki(String),
}

/// Where a push came from: what names its records' origins, and what fills in what a line
/// does not say.
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    /// When it arrived (Unix milliseconds).
    pub now_ms: i64,
    /// The sender's address: the host of a line that names none.
    pub peer: &'a str,
    /// The agent that sent it (`X-Log-Agent`), if an agent did.
    pub agent: Option<&'a str>,
    /// A name for this push that its retries share (an `Idempotency-Key`), or one unique to
    /// it that the aggregator made up.
    pub push: &'a str,
}

/// A time given as a number: seconds, milliseconds, microseconds or nanoseconds since the
/// epoch, told apart by size (as shippers send all four); or as an RFC 3339 string.
pub fn time_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            let x = n.as_f64()?;
            let ms = match x.abs() {
                a if a < 1e11 => x * 1e3,
                a if a < 1e14 => x,
                a if a < 1e17 => x / 1e3,
                _ => x / 1e6,
            };
            Some(ms as i64)
        }
        Value::String(s) => parse_rfc3339(s)
            .or_else(|| s.parse::<f64>().ok().and_then(|x| time_ms(&Value::from(x)))),
        _ => None,
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Takes the first of `names` present in `fields` as text.
fn take(fields: &mut Map<String, Value>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| fields.remove(*n).and_then(|v| text_of(&v)))
}

/// Labels from the rest of a line's fields: scalar ones, at most [`LABELS_MAX`], names and
/// values cut at [`LABEL_BYTES_MAX`].
fn labels(fields: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in fields {
        if out.len() == LABELS_MAX {
            break;
        }
        let (k, _) = record::cut_at(k, LABEL_BYTES_MAX);
        let (v, _) = record::cut_at(v, LABEL_BYTES_MAX);
        out.insert(k, v);
    }
    out
}

/// The records of an NDJSON push, one per non-blank line. A line is an object with a
/// message (`message`, `msg`, `line` or `log`) and optionally a time (`ts`, `timestamp`,
/// `time`), `host`, `service` (or `app`, `job`), `level` (or `severity`), an agent's
/// `source` and `position`, and other scalar fields, kept as labels.
pub fn ndjson(body: &[u8], arrival: &Arrival<'_>) -> Result<Vec<Record>, IngestError> {
    if body.len() > PUSH_BYTES_MAX {
        return Err(IngestError::TooLarge {
            bytes: body.len(),
            limit: PUSH_BYTES_MAX,
        });
    }
    let mut out = Vec::new();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.len() == PUSH_LINES_MAX {
            return Err(IngestError::TooManyLines {
                limit: PUSH_LINES_MAX,
            });
        }
        out.push(ndjson_line(line, n as u64, arrival));
    }
    Ok(out)
}

fn ndjson_line(line: &[u8], number: u64, arrival: &Arrival<'_>) -> Record {
    let raw_origin = Origin {
        agent: arrival.agent.unwrap_or(""),
        source: arrival.push,
        position: number,
    };
    let mut fields = match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(fields)) => fields,
        other => {
            let why = match other {
                Ok(_) => "the line is JSON but not an object".to_string(),
                Err(e) => format!("the line is not JSON: {e}"),
            };
            let (message, truncated) = record::cut(String::from_utf8_lossy(line).into_owned());
            return Record {
                ts: arrival.now_ms,
                host: arrival.peer.to_string(),
                service: UNKNOWN.to_string(),
                level: Level::Notice,
                message,
                id: raw_origin.id(),
                seq: number,
                parse_error: Some(why),
                truncated,
                labels: BTreeMap::new(),
            };
        }
    };
    let message = take(&mut fields, &["message", "msg", "line", "log"]);
    let ts = ["ts", "timestamp", "time", "@timestamp"]
        .iter()
        .find_map(|n| fields.remove(*n).and_then(|v| time_ms(&v)));
    let host = take(&mut fields, &["host", "hostname"]);
    let service = take(&mut fields, &["service", "app", "job", "service_name"]);
    let level = take(&mut fields, &["level", "severity", "lvl"]);
    let source = take(&mut fields, &["source"]);
    let position = fields.remove("position").and_then(|v| v.as_u64());
    let truncated_before = fields
        .remove("truncated")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    // An agent's own fields: where the record ends in its file (the agent's checkpoint, not
    // the aggregator's business) and why the agent kept it raw.
    fields.remove("end");
    let raw_before = take(&mut fields, &["parse_error"]);
    let seq = position.unwrap_or(number);
    let id = match (arrival.agent, &source, position) {
        (Some(agent), Some(source), Some(position)) => Origin {
            agent,
            source,
            position,
        }
        .id(),
        _ => raw_origin.id(),
    };
    let mut parse_error = raw_before;
    let (message, truncated) = match message {
        Some(m) => record::cut(m),
        None => {
            parse_error = Some("the line has no message field".to_string());
            record::cut(String::from_utf8_lossy(line).into_owned())
        }
    };
    let level_named = level.as_deref().and_then(Level::from_name);
    if level.is_some() && level_named.is_none() {
        parse_error.get_or_insert_with(|| format!("unknown level {:?}", level.unwrap()));
    }
    Record {
        ts: ts.unwrap_or(arrival.now_ms),
        host: host.unwrap_or_else(|| arrival.peer.to_string()),
        service: service.unwrap_or_else(|| UNKNOWN.to_string()),
        level: level_named.unwrap_or(Level::Info),
        message,
        id,
        seq,
        parse_error,
        truncated: truncated || truncated_before,
        labels: labels(
            fields
                .into_iter()
                .filter_map(|(k, v)| text_of(&v).map(|v| (k, v))),
        ),
    }
}

/// The records of a Loki push (`POST /loki/api/v1/push`, JSON):
/// `{"streams":[{"stream":{labels},"values":[["<unix ns>","<line>"(, {metadata})],…]}]}`.
/// The stream's `service_name` (or `service`, `app`, `job`) is the service, its `host`
/// (`hostname`, `instance`) the host, its `level` (`detected_level`, `severity`) the level,
/// and the other labels are kept.
pub fn loki(body: &[u8], arrival: &Arrival<'_>) -> Result<Vec<Record>, IngestError> {
    if body.len() > PUSH_BYTES_MAX {
        return Err(IngestError::TooLarge {
            bytes: body.len(),
            limit: PUSH_BYTES_MAX,
        });
    }
    let bad = |what: &str| IngestError::BadLoki(what.to_string());
    let push: Value = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
    let streams = push
        .get("streams")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"streams\" array"))?;
    let mut out = Vec::new();
    for (s, stream) in streams.iter().enumerate() {
        let mut stream_labels: Map<String, Value> = match stream.get("stream") {
            Some(Value::Object(m)) => m.clone(),
            None => Map::new(),
            Some(_) => return Err(bad(&format!("stream {s}: \"stream\" is not an object"))),
        };
        let canonical = serde_json::to_string(&stream_labels).unwrap_or_default();
        let service = take(
            &mut stream_labels,
            &["service_name", "service", "app", "job"],
        );
        let host = take(&mut stream_labels, &["host", "hostname", "instance"]);
        let level = take(&mut stream_labels, &["level", "detected_level", "severity"]);
        let values = stream
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&format!("stream {s}: no \"values\" array")))?;
        for (v, entry) in values.iter().enumerate() {
            let entry = entry
                .as_array()
                .filter(|e| (2..=3).contains(&e.len()))
                .ok_or_else(|| bad(&format!("stream {s} value {v}: not [time, line]")))?;
            let ns = entry[0]
                .as_str()
                .and_then(|t| t.parse::<i128>().ok())
                .ok_or_else(|| {
                    bad(&format!(
                        "stream {s} value {v}: the time is not a string of nanoseconds"
                    ))
                })?;
            let line = entry[1]
                .as_str()
                .ok_or_else(|| bad(&format!("stream {s} value {v}: the line is not a string")))?;
            if out.len() == PUSH_LINES_MAX {
                return Err(IngestError::TooManyLines {
                    limit: PUSH_LINES_MAX,
                });
            }
            let source = format!("loki{canonical}");
            let id = Origin {
                agent: "loki",
                source: &source,
                position: Origin {
                    agent: "",
                    source: line,
                    position: ns as u64,
                }
                .id(),
            }
            .id();
            let mut all = stream_labels.clone();
            if let Some(Value::Object(meta)) = entry.get(2) {
                all.extend(meta.clone());
            }
            let (message, truncated) = record::cut(line.to_string());
            out.push(Record {
                ts: (ns / 1_000_000) as i64,
                host: host.clone().unwrap_or_else(|| arrival.peer.to_string()),
                service: service.clone().unwrap_or_else(|| UNKNOWN.to_string()),
                level: level
                    .as_deref()
                    .and_then(Level::from_name)
                    .unwrap_or(Level::Info),
                message,
                id,
                // The nanoseconds within the millisecond.
                seq: (ns % 1_000_000) as u64,
                parse_error: None,
                truncated,
                labels: labels(
                    all.into_iter()
                        .filter_map(|(k, v)| text_of(&v).map(|v| (k, v))),
                ),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_623_200_000;

    fn arrival(agent: Option<&'static str>) -> Arrival<'static> {
        Arrival {
            now_ms: NOW,
            peer: "10.0.0.9",
            agent,
            push: "push-1",
        }
    }

    #[test]
    fn an_ndjson_line_names_its_stream_level_time_and_labels() {
        let body = br#"{"ts":"2026-12-07T05:00:00Z","host":"web-1","service":"api","level":"WARN","msg":"slow request","path":"/x","status":503}"#;
        let r = &ndjson(body, &arrival(None)).unwrap()[0];
        assert_eq!((r.host.as_str(), r.service.as_str()), ("web-1", "api"));
        assert_eq!(
            (r.level, r.message.as_str()),
            (Level::Warning, "slow request")
        );
        assert_eq!(r.ts, parse_rfc3339("2026-12-07T05:00:00Z").unwrap());
        assert_eq!(r.labels["path"], "/x");
        assert_eq!(r.labels["status"], "503");
        assert!(r.parse_error.is_none());
    }

    #[test]
    fn a_bad_line_is_kept_raw_and_flagged_and_the_others_pass() {
        let body = b"{\"message\":\"ok\"}\nnot json \xff\n\n[1,2]\n{\"level\":\"loud\",\"message\":\"m\"}\n";
        let rs = ndjson(body, &arrival(None)).unwrap();
        assert_eq!(rs.len(), 4, "the blank line is no record");
        assert!(rs[0].parse_error.is_none());
        assert_eq!(rs[1].message, "not json \u{fffd}");
        assert!(rs[1].parse_error.as_deref().unwrap().contains("not JSON"));
        assert_eq!((rs[1].host.as_str(), rs[1].ts), ("10.0.0.9", NOW));
        assert!(rs[2]
            .parse_error
            .as_deref()
            .unwrap()
            .contains("not an object"));
        assert!(rs[3].parse_error.as_deref().unwrap().contains("loud"));
        let ids: std::collections::HashSet<u64> = rs.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 4, "each line its own id");
    }

    #[test]
    fn an_agents_line_is_identified_by_its_file_position_whatever_the_push() {
        let line = br#"{"message":"m","source":"/var/log/app.log@2049:1234:ab12","position":4096}"#;
        let a = ndjson(line, &arrival(Some("host-a"))).unwrap()[0].id;
        let again = Arrival {
            push: "another push",
            ..arrival(Some("host-a"))
        };
        assert_eq!(a, ndjson(line, &again).unwrap()[0].id);
        assert_ne!(a, ndjson(line, &arrival(Some("host-b"))).unwrap()[0].id);
        // Without an agent, the line is the push's: the same push retried is the same id.
        let b = ndjson(line, &arrival(None)).unwrap()[0].id;
        assert_eq!(b, ndjson(line, &arrival(None)).unwrap()[0].id);
        assert_ne!(b, ndjson(line, &again).unwrap()[0].id);
    }

    #[test]
    fn times_in_any_unit_are_milliseconds() {
        for v in [
            serde_json::json!(1_796_623_200),
            serde_json::json!(1_796_623_200_000_i64),
            serde_json::json!(1_796_623_200_000_000_i64),
            serde_json::json!(1_796_623_200_000_000_000_i64),
            serde_json::json!(1_796_623_200.0),
            serde_json::json!("1796623200000"),
        ] {
            assert_eq!(time_ms(&v), Some(NOW), "{v}");
        }
    }

    #[test]
    fn a_loki_push_becomes_records_and_a_retry_has_the_same_ids() {
        let body = br#"{"streams":[{"stream":{"service_name":"api","host":"web-2","level":"error","env":"prod"},
            "values":[["1796623200000000000","boom"],["1796623200500000000","again",{"trace_id":"t1"}]]}]}"#;
        let rs = loki(body, &arrival(None)).unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(
            (rs[0].service.as_str(), rs[0].host.as_str()),
            ("api", "web-2")
        );
        assert_eq!((rs[0].level, rs[0].ts), (Level::Error, NOW));
        assert_eq!(rs[1].ts, NOW + 500);
        assert_eq!(rs[0].labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(rs[1].labels.get("trace_id").map(String::as_str), Some("t1"));
        assert_ne!(rs[0].id, rs[1].id);
        assert_eq!(loki(body, &arrival(None)).unwrap()[0].id, rs[0].id);
    }

    #[test]
    fn a_malformed_loki_push_is_refused_with_what_was_wrong() {
        for (body, says) in [
            (&b"{"[..], "EOF"),
            (br#"{"streams":{}}"#, "streams"),
            (
                br#"{"streams":[{"stream":{},"values":[[1,"x"]]}]}"#,
                "nanoseconds",
            ),
            (
                br#"{"streams":[{"stream":{},"values":[["1"]]}]}"#,
                "[time, line]",
            ),
        ] {
            let e = loki(body, &arrival(None)).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn labels_are_capped() {
        let mut fields = Map::new();
        fields.insert("message".into(), "m".into());
        for i in 0..40 {
            fields.insert(format!("k{i:02}"), "v".repeat(1000).into());
        }
        let body = serde_json::to_vec(&Value::Object(fields)).unwrap();
        let r = &ndjson(&body, &arrival(None)).unwrap()[0];
        assert_eq!(r.labels.len(), LABELS_MAX);
        assert!(r.labels.values().all(|v| v.len() == LABEL_BYTES_MAX));
    }
}
