//! The agent's config file (TOML), validated whole at start-up: a bad file is refused with
//! what is wrong and where, before anything runs.
//!
//! ```toml
//! name = "web-1"                        # the agent's name in dedup ids (default: hostname)
//! aggregators = ["10.0.0.5:8390", "10.0.0.6:8390"]
//! token = "…"                           # or token_file = "/etc/log-agent/token"
//! state_dir = "/var/lib/log-agent"      # checkpoints and the disk buffer
//! buffer_bytes_max = 268435456          # the disk buffer's cap
//! overflow = "block"                    # or "drop_oldest", when the buffer is full
//! batch_bytes_max = 1048576             # a batch's size, before compression
//! batch_wait_ms = 200                   # how long a batch waits to fill
//!
//! [[files]]
//! paths = ["/var/log/app/*.log"]        # globs: `*` and `?` in the file name
//! service = "app"
//! multiline_start = '^\d{4}-\d{2}-\d{2}' # a line that does not match joins the record before
//! labels = { env = "prod" }
//! read_from = "beginning"               # or "end", for a file seen for the first time
//!
//! [syslog]
//! tcp = "127.0.0.1:5514"
//! udp = "127.0.0.1:5514"
//!
//! [http]
//! listen = "127.0.0.1:8391"             # NDJSON in, /health and /metrics
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What the agent does when its disk buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Stop taking logs: files are not read further, syslog TCP is not read (its senders
    /// wait), HTTP pushes get 503. Nothing is dropped; UDP datagrams are (and counted).
    #[default]
    Block,
    /// Delete the oldest unsent segment (counted in the metrics) to take new logs.
    DropOldest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    pub paths: Vec<String>,
    pub service: Option<String>,
    pub multiline_start: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub read_from: ReadFrom,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SyslogSource {
    pub tcp: Option<String>,
    pub udp: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub name: Option<String>,
    pub host: Option<String>,
    pub aggregators: Vec<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    #[serde(default = "defaults::buffer_bytes_max")]
    pub buffer_bytes_max: u64,
    #[serde(default)]
    pub overflow: Overflow,
    #[serde(default = "defaults::batch_bytes_max")]
    pub batch_bytes_max: usize,
    #[serde(default = "defaults::batch_wait_ms")]
    pub batch_wait_ms: u64,
    #[serde(default)]
    pub files: Vec<FileSource>,
    #[serde(default)]
    pub syslog: SyslogSource,
    #[serde(default)]
    pub http: HttpSource,
}

mod defaults {
    pub fn buffer_bytes_max() -> u64 {
        256 * 1024 * 1024
    }
    pub fn batch_bytes_max() -> usize {
        1024 * 1024
    }
    pub fn batch_wait_ms() -> u64 {
        200
    }
}

/// The smallest buffer cap taken (a segment must fit, twice).
pub const BUFFER_BYTES_MIN: u64 = 2 * super::buffer::SEGMENT_BYTES_MAX;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates a config's text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if c.aggregators.is_empty() {
            return Err("aggregators: name at least one aggregator (HOST:PORT)".into());
        }
        if c.token.is_none() && c.token_file.is_none() {
            return Err("token or token_file: the aggregators' ingest token is needed".into());
        }
        if let Some(file) = &c.token_file {
            let token = std::fs::read_to_string(file)
                .map_err(|e| format!("token_file {}: {e}", file.display()))?;
            c.token = Some(token.trim().to_string());
        }
        if c.buffer_bytes_max < BUFFER_BYTES_MIN {
            return Err(format!(
                "buffer_bytes_max: {} is less than the least, {BUFFER_BYTES_MIN}",
                c.buffer_bytes_max
            ));
        }
        if c.batch_bytes_max == 0 || c.batch_bytes_max > crate::ingest::PUSH_BYTES_MAX {
            return Err(format!(
                "batch_bytes_max: from 1 to {} bytes",
                crate::ingest::PUSH_BYTES_MAX
            ));
        }
        for (i, f) in c.files.iter().enumerate() {
            if f.paths.is_empty() {
                return Err(format!("files[{i}].paths: name at least one path or glob"));
            }
            for p in &f.paths {
                let path = Path::new(p);
                if !path.is_absolute() {
                    return Err(format!("files[{i}].paths: {p:?} is not an absolute path"));
                }
                let dir = path.parent().map(|d| d.to_string_lossy().to_string());
                if dir.is_some_and(|d| d.contains(['*', '?', '['])) {
                    return Err(format!(
                        "files[{i}].paths: {p:?}: wildcards are taken in the file name only"
                    ));
                }
            }
            if let Some(re) = &f.multiline_start {
                regex::Regex::new(re).map_err(|e| format!("files[{i}].multiline_start: {e}"))?;
            }
        }
        Ok(c)
    }

    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses_with_its_defaults() {
        let c = Config::parse(
            r#"
            aggregators = ["127.0.0.1:8390"]
            token = "t"
            state_dir = "/tmp/agent"
            [[files]]
            paths = ["/var/log/app/*.log"]
            service = "app"
            multiline_start = '^\d{4}'
            labels = { env = "prod" }
            [syslog]
            udp = "127.0.0.1:5514"
            "#,
        )
        .unwrap();
        assert_eq!(c.files[0].labels["env"], "prod");
        assert_eq!(c.overflow, Overflow::Block);
        assert_eq!(c.buffer_bytes_max, 256 * 1024 * 1024);
        assert_eq!(c.files[0].read_from, ReadFrom::Beginning);
    }

    #[test]
    fn a_bad_config_says_what_is_wrong() {
        let base = "aggregators = [\"a:1\"]\ntoken = \"t\"\nstate_dir = \"/tmp/x\"\n";
        for (extra, says) in [
            ("[[files]]\npaths = [\"var/log/*.log\"]\n", "absolute"),
            ("[[files]]\npaths = [\"/var/*/x.log\"]\n", "file name only"),
            (
                "[[files]]\npaths = [\"/x.log\"]\nmultiline_start = \"(\"\n",
                "multiline_start",
            ),
            ("buffer_bytes_max = 10\n", "buffer_bytes_max"),
            ("overflow = \"explode\"\n", "overflow"),
            ("bogus = 1\n", "bogus"),
        ] {
            let e = Config::parse(&format!("{base}{extra}")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let e = Config::parse("token = \"t\"\nstate_dir = \"/x\"\naggregators = []\n").unwrap_err();
        assert!(e.contains("aggregators"), "{e}");
    }
}
