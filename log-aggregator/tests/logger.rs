//! The codecs against the real client: util-linux `logger` sends to a listener of this test
//! over TCP (newline framing and `--octet-count`) and UDP, in RFC 5424 and RFC 3164; every
//! message comes out whole, with its host, app, level and text.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use log_aggregator::syslog::frame::{Decoded, Decoder};
use log_aggregator::syslog::message::{self, Level, Message};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn logger(port: u16, args: &[&str], text: &str) {
    let status = Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .arg(text)
        .status()
        .expect("logger (util-linux)");
    assert!(status.success(), "logger {args:?}");
}

/// Accepts one TCP connection and decodes every message on it.
fn receive_tcp(listener: &TcpListener) -> Vec<Message> {
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut bytes = Vec::new();
    conn.read_to_end(&mut bytes).unwrap();
    let mut buf = BytesMut::from(&bytes[..]);
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    while let Decoded::Frame(f) = decoder.decode(&mut buf) {
        out.push(message::parse(&f.bytes, now_ms()));
    }
    out.extend(
        decoder
            .finish(&mut buf)
            .map(|f| message::parse(&f.bytes, now_ms())),
    );
    out
}

#[test]
fn logger_over_tcp_in_both_framings_and_both_formats() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for (args, format) in [
        (vec!["--tcp", "--rfc5424"], "5424 newline"),
        (
            vec!["--tcp", "--octet-count", "--rfc5424"],
            "5424 octet-counted",
        ),
        (vec!["--tcp", "--rfc3164"], "3164 newline"),
        (
            vec!["--tcp", "--octet-count", "--rfc3164"],
            "3164 octet-counted",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["-t", "drill", "-p", "user.err"]);
        let text = format!("a message in {format}: with spaces, colons: and [brackets]");
        let sender = {
            let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
            let text = text.clone();
            std::thread::spawn(move || {
                let args: Vec<&str> = all.iter().map(String::as_str).collect();
                logger(port, &args, &text)
            })
        };
        let got = receive_tcp(&listener);
        sender.join().unwrap();
        assert_eq!(got.len(), 1, "{format}: {got:?}");
        let m = &got[0];
        assert_eq!(m.parse_error, None, "{format}: {m:?}");
        assert_eq!(m.app.as_deref(), Some("drill"), "{format}");
        assert_eq!(m.level, Some(Level::Error), "{format}");
        assert_eq!(m.text, text, "{format}");
        assert!(m.host.is_some(), "{format}");
        let age = now_ms() - m.ts_ms.unwrap();
        assert!(
            (-2_000..60_000).contains(&age),
            "{format}: a timestamp {age} ms old"
        );
    }
}

#[test]
fn logger_over_udp() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    for format in ["--rfc5424", "--rfc3164"] {
        logger(port, &["--udp", format, "-t", "udp-drill"], "over udp");
        let mut datagram = [0u8; 65_536];
        let n = socket.recv(&mut datagram).unwrap();
        let m = message::parse(&datagram[..n], now_ms());
        assert_eq!(m.parse_error, None, "{format}: {m:?}");
        assert_eq!(
            (m.app.as_deref(), m.text.as_str()),
            (Some("udp-drill"), "over udp")
        );
    }
}
