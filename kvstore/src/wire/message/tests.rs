//! Round trips, defaults, unknown fields and damaged bodies for every message.

use super::super::frame::{decode_frame, FRAME_BYTES_MAX_DEFAULT};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

// ---- helpers ------------------------------------------------------------------------------

fn frame_of(opcode: u16, request_id: u64, body: &[u8]) -> Frame {
    Frame {
        opcode,
        request_id,
        body: Bytes::copy_from_slice(body),
    }
}

fn body_of(build: impl FnOnce(&mut FieldWriter<'_>)) -> Vec<u8> {
    let mut dst = BytesMut::new();
    build(&mut FieldWriter::new(&mut dst));
    dst.to_vec()
}

/// Encodes, cuts the frame back out of the stream, decodes, and returns the message.
fn request_round_trip(request: &Request) -> Request {
    let mut buf = BytesMut::new();
    request.encode(77, &mut buf).expect("fits");
    let frame = decode_frame(&mut buf, FRAME_BYTES_MAX_DEFAULT)
        .expect("valid")
        .expect("whole");
    assert!(buf.is_empty(), "one frame, nothing left");
    assert_eq!((frame.opcode, frame.request_id), (request.opcode(), 77));
    Request::decode(&frame).expect("decodes")
}

fn response_round_trip(response: &Response) -> Response {
    let mut buf = BytesMut::new();
    response.encode(78, &mut buf).expect("fits");
    let frame = decode_frame(&mut buf, FRAME_BYTES_MAX_DEFAULT)
        .expect("valid")
        .expect("whole");
    assert!(buf.is_empty(), "one frame, nothing left");
    assert_eq!((frame.opcode, frame.request_id), (response.opcode(), 78));
    Response::decode(&frame).expect("decodes")
}

/// Checks that `body` under `opcode` decodes to `expected` (as a request).
fn check_request(opcode: u16, body: &[u8], expected: Result<Request, DecodeError>) {
    assert_eq!(
        Request::decode(&frame_of(opcode, 1, body)),
        expected,
        "body {body:02x?}"
    );
}

fn check_response(opcode: u16, body: &[u8], expected: Result<Response, DecodeError>) {
    assert_eq!(
        Response::decode(&frame_of(opcode, 1, body)),
        expected,
        "body {body:02x?}"
    );
}

fn missing(message: &'static str, field: u32) -> DecodeError {
    DecodeError::MissingField { message, field }
}

fn invalid(message: &'static str, field: u32, value: u64) -> DecodeError {
    DecodeError::InvalidValue {
        message,
        field,
        value,
    }
}

fn b(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

// ---- exact layouts (these back the diagrams in docs/wire-protocol.md) ---------------------

#[test]
fn get_request_layout() {
    let request = Request::Get {
        keyspace: "users".into(),
        key: b(b"k1"),
        consistency: Some(Consistency::Lease),
    };
    let mut buf = BytesMut::new();
    request.encode(5, &mut buf).expect("fits");
    #[rustfmt::skip]
    let expected = [
        0x00, 0x00, 0x00, 0x17,                         // length = 10 + 13
        0x00, 0x10,                                     // opcode GET
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // request id 5
        0x0a, 0x05, b'u', b's', b'e', b'r', b's',       // 1 keyspace "users"
        0x12, 0x02, b'k', b'1',                         // 2 key "k1"
        0x18, 0x01,                                     // 3 consistency = Lease
    ];
    assert_eq!(&buf[..], &expected);
}

#[test]
fn put_request_layout_leaves_defaults_out() {
    let request = Request::Put {
        keyspace: DEFAULT_KEYSPACE.into(),
        key: b(b"k"),
        value: b(b"v"),
        ttl_ms: Some(1000),
        condition: Condition::IfVersion(7),
    };
    let mut buf = BytesMut::new();
    request.encode(1, &mut buf).expect("fits");
    #[rustfmt::skip]
    let body = [
        0x12, 0x01, b'k', // 2 key
        0x1a, 0x01, b'v', // 3 value
        0x20, 0xe8, 0x07, // 4 ttl_ms = 1000
        0x28, 0x03,       // 5 condition kind = IfVersion
        0x30, 0x07,       // 6 expected_version = 7
    ];
    assert_eq!(&buf[..4], &[0, 0, 0, 10 + body.len() as u8]);
    assert_eq!(&buf[4..6], &[0x00, 0x11]);
    assert_eq!(&buf[14..], &body);
}

#[test]
fn error_response_layout() {
    let mut buf = BytesMut::new();
    Response::error(ErrorCode::UnknownOpcode, "no")
        .encode(9, &mut buf)
        .expect("fits");
    #[rustfmt::skip]
    let expected = [
        0x00, 0x00, 0x00, 0x10,                         // length = 10 + 6
        0xff, 0xff,                                     // opcode ERROR
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, // request id 9
        0x08, 0x03,                                     // 1 code = UnknownOpcode
        0x12, 0x02, b'n', b'o',                         // 2 message "no"
    ];
    assert_eq!(&buf[..], &expected);
}

#[test]
fn scan_ok_layout_nests_entries() {
    let response = Response::ScanOk {
        entries: vec![Entry {
            key: b(b"a"),
            value: Some(b(b"")),
            version: 2,
            expires_at_ms: None,
        }],
        continuation: None,
        lag: None,
    };
    let mut buf = BytesMut::new();
    response.encode(1, &mut buf).expect("fits");
    #[rustfmt::skip]
    let body = [
        0x0a, 0x07,             // 1 entry, 7 bytes:
        0x0a, 0x01, b'a',       //   1 key "a"
        0x12, 0x00,             //   2 value "" (present: not keys_only)
        0x18, 0x02,             //   3 version 2
    ];
    assert_eq!(&buf[4..6], &[0x80, 0x15]);
    assert_eq!(&buf[14..], &body);
}

// ---- compatibility ------------------------------------------------------------------------

#[test]
fn unknown_fields_of_both_wire_types_are_skipped() {
    let plain = body_of(|w| {
        w.str(1, "ks");
        w.bytes(2, b"key");
        w.varint(3, 2);
    });
    let extended = body_of(|w| {
        w.varint(100, 12345); // unknown varint first
        w.str(1, "ks");
        w.bytes(99, b"future"); // unknown bytes in the middle
        w.bytes(2, b"key");
        w.varint(3, 2);
        w.message(1000, |w| w.varint(1, 1)); // unknown nested message at the end
        w.varint(FIELD_NUMBER_MAX_FOR_TESTS, u64::MAX);
    });
    let expected = Request::Get {
        keyspace: "ks".into(),
        key: b(b"key"),
        consistency: Some(Consistency::Follower),
    };
    check_request(opcode::GET, &plain, Ok(expected.clone()));
    check_request(opcode::GET, &extended, Ok(expected));
}

const FIELD_NUMBER_MAX_FOR_TESTS: u32 = super::super::field::FIELD_NUMBER_MAX;

#[test]
fn unknown_fields_in_nested_messages_are_skipped() {
    let body = body_of(|w| {
        w.message(1, |w| {
            w.bytes(1, b"k");
            w.varint(9, 1);
            w.bytes(10, b"x");
        });
        // An outer field this version does not know either.
        w.varint(13, 4);
    });
    let expected = Response::ScanOk {
        entries: vec![Entry {
            key: b(b"k"),
            value: None,
            version: 0,
            expires_at_ms: None,
        }],
        continuation: None,
        lag: None,
    };
    check_response(0x8015, &body, Ok(expected));
}

#[test]
fn absent_optional_fields_take_their_defaults() {
    let key_only = body_of(|w| w.bytes(2, b"k"));
    check_request(
        opcode::PUT,
        &key_only,
        Ok(Request::Put {
            keyspace: DEFAULT_KEYSPACE.into(),
            key: b(b"k"),
            value: Bytes::new(),
            ttl_ms: None,
            condition: Condition::None,
        }),
    );
    check_request(
        opcode::SCAN,
        &[],
        Ok(Request::Scan {
            keyspace: DEFAULT_KEYSPACE.into(),
            range: ScanRange::default(),
            limit: 0,
            continuation: None,
            keys_only: false,
            consistency: None,
            partition: None,
        }),
    );
    check_request(
        opcode::PING,
        &[],
        Ok(Request::Ping {
            payload: Bytes::new(),
        }),
    );
    check_response(
        0x8011,
        &[],
        Ok(Response::PutOk {
            applied: false,
            version: 0,
        }),
    );
    check_response(
        0x8010,
        &[],
        Ok(Response::GetOk {
            found: None,
            lag: None,
        }),
    );
    // ttl 0 on the wire means "no expiry", like absence.
    let zero_ttl = body_of(|w| {
        w.bytes(2, b"k");
        w.varint(4, 0);
    });
    let Ok(Request::Put { ttl_ms, .. }) = Request::decode(&frame_of(opcode::PUT, 1, &zero_ttl))
    else {
        panic!("put with ttl 0 should decode");
    };
    assert_eq!(ttl_ms, None);
}

#[test]
fn repeated_scalar_fields_last_one_wins() {
    let body = body_of(|w| {
        w.bytes(2, b"first");
        w.sint(3, 1);
        w.bytes(2, b"second");
        w.sint(3, -5);
    });
    check_request(
        opcode::INCR,
        &body,
        Ok(Request::Incr {
            keyspace: DEFAULT_KEYSPACE.into(),
            key: b(b"second"),
            delta: -5,
        }),
    );
}

// ---- errors -------------------------------------------------------------------------------

#[test]
fn decode_errors() {
    let no_key = body_of(|w| w.str(1, "ks"));
    let key_as_varint = body_of(|w| w.varint(2, 1));
    let bad_consistency = body_of(|w| {
        w.bytes(2, b"k");
        w.varint(3, 3);
    });
    let bad_condition = body_of(|w| {
        w.bytes(2, b"k");
        w.varint(3, 4);
    });
    let bad_utf8 = body_of(|w| {
        w.bytes(1, &[0xff]);
        w.bytes(2, b"k");
    });
    let bad_bool = body_of(|w| w.varint(7, 2));
    let version_too_big = body_of(|w| {
        w.varint(1, 1);
        w.varint(2, 70000);
    });
    let bad_op_kind = body_of(|w| {
        w.message(2, |w| {
            w.varint(1, 2);
            w.bytes(2, b"k");
        })
    });
    let op_without_key = body_of(|w| w.message(2, |w| w.varint(1, 1)));
    let wrong_wire_type = DecodeError::WrongWireType {
        message: "Get",
        field: 2,
        expected: WireType::Len,
        found: WireType::Varint,
    };
    let field_error = |message, source| DecodeError::Field { message, source };
    let unknown_wire_type = FieldError::UnknownWireType {
        wire_type: 3,
        offset: 0,
    };
    let truncated = FieldError::Truncated {
        offset: 2,
        need_bytes: 3,
        have_bytes: 1,
    };
    let cases: Vec<(u16, &[u8], DecodeError)> = vec![
        (0x0003, &[], DecodeError::UnknownOpcode { opcode: 0x0003 }),
        (0x8010, &[], DecodeError::UnknownOpcode { opcode: 0x8010 }),
        (opcode::GET, &no_key, missing("Get", 2)),
        (opcode::INCR, &[], missing("Incr", 2)),
        (opcode::HELLO, &[], missing("Hello", 1)),
        (opcode::GET, &key_as_varint, wrong_wire_type),
        (opcode::GET, &bad_consistency, invalid("Get", 3, 3)),
        (opcode::DELETE, &bad_condition, invalid("Delete", 3, 4)),
        (
            opcode::GET,
            &bad_utf8,
            field_error("Get", FieldError::InvalidUtf8 { field: 1 }),
        ),
        (opcode::SCAN, &bad_bool, invalid("Scan", 7, 2)),
        (opcode::HELLO, &version_too_big, invalid("Hello", 2, 70000)),
        (opcode::BATCH, &bad_op_kind, invalid("Batch.op", 1, 2)),
        (opcode::BATCH, &op_without_key, missing("Batch.op", 2)),
        (
            opcode::PING,
            &[0x0b],
            field_error("Ping", unknown_wire_type),
        ),
        (
            opcode::PING,
            &[0x0a, 0x03, 0x00],
            field_error("Ping", truncated),
        ),
    ];
    for (opcode, body, error) in cases {
        assert_eq!(
            Request::decode(&frame_of(opcode, 1, body)),
            Err(error),
            "{body:02x?}"
        );
    }
}

#[test]
fn response_decode_errors() {
    let unknown = DecodeError::UnknownOpcode { opcode: 0x0010 };
    check_response(0x0010, &[], Err(unknown));
    check_response(opcode::ERROR, &[], Err(missing("Error", 1)));
    let entry_without_key = body_of(|w| w.message(1, |w| w.varint(3, 1)));
    check_response(0x8015, &entry_without_key, Err(missing("ScanOk.entry", 1)));
}

#[test]
fn error_codes_map_to_numbers_and_back() {
    for code in 0..=20 {
        assert_eq!(ErrorCode::from_code(code).code(), code);
    }
    assert_eq!(ErrorCode::from_code(4), ErrorCode::FrameTooLarge);
    assert_eq!(ErrorCode::from_code(999), ErrorCode::Other(999));
    assert_eq!(
        DecodeError::UnknownOpcode { opcode: 9 }.error_code(),
        ErrorCode::UnknownOpcode
    );
    assert_eq!(
        DecodeError::MissingField {
            message: "Get",
            field: 2
        }
        .error_code(),
        ErrorCode::Malformed
    );
}

#[test]
fn version_negotiation_picks_the_newest_common_version() {
    assert_eq!(negotiate_version(1, 1), Some(1));
    assert_eq!(negotiate_version(1, 9), Some(PROTOCOL_VERSION_MAX));
    assert_eq!(negotiate_version(0, 0), None);
    assert_eq!(negotiate_version(PROTOCOL_VERSION_MAX + 1, u16::MAX), None);
    assert_eq!(negotiate_version(3, 2), None);
}

#[test]
fn error_messages_say_what_went_wrong() {
    let error = DecodeError::MissingField {
        message: "Get",
        field: 2,
    };
    assert_eq!(error.to_string(), "Get: required field 2 is missing");
    assert_eq!(
        DecodeError::UnknownOpcode { opcode: 0x42 }.to_string(),
        "unknown opcode 0x0042"
    );
}

// ---- property tests -----------------------------------------------------------------------

fn any_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..20).prop_map(Bytes::from)
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(DEFAULT_KEYSPACE.to_owned()),
        Just(String::new()),
        "\\PC{0,8}"
    ]
}

