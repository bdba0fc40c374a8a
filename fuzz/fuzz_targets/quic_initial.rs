//! `mdmaudit::quic::InitialAssembler` fed a client's UDP datagrams, then `finish`.
//!
//! Input: datagrams, each as `len: u16` (little-endian) then `len` bytes (fewer at the
//! end of the input). Seeds are the client Initial datagrams of real QUIC flows: the
//! fuzzer mostly reaches the header parsing, version handling and key derivation, since
//! a changed byte of the protected payload fails authentication.
//! Contract checked: a value for every input; after a final state (`NotQuic`, `Done`,
//! `Failed`) every later call returns `Failed(Closed)`; an answer comes by
//! `MAX_DATAGRAMS` datagrams; names are bounded and safe to print.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use mdmaudit::quic::{InitialAssembler, QuicError, QuicState, MAX_DATAGRAMS};
use mdmaudit_fuzz::check_hello;

const CLOSED: QuicState = QuicState::Failed(QuicError::Closed);

fn check(state: &QuicState) {
    if let QuicState::Done(info) = state {
        check_hello(info);
    }
    assert_ne!(state, &CLOSED, "Closed before any final state");
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut quic = InitialAssembler::new();
    let mut closed = false;
    let mut fed = 0usize;
    while !u.is_empty() {
        let len: u16 = u.arbitrary().unwrap_or_default();
        let n = usize::from(len).min(u.len());
        let datagram = u.bytes(n).unwrap_or_default();
        let state = quic.push(datagram);
        fed += 1;
        if closed {
            assert_eq!(state, CLOSED, "push after a final state");
            continue;
        }
        check(&state);
        if state != QuicState::NeedMore {
            closed = true;
        } else {
            assert!(
                fed < usize::from(MAX_DATAGRAMS),
                "still NeedMore after {fed} datagrams"
            );
        }
    }
    let last = quic.finish();
    if closed {
        assert_eq!(last, CLOSED, "finish after a final state");
    } else {
        check(&last);
        assert_ne!(last, QuicState::NeedMore, "finish left NeedMore");
    }
    assert_eq!(quic.finish(), CLOSED, "second finish");
});
