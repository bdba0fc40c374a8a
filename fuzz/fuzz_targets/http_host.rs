//! `mdmaudit::http::host_from_request` on a client's first bytes.
//!
//! Contract checked: a value for every input; the name is bounded and safe to print;
//! nothing past `MAX_SCAN_BYTES` changes the answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdmaudit::http::{host_from_request, MAX_SCAN_BYTES};
use mdmaudit_fuzz::check_name;

fuzz_target!(|data: &[u8]| {
    let host = host_from_request(data);
    if let Some(h) = &host {
        check_name(h);
    }
    if data.len() > MAX_SCAN_BYTES {
        assert_eq!(
            host,
            host_from_request(&data[..MAX_SCAN_BYTES]),
            "bytes past MAX_SCAN_BYTES changed the answer"
        );
    }
});