/// `Some(0)` is not generated: 0 means "none" on the wire, so it decodes to `None`.
fn any_ms() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(1..=u64::MAX)
}

fn any_lag() -> impl Strategy<Value = Option<ReadLag>> {
    proptest::option::of(
        (any::<u64>(), proptest::option::of(0..LAG_MS_UNKNOWN))
            .prop_map(|(entries, ms)| ReadLag { entries, ms }),
    )
}

fn any_consistency() -> impl Strategy<Value = Consistency> {
    prop_oneof![
        Just(Consistency::Linearizable),
        Just(Consistency::Lease),
        Just(Consistency::Follower)
    ]
}

fn any_condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        Just(Condition::None),
        Just(Condition::IfAbsent),
        Just(Condition::IfPresent),
        any::<u64>().prop_map(Condition::IfVersion),
    ]
}

fn any_batch_op() -> impl Strategy<Value = BatchOp> {
    prop_oneof![
        (any_bytes(), any_bytes(), any_ms(), any_condition()).prop_map(
            |(key, value, ttl_ms, condition)| BatchOp::Put {
                key,
                value,
                ttl_ms,
                condition
            }
        ),
        (any_bytes(), any_condition())
            .prop_map(|(key, condition)| BatchOp::Delete { key, condition }),
    ]
}

