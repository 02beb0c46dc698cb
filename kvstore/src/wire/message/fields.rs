//! The field-level helpers shared by requests and responses: writing optional fields only
//! when they differ from their default, and reading a body's fields with their types checked.

use super::*;

pub(super) fn put_keyspace(w: &mut FieldWriter<'_>, field: u32, keyspace: &str) {
    if keyspace != DEFAULT_KEYSPACE {
        w.str(field, keyspace);
    }
}

pub(super) fn put_nonzero(w: &mut FieldWriter<'_>, field: u32, value: u64) {
    if value != 0 {
        w.varint(field, value);
    }
}

/// A read's consistency when it names one; absent, the keyspace's read consistency applies.
pub(super) fn put_consistency(w: &mut FieldWriter<'_>, field: u32, value: Option<Consistency>) {
    if let Some(c) = value {
        w.varint(field, c as u64);
    }
}

pub(super) fn put_nonempty(w: &mut FieldWriter<'_>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        w.bytes(field, value);
    }
}

pub(super) fn put_true(w: &mut FieldWriter<'_>, field: u32, value: bool) {
    if value {
        w.bool(field, true);
    }
}

/// Presence-significant bytes: written whenever `Some`, even when empty.
pub(super) fn put_present(w: &mut FieldWriter<'_>, field: u32, value: Option<&Bytes>) {
    if let Some(value) = value {
        w.bytes(field, value);
    }
}

/// A time in ms where 0 and absent both mean "none".
pub(super) fn put_ms(w: &mut FieldWriter<'_>, field: u32, value: Option<u64>) {
    put_nonzero(w, field, value.unwrap_or(0));
}

pub(super) fn put_condition(
    w: &mut FieldWriter<'_>,
    kind_field: u32,
    version_field: u32,
    c: &Condition,
) {
    match *c {
        Condition::None => {}
        Condition::IfAbsent => w.varint(kind_field, 1),
        Condition::IfPresent => w.varint(kind_field, 2),
        Condition::IfVersion(version) => {
            w.varint(kind_field, 3);
            // Always written, even 0, so the condition is self-describing on the wire.
            w.varint(version_field, version);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers.

/// One field of a message being decoded, with the context needed for a precise error.
pub(super) struct Field {
    pub(super) message: &'static str,
    pub(super) number: u32,
    pub(super) value: Value,
}

impl Field {
    pub(super) fn wrong_wire_type(&self, expected: WireType) -> DecodeError {
        DecodeError::WrongWireType {
            message: self.message,
            field: self.number,
            expected,
            found: self.value.wire_type(),
        }
    }

    pub(super) fn invalid(&self, value: u64) -> DecodeError {
        DecodeError::InvalidValue {
            message: self.message,
            field: self.number,
            value,
        }
    }

    pub(super) fn varint(&self) -> Result<u64, DecodeError> {
        match self.value {
            Value::Varint(value) => Ok(value),
            Value::Bytes(_) => Err(self.wrong_wire_type(WireType::Varint)),
        }
    }

    pub(super) fn bytes(self) -> Result<Bytes, DecodeError> {
        match self.value {
            Value::Bytes(bytes) => Ok(bytes),
            Value::Varint(_) => Err(self.wrong_wire_type(WireType::Len)),
        }
    }

    pub(super) fn string(self) -> Result<String, DecodeError> {
        let (message, field) = (self.message, self.number);
        let bytes = self.bytes()?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(DecodeError::Field {
                message,
                source: FieldError::InvalidUtf8 { field },
            }),
        }
    }

    /// Strict 0/1: anything else is more likely corruption than a deliberate "true".
    pub(super) fn bool(&self) -> Result<bool, DecodeError> {
        match self.varint()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.invalid(other)),
        }
    }

    pub(super) fn u16(&self) -> Result<u16, DecodeError> {
        let value = self.varint()?;
        u16::try_from(value).map_err(|_| self.invalid(value))
    }

    pub(super) fn u32(&self) -> Result<u32, DecodeError> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| self.invalid(value))
    }

    pub(super) fn sint(&self) -> Result<i64, DecodeError> {
        Ok(super::super::field::zigzag_decode(self.varint()?))
    }

    /// A time in ms where 0 means "none".
    pub(super) fn ms(&self) -> Result<Option<u64>, DecodeError> {
        Ok(Some(self.varint()?).filter(|&ms| ms != 0))
    }

    pub(super) fn consistency(&self) -> Result<Consistency, DecodeError> {
        let value = self.varint()?;
        Consistency::from_wire(value).ok_or_else(|| self.invalid(value))
    }
}

/// The fields of `body`, tagged with the message name for errors. Unknown field numbers are
/// yielded like any other; each decoder's `match` ignores them, which is what lets a newer
/// peer add fields.
pub(super) fn fields(
    message: &'static str,
    body: &Bytes,
) -> impl Iterator<Item = Result<Field, DecodeError>> {
    FieldReader::new(body.clone()).map(move |field| match field {
        Ok((number, value)) => Ok(Field {
            message,
            number,
            value,
        }),
        Err(source) => Err(DecodeError::Field { message, source }),
    })
}

pub(super) fn required<T>(
    message: &'static str,
    field: u32,
    value: Option<T>,
) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::MissingField { message, field })
}

/// The raw condition fields of a message, combined once the whole body has been read (the
/// two fields may come in either order).
#[derive(Default)]
pub(super) struct ConditionFields {
    pub(super) kind: u64,
    pub(super) expected_version: u64,
}

impl ConditionFields {
    pub(super) fn finish(
        self,
        message: &'static str,
        kind_field: u32,
    ) -> Result<Condition, DecodeError> {
        match self.kind {
            0 => Ok(Condition::None),
            1 => Ok(Condition::IfAbsent),
            2 => Ok(Condition::IfPresent),
            3 => Ok(Condition::IfVersion(self.expected_version)),
            // An unknown condition must not be ignored: the write would become unconditional.
            other => Err(DecodeError::InvalidValue {
                message,
                field: kind_field,
                value: other,
            }),
        }
    }
}

pub(super) fn keyspace_or_default(keyspace: Option<String>) -> String {
    keyspace.unwrap_or_else(|| DEFAULT_KEYSPACE.to_owned())
}
