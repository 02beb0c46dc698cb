//! `@@NAME@@` end to end: the binary as a real process in front of a real 3-node store
//! cluster (started by the suite's harness, `tests::cluster`), spoken to with curl. It
//! serves its page, `/health` and `/metrics`; an item written is read back, also after a
//! store node is SIGKILLed; bad input gets a clear error; SIGTERM stops it cleanly.
//!
//! Run it after building the binaries: `cargo build --workspace --bins && cargo test -p @@NAME@@`.

use std::process::Command;
use std::time::Duration;

use tests::cluster::{Cluster, ClusterOptions};
use tests::dictionary::curl;
use tests::harness::{free_ports, wait_until, Proc, TempDir};

/// The service as a process (the harness's `Proc`: its log in `dir`, killed on drop).
struct Service {
    proc: Proc,
    url: String,
}

impl Service {
    fn start(store: &[String], dir: &std::path::Path) -> Service {
        let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
        let args = ["serve", "--listen", &addr, "--store", &store.join(",")]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Service {
            proc: Proc::start("@@NAME@@", args, dir.join("@@NAME@@.log")),
            url: format!("http://{addr}"),
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        curl(&format!("{}{path}", self.url), &[])
    }

    fn put(&self, path: &str, body: &str) -> (u16, String) {
        curl(
            &format!("{}{path}", self.url),
            &["-X", "PUT", "--data-binary", body],
        )
    }

    fn log(&self) -> String {
        self.proc.log()
    }
}

#[test]
fn it_serves_its_page_health_and_metrics_and_keeps_what_it_wrote_through_a_node_s_death() {
    let dir = TempDir::new("@@NAME@@");
    let mut cluster = Cluster::start("@@NAME@@", ClusterOptions::default()).unwrap();
    cluster.wait_settled(Duration::from_secs(60)).unwrap();
    let store = cluster.client_addresses();
    let service = Service::start(&store, &dir.path);
    assert!(
        wait_until(Duration::from_secs(60), || service.get("/health").0 == 200),
        "{}",
        service.log()
    );

    let (status, page) = service.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<title>@@TITLE@@</title>"), "{page}");

    // An item written is read back; bad names are refused with a clear error.
    assert_eq!(service.put("/api/items/greeting", "hello").0, 200);
    assert_eq!(service.get("/api/items/greeting"), (200, "hello".to_string()));
    let (status, body) = service.get("/api/items/absent");
    assert_eq!(status, 404, "{body}");
    let (status, body) = service.get("/api/items/a%7Bb%7D");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_name"), "{body}");

    // A store node dies: what was acknowledged is still there, and writes go on.
    cluster.kill(1).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || service
            .put("/api/items/after", "still here")
            .0
            == 200),
        "{}",
        service.log()
    );
    assert_eq!(service.get("/api/items/greeting"), (200, "hello".to_string()));

    let (_, metrics) = service.get("/metrics");
    let writes = metrics
        .lines()
        .find_map(|l| l.strip_prefix("@@CRATE@@_writes_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(writes.is_some_and(|n| n >= 2), "{metrics}");

    // SIGTERM: it stops taking work and exits cleanly.
    let mut service = service;
    let pid = service.proc.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut exit = None;
    wait_until(Duration::from_secs(15), || {
        exit = service.proc.child.try_wait().unwrap();
        exit.is_some()
    });
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{}", service.log());
}
