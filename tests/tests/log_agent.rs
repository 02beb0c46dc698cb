//! The agent as a real process, shipping to a real aggregator over a real 3-node store: the
//! rotation drills (rename-and-create with late writes to the old file, then copytruncate)
//! under a steady write rate, and the faults (the agent SIGKILLed mid-stream and restarted,
//! the aggregator stopped for a while and started again, so the disk buffer fills and
//! drains). In every case the lines stored are exactly the lines written: none lost, none
//! twice, checked line by line. Syslog sent to the agent by `logger` arrives too.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use tests::harness::{wait_until, TempDir};
use tests::logs::{logger, start_store, Agent, Aggregator, TOKEN};

fn config(dir: &Path, aggregator: &Aggregator, extra: &str) -> String {
    format!(
        "name = \"host-1\"\nhost = \"host-1\"\naggregators = [\"{}\"]\ntoken = \"{TOKEN}\"\n\
         state_dir = \"{}\"\nbatch_wait_ms = 50\n{extra}\n\
         [[files]]\npaths = [\"{}/*.log\"]\nservice = \"drill\"\n",
        aggregator.http,
        dir.join("state").display(),
        dir.join("logs").display()
    )
}

/// Every message of service `drill` the aggregator holds, each once (or the test fails).
fn stored(a: &Aggregator) -> BTreeSet<String> {
    tests::logs::stored(a, "drill")
}

fn line(n: usize) -> String {
    format!("drill seq {n:06} steady write")
}

/// Waits until the aggregator holds exactly lines `0..n`.
fn assert_exactly(a: &Aggregator, agent: &Agent, n: usize) {
    let want: BTreeSet<String> = (0..n).map(line).collect();
    let mut got = BTreeSet::new();
    let ok = wait_until(Duration::from_secs(60), || {
        got = stored(a);
        got.len() >= want.len()
    });
    let missing: Vec<&String> = want.difference(&got).take(5).collect();
    let extra: Vec<&String> = got.difference(&want).take(5).collect();
    assert!(
        ok && missing.is_empty() && extra.is_empty(),
        "{} stored of {}; missing {missing:?}; unexpected {extra:?}\n{}",
        got.len(),
        want.len(),
        agent.log()
    );
}

struct Writer {
    file: std::fs::File,
    next: usize,
}

impl Writer {
    fn open(path: &Path) -> Writer {
        Writer {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
            next: 0,
        }
    }

    fn reopen(&mut self, path: &Path) {
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
    }

    /// `n` lines at a steady rate (a line every `every`).
    fn write(&mut self, n: usize, every: Duration) {
        for _ in 0..n {
            writeln!(self.file, "{}", line(self.next)).unwrap();
            self.next += 1;
            std::thread::sleep(every);
        }
    }
}

#[test]
fn rename_and_copytruncate_rotations_under_steady_writes_store_every_line_once() {
    let cluster = start_store("agent-rotation");
    let dir = TempDir::new("agent-rotation");
    let logs = dir.path.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let aggregator = Aggregator::start(&cluster.client_addresses(), &dir.path, &[]);
    assert!(
        aggregator.wait_ready(Duration::from_secs(60)),
        "{}",
        aggregator.log()
    );
    let agent = Agent::start(&dir.path, &config(&dir.path, &aggregator, ""));
    let app = logs.join("app.log");
    let every = Duration::from_millis(2);
    let mut w = Writer::open(&app);
    w.write(400, every);

    // Rename and create: the app writes on to the old file a little, then reopens.
    std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    w.write(100, every);
    w.reopen(&app);
    w.write(400, every);

    // copytruncate: logrotate copies the file, then truncates it; the app writes on.
    std::fs::copy(&app, logs.join("app.log.2")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    w.write(400, every);
    // Once more, before the agent has read the end (a quick one).
    w.write(50, Duration::ZERO);
    std::fs::copy(&app, logs.join("app.log.3")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    w.write(200, every);

    assert_exactly(&aggregator, &agent, w.next);
}

#[test]
fn the_agent_killed_and_the_aggregator_stopped_lose_and_duplicate_nothing() {
    let cluster = start_store("agent-faults");
    let dir = TempDir::new("agent-faults");
    let logs = dir.path.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut aggregator = Aggregator::start(&cluster.client_addresses(), &dir.path, &[]);
    assert!(
        aggregator.wait_ready(Duration::from_secs(60)),
        "{}",
        aggregator.log()
    );
    let syslog_port = tests::harness::free_ports(1)[0];
    let mut agent = Agent::start(
        &dir.path,
        &config(
            &dir.path,
            &aggregator,
            &format!("[syslog]\ntcp = \"127.0.0.1:{syslog_port}\"\n"),
        ),
    );
    let app = logs.join("app.log");
    let every = Duration::from_millis(2);
    let mut w = Writer::open(&app);
    w.write(300, every);

    // SIGKILL mid-stream, and back: it resumes from its checkpoints and its buffer.
    agent.kill();
    w.write(300, every);
    agent.restart();
    w.write(300, every);

    // No aggregator for a while: the agent buffers on disk, then drains.
    assert!(aggregator.terminate(Duration::from_secs(15)).is_some());
    w.write(500, every);
    assert!(
        wait_until(Duration::from_secs(10), || agent
            .metric("agent_buffer_lines")
            .is_some_and(|n| n > 0.0)),
        "lines wait in the buffer\n{}",
        agent.log()
    );
    // …and across its own restart.
    agent.kill();
    agent.restart();
    w.write(100, every);
    aggregator.restart();
    assert!(
        aggregator.wait_ready(Duration::from_secs(60)),
        "{}",
        aggregator.log()
    );
    w.write(100, every);
    assert_exactly(&aggregator, &agent, w.next);
    assert!(
        wait_until(Duration::from_secs(10), || agent
            .metric("agent_buffer_lines")
            == Some(0.0)),
        "the buffer drained"
    );

    // Syslog through the agent.
    logger(
        syslog_port,
        &["--tcp", "--rfc5424", "--tag", "sysdrill"],
        "through the agent",
    );
    assert!(
        wait_until(Duration::from_secs(20), || aggregator
            .get("/api/query?service=sysdrill")
            .1
            .contains("through the agent")),
        "{}",
        agent.log()
    );
}
