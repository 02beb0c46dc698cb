//! Syslog as standard clients send it (`logger`, rsyslog, syslog-ng): the TCP framings of
//! RFC 6587 ([`frame`]) and the message formats of RFC 5424 and RFC 3164 ([`message`]). Pure
//! codecs: bytes in, messages out; the listeners own the sockets.

pub mod frame;
pub mod message;
