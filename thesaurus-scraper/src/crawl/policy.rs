//! What a fetch's outcome means for its URL: a page to process, a redirect to queue, a retry
//! later, or a final state with its reason. Pure: no clock (the time is passed in), no IO.
//!
//! - 2xx HTML: a page. 2xx anything else, or HTML over the size limit: skipped, with why.
//! - 301/302/303/307/308: the target becomes a URL of its own (canonical, queued behind the
//!   host's Crawl-delay), one hop further; past [`Policy::redirects_max`] hops, failed.
//! - 429 and 503: again after `Retry-After` (seconds or an HTTP date, capped), else back-off.
//! - other 5xx, and no answer at all: again after exponential back-off.
//! - after [`Policy::attempts_max`] attempts, or on any other status: failed.

use std::time::Duration;

use url::Url;

use super::canon;
use super::fetch::{Answer, Fetched};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub attempts_max: u32,
    pub redirects_max: u32,
    /// The first back-off; each retry doubles it.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The longest `Retry-After` honoured.
    pub retry_after_max: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            attempts_max: 5,
            redirects_max: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// An HTML page to process.
    Page,
    Redirect {
        to: Url,
    },
    Retry {
        at_ms: u64,
        reason: String,
    },
    Failed {
        reason: String,
    },
    Skipped {
        reason: String,
    },
}

impl Policy {
    /// `attempts` is how many fetches of this URL came before this one; `hops` how many
    /// redirects led to it.
    pub fn decide(
        &self,
        url: &Url,
        fetched: &Fetched,
        attempts: u32,
        hops: u32,
        now_ms: u64,
    ) -> Decision {
        let answer = match fetched {
            Fetched::Error(e) => return self.again(attempts, None, now_ms, e.clone()),
            Fetched::Response(a) => a,
        };
        match answer.status {
            200..=299 if !answer.is_html() => Decision::Skipped {
                reason: format!("not HTML: {:?}", answer.content_type),
            },
            200..=299 if answer.too_large => Decision::Skipped {
                reason: format!("over the size limit ({} bytes read)", answer.bytes),
            },
            200..=299 => Decision::Page,
            301 | 302 | 303 | 307 | 308 => self.redirect(url, answer, hops),
            429 | 503 => self.again(
                attempts,
                answer.retry_after.as_deref(),
                now_ms,
                format!("HTTP {}", answer.status),
            ),
            500..=599 => self.again(attempts, None, now_ms, format!("HTTP {}", answer.status)),
            status => Decision::Failed {
                reason: format!("HTTP {status}"),
            },
        }
    }

    fn redirect(&self, url: &Url, answer: &Answer, hops: u32) -> Decision {
        let Some(location) = &answer.location else {
            return Decision::Failed {
                reason: format!("HTTP {} without a Location", answer.status),
            };
        };
        if hops + 1 > self.redirects_max {
            return Decision::Failed {
                reason: format!("over {} redirects", self.redirects_max),
            };
        }
        match canon::resolve(url, location) {
            Some(to) if to == *url => Decision::Failed {
                reason: "redirects to itself".into(),
            },
            Some(to) => Decision::Redirect { to },
            None => Decision::Failed {
                reason: format!("redirects to {location:?}, which is not crawlable"),
            },
        }
    }

    fn again(
        &self,
        attempts: u32,
        retry_after: Option<&str>,
        now_ms: u64,
        reason: String,
    ) -> Decision {
        if attempts + 1 >= self.attempts_max {
            return Decision::Failed {
                reason: format!("{reason}, {} attempts", attempts + 1),
            };
        }
        let wait = retry_after
            .and_then(|v| parse_retry_after(v, now_ms))
            .map(|d| d.min(self.retry_after_max))
            .unwrap_or_else(|| self.backoff(attempts));
        Decision::Retry {
            at_ms: now_ms + wait.as_millis() as u64,
            reason,
        }
    }

    /// The wait before attempt `attempts + 1`: base × 2^attempts, capped.
    pub fn backoff(&self, attempts: u32) -> Duration {
        self.backoff_base
            .saturating_mul(1u32 << attempts.min(20))
            .min(self.backoff_max)
    }
}

