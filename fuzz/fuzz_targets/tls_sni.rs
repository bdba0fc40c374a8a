//! `mdmaudit::tls::sni_from_client_bytes` (a client stream that should start with a
//! TLS ClientHello record) and `parse_handshake_client_hello` (the handshake message
//! without its record header) on the same bytes and on the bytes after a 5-byte record
//! header.
//!
//! Contract checked: a value for every input; the SNI and ALPN are bounded and safe to
//! print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdmaudit::tls::{parse_handshake_client_hello, sni_from_client_bytes};
use mdmaudit_fuzz::check_hello;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(info)) = sni_from_client_bytes(data) {
        check_hello(&info);
    }
    if let Ok(Some(info)) = parse_handshake_client_hello(data) {
        check_hello(&info);
    }
    if let Some(msg) = data.get(5..) {
        if let Ok(Some(info)) = parse_handshake_client_hello(msg) {
            check_hello(&info);
        }
    }
});
