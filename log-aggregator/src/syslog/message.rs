//! A syslog message, parsed: RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`) or
//! RFC 3164, the BSD format (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`). Pure.
//!
//! Nothing is ever dropped: a message that is neither is kept whole as its text, with
//! `parse_error` saying what was wrong, and invalid UTF-8 is kept (lossily decoded) with a
//! flag. A BSD timestamp has no year and no zone: it is read as UTC in the year that puts it
//! nearest before the time it was received (a December message received in January is last
//! year's).

use serde::{Deserialize, Serialize};

/// Severity, RFC 5424's eight levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Level {
    pub fn from_severity(severity: u8) -> Level {
        match severity {
            0 => Level::Emergency,
            1 => Level::Alert,
            2 => Level::Critical,
            3 => Level::Error,
            4 => Level::Warning,
            5 => Level::Notice,
            6 => Level::Info,
            _ => Level::Debug,
        }
    }

    /// A level by any of its usual names (`err`, `WARN`, `fatal`, `trace`…), case-blind.
    pub fn from_name(name: &str) -> Option<Level> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "emerg" | "emergency" | "panic" => Level::Emergency,
            "alert" => Level::Alert,
            "crit" | "critical" | "fatal" => Level::Critical,
            "err" | "error" | "eror" => Level::Error,
            "warn" | "warning" => Level::Warning,
            "notice" => Level::Notice,
            "info" | "information" | "informational" => Level::Info,
            "debug" | "trace" | "dbug" => Level::Debug,
            _ => return None,
        })
    }

    /// The lowercase name, as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Emergency => "emergency",
            Level::Alert => "alert",
            Level::Critical => "critical",
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// RFC 5424's severity number (0 = emergency … 7 = debug).
    pub fn severity(self) -> u8 {
        self as u8
    }
}

/// What a syslog message says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// When it happened (Unix milliseconds), if the message said.
    pub ts_ms: Option<i64>,
    pub facility: Option<u8>,
    pub level: Option<Level>,
    pub host: Option<String>,
    /// RFC 5424's APP-NAME, RFC 3164's TAG.
    pub app: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    /// RFC 5424's structured data, as written (`[id k="v"]…`).
    pub structured_data: Option<String>,
    pub text: String,
    /// Why the message is only raw text (it parsed as neither format).
    pub parse_error: Option<String>,
    /// It was not valid UTF-8 (the text is decoded with replacement characters).
    pub invalid_utf8: bool,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day counted from 1970-01-01: the inverse of
/// [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The year of a Unix time in milliseconds.
fn year_of(ms: i64) -> i64 {
    civil_from_days(ms.div_euclid(86_400_000)).0
}

fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// An RFC 3339 timestamp (`2026-12-07T05:16:23.870901+00:00`, `…Z`) in Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (time, zone) = rest.split_at(zone_at);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, mi, se) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if t.next().is_some() || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let millis = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain("000".chars()).take(3).collect();
        num(&digits)? as i64
    };
    let offset_min = match zone {
        "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (zh, zm) = z[1..].split_once(':')?;
            sign * (num(zh)? as i64 * 60 + num(zm)? as i64)
        }
    };
    let days = days_from_civil(i64::from(y), mo, da);
    let secs =
        days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(se) - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// A BSD timestamp (`Dec  7 05:16:23`) as UTC in the year that puts it nearest before
/// `received_ms` (allowing a day's clock skew into the future).
pub fn parse_bsd_time(s: &str, received_ms: i64) -> Option<i64> {
    let month = MONTHS.iter().position(|m| s.get(..3) == Some(*m))? as u32 + 1;
    let rest = s.get(3..)?.trim_start();
    let (day, time) = rest.split_once(' ')?;
    let day = num(day)?;
    let mut t = time.split(':');
    let (h, mi, se) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if t.next().is_some() || !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let at = |year: i64| {
        (days_from_civil(year, month, day) * 86_400
            + i64::from(h) * 3600
            + i64::from(mi) * 60
            + i64::from(se))
            * 1000
    };
    let year = year_of(received_ms);
    let this_year = at(year);
    Some(if this_year > received_ms + 86_400_000 {
        at(year - 1)
    } else {
        this_year
    })
}

/// `<PRI>` at the start: facility, severity and the rest.
fn priority(s: &str) -> Option<(u8, u8, &str)> {
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    if end == 0 || end > 3 {
        return None;
    }
    let pri: u32 = num(&rest[..end])?;
    if pri > 191 {
        return None;
    }
    Some(((pri / 8) as u8, (pri % 8) as u8, &rest[end + 1..]))
}

fn nil(field: &str) -> Option<String> {
    (field != "-").then(|| field.to_string())
}