/// `Retry-After`: delay seconds, or an HTTP date (IMF-fixdate) after `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate_ms(v)?;
    Some(Duration::from_millis(at.saturating_sub(now_ms)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` in Unix milliseconds.
fn httpdate_ms(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x == month)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, se] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, ctype: &str) -> Fetched {
        Fetched::Response(Answer {
            status,
            content_type: ctype.into(),
            body: Some(bytes::Bytes::from_static(b"<p>x</p>")),
            ..Answer::default()
        })
    }

    fn url() -> Url {
        Url::parse("http://127.0.0.2:8081/a.html").unwrap()
    }

    #[test]
    fn pages_skips_and_failures() {
        let p = Policy::default();
        assert_eq!(
            p.decide(&url(), &answer(200, "text/html; charset=utf-8"), 0, 0, 0),
            Decision::Page
        );
        assert!(matches!(
            p.decide(&url(), &answer(200, "application/octet-stream"), 0, 0, 0),
            Decision::Skipped { reason } if reason.contains("not HTML")
        ));
        let mut big = Answer {
            status: 200,
            content_type: "text/html".into(),
            too_large: true,
            bytes: 5 << 20,
            ..Answer::default()
        };
        assert!(matches!(
            p.decide(&url(), &Fetched::Response(big.clone()), 0, 0, 0),
            Decision::Skipped { reason } if reason.contains("size limit")
        ));
        big.status = 404;
        assert_eq!(
            p.decide(&url(), &Fetched::Response(big), 0, 0, 0),
            Decision::Failed {
                reason: "HTTP 404".into()
            }
        );
    }

    #[test]
    fn retries_back_off_honour_retry_after_and_give_up() {
        let p = Policy::default();
        let mut flaky = Answer {
            status: 503,
            retry_after: Some("2".into()),
            ..Answer::default()
        };
        assert_eq!(
            p.decide(&url(), &Fetched::Response(flaky.clone()), 0, 0, 1_000),
            Decision::Retry {
                at_ms: 3_000,
                reason: "HTTP 503".into()
            }
        );
        flaky.retry_after = Some("Sun, 06 Nov 1994 08:49:40 GMT".into());
        let now = 784_111_777_000; // 08:49:37
        assert_eq!(
            p.decide(&url(), &Fetched::Response(flaky.clone()), 0, 0, now),
            Decision::Retry {
                at_ms: now + 3_000,
                reason: "HTTP 503".into()
            }
        );
        flaky.retry_after = Some("86400".into());
        assert_eq!(
            p.decide(&url(), &Fetched::Response(flaky.clone()), 0, 0, 0),
            Decision::Retry {
                at_ms: 120_000,
                reason: "HTTP 503".into()
            },
            "Retry-After is capped"
        );
        let err = Fetched::Error("connection refused".into());
        assert_eq!(
            p.decide(&url(), &err, 2, 0, 0),
            Decision::Retry {
                at_ms: 2_000,
                reason: "connection refused".into()
            }
        );
        assert_eq!(
            p.decide(&url(), &answer(500, "text/plain"), 4, 0, 0),
            Decision::Failed {
                reason: "HTTP 500, 5 attempts".into()
            }
        );
        assert_eq!(p.backoff(30), p.backoff_max);
    }

    #[test]
    fn redirects_are_followed_as_new_urls_up_to_the_limit() {
        let p = Policy::default();
        let moved = |to: &str| {
            Fetched::Response(Answer {
                status: 301,
                location: Some(to.into()),
                ..Answer::default()
            })
        };
        assert_eq!(
            p.decide(&url(), &moved("/a.html?moved=1"), 0, 0, 0),
            Decision::Redirect {
                to: Url::parse("http://127.0.0.2:8081/a.html?moved=1").unwrap()
            }
        );
        assert!(matches!(
            p.decide(&url(), &moved("/b.html"), 0, 5, 0),
            Decision::Failed { reason } if reason.contains("over 5 redirects")
        ));
        assert!(matches!(
            p.decide(&url(), &moved("/a.html#x"), 0, 0, 0),
            Decision::Failed { .. }
        ));
        assert!(matches!(
            p.decide(&url(), &moved("mailto:x@y"), 0, 0, 0),
            Decision::Failed { .. }
        ));
    }
}
