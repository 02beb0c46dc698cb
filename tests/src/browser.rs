//! A headless Chromium driven over the DevTools protocol (a WebSocket): open a page, type
//! into it as a user would (`Input.insertText` fires the page's input events), click, and
//! read the DOM back with `Runtime.evaluate`. Started on a loopback port chosen at run time
//! with a fresh profile, killed by PID on drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::harness::{free_ports, wait_until, TempDir};

pub struct Browser {
    child: Child,
    _profile: TempDir,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    pub fn start() -> Result<Browser> {
        let profile = TempDir::new("chromium-profile");
        let port = free_ports(1)[0];
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.path.display()),
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromium (scripts/install-test-deps.sh installs it)")?;
        let devtools = format!("http://127.0.0.1:{port}/json/list");
        let mut targets = String::new();
        let up = wait_until(Duration::from_secs(20), || {
            let out = Command::new("curl")
                .args(["-s", "--max-time", "2", &devtools])
                .output();
            match out {
                Ok(o) if String::from_utf8_lossy(&o.stdout).contains("\"page\"") => {
                    targets = String::from_utf8_lossy(&o.stdout).to_string();
                    true
                }
                _ => false,
            }
        });
        if !up {
            bail!("chromium's DevTools did not answer on {devtools}");
        }
        let list: Vec<Value> = serde_json::from_str(&targets)?;
        let url = list
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .context("a page target")?
            .to_string();
        let (ws, _) = tungstenite::connect(url.as_str()).context("connecting to DevTools")?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
        }
        Ok(Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
        })
    }

    /// Calls a DevTools method and returns its result (events in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(request.to_string()))?;
        loop {
            let message = self.ws.read()?;
            let Message::Text(text) = message else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str())?;
            if v["id"] == id {
                if let Some(error) = v.get("error") {
                    bail!("{method}: {error}");
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// Evaluates JavaScript in the page and returns its value (awaiting a promise).
    pub fn eval(&mut self, js: &str) -> Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("{js}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `js` until it gives a truthy value or `timeout` passes; the last value.
    pub fn wait_for(&mut self, js: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(js)?;
            let truthy = !(v.is_null() || v == false || v == "" || v == 0);
            if truthy || Instant::now() > deadline {
                return Ok(v);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens `url` and waits until the page has loaded.
    pub fn open(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", json!({"url": url}))?;
        let js = format!(
            "document.readyState === 'complete' && location.href.startsWith({})",
            json!(url.split('?').next().unwrap_or(url))
        );
        if self.wait_for(&js, Duration::from_secs(20))? != true {
            bail!("{url} did not load");
        }
        Ok(())
    }

    /// Types `text` into whatever has the focus, as keyboard input would.
    pub fn type_text(&mut self, text: &str) -> Result<()> {
        self.call("Input.insertText", json!({"text": text}))?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
