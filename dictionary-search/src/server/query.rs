//! Reading a request's query string and path strictly: percent-decoding to bytes and then
//! checking UTF-8 (a lossy decoder would turn bad input into U+FFFD and search for it), under
//! a named limit, with a typed error the API answers with a 400.

/// The longest query string or path a request may have, in bytes.
pub const QUERY_BYTES_MAX: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the request is {bytes} bytes long; the limit is {limit}")]
    TooLong { bytes: usize, limit: usize },
    #[error("a parameter is not valid UTF-8 once percent-decoded")]
    InvalidUtf8,
    #[error("a bad percent escape at byte {at}")]
    BadEscape { at: usize },
    #[error("the parameter {0:?} is missing")]
    Missing(&'static str),
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`), then checks UTF-8.
pub fn percent_decode(raw: &str, plus_is_space: bool) -> Result<String, InputError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) else {
                    return Err(InputError::BadEscape { at: i });
                };
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| InputError::InvalidUtf8)
}

/// A parsed query string: `name=value` pairs, decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Params, InputError> {
        let raw = raw.unwrap_or("");
        if raw.len() > QUERY_BYTES_MAX {
            return Err(InputError::TooLong {
                bytes: raw.len(),
                limit: QUERY_BYTES_MAX,
            });
        }
        let mut pairs = Vec::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((percent_decode(name, true)?, percent_decode(value, true)?));
        }
        Ok(Params(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &'static str) -> Result<&str, InputError> {
        self.get(name).ok_or(InputError::Missing(name))
    }

    /// A numeric parameter, or `default` when it is absent or not a number.
    pub fn number(&self, name: &str, default: usize) -> usize {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_decode_strictly() {
        let p = Params::parse(Some("q=caf%C3%A9+au+lait&limit=5&empty")).unwrap();
        assert_eq!(p.get("q"), Some("café au lait"));
        assert_eq!(p.number("limit", 10), 5);
        assert_eq!(p.get("empty"), Some(""));
        assert_eq!(p.number("missing", 10), 10);
        assert_eq!(p.require("nope"), Err(InputError::Missing("nope")));
        assert_eq!(
            Params::parse(Some("q=%FF%FE")),
            Err(InputError::InvalidUtf8)
        );
        assert_eq!(
            Params::parse(Some("q=%G1")),
            Err(InputError::BadEscape { at: 0 })
        );
        assert_eq!(
            Params::parse(Some("q=abc%2")),
            Err(InputError::BadEscape { at: 3 })
        );
        let long = format!("q={}", "a".repeat(QUERY_BYTES_MAX));
        assert!(matches!(
            Params::parse(Some(&long)),
            Err(InputError::TooLong { .. })
        ));
        assert_eq!(
            percent_decode("a+b", false).unwrap(),
            "a+b",
            "a path keeps its plus"
        );
    }
}
