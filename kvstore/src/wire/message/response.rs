//! Responses: their encoding into frame bodies and their decoding, field by field.

use super::*;

impl Response {
    /// An error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            code,
            message: message.into(),
        }
    }

    pub fn opcode(&self) -> u16 {
        match self {
            Response::HelloOk { .. } => opcode::response_to(opcode::HELLO),
            Response::Pong { .. } => opcode::response_to(opcode::PING),
            Response::GetOk { .. } => opcode::response_to(opcode::GET),
            Response::PutOk { .. } => opcode::response_to(opcode::PUT),
            Response::DeleteOk { .. } => opcode::response_to(opcode::DELETE),
            Response::IncrOk { .. } => opcode::response_to(opcode::INCR),
            Response::ScanOk { .. } => opcode::response_to(opcode::SCAN),
            Response::BatchOk { .. } => opcode::response_to(opcode::BATCH),
            Response::ClusterMapOk { .. } => opcode::response_to(opcode::CLUSTER_MAP),
            Response::Error { .. } => opcode::ERROR,
        }
    }

    /// Appends this response as one frame to `dst`, answering `request_id`. Fails only if the
    /// frame would exceed what the `u32` length can express, leaving `dst` as it was.
    pub fn encode(&self, request_id: u64, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame_with(self.opcode(), request_id, dst, |dst| {
            self.encode_body(&mut FieldWriter::new(dst))
        })
    }

    /// Writes this response's fields (the frame body).
    pub fn encode_body(&self, w: &mut FieldWriter<'_>) {
        match self {
            Response::HelloOk {
                version,
                server_name,
                frame_bytes_max,
            } => {
                w.varint(1, u64::from(*version));
                put_nonempty(w, 2, server_name.as_bytes());
                put_nonzero(w, 3, u64::from(*frame_bytes_max));
            }
            Response::Pong { payload } => put_nonempty(w, 1, payload),
            Response::GetOk { found, lag } => {
                if let Some(found) = found {
                    w.bool(1, true);
                    put_nonempty(w, 2, &found.value);
                    put_nonzero(w, 3, found.version);
                    put_ms(w, 4, found.expires_at_ms);
                }
                put_lag(w, 5, lag);
            }
            Response::PutOk { applied, version } => {
                put_true(w, 1, *applied);
                put_nonzero(w, 2, *version);
            }
            Response::DeleteOk {
                applied,
                existed,
                version,
            } => {
                put_true(w, 1, *applied);
                put_nonzero(w, 2, *version);
                put_true(w, 3, *existed);
            }
            Response::IncrOk { value, version } => {
                if *value != 0 {
                    w.sint(1, *value);
                }
                put_nonzero(w, 2, *version);
            }
            Response::ScanOk {
                entries,
                continuation,
                lag,
            } => {
                put_lag(w, 3, lag);
                for entry in entries {
                    w.message(1, |w| {
                        w.bytes(1, &entry.key);
                        put_present(w, 2, entry.value.as_ref());
                        put_nonzero(w, 3, entry.version);
                        put_ms(w, 4, entry.expires_at_ms);
                    });
                }
                put_present(w, 2, continuation.as_ref());
            }
            Response::BatchOk {
                applied,
                version,
                failed_op,
            } => {
                put_true(w, 1, *applied);
                put_nonzero(w, 2, *version);
                // Presence matters: op 0 can fail.
                if let Some(index) = failed_op {
                    w.varint(3, u64::from(*index));
                }
            }
            Response::ClusterMapOk { map } => put_present(w, 1, map.as_ref()),
            Response::Error { code, message } => {
                w.varint(1, u64::from(code.code()));
                put_nonempty(w, 2, message.as_bytes());
            }
        }
    }

    /// Decodes the body of `frame` according to its opcode. The request id it answers is
    /// `frame.request_id`.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        let body = &frame.body;
        const HELLO_OK: u16 = opcode::response_to(opcode::HELLO);
        const PONG: u16 = opcode::response_to(opcode::PING);
        const GET_OK: u16 = opcode::response_to(opcode::GET);
        const PUT_OK: u16 = opcode::response_to(opcode::PUT);
        const DELETE_OK: u16 = opcode::response_to(opcode::DELETE);
        const INCR_OK: u16 = opcode::response_to(opcode::INCR);
        const SCAN_OK: u16 = opcode::response_to(opcode::SCAN);
        const BATCH_OK: u16 = opcode::response_to(opcode::BATCH);
        const CLUSTER_MAP_OK: u16 = opcode::response_to(opcode::CLUSTER_MAP);
        match frame.opcode {
            HELLO_OK => decode_hello_ok(body),
            PONG => decode_pong(body),
            GET_OK => decode_get_ok(body),
            PUT_OK => decode_put_ok(body),
            DELETE_OK => decode_delete_ok(body),
            INCR_OK => decode_incr_ok(body),
            SCAN_OK => decode_scan_ok(body),
            BATCH_OK => decode_batch_ok(body),
            CLUSTER_MAP_OK => {
                let mut map = None;
                for field in fields("ClusterMapOk", body) {
                    let field = field?;
                    if field.number == 1 {
                        map = Some(field.bytes()?);
                    }
                }
                Ok(Response::ClusterMapOk { map })
            }
            opcode::ERROR => decode_error(body),
            opcode => Err(DecodeError::UnknownOpcode { opcode }),
        }
    }
}

