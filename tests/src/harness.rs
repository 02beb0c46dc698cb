//! Starting, signalling and restarting real `kvstore serve` processes for tests.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a server may take to come up before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `kvstore` binary under test: `$KVSTORE_BIN`, or the one cargo built next to this test.
pub fn kvstore_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("KVSTORE_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/kvstore
    let exe = std::env::current_exe().expect("the test binary has a path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("kvstore");
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build -p kvstore` (the README's test \
         command does), or set KVSTORE_BIN",
        bin.display()
    );
    bin
}

/// A binary of the workspace (`dictionary-search`, …) that cargo built next to this test:
/// `target/<profile>/<name>`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join(name);
    assert!(
        bin.exists(),
        "{} does not exist: build it first with `cargo build --workspace --bins` (the README's \
         test command does)",
        bin.display()
    );
    bin
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "kvstore-e2e-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // KVSTORE_TEST_KEEP=1 keeps every test's files (the nodes' whole logs) to look at.
        if std::env::var_os("KVSTORE_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Options of a test server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub fsync: String,
    /// Extra `kvstore serve` arguments.
    pub args: Vec<String>,
    /// Fixed client ports (binary, RESP, HTTP) kept across restarts; `None`: any free ports,
    /// new at every start.
    pub ports: Option<[u16; 3]>,
}

impl ServerOptions {
    /// No fsync: for tests about protocols and clients, not durability.
    pub fn fsync_never() -> ServerOptions {
        ServerOptions {
            fsync: "never".into(),
            ..ServerOptions::default()
        }
    }
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            fsync: "always".into(),
            args: Vec::new(),
            ports: None,
        }
    }
}

/// A running `kvstore serve` process and the addresses it bound.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    work_dir: PathBuf,
    options: ServerOptions,
    pub addr: SocketAddr,
    pub resp: SocketAddr,
    pub http: SocketAddr,
    starts: u32,
}

impl Server {
    /// Starts a server whose data and logs live under `work_dir`.
    pub fn start(work_dir: &Path, options: ServerOptions) -> Result<Server> {
        let mut server = Server {
            child: None,
            data_dir: work_dir.join("data"),
            work_dir: work_dir.to_path_buf(),
            options,
            addr: ([0, 0, 0, 0], 0).into(),
            resp: ([0, 0, 0, 0], 0).into(),
            http: ([0, 0, 0, 0], 0).into(),
            starts: 0,
        };
        server.launch()?;
        Ok(server)
    }

    fn log_path(&self) -> PathBuf {
        self.work_dir.join(format!("server-{}.log", self.starts))
    }

    fn command(&mut self, ready: &Path) -> Result<Command> {
        self.starts += 1;
        let log = fs::File::create(self.log_path())?;
        let mut cmd = Command::new(kvstore_bin());
        let [binary, resp, http] = self.options.ports.unwrap_or([0; 3]);
        let on = |port: u16| format!("127.0.0.1:{port}");
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &on(binary), "--resp-listen", &on(resp)])
            .args(["--http-listen", &on(http), "--fsync", &self.options.fsync])
            .arg("--ready-file")
            .arg(ready)
            .args(&self.options.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        Ok(cmd)
    }

    fn launch(&mut self) -> Result<()> {
        let ready = self.work_dir.join("ready.json");
        let _ = fs::remove_file(&ready);
        let mut cmd = self.command(&ready)?;
        let mut child = cmd.spawn().context("spawning kvstore serve")?;
        let deadline = Instant::now() + START_TIMEOUT;
        let text = loop {
            if let Ok(text) = fs::read_to_string(&ready) {
                break text;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "kvstore serve exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "kvstore serve not ready after {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let json: serde_json::Value = serde_json::from_str(&text)?;
        let addr = |field: &str| -> Result<SocketAddr> {
            json[field]
                .as_str()
                .context("missing address")?
                .parse()
                .context("bad address")
        };
        self.addr = addr("listen")?;
        self.resp = addr("resp_listen")?;
        self.http = addr("http_listen")?;
        self.child = Some(child);
        Ok(())
    }

    /// The process id (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the current (or last) process logged.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("server is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed: {status}");
        }
        Ok(())
    }

    /// SIGTERM, then waits (up to `timeout`) for a graceful exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal("TERM")?;
        let mut child = self.child.take().context("server is not running")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "server did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data directory (new ports, unless fixed).
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.launch()
    }

    /// Whether the process is running (it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts a process on the data directory that is expected to refuse to start; returns
    /// its exit status and what it logged.
    pub fn start_expecting_failure(&mut self) -> Result<(ExitStatus, String)> {
        self.kill()?;
        let ready = self.work_dir.join("ready.json");
        let _ = fs::remove_file(&ready);
        let mut child = self
            .command(&ready)?
            .spawn()
            .context("spawning kvstore serve")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, self.log()));
            }
            if ready.exists() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the server started, but it was expected to refuse:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check()
}

/// Free loopback ports, for servers that must be told their ports before they start (a
/// cluster's nodes name each other's). See [`reserve_ports`].
pub fn free_ports(n: usize) -> Vec<u16> {
    reserve_ports(n)
        .iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}

/// A free loopback UDP port, below the ephemeral range as [`free_ports`]'s are (a UDP port
/// of that range can be taken by any socket that sends, between the harness letting it go
/// and the server binding it).
pub fn free_udp_port() -> u16 {
    (0..1_000)
        .map(|_| free_ports(1)[0])
        .find(|&port| std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback UDP port below the ephemeral range")
}

/// `n` loopback ports, each held by a listener until the caller drops it. They are picked at
/// random *below* the kernel's ephemeral range and checked by binding them: a port of that
/// range (what binding port 0 gives), once let go, can be handed to any outgoing connection
/// before the server binds it, which made a node fail with "address already in use" (CI,
/// 2026-12-07 and 2026-12-08). No port is handed out twice in one process, so tests running
/// side by side cannot pick the same one between letting it go and their server binding it.
pub fn reserve_ports(n: usize) -> Vec<std::net::TcpListener> {
    use std::hash::{BuildHasher, Hasher};
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let below = ephemeral_ports_from();
    let (low, high) = (FREE_PORTS_FROM.min(below / 2), below);
    let random = std::collections::hash_map::RandomState::new();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners: Vec<std::net::TcpListener> = Vec::new();
    for attempt in 0u64.. {
        if listeners.len() == n {
            break;
        }
        assert!(attempt < 10_000, "no free loopback port in {low}..{high}");
        let mut hasher = random.build_hasher();
        hasher.write_u64(attempt);
        let port = low + (hasher.finish() % u64::from(high - low)) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            handed_out.insert(port);
            listeners.push(l);
        }
    }
    listeners
}

/// The first port of the kernel's ephemeral range (what binding port 0 and outgoing
/// connections take), from `/proc/sys/net/ipv4/ip_local_port_range`.
pub fn ephemeral_ports_from() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
}

/// The lowest port [`free_ports`] picks (above the well-known and most registered ones).
const FREE_PORTS_FROM: u16 = 10_000;

/// A small multi-threaded runtime for tests that drive the async client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a test runtime")
}

/// A client connected to `server`'s binary port.
pub async fn connect(server: &Server) -> kvstore::client::Client {
    let config = kvstore::client::ClientConfig::default();
    kvstore::client::Client::connect(server.addr, config)
        .await
        .expect("connecting to the test server")
}

/// A small tmpfs mounted for a test (to fill a disk for real), unmounted on drop. Needs root,
/// as CI has.
#[derive(Debug)]
pub struct TmpfsMount {
    pub path: PathBuf,
}

impl TmpfsMount {
    pub fn new(path: &Path, size_bytes: u64) -> Result<TmpfsMount> {
        fs::create_dir_all(path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}"), "tmpfs"])
            .arg(path)
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("mount -t tmpfs failed ({status}); this test needs root");
        }
        Ok(TmpfsMount {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A workspace binary run as a process with its arguments and its log file (appended to
/// across restarts), killed on drop: the applications' processes in the tests.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    bin: &'static str,
    args: Vec<String>,
}

impl Proc {
    /// Starts `bin` (a binary of the workspace) with `args`, its stderr appended to `log`.
    pub fn start(bin: &'static str, args: Vec<String>, log: PathBuf) -> Proc {
        let mut p = Proc {
            child: Command::new("true").spawn().expect("true"),
            log,
            bin,
            args,
        };
        p.restart();
        p
    }

    /// Starts it again with the same arguments, once it has exited (after a kill or a stop).
    pub fn restart(&mut self) {
        let _ = self.child.wait();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("a log file");
        self.child = Command::new(workspace_bin(self.bin))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin));
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_lie_below_the_ephemeral_range_and_are_handed_out_once() {
        let from = ephemeral_ports_from();
        let mut ports = free_ports(50);
        ports.extend(free_ports(50));
        ports.push(free_udp_port());
        assert!(ports.iter().all(|&p| p < from), "{ports:?} (from {from})");
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
