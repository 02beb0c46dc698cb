//! Requests: their encoding into frame bodies and their decoding, field by field, with the
//! defaults and "required" rules of `docs/wire-protocol.md`.

use super::*;

impl Request {
    /// Whether this request changes data: on a cluster node, exactly these go through the Raft
    /// log; everything else runs on the node's own engine. The match names every request (no
    /// wildcard), so a new one must be classified here before it compiles.
    pub fn is_write(&self) -> bool {
        match self {
            Request::Put { .. }
            | Request::Delete { .. }
            | Request::Incr { .. }
            | Request::Batch { .. } => true,
            Request::Hello { .. }
            | Request::Ping { .. }
            | Request::Get { .. }
            | Request::Scan { .. }
            | Request::ClusterMap { .. }
            | Request::MapChange { .. } => false,
        }
    }

    pub fn opcode(&self) -> u16 {
        match self {
            Request::Hello { .. } => opcode::HELLO,
            Request::Ping { .. } => opcode::PING,
            Request::Get { .. } => opcode::GET,
            Request::Put { .. } => opcode::PUT,
            Request::Delete { .. } => opcode::DELETE,
            Request::Incr { .. } => opcode::INCR,
            Request::Scan { .. } => opcode::SCAN,
            Request::Batch { .. } => opcode::BATCH,
            Request::ClusterMap { .. } => opcode::CLUSTER_MAP,
            Request::MapChange { .. } => opcode::MAP_CHANGE,
        }
    }

    /// Appends this request as one frame to `dst`. Fails only if the frame would exceed what
    /// the `u32` length can express, in which case `dst` is left as it was.
    pub fn encode(&self, request_id: u64, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_routed(request_id, None, dst)
    }

    /// [`Request::encode`], with the epoch of the key's partition as the sender's cluster map
    /// knows it ([`super::ROUTING_EPOCH_FIELD`]): a node whose replica of the partition is at
    /// a later epoch refuses the request with `StaleEpoch`.
    pub fn encode_routed(
        &self,
        request_id: u64,
        epoch: Option<u64>,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        encode_frame_with(self.opcode(), request_id, dst, |dst| {
            let mut w = FieldWriter::new(dst);
            self.encode_body(&mut w);
            if let Some(epoch) = epoch {
                w.varint(super::ROUTING_EPOCH_FIELD, epoch);
            }
        })
    }

    /// Writes this request's fields (the frame body).
    pub fn encode_body(&self, w: &mut FieldWriter<'_>) {
        match self {
            Request::Hello {
                min_version,
                max_version,
                client_name,
                client_id,
            } => {
                w.varint(1, u64::from(*min_version));
                w.varint(2, u64::from(*max_version));
                put_nonempty(w, 3, client_name.as_bytes());
                if *client_id != 0 {
                    w.varint(4, *client_id);
                }
            }
            Request::Ping { payload } => put_nonempty(w, 1, payload),
            Request::Get {
                keyspace,
                key,
                consistency,
            } => {
                put_keyspace(w, 1, keyspace);
                w.bytes(2, key);
                put_consistency(w, 3, *consistency);
            }
            Request::Put {
                keyspace,
                key,
                value,
                ttl_ms,
                condition,
            } => {
                put_keyspace(w, 1, keyspace);
                w.bytes(2, key);
                put_nonempty(w, 3, value);
                put_ms(w, 4, *ttl_ms);
                put_condition(w, 5, 6, condition);
            }
            Request::Delete {
                keyspace,
                key,
                condition,
            } => {
                put_keyspace(w, 1, keyspace);
                w.bytes(2, key);
                put_condition(w, 3, 4, condition);
            }
            Request::Incr {
                keyspace,
                key,
                delta,
            } => {
                put_keyspace(w, 1, keyspace);
                w.bytes(2, key);
                if *delta != 0 {
                    w.sint(3, *delta);
                }
            }
            Request::Scan {
                keyspace,
                range,
                limit,
                continuation,
                keys_only,
                consistency,
                partition,
            } => {
                put_keyspace(w, 1, keyspace);
                put_present(w, 2, range.start.as_ref());
                put_present(w, 3, range.end.as_ref());
                put_present(w, 4, range.prefix.as_ref());
                put_nonzero(w, 5, u64::from(*limit));
                put_present(w, 6, continuation.as_ref());
                put_true(w, 7, *keys_only);
                put_consistency(w, 8, *consistency);
                if let Some(p) = partition {
                    w.varint(9, u64::from(*p));
                }
            }
            Request::Batch { keyspace, ops } => {
                put_keyspace(w, 1, keyspace);
                for op in ops {
                    w.message(2, |w| encode_batch_op(w, op));
                }
            }
            Request::ClusterMap { known_version } => put_nonzero(w, 1, *known_version),
            Request::MapChange { change } => w.bytes(1, change),
        }
    }

