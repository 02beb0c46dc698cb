//! A standard forwarder, unchanged: rsyslog (Debian's `rsyslogd`, run in the foreground with
//! its own config and work directory in a temp dir) tails two files with imfile and forwards
//! them over TCP to an aggregator, one in newline framing and one in RFC 6587 octet
//! counting, as RFC 5424; every line arrives once and is searchable under its tag.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::harness::{wait_until, TempDir};
use tests::logs::{start_store, Aggregator};

fn rsyslogd() -> PathBuf {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("rsyslogd (scripts/install-test-deps.sh installs rsyslog)")
}

/// rsyslogd in the foreground, killed on drop.
struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_rsyslog(dir: &Path, port: u16, files: &[(&Path, &str, &str)]) -> Rsyslog {
    let work = dir.join("rsyslog");
    std::fs::create_dir_all(work.join("spool")).unwrap();
    let mut conf = format!(
        "global(workDirectory=\"{}\" maxMessageSize=\"64k\")\nmodule(load=\"imfile\" mode=\"inotify\")\n",
        work.join("spool").display()
    );
    for (i, (file, tag, framing)) in files.iter().enumerate() {
        conf.push_str(&format!(
            "input(type=\"imfile\" file=\"{}\" tag=\"{tag}\" severity=\"warning\" facility=\"local0\" ruleset=\"fwd{i}\")\n\
             ruleset(name=\"fwd{i}\") {{\n  action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"tcp\" \
             TCP_Framing=\"{framing}\" template=\"RSYSLOG_SyslogProtocol23Format\" \
             queue.type=\"LinkedList\" action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")\n}}\n",
            file.display()
        ));
    }
    let path = work.join("rsyslog.conf");
    std::fs::write(&path, conf).unwrap();
    let check = Command::new(rsyslogd())
        .args(["-N1", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "rsyslog's config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new(rsyslogd())
        .args(["-n", "-f"])
        .arg(&path)
        .arg("-i")
        .arg(work.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("rsyslogd.out")).unwrap())
        .spawn()
        .expect("starting rsyslogd");
    Rsyslog(child)
}

#[test]
fn rsyslog_tails_files_and_forwards_over_tcp_in_both_framings_and_every_line_arrives() {
    let cluster = start_store("logs-rsyslog");
    let dir = TempDir::new("logs-rsyslog");
    let a = Aggregator::start(&cluster.client_addresses(), &dir.path, &[]);
    assert!(a.wait_ready(Duration::from_secs(60)), "{}", a.log());

    let lf = dir.path.join("lf.log");
    let octet = dir.path.join("octet.log");
    std::fs::write(&lf, "").unwrap();
    std::fs::write(&octet, "").unwrap();
    let _rsyslog = start_rsyslog(
        &dir.path,
        a.syslog_tcp,
        &[
            (&lf, "billing", "traditional"),
            (&octet, "shipping", "octet-counted"),
        ],
    );
    std::thread::sleep(Duration::from_secs(1)); // imfile's first look at the files
    const LINES: usize = 200;
    for (path, word) in [(&lf, "invoice"), (&octet, "parcel")] {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        for i in 0..LINES {
            writeln!(f, "{word} {i:04} processed").unwrap();
        }
    }
    for (service, word) in [("billing", "invoice"), ("shipping", "parcel")] {
        let path = format!("/api/query?service={service}&limit=1000&order=oldest");
        let mut last = Value::Null;
        let ok = wait_until(Duration::from_secs(30), || {
            last = serde_json::from_str(&a.get(&path).1).unwrap_or(Value::Null);
            last["total"] == LINES
        });
        assert!(ok, "{service}: {last}\n{}", a.log());
        let got: Vec<String> = last["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = (0..LINES)
            .map(|i| format!("{word} {i:04} processed"))
            .collect();
        assert_eq!(got, want, "each line once, in order");
        assert_eq!(last["lines"][0]["level"], "warning");
    }
}