/// Parses one message; `received_ms` dates a BSD timestamp.
pub fn parse(bytes: &[u8], received_ms: i64) -> Message {
    // A line ending inside the frame (octet counting keeps the sender's newline) ends the
    // message; it is not text.
    let mut bytes = bytes;
    while let Some(rest) = bytes
        .strip_suffix(b"\n")
        .or_else(|| bytes.strip_suffix(b"\r"))
    {
        bytes = rest;
    }
    let (text, invalid_utf8) = match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), true),
    };
    let raw = |error: &str| Message {
        ts_ms: None,
        facility: None,
        level: None,
        host: None,
        app: None,
        procid: None,
        msgid: None,
        structured_data: None,
        text: text.clone(),
        parse_error: Some(error.to_string()),
        invalid_utf8,
    };
    let Some((facility, severity, rest)) = priority(&text) else {
        return raw("no <PRI> at the start: not a syslog message");
    };
    let base = Message {
        facility: Some(facility),
        level: Some(Level::from_severity(severity)),
        parse_error: None,
        ..raw("")
    };
    match rest.strip_prefix("1 ") {
        Some(v1) => parse_5424(v1, base).unwrap_or_else(|e| raw(&e)),
        None => parse_3164(rest, received_ms, base),
    }
}

fn parse_5424(s: &str, mut m: Message) -> Result<Message, String> {
    let mut fields = s.splitn(6, ' ');
    let mut next = |what: &str| {
        fields
            .next()
            .ok_or_else(|| format!("RFC 5424: the message ends before its {what}"))
    };
    let ts = next("timestamp")?;
    m.ts_ms = match ts {
        "-" => None,
        t => Some(
            parse_rfc3339(t).ok_or_else(|| format!("RFC 5424: {t:?} is not an RFC 3339 time"))?,
        ),
    };
    m.host = nil(next("hostname")?);
    m.app = nil(next("app-name")?);
    m.procid = nil(next("procid")?);
    m.msgid = nil(next("msgid")?);
    let rest = fields.next().unwrap_or("");
    let (sd, msg) = structured_data(rest)?;
    m.structured_data = sd;
    m.text = msg.strip_prefix('\u{feff}').unwrap_or(msg).to_string();
    Ok(m)
}

/// `-` or `[…][…]` (quotes escaped with `\`), then ` MSG`.
fn structured_data(s: &str) -> Result<(Option<String>, &str), String> {
    if let Some(rest) = s.strip_prefix('-') {
        return Ok((None, rest.strip_prefix(' ').unwrap_or(rest)));
    }
    if !s.starts_with('[') {
        return Err("RFC 5424: structured data must be - or start with [".into());
    }
    let bytes = s.as_bytes();
    let (mut i, mut in_quotes) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b']' if !in_quotes && bytes.get(i + 1) != Some(&b'[') => {
                let rest = &s[i + 1..];
                return Ok((
                    Some(s[..=i].to_string()),
                    rest.strip_prefix(' ').unwrap_or(rest),
                ));
            }
            _ => {}
        }
        i += 1;
    }
    Err("RFC 5424: the structured data is not closed".into())
}