    /// Decodes the body of `frame` according to its opcode.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        let body = &frame.body;
        match frame.opcode {
            opcode::HELLO => decode_hello(body),
            opcode::PING => decode_ping(body),
            opcode::GET => decode_get(body),
            opcode::PUT => decode_put(body),
            opcode::DELETE => decode_delete(body),
            opcode::INCR => decode_incr(body),
            opcode::SCAN => decode_scan(body),
            opcode::BATCH => decode_batch(body),
            opcode::CLUSTER_MAP => decode_cluster_map(body),
            opcode::MAP_CHANGE => decode_map_change(body),
            opcode => Err(DecodeError::UnknownOpcode { opcode }),
        }
    }
}

pub(super) fn encode_batch_op(w: &mut FieldWriter<'_>, op: &BatchOp) {
    match op {
        BatchOp::Put {
            key,
            value,
            ttl_ms,
            condition,
        } => {
            // kind 0 (put) is the default and is left out.
            w.bytes(2, key);
            put_nonempty(w, 3, value);
            put_ms(w, 4, *ttl_ms);
            put_condition(w, 5, 6, condition);
        }
        BatchOp::Delete { key, condition } => {
            w.varint(1, 1);
            w.bytes(2, key);
            put_condition(w, 5, 6, condition);
        }
    }
}

pub(super) fn decode_hello(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Hello";
    let (mut min_version, mut max_version, mut client_name) = (None, None, String::new());
    let mut client_id = 0;
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => min_version = Some(field.u16()?),
            2 => max_version = Some(field.u16()?),
            3 => client_name = field.string()?,
            4 => client_id = field.varint()?,
            _ => {}
        }
    }
    Ok(Request::Hello {
        min_version: required(MESSAGE, 1, min_version)?,
        max_version: required(MESSAGE, 2, max_version)?,
        client_name,
        client_id,
    })
}

pub(super) fn decode_ping(body: &Bytes) -> Result<Request, DecodeError> {
    let mut payload = Bytes::new();
    for field in fields("Ping", body) {
        let field = field?;
        if field.number == 1 {
            payload = field.bytes()?;
        }
    }
    Ok(Request::Ping { payload })
}

pub(super) fn decode_get(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Get";
    let (mut keyspace, mut key, mut consistency) = (None, None, None);
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => key = Some(field.bytes()?),
            3 => consistency = Some(field.consistency()?),
            _ => {}
        }
    }
    Ok(Request::Get {
        keyspace: keyspace_or_default(keyspace),
        key: required(MESSAGE, 2, key)?,
        consistency,
    })
}

pub(super) fn decode_put(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Put";
    let (mut keyspace, mut key, mut value, mut ttl_ms) = (None, None, Bytes::new(), None);
    let mut condition = ConditionFields::default();
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => key = Some(field.bytes()?),
            3 => value = field.bytes()?,
            4 => ttl_ms = field.ms()?,
            5 => condition.kind = field.varint()?,
            6 => condition.expected_version = field.varint()?,
            _ => {}
        }
    }
    Ok(Request::Put {
        keyspace: keyspace_or_default(keyspace),
        key: required(MESSAGE, 2, key)?,
        value,
        ttl_ms,
        condition: condition.finish(MESSAGE, 5)?,
    })
}