pub(super) fn decode_hello_ok(body: &Bytes) -> Result<Response, DecodeError> {
    const MESSAGE: &str = "HelloOk";
    let (mut version, mut server_name, mut frame_bytes_max) = (None, String::new(), 0);
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => version = Some(field.u16()?),
            2 => server_name = field.string()?,
            3 => frame_bytes_max = field.u32()?,
            _ => {}
        }
    }
    Ok(Response::HelloOk {
        version: required(MESSAGE, 1, version)?,
        server_name,
        frame_bytes_max,
    })
}

pub(super) fn decode_pong(body: &Bytes) -> Result<Response, DecodeError> {
    let mut payload = Bytes::new();
    for field in fields("Pong", body) {
        let field = field?;
        if field.number == 1 {
            payload = field.bytes()?;
        }
    }
    Ok(Response::Pong { payload })
}

pub(super) fn decode_get_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut found, mut value, mut version, mut expires_at_ms) = (false, Bytes::new(), 0, None);
    let mut lag: Option<ReadLag> = None;
    for field in fields("GetOk", body) {
        let field = field?;
        match field.number {
            1 => found = field.bool()?,
            2 => value = field.bytes()?,
            3 => version = field.varint()?,
            4 => expires_at_ms = field.ms()?,
            5 => lag.get_or_insert_default().entries = field.varint()?,
            6 => lag.get_or_insert_default().ms = lag_ms(field.varint()?),
            _ => {}
        }
    }
    let found = found.then_some(Versioned {
        value,
        version,
        expires_at_ms,
    });
    Ok(Response::GetOk { found, lag })
}

pub(super) fn decode_put_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut applied, mut version) = (false, 0);
    for field in fields("PutOk", body) {
        let field = field?;
        match field.number {
            1 => applied = field.bool()?,
            2 => version = field.varint()?,
            _ => {}
        }
    }
    Ok(Response::PutOk { applied, version })
}

pub(super) fn decode_delete_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut applied, mut version, mut existed) = (false, 0, false);
    for field in fields("DeleteOk", body) {
        let field = field?;
        match field.number {
            1 => applied = field.bool()?,
            2 => version = field.varint()?,
            3 => existed = field.bool()?,
            _ => {}
        }
    }
    Ok(Response::DeleteOk {
        applied,
        existed,
        version,
    })
}

pub(super) fn decode_incr_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut value, mut version) = (0, 0);
    for field in fields("IncrOk", body) {
        let field = field?;
        match field.number {
            1 => value = field.sint()?,
            2 => version = field.varint()?,
            _ => {}
        }
    }
    Ok(Response::IncrOk { value, version })
}

pub(super) fn decode_scan_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut entries, mut continuation) = (Vec::new(), None);
    let mut lag: Option<ReadLag> = None;
    for field in fields("ScanOk", body) {
        let field = field?;
        match field.number {
            1 => entries.push(decode_entry(&field.bytes()?)?),
            2 => continuation = Some(field.bytes()?),
            3 => lag.get_or_insert_default().entries = field.varint()?,
            4 => lag.get_or_insert_default().ms = lag_ms(field.varint()?),
            _ => {}
        }
    }
    Ok(Response::ScanOk {
        entries,
        continuation,
        lag,
    })
}

pub(super) fn decode_entry(body: &Bytes) -> Result<Entry, DecodeError> {
    const MESSAGE: &str = "ScanOk.entry";
    let (mut key, mut value, mut version, mut expires_at_ms) = (None, None, 0, None);
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => key = Some(field.bytes()?),
            2 => value = Some(field.bytes()?),
            3 => version = field.varint()?,
            4 => expires_at_ms = field.ms()?,
            _ => {}
        }
    }
    Ok(Entry {
        key: required(MESSAGE, 1, key)?,
        value,
        version,
        expires_at_ms,
    })
}

pub(super) fn decode_batch_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut applied, mut version, mut failed_op) = (false, 0, None);
    for field in fields("BatchOk", body) {
        let field = field?;
        match field.number {
            1 => applied = field.bool()?,
            2 => version = field.varint()?,
            3 => failed_op = Some(field.u32()?),
            _ => {}
        }
    }
    Ok(Response::BatchOk {
        applied,
        version,
        failed_op,
    })
}

pub(super) fn decode_error(body: &Bytes) -> Result<Response, DecodeError> {
    const MESSAGE: &str = "Error";
    let (mut code, mut message) = (None, String::new());
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => code = Some(ErrorCode::from_code(field.u32()?)),
            2 => message = field.string()?,
            _ => {}
        }
    }
    Ok(Response::Error {
        code: required(MESSAGE, 1, code)?,
        message,
    })
}
