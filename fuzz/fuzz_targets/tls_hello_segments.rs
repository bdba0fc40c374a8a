//! `mdmaudit::tls::HelloAssembler` fed a sequence of client segments cut from one byte
//! stream (in any order, overlapping, with gaps, duplicates, shifted sequence numbers
//! and snaplen cuts), then `finish`.
//!
//! Input: see `mdmaudit_fuzz::SegmentPlan` (flags, ISN, segment list, then the stream).
//! Contract checked: a value for every input; once a state other than `NeedMore` is
//! returned every later `push` and `finish` returns `Closed` and nothing stays
//! buffered; names are bounded and safe to print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdmaudit::tls::{HelloAssembler, HelloState};
use mdmaudit_fuzz::{check_hello, SegmentPlan};

fn check_state(state: &HelloState) {
    match state {
        HelloState::Done(info) | HelloState::Overflow(Some(info)) => check_hello(info),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let plan = SegmentPlan::read(data);
    let mut hello = HelloAssembler::new(plan.syn_seen.then_some(plan.isn));
    let mut closed = false;
    for s in &plan.segments {
        let (seq, payload) = plan.cut(s);
        let state = hello.push(seq, payload, s.truncated);
        if closed {
            assert_eq!(state, HelloState::Closed, "push after a final state");
            continue;
        }
        check_state(&state);
        assert_ne!(state, HelloState::Closed, "Closed before any final state");
        if state != HelloState::NeedMore {
            closed = true;
            assert!(!hello.is_buffering(), "buffer kept after a final state");
        }
    }
    let last = hello.finish();
    if closed {
        assert_eq!(last, HelloState::Closed, "finish after a final state");
    } else {
        check_state(&last);
        assert_ne!(last, HelloState::Closed);
    }
    assert!(!hello.is_buffering(), "buffer kept after finish");
    assert_eq!(hello.finish(), HelloState::Closed, "second finish");
});
