//! The reader picks a frame's worker from its headers alone (`quick_shard_hash`)
//! for the common frames, and by a full decode for the rest. Both must agree, or a
//! flow's packets would be split between two workers: on every frame of every
//! capture in `../shared/pcaps` where the quick look answers and the decoder finds
//! a flow, the two hashes are equal. And the hash is the same for both directions.

mod common;

use common::*;
use mdmaudit::decode;
use mdmaudit::flow::{quick_shard_hash, shard_hash};
use mdmaudit::reader::{Chunk, FileReader, Fill, Record};

/// Call `f(path, record, bytes)` for every frame of every capture in
/// `../shared/pcaps` (real, malformed, tcpdump's test files) that our reader frames.
fn for_each_shared_frame(mut f: impl FnMut(&str, &Record, &[u8])) {
    for dir in ["real", "malformed", "tcpdump-tests"] {
        for cap in captures_in(&shared_pcaps().join(dir)) {
            let path = cap.to_str().expect("utf-8 path");
            let Ok(mut r) = FileReader::open(path, 0) else {
                continue;
            };
            let mut chunk = Chunk::default();
            loop {
                let fill = r.fill(&mut chunk);
                for rec in chunk.records.iter() {
                    f(path, rec, chunk.bytes(rec));
                }
                if !matches!(fill, Fill::More) {
                    break;
                }
            }
        }
    }
}

/// Whether the quick look places `frame`'s flow and the decoder finds another one
/// (None: the look does not place it, so the engine's decode decides alone).
fn placed_apart(linktype: u32, frame: &[u8]) -> Option<bool> {
    let h = quick_shard_hash(linktype, frame)?;
    Some(decode::decode(linktype, frame).is_ok_and(|d| shard_hash(&d) != h))
}

#[test]
fn quick_shard_hash_agrees_with_the_decoder_on_every_frame() {
    let (mut frames, mut quick, mut mismatches) = (0u64, 0u64, Vec::new());
    for_each_shared_frame(|path, rec, bytes| {
        frames += 1;
        let Some(apart) = placed_apart(rec.linktype, bytes) else {
            return;
        };
        quick += 1;
        if apart && mismatches.len() < 20 {
            mismatches.push(format!("{path}: frame {}", rec.frame));
        }
    });
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // Most frames of real captures take the quick path (else it would not pay).
    assert!(quick * 2 > frames, "{quick} of {frames} frames");
}

/// The same on damaged headers, as a capture may carry them: every frame of the shared
/// captures (its first 512 bytes) with one of its first 96 bytes changed, eight times
/// over (a fixed pseudo-random sequence), so that link, IP and transport fields take
/// values no real capture has. `fuzz/` does this at random for longer; this keeps a
/// divergence from reaching a commit unnoticed.
#[test]
fn quick_shard_hash_agrees_with_the_decoder_on_damaged_headers() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let (mut tried, mut quick, mut mismatches) = (0u64, 0u64, Vec::new());
    for_each_shared_frame(|path, rec, bytes| {
        let mut frame = bytes[..bytes.len().min(512)].to_vec();
        let span = frame.len().min(96);
        if span == 0 {
            return;
        }
        for _ in 0..8 {
            let r = next();
            let at = (r % span as u64) as usize;
            let old = frame[at];
            frame[at] = (r >> 32) as u8;
            tried += 1;
            if let Some(apart) = placed_apart(rec.linktype, &frame) {
                quick += 1;
                if apart && mismatches.len() < 20 {
                    mismatches.push(format!(
                        "{path}: frame {}, byte {at} set to {:#04x}",
                        rec.frame, frame[at]
                    ));
                }
            }
            frame[at] = old;
        }
    });
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // Most damaged frames still take the quick look, so the check has something to
    // compare.
    assert!(quick * 3 > tried, "{quick} of {tried} damaged frames");
}

#[test]
fn shard_hash_is_the_same_both_ways() {
    use mdmaudit::flow::sym_hash;
    use mdmaudit::model::Transport;
    for (a, ap, b, bp) in [
        (1u64, 1u16, 2u64, 2u16),
        (0xa14_0102, 50000, 0x1100_0001, 5223),
    ] {
        for t in [Transport::Tcp, Transport::Udp] {
            assert_eq!(sym_hash(t, a, ap, b, bp), sym_hash(t, b, bp, a, ap));
        }
    }
    assert_ne!(
        sym_hash(Transport::Tcp, 1, 1000, 2, 443),
        sym_hash(Transport::Udp, 1, 1000, 2, 443)
    );
}

/// `decode`'s fast path for plain TCP frames gives what the general decoder gives,
/// on every frame of every shared capture (and takes most of them).
#[test]
fn fast_decode_path_agrees_with_the_general_decoder() {
    let (mut frames, mut same, mut plain, mut mismatches) = (0u64, 0u64, 0u64, Vec::new());
    for_each_shared_frame(|path, rec, bytes| {
        frames += 1;
        if decode::plain_tcp(rec.linktype, bytes).is_some() {
            plain += 1;
        }
        let fast = decode::decode(rec.linktype, bytes);
        let general = decode::decode_general(rec.linktype, bytes);
        if fast == general {
            same += 1;
        } else if mismatches.len() < 20 {
            mismatches.push(format!(
                "{path}: frame {}: {fast:?} vs {general:?}",
                rec.frame
            ));
        }
    });
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(same, frames);
    assert!(
        plain * 3 > frames,
        "fast path took {plain} of {frames} frames"
    );
}
