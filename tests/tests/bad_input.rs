//! Bad input on both client ports of a real server: random bytes, oversized and truncated
//! frames, unknown opcodes, requests before the handshake, stalled clients, too many
//! connections. Each case checks the typed error the offender gets and that a well-behaved
//! client is served throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use kvstore::wire::{self, ErrorCode, Request, Response};
use tests::harness::{Server, ServerOptions, TempDir};

fn server(dir: &TempDir, extra: &[&str]) -> Server {
    let options = ServerOptions {
        args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOptions::fsync_never()
    };
    Server::start(&dir.path, options).unwrap()
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn hello() -> Request {
    Request::Hello {
        min_version: 1,
        max_version: 1,
        client_name: "bad-input-test".into(),
        client_id: 0,
    }
}

fn send(stream: &mut TcpStream, request: &Request, id: u64) {
    let mut buf = BytesMut::new();
    request.encode(id, &mut buf).unwrap();
    stream.write_all(&buf).unwrap();
}

/// Reads one response frame, or `None` at EOF.
fn recv(stream: &mut TcpStream) -> Option<(u64, Response)> {
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(frame) = wire::decode_frame(&mut buf, 1 << 24).unwrap() {
            return Some((frame.request_id, Response::decode(&frame).unwrap()));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

fn handshaken(addr: SocketAddr) -> TcpStream {
    let mut s = tcp(addr);
    send(&mut s, &hello(), 1);
    assert!(matches!(recv(&mut s), Some((1, Response::HelloOk { .. }))));
    s
}

/// A well-behaved client: a put and a get round trip on a fresh connection.
fn healthy_round_trip(addr: SocketAddr, n: u64) {
    let mut s = handshaken(addr);
    let key = format!("healthy-{n}");
    let put = Request::Put {
        keyspace: "default".into(),
        key: key.clone().into(),
        value: "ok".into(),
        ttl_ms: None,
        condition: Default::default(),
    };
    send(&mut s, &put, 2);
    assert!(matches!(
        recv(&mut s),
        Some((2, Response::PutOk { applied: true, .. }))
    ));
    let get = Request::Get {
        keyspace: "default".into(),
        key: key.into(),
        consistency: Default::default(),
    };
    send(&mut s, &get, 3);
    match recv(&mut s) {
        Some((3, Response::GetOk { found: Some(v), .. })) => assert_eq!(&v.value[..], b"ok"),
        other => panic!("healthy client got {other:?}"),
    }
}

fn error_code(response: Option<(u64, Response)>) -> (u64, ErrorCode) {
    match response {
        Some((id, Response::Error { code, .. })) => (id, code),
        other => panic!("expected an error response, got {other:?}"),
    }
}

#[test]
fn binary_port_survives_bad_input_and_keeps_serving_others() {
    let dir = TempDir::new("bad-binary");
    let server = server(
        &dir,
        &["--frame-bytes-max", "65536", "--read-timeout-ms", "300"],
    );
    let addr = server.addr;
    // A healthy connection held open across all the abuse below.
    let mut steady = handshaken(addr);

    // Random bytes: a frame length of 0xdeadbeef is over the limit -> error, then close.
    let mut s = tcp(addr);
    s.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
        .unwrap();
    assert_eq!(error_code(recv(&mut s)).1, ErrorCode::FrameTooLarge);
    assert!(
        recv(&mut s).is_none(),
        "connection closed after an unframeable input"
    );
    healthy_round_trip(addr, 1);

    // An oversized frame whose header is complete: answered with its own request id.
    let mut s = handshaken(addr);
    let mut header = Vec::new();
    header.extend_from_slice(&(1_000_000u32).to_be_bytes());
    header.extend_from_slice(&0x0011u16.to_be_bytes());
    header.extend_from_slice(&42u64.to_be_bytes());
    s.write_all(&header).unwrap();
    assert_eq!(error_code(recv(&mut s)), (42, ErrorCode::FrameTooLarge));
    assert!(recv(&mut s).is_none());

    // A length too small to hold a header.
    let mut s = tcp(addr);
    s.write_all(&3u32.to_be_bytes()).unwrap();
    assert_eq!(error_code(recv(&mut s)).1, ErrorCode::Malformed);

    // Unknown opcode: an error for that request id, and the connection stays usable.
    let mut s = handshaken(addr);
    let mut frame = BytesMut::new();
    wire::encode_frame(0x0777, 9, b"", &mut frame).unwrap();
    s.write_all(&frame).unwrap();
    assert_eq!(error_code(recv(&mut s)), (9, ErrorCode::UnknownOpcode));
    send(
        &mut s,
        &Request::Ping {
            payload: "still here".into(),
        },
        10,
    );
    assert!(matches!(recv(&mut s), Some((10, Response::Pong { .. }))));

    // A body that is not the message its opcode names: Malformed, connection usable.
    let mut frame = BytesMut::new();
    wire::encode_frame(0x0010, 11, &[0xff, 0xff, 0xff], &mut frame).unwrap();
    s.write_all(&frame).unwrap();
    assert_eq!(error_code(recv(&mut s)), (11, ErrorCode::Malformed));
    send(&mut s, &Request::Ping { payload: "".into() }, 12);
    assert!(matches!(recv(&mut s), Some((12, Response::Pong { .. }))));

    // A request before HELLO.
    let mut s = tcp(addr);
    send(&mut s, &Request::Ping { payload: "".into() }, 5);
    assert_eq!(error_code(recv(&mut s)), (5, ErrorCode::HandshakeRequired));
    assert!(recv(&mut s).is_none());

    // A protocol version nobody speaks.
    let mut s = tcp(addr);
    send(
        &mut s,
        &Request::Hello {
            min_version: 9,
            max_version: 12,
            client_name: "future".into(),
            client_id: 0,
        },
        1,
    );
    assert_eq!(error_code(recv(&mut s)).1, ErrorCode::UnsupportedVersion);

    // A truncated frame, then EOF: the server logs it and carries on.
    let mut s = handshaken(addr);
    let mut frame = BytesMut::new();
    Request::Ping {
        payload: "cut short".into(),
    }
    .encode(13, &mut frame)
    .unwrap();
    s.write_all(&frame[..frame.len() - 3]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(recv(&mut s).is_none());

    // A client that stalls mid-frame is closed by the read timeout (300 ms here).
    let mut s = handshaken(addr);
    s.write_all(&frame[..6]).unwrap();
    assert!(recv(&mut s).is_none(), "the stalled connection is closed");

    // Many random garbage connections at once.
    let mut seed = 0x1234_5678_9abc_def0u64;
    for _ in 0..20 {
        let mut s = tcp(addr);
        let junk: Vec<u8> = (0..200)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = s.write_all(&junk);
        let _ = recv_any(&mut s);
    }

    healthy_round_trip(addr, 2);
    send(&mut steady, &Request::Ping { payload: "".into() }, 99);
    assert!(matches!(
        recv(&mut steady),
        Some((99, Response::Pong { .. }))
    ));
    let log = server.log();
    assert!(
        log.contains("mid-request"),
        "truncated and stalled frames are logged:\n{log}"
    );
}

/// Reads until EOF or an error, ignoring content.
fn recv_any(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut chunk = [0u8; 1024];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        total += n;
    }
    total
}

fn resp_exchange(addr: SocketAddr, input: &[u8]) -> String {
    let mut s = tcp(addr);
    s.write_all(input).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn resp_port_answers_bad_input_like_redis_and_keeps_serving_others() {
    let dir = TempDir::new("bad-resp");
    let server = server(&dir, &["--frame-bytes-max", "65536"]);
    let addr = server.resp;

    // Unknown command: an error, and the same connection goes on.
    let out = resp_exchange(addr, b"*1\r\n$7\r\nFLYAWAY\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(
        out,
        "-ERR unknown command 'FLYAWAY', with args beginning with: \r\n+PONG\r\n"
    );

    // Wrong arity.
    let out = resp_exchange(addr, b"*1\r\n$3\r\nGET\r\n");
    assert_eq!(out, "-ERR wrong number of arguments for 'get' command\r\n");

    // A bulk longer than the limit is refused at its header, and the connection closes.
    let out = resp_exchange(addr, b"*2\r\n$3\r\nGET\r\n$999999999\r\nxx");
    assert!(
        out.starts_with("-ERR Protocol error: invalid bulk length"),
        "{out:?}"
    );

    // Garbage where a multibulk length should be.
    let out = resp_exchange(addr, b"*zz\r\n");
    assert!(out.starts_with("-ERR Protocol error"), "{out:?}");

    // A command cut short by EOF: the server logs it and carries on.
    let out = resp_exchange(addr, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nval");
    assert_eq!(out, "", "nothing to answer for an incomplete command");

    // Random bytes.
    let junk: Vec<u8> = (0u32..500)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let _ = resp_exchange(addr, &junk);

    // A healthy client afterwards.
    let out = resp_exchange(
        addr,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    );
    assert_eq!(out, "+OK\r\n$1\r\nv\r\n");
    // Inline commands work too (telnet style).
    assert_eq!(resp_exchange(addr, b"PING\r\n"), "+PONG\r\n");
}

#[test]
fn connections_over_the_limit_are_refused_with_a_reason() {
    let dir = TempDir::new("connlimit");
    let server = server(&dir, &["--connections-max", "2"]);
    let _a = handshaken(server.addr);
    let _b = handshaken(server.addr);
    let mut c = tcp(server.addr);
    assert_eq!(error_code(recv(&mut c)).1, ErrorCode::Busy);
    let out = resp_exchange(server.resp, b"PING\r\n");
    assert_eq!(out, "-ERR max number of clients reached\r\n");
    drop(_a);
    // The slot frees up once a connection closes.
    assert!(tests::harness::wait_until(Duration::from_secs(5), || {
        let mut s = tcp(server.addr);
        send(&mut s, &hello(), 1);
        matches!(recv(&mut s), Some((1, Response::HelloOk { .. })))
    }));
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let dir = TempDir::new("idle");
    let server = server(&dir, &["--idle-timeout-ms", "300"]);
    let started = std::time::Instant::now();
    let mut binary = handshaken(server.addr);
    assert!(
        recv(&mut binary).is_none(),
        "an idle binary connection is closed"
    );
    let mut resp = tcp(server.resp);
    let mut buf = [0u8; 16];
    assert_eq!(
        resp.read(&mut buf).unwrap_or(0),
        0,
        "an idle RESP connection is closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    assert!(server.log().contains("idle"), "{}", server.log());
    healthy_round_trip(server.addr, 3);
}
