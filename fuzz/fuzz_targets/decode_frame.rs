//! `mdmaudit::decode::decode` on one frame of any link type.
//!
//! Input: one selector byte (see `mdmaudit_fuzz::linktype_of`: 0..=13 pick a supported
//! link type, any other value is tried as a link type number), then the frame.
//! Contract checked: a value for every input, never a panic; a decoded payload lies
//! inside the frame and is no longer than the length the headers announce; tunnels
//! stay within `MAX_NESTING`; decoding is deterministic; the fast path for plain TCP
//! frames gives what the general decoder gives; where the reader's quick look at the
//! headers places the frame's flow, the decoder finds that same flow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdmaudit::decode::{decode, decode_general, L4, MAX_NESTING};
use mdmaudit::flow::{quick_shard_hash, shard_hash};
use mdmaudit_fuzz::linktype_of;

fn inside(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let lt = linktype_of(selector);
    let first = decode(lt, frame);
    if let Ok(d) = &first {
        assert!(
            usize::from(d.tunnels) <= MAX_NESTING,
            "tunnels {}",
            d.tunnels
        );
        match &d.l4 {
            L4::Tcp(t) => {
                assert!(inside(t.payload, frame), "TCP payload outside the frame");
                assert!(t.payload.len() as u64 <= u64::from(t.payload_len));
            }
            L4::Udp(u) => {
                assert!(inside(u.payload, frame), "UDP payload outside the frame");
                assert!(u.payload.len() as u64 <= u64::from(u.payload_len));
            }
            L4::IcmpError(_) => {}
        }
    }
    assert_eq!(first, decode(lt, frame), "decode is not deterministic");
    // The fast path for plain TCP frames answers exactly as the general decoder.
    assert_eq!(
        first,
        decode_general(lt, frame),
        "fast path and general decoder differ"
    );
    // The reader gives a frame to a worker from a quick look at its headers, and the
    // decoder's flow decides for every frame the look cannot place: if the two ever
    // named different flows, a flow's packets would be split between workers (a SYN
    // in one, its SYN-ACK in another) and reports would depend on the thread count.
    if let (Some(h), Ok(d)) = (quick_shard_hash(lt, frame), &first) {
        assert_eq!(
            h,
            shard_hash(d),
            "quick look and decoder name different flows"
        );
    }
});