pub(super) fn decode_delete(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Delete";
    let (mut keyspace, mut key) = (None, None);
    let mut condition = ConditionFields::default();
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => key = Some(field.bytes()?),
            3 => condition.kind = field.varint()?,
            4 => condition.expected_version = field.varint()?,
            _ => {}
        }
    }
    Ok(Request::Delete {
        keyspace: keyspace_or_default(keyspace),
        key: required(MESSAGE, 2, key)?,
        condition: condition.finish(MESSAGE, 3)?,
    })
}

pub(super) fn decode_incr(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Incr";
    let (mut keyspace, mut key, mut delta) = (None, None, 0);
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => key = Some(field.bytes()?),
            3 => delta = field.sint()?,
            _ => {}
        }
    }
    Ok(Request::Incr {
        keyspace: keyspace_or_default(keyspace),
        key: required(MESSAGE, 2, key)?,
        delta,
    })
}

pub(super) fn decode_scan(body: &Bytes) -> Result<Request, DecodeError> {
    let (mut keyspace, mut range, mut limit) = (None, ScanRange::default(), 0);
    let (mut continuation, mut keys_only, mut consistency) = (None, false, None);
    let mut partition = None;
    for field in fields("Scan", body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => range.start = Some(field.bytes()?),
            3 => range.end = Some(field.bytes()?),
            4 => range.prefix = Some(field.bytes()?),
            5 => limit = field.u32()?,
            6 => continuation = Some(field.bytes()?),
            7 => keys_only = field.bool()?,
            8 => consistency = Some(field.consistency()?),
            9 => partition = Some(field.u32()?),
            _ => {}
        }
    }
    Ok(Request::Scan {
        keyspace: keyspace_or_default(keyspace),
        range,
        limit,
        continuation,
        keys_only,
        consistency,
        partition,
    })
}

pub(super) fn decode_cluster_map(body: &Bytes) -> Result<Request, DecodeError> {
    let mut known_version = 0;
    for field in fields("ClusterMap", body) {
        let field = field?;
        if field.number == 1 {
            known_version = field.varint()?;
        }
    }
    Ok(Request::ClusterMap { known_version })
}

pub(super) fn decode_map_change(body: &Bytes) -> Result<Request, DecodeError> {
    let mut change = None;
    for field in fields("MapChange", body) {
        let field = field?;
        if field.number == 1 {
            change = Some(field.bytes()?);
        }
    }
    Ok(Request::MapChange {
        change: required("MapChange", 1, change)?,
    })
}

pub(super) fn decode_batch(body: &Bytes) -> Result<Request, DecodeError> {
    let (mut keyspace, mut ops) = (None, Vec::new());
    for field in fields("Batch", body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => ops.push(decode_batch_op(&field.bytes()?)?),
            _ => {}
        }
    }
    Ok(Request::Batch {
        keyspace: keyspace_or_default(keyspace),
        ops,
    })
}

pub(super) fn decode_batch_op(body: &Bytes) -> Result<BatchOp, DecodeError> {
    const MESSAGE: &str = "Batch.op";
    const KIND_PUT: u64 = 0;
    const KIND_DELETE: u64 = 1;
    let (mut kind, mut key, mut value, mut ttl_ms) = (KIND_PUT, None, Bytes::new(), None);
    let mut condition = ConditionFields::default();
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => kind = field.varint()?,
            2 => key = Some(field.bytes()?),
            3 => value = field.bytes()?,
            4 => ttl_ms = field.ms()?,
            5 => condition.kind = field.varint()?,
            6 => condition.expected_version = field.varint()?,
            _ => {}
        }
    }
    let key = required(MESSAGE, 2, key)?;
    let condition = condition.finish(MESSAGE, 5)?;
    match kind {
        KIND_PUT => Ok(BatchOp::Put {
            key,
            value,
            ttl_ms,
            condition,
        }),
        // A delete ignores value and ttl_ms, as an older peer ignores unknown fields.
        KIND_DELETE => Ok(BatchOp::Delete { key, condition }),
        other => Err(DecodeError::InvalidValue {
            message: MESSAGE,
            field: 1,
            value: other,
        }),
    }
}