fn any_request() -> impl Strategy<Value = Request> {
    let range = (
        proptest::option::of(any_bytes()),
        proptest::option::of(any_bytes()),
        proptest::option::of(any_bytes()),
    )
        .prop_map(|(start, end, prefix)| ScanRange { start, end, prefix });
    prop_oneof![
        (any::<u16>(), any::<u16>(), any_string(), any::<u64>()).prop_map(
            |(min_version, max_version, client_name, client_id)| Request::Hello {
                min_version,
                max_version,
                client_name,
                client_id,
            }
        ),
        any_bytes().prop_map(|payload| Request::Ping { payload }),
        (
            any_string(),
            any_bytes(),
            proptest::option::of(any_consistency())
        )
            .prop_map(|(keyspace, key, consistency)| {
                Request::Get {
                    keyspace,
                    key,
                    consistency,
                }
            }),
        (
            any_string(),
            any_bytes(),
            any_bytes(),
            any_ms(),
            any_condition()
        )
            .prop_map(|(keyspace, key, value, ttl_ms, condition)| Request::Put {
                keyspace,
                key,
                value,
                ttl_ms,
                condition
            }),
        (any_string(), any_bytes(), any_condition()).prop_map(|(keyspace, key, condition)| {
            Request::Delete {
                keyspace,
                key,
                condition,
            }
        }),
        (any_string(), any_bytes(), any::<i64>()).prop_map(|(keyspace, key, delta)| {
            Request::Incr {
                keyspace,
                key,
                delta,
            }
        }),
        (
            any_string(),
            range,
            any::<u32>(),
            proptest::option::of(any_bytes()),
            any::<bool>(),
            proptest::option::of(any_consistency()),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(
                |(keyspace, range, limit, continuation, keys_only, consistency, partition)| {
                    Request::Scan {
                        keyspace,
                        range,
                        limit,
                        continuation,
                        keys_only,
                        consistency,
                        partition,
                    }
                }
            ),
        any::<u64>().prop_map(|known_version| Request::ClusterMap { known_version }),
        any_bytes().prop_map(|change| Request::MapChange { change }),
        (any_string(), vec(any_batch_op(), 0..5))
            .prop_map(|(keyspace, ops)| Request::Batch { keyspace, ops }),
    ]
}

fn any_error_code() -> impl Strategy<Value = ErrorCode> {
    // from_code never yields Other(n) for a known n, so generate through it.
    prop_oneof![1..=16u32, any::<u32>()].prop_map(ErrorCode::from_code)
}

fn any_response() -> impl Strategy<Value = Response> {
    let found =
        (any_bytes(), any::<u64>(), any_ms()).prop_map(|(value, version, expires_at_ms)| {
            Versioned {
                value,
                version,
                expires_at_ms,
            }
        });
    let entry = (
        any_bytes(),
        proptest::option::of(any_bytes()),
        any::<u64>(),
        any_ms(),
    )
        .prop_map(|(key, value, version, expires_at_ms)| Entry {
            key,
            value,
            version,
            expires_at_ms,
        });
    prop_oneof![
        (any::<u16>(), any_string(), any::<u32>()).prop_map(
            |(version, server_name, frame_bytes_max)| Response::HelloOk {
                version,
                server_name,
                frame_bytes_max
            }
        ),
        any_bytes().prop_map(|payload| Response::Pong { payload }),
        (proptest::option::of(found), any_lag())
            .prop_map(|(found, lag)| Response::GetOk { found, lag }),
        (any::<bool>(), any::<u64>())
            .prop_map(|(applied, version)| Response::PutOk { applied, version }),
        (any::<bool>(), any::<bool>(), any::<u64>()).prop_map(|(applied, existed, version)| {
            Response::DeleteOk {
                applied,
                existed,
                version,
            }
        }),
        (any::<i64>(), any::<u64>())
            .prop_map(|(value, version)| Response::IncrOk { value, version }),
        (
            vec(entry, 0..5),
            proptest::option::of(any_bytes()),
            any_lag()
        )
            .prop_map(|(entries, continuation, lag)| Response::ScanOk {
                entries,
                continuation,
                lag,
            }),
        (
            any::<bool>(),
            any::<u64>(),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(applied, version, failed_op)| Response::BatchOk {
                applied,
                version,
                failed_op
            }),
        (any_error_code(), any_string())
            .prop_map(|(code, message)| Response::Error { code, message }),
        proptest::option::of(any_bytes()).prop_map(|map| Response::ClusterMapOk { map }),
    ]
}

proptest! {
    #[test]
    fn every_request_round_trips(request in any_request()) {
        prop_assert_eq!(request_round_trip(&request), request);
    }

    #[test]
    fn every_response_round_trips(response in any_response()) {
        prop_assert_eq!(response_round_trip(&response), response);
    }

    #[test]
    fn pipelined_requests_fed_one_byte_at_a_time_decode_in_order(
        requests in vec(any_request(), 1..5)
    ) {
        let mut stream = BytesMut::new();
        for (id, request) in requests.iter().enumerate() {
            request.encode(id as u64, &mut stream).expect("fits");
        }
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in stream {
            buf.extend_from_slice(&[byte]);
            while let Some(frame) = decode_frame(&mut buf, FRAME_BYTES_MAX_DEFAULT)
                .expect("valid stream")
            {
                prop_assert_eq!(frame.request_id, decoded.len() as u64);
                decoded.push(Request::decode(&frame).expect("decodes"));
            }
        }
        prop_assert_eq!(decoded, requests);
    }

    #[test]
    fn unknown_trailing_fields_never_change_a_request(
        request in any_request(),
        extra_varint in any::<u64>(),
        extra_bytes in any_bytes(),
    ) {
        let mut body = BytesMut::new();
        {
            let mut w = FieldWriter::new(&mut body);
            w.varint(500, extra_varint);
            request.encode_body(&mut w);
            w.bytes(501, &extra_bytes);
        }
        let frame = Frame { opcode: request.opcode(), request_id: 0, body: body.freeze() };
        prop_assert_eq!(Request::decode(&frame), Ok(request));
    }
}

// ---- routing epochs -------------------------------------------------------------------------

#[test]
fn a_routed_request_carries_its_epoch_and_decodes_as_the_plain_request() {
    let put = Request::Put {
        keyspace: "logs".into(),
        key: Bytes::from_static(b"k"),
        value: Bytes::from_static(b"v"),
        ttl_ms: Some(5),
        condition: Condition::IfVersion(3),
    };
    for epoch in [None, Some(0), Some(12_345)] {
        let mut buf = BytesMut::new();
        put.encode_routed(9, epoch, &mut buf).expect("fits");
        let frame = decode_frame(&mut buf, FRAME_BYTES_MAX_DEFAULT)
            .expect("valid")
            .expect("whole");
        assert_eq!(routing_epoch(&frame.body), Ok(epoch));
        assert_eq!(Request::decode(&frame).expect("decodes"), put);
    }
    // A field 15 of the wrong wire type is a malformed request, not a silent "no epoch".
    let body = body_of(|w| w.bytes(ROUTING_EPOCH_FIELD, b"x"));
    assert!(routing_epoch(&Bytes::from(body)).is_err());
}

#[test]
fn a_stale_epoch_answer_names_the_current_epoch() {
    let message = stale_epoch_message(7, 2, 40);
    assert_eq!(stale_epoch_current(&message), Some(40));
    assert_eq!(stale_epoch_current("no number here"), None);
    let message = rate_limited_message("logs", 5000, 70);
    assert_eq!(rate_limited_wait_ms(&message), Some(70));
    assert_eq!(rate_limited_wait_ms("no number here"), None);
    assert_eq!(
        ErrorCode::from_code(ErrorCode::StaleEpoch.code()),
        ErrorCode::StaleEpoch
    );
}
