//! What the thesaurus-scraper tests share: the local web (`thesaurus-scraper serve-web`) run as
//! a real process, its hosts on loopback addresses with ports chosen at run time, spoken to
//! with curl.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::dictionary::curl;
use crate::harness::workspace_bin;
use thesaurus_scraper::crawl::canon;
use thesaurus_scraper::crawl::frontier::{self, Frontier, UrlRecord};

/// A `serve-web` process, killed on drop.
pub struct Web {
    child: Child,
    /// `http://addr:port` of each host, in the order they were given.
    pub hosts: Vec<String>,
    log: std::path::PathBuf,
}

impl Web {
    /// Starts `serve-web` with one `--host` per spec (`127.0.0.N:0=SOURCE[,options]`) and waits
    /// until every host is bound; its log goes to `dir/web.log`.
    pub fn start(dir: &Path, specs: &[&str], seed: u64) -> Web {
        let log = dir.join("web.log");
        let mut cmd = Command::new(workspace_bin("thesaurus-scraper"));
        cmd.arg("serve-web").args(["--seed", &seed.to_string()]);
        for s in specs {
            cmd.args(["--host", s]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("starting thesaurus-scraper serve-web");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("serving ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut hosts = Vec::new();
        while hosts.len() < specs.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(url) => hosts.push(url),
                Err(_) => panic!(
                    "serve-web did not bind its hosts: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        Web { child, hosts, log }
    }

    /// Every page host `i` serves (its `/__pages`), as the crawler keys them.
    pub fn page_keys(&self, i: usize) -> Vec<String> {
        let (_, pages) = self.get(i, "/__pages");
        let pages: Vec<String> = serde_json::from_str(&pages).expect("the page list");
        let base = url::Url::parse(&self.hosts[i]).expect("a host URL");
        pages
            .iter()
            .map(|p| canon::path_key(&canon::resolve(&base, p).expect("a page URL")))
            .collect()
    }

    /// `curl` GET of `path` on host `i`: status and body.
    pub fn get(&self, i: usize, path: &str) -> (u16, String) {
        curl(&format!("{}{path}", self.hosts[i]), &[])
    }

    /// The politeness oracle: every host's stats, by `addr:port`.
    pub fn stats(&self) -> serde_json::Value {
        let (code, body) = self.get(0, "/__stats");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("stats are JSON")
    }

    /// Host `i`'s stats.
    pub fn host_stats(&self, i: usize) -> serde_json::Value {
        let name = self.hosts[i].trim_start_matches("http://").to_string();
        self.stats()[&name].clone()
    }

    /// SIGTERM, then waits up to `timeout` for it to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `thesaurus-scraper crawl` process: its workers' PIDs as it prints them, its output.
pub struct Crawl {
    child: Child,
    /// Worker number → its latest PID.
    pub workers: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<usize, u32>>>,
    /// Everything it printed on stdout so far.
    pub stdout: std::sync::Arc<std::sync::Mutex<String>>,
    log: std::path::PathBuf,
}

impl Crawl {
    /// `crawl --store … --seeds … <args>`; its log goes to `dir/crawl.log`.
    pub fn start(dir: &Path, store: &[String], seeds: &[String], args: &[&str]) -> Crawl {
        let log = dir.join("crawl.log");
        let mut child = Command::new(workspace_bin("thesaurus-scraper"))
            .arg("crawl")
            .arg(format!("--store={}", store.join(",")))
            .arg(format!("--seeds={}", seeds.join(",")))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("starting thesaurus-scraper crawl");
        let stdout = child.stdout.take().expect("piped stdout");
        let workers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (w, t) = (workers.clone(), text.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "worker I pid P"
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let ["worker", i, "pid", pid] = parts.as_slice() {
                    if let (Ok(i), Ok(pid)) = (i.parse(), pid.parse()) {
                        w.lock().unwrap().insert(i, pid);
                    }
                }
                let mut t = t.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        Crawl {
            child,
            workers,
            stdout: text,
            log,
        }
    }

    /// Waits for the crawl to end; its exit status, or `None` past `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100)); // the reader's last lines
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The crawl process's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Worker `i`'s current PID.
    pub fn worker_pid(&self, i: usize) -> Option<u32> {
        self.workers.lock().unwrap().get(&i).copied()
    }

    pub fn output(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Crawl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.workers.lock().unwrap().values() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// SIGKILLs a process.
pub fn kill9(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}

/// Every settled URL of a host, by path, read from the store.
pub fn url_records(
    rt: &tokio::runtime::Runtime,
    frontier: &Frontier,
    host: &str,
) -> BTreeMap<String, UrlRecord> {
    let prefix = frontier::url_prefix(host);
    rt.block_on(frontier.scan_prefix(&prefix, false, usize::MAX))
        .unwrap()
        .into_iter()
        .map(|e| {
            let key = String::from_utf8(e.key.to_vec()).unwrap();
            let record: UrlRecord = frontier::decode(&key, &e.value.unwrap()).unwrap();
            (key[prefix.len()..].to_string(), record)
        })
        .collect()
}