fn parse_3164(s: &str, received_ms: i64, mut m: Message) -> Message {
    // A timestamp is 15 characters (`Dec  7 05:16:23`); senders that leave it out go
    // straight to the tag.
    let rest = match s.get(..15).and_then(|t| parse_bsd_time(t, received_ms)) {
        Some(ts) => {
            m.ts_ms = Some(ts);
            let after = &s[15..];
            let after = after.strip_prefix(' ').unwrap_or(after);
            // HOST, unless what follows is already the tag (`myapp:` or `myapp[12]:`).
            match after.split_once(' ') {
                Some((host, rest)) if !host.ends_with(':') && !host.contains('[') => {
                    m.host = Some(host.to_string());
                    rest
                }
                _ => after,
            }
        }
        None => s,
    };
    // TAG[PID]: MSG
    let tag_end = rest.find([':', '[', ' ']).filter(|at| *at > 0 && *at <= 48);
    match tag_end {
        Some(at) if rest[at..].starts_with(['[', ':']) => {
            m.app = Some(rest[..at].to_string());
            let mut after = &rest[at..];
            if let Some(pid) = after.strip_prefix('[') {
                if let Some(end) = pid.find(']') {
                    m.procid = Some(pid[..end].to_string());
                    after = &pid[end + 1..];
                }
            }
            let after = after.strip_prefix(':').unwrap_or(after);
            m.text = after.strip_prefix(' ').unwrap_or(after).to_string();
        }
        _ => m.text = rest.to_string(),
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T06:00:00Z, when the test's messages were "received".
    const NOW: i64 = 1_796_623_200_000;

    /// rsyslog's RFC 5424 template ends each message with a newline, which octet counting
    /// keeps inside the frame: it is the end of the message, not part of its text.
    #[test]
    fn a_trailing_newline_inside_a_frame_is_not_text() {
        let m = parse(
            b"<132>1 2026-12-07T05:16:23.870901+00:00 vm parcel - - - parcel 0001 processed\n",
            NOW,
        );
        assert_eq!(m.text, "parcel 0001 processed");
        assert_eq!(parse(b"<13>Dec  7 05:16:23 vm app: hi\r\n", NOW).text, "hi");
        assert_eq!(parse(b"raw line\n", NOW).text, "raw line");
        let multi = parse(b"<13>1 - vm app - - - a\n  b\n", NOW);
        assert_eq!(multi.text, "a\n  b", "inner newlines stay");
    }

    #[test]
    fn rfc_5424_as_logger_sends_it() {
        // Real lines from `logger --rfc5424` (util-linux 2.38.1).
        let m = parse(
            b"<132>1 2026-12-07T05:16:23.870901+00:00 vm myapp - - [timeQuality tzKnown=\"1\" isSynced=\"0\"] disk almost full",
            NOW,
        );
        assert_eq!(m.parse_error, None);
        assert_eq!((m.facility, m.level), (Some(16), Some(Level::Warning)));
        assert_eq!(m.ts_ms, Some(NOW - 43 * 60_000 - 36_130));
        assert_eq!(
            (m.host.as_deref(), m.app.as_deref()),
            (Some("vm"), Some("myapp"))
        );
        assert_eq!(
            m.structured_data.as_deref(),
            Some("[timeQuality tzKnown=\"1\" isSynced=\"0\"]")
        );
        assert_eq!(m.text, "disk almost full");
        let m = parse(
            b"<13>1 2026-12-07T05:16:23.888153+00:00 vm app - ID47 [timeQuality tzKnown=\"1\" isSynced=\"0\"][zoo@123 tiger=\"hungry\"] with sd",
            NOW,
        );
        assert_eq!(m.msgid.as_deref(), Some("ID47"));
        assert!(m
            .structured_data
            .unwrap()
            .ends_with("[zoo@123 tiger=\"hungry\"]"));
        assert_eq!(m.text, "with sd");
        let m = parse(
            b"<13>1 2026-12-07T05:16:23.891947+00:00 vm app - - - no tq",
            NOW,
        );
        assert_eq!((m.structured_data, m.text.as_str()), (None, "no tq"));
    }

    #[test]
    fn rfc_3164_as_logger_sends_it() {
        let m = parse(b"<13>Dec  7 05:16:23 vm myapp: hello 3164", NOW);
        assert_eq!(m.parse_error, None);
        assert_eq!((m.facility, m.level), (Some(1), Some(Level::Notice)));
        assert_eq!(m.ts_ms, Some(NOW - 43 * 60_000 - 37_000));
        assert_eq!(
            (m.host.as_deref(), m.app.as_deref()),
            (Some("vm"), Some("myapp"))
        );
        assert_eq!(m.text, "hello 3164");
        let m = parse(
            b"<30>Dec  7 05:16:23 vm sshd[1234]: Accepted publickey",
            NOW,
        );
        assert_eq!(
            (m.app.as_deref(), m.procid.as_deref()),
            (Some("sshd"), Some("1234"))
        );
        assert_eq!(m.text, "Accepted publickey");
        // Without a host (as the local /dev/log gets it).
        let m = parse(b"<13>Dec  7 05:16:23 myapp: local", NOW);
        assert_eq!(
            (m.host, m.app.as_deref(), m.text.as_str()),
            (None, Some("myapp"), "local")
        );
    }

    #[test]
    fn a_bsd_time_from_last_december_received_in_january_is_last_year() {
        let jan_2 = (days_from_civil(2027, 1, 2) * 86_400) * 1000;
        let dec_31 = (days_from_civil(2026, 12, 31) * 86_400 + 23 * 3600) * 1000;
        assert_eq!(parse_bsd_time("Dec 31 23:00:00", jan_2), Some(dec_31));
        assert_eq!(parse_rfc3339("2026-12-31T23:00:00Z"), Some(dec_31));
        assert_eq!(parse_rfc3339("2027-01-01T01:00:00+02:00"), Some(dec_31));
    }

    #[test]
    fn anything_else_is_kept_whole_with_its_reason() {
        let m = parse(b"just a line", NOW);
        assert_eq!(m.text, "just a line");
        assert!(m.parse_error.unwrap().contains("no <PRI>"));
        let m = parse(b"<13>1 yesterday vm app - - - x", NOW);
        assert!(m.parse_error.unwrap().contains("not an RFC 3339 time"));
        assert_eq!(m.text, "<13>1 yesterday vm app - - - x");
        let m = parse(b"<13>1 2026-12-07T05:16:23Z vm app - - [unclosed x", NOW);
        assert!(m.parse_error.unwrap().contains("not closed"));
        let m = parse(b"<999>x", NOW);
        assert!(m.parse_error.is_some());
        let m = parse(&[b'<', b'1', b'3', b'>', 0xff, 0xfe, b'!'], NOW);
        assert!(m.invalid_utf8);
        assert!(m.text.contains('\u{fffd}'));
    }
}
