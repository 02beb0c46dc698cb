//! What the log-aggregator tests share: an aggregator node (`log-aggregator serve`) run as a
//! real process over a real store, spoken to with curl and real syslog clients.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::cluster::{Cluster, ClusterOptions};
use crate::dictionary::curl;
use crate::harness::{free_ports, free_udp_port, wait_until, Proc};

/// The ingest token the tests' aggregators take.
pub const TOKEN: &str = "test-ingest-token";

/// A 3-node store whose keyspace `default` has 8 partitions, settled.
pub fn start_store(name: &str) -> Cluster {
    let cluster = Cluster::start(
        name,
        ClusterOptions {
            partitions: 8,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    cluster.wait_settled(Duration::from_secs(60)).unwrap();
    cluster
}

/// A `log-aggregator serve` process, killed on drop.
pub struct Aggregator {
    pub proc: Proc,
    pub http: String,
    pub syslog_tcp: u16,
    pub syslog_udp: u16,
    pub log: PathBuf,
}

impl Aggregator {
    /// Starts an aggregator in front of `store` with HTTP, syslog TCP and UDP listeners on
    /// free loopback ports; `extra` are more `serve` arguments.
    pub fn start(store: &[String], dir: &Path, extra: &[&str]) -> Aggregator {
        let ports = free_ports(2);
        let udp = free_udp_port();
        let http = format!("127.0.0.1:{}", ports[0]);
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--store".into(),
            store.join(","),
            "--http".into(),
            http.clone(),
            "--syslog-tcp".into(),
            format!("127.0.0.1:{}", ports[1]),
            "--syslog-udp".into(),
            format!("127.0.0.1:{udp}"),
            "--ingest-token".into(),
            TOKEN.into(),
            "--partitions".into(),
            "8".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = dir.join(format!("aggregator-{}.log", ports[0]));
        Aggregator {
            proc: Proc::start("log-aggregator", args, log.clone()),
            http,
            syslog_tcp: ports[1],
            syslog_udp: udp,
            log,
        }
    }

    /// Starts it again with the same arguments (after a kill or a stop).
    pub fn restart(&mut self) {
        self.proc.restart();
    }

    /// Waits until `/health` answers 200 (the index is rebuilt from the store).
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.get("/health").0 == 200)
    }

    /// `curl` GET: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        curl(&format!("http://{}{path}", self.http), &[])
    }

    /// `curl` POST of `body` to `path` with the ingest token and `headers`.
    pub fn post(&self, path: &str, body: &[u8], headers: &[&str]) -> (u16, String) {
        self.post_as(path, body, headers, Some(TOKEN))
    }

    /// `curl` POST with the token given (or none).
    pub fn post_as(
        &self,
        path: &str,
        body: &[u8],
        headers: &[&str],
        token: Option<&str>,
    ) -> (u16, String) {
        let file = self.log.with_extension(format!(
            "body-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&file, body).unwrap();
        let data = format!("@{}", file.display());
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut args: Vec<&str> = vec!["-X", "POST", "--data-binary", &data];
        for h in headers {
            args.extend(["-H", h]);
        }
        if let Some(a) = &auth {
            args.extend(["-H", a]);
        }
        let out = curl(&format!("http://{}{path}", self.http), &args);
        let _ = std::fs::remove_file(&file);
        out
    }

    /// SIGTERM, and the exit status within `timeout` (SIGKILL after it).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = &mut self.proc.child;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            self.proc.kill();
        }
        status
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// Every message of `service` that `a` holds from the last two hours, each once (the test
/// fails on a message stored twice), read page by page.
pub fn stored(a: &Aggregator, service: &str) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/query?service={service}&limit=5000&from=now-2h");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = a.get(&path);
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        for l in page["lines"].as_array().unwrap() {
            let m = l["message"].as_str().unwrap().to_string();
            assert!(seen.insert(m.clone()), "{service}: {m:?} is stored twice");
        }
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return seen,
        }
    }
}

/// util-linux `logger` sending `text` to `port` with `args` (`--udp`, `--tcp`,
/// `--octet-count`, `--rfc3164`, `--rfc5424`, `--tag`…).
pub fn logger(port: u16, args: &[&str], text: &str) {
    let status = Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .arg(text)
        .status()
        .expect("logger (util-linux; scripts/install-test-deps.sh installs it)");
    assert!(status.success(), "logger {args:?} {text}");
}

/// A `log-aggregator agent` process with its config and state in `dir`, killed on drop.
pub struct Agent {
    pub proc: Proc,
    pub config: PathBuf,
    pub http: String,
}

impl Agent {
    /// Writes `config` (TOML; an `[http] listen` is added) to `dir` and starts the agent.
    pub fn start(dir: &Path, config: &str) -> Agent {
        let port = free_ports(1)[0];
        let http = format!("127.0.0.1:{port}");
        let path = dir.join("agent.toml");
        std::fs::write(&path, format!("{config}\n[http]\nlisten = \"{http}\"\n")).unwrap();
        let args = vec![
            "agent".to_string(),
            "--config".into(),
            path.display().to_string(),
        ];
        Agent {
            proc: Proc::start("log-aggregator", args, dir.join("agent.log")),
            config: path,
            http,
        }
    }

    /// Starts it again with its config.
    pub fn restart(&mut self) {
        self.proc.restart();
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        curl(&format!("http://{}{path}", self.http), &[])
    }

    /// A metric's value from its `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}
