//! `mdmaudit::reader::FileReader` on a whole capture file: the file is written to a
//! temporary file and read twice, through mapped windows and through read(2).
//!
//! Contract checked: both ways open or refuse the file alike (same message), then give
//! the same records with the same bytes and end the same way (the same damage, at the
//! same offset, after the same number of packets); frame numbers run 1, 2, 3...;
//! every record's bytes lie inside its chunk and are no longer than libpcap's
//! maximum; every fill but the last makes progress (no hang); a regular file is mapped
//! (the fall-back to read(2) is for file systems that cannot map), and no mapped window
//! outlives its reader and chunks. Read a third time with records given to 3 workers
//! as they are framed (`set_shards`), the file gives the same records, each placed
//! where the quick look at its own bytes places it (`flow::quick_shard`) or left to
//! the engine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdmaudit::mapped::live_windows;
use mdmaudit::reader::{Chunk, FileReader, Fill, Record, MAX_RECORD};

/// What one way of reading gave: records, their bytes, and how it ended.
type Read = Result<(Vec<Record>, Vec<Vec<u8>>, Fill), String>;

fn read(path: &str, map: bool, shards: usize, max_fills: usize) -> Read {
    let mut r = FileReader::open_with(path, 0, map).map_err(|e| e.reason)?;
    r.set_shards(shards);
    assert_eq!(r.map_owner().is_some(), map, "mapped (map: {map})");
    let mut chunk = Chunk::default();
    let (mut recs, mut bytes) = (Vec::new(), Vec::new());
    for _ in 0..max_fills {
        let fill = r.fill(&mut chunk);
        for rec in &chunk.records {
            assert!(
                (rec.off as usize).saturating_add(rec.caplen as usize) <= chunk.buf().len(),
                "record outside its chunk"
            );
            assert!(rec.caplen <= MAX_RECORD, "caplen {}", rec.caplen);
            assert_eq!(rec.frame, recs.len() as u64 + 1, "frame numbers");
            // Placed (pcap records) by the quick look at its own bytes, or left to the
            // engine (pcapng records, frames the look cannot place, one worker).
            if rec.shard != Record::UNSHARDED {
                let placed = match shards {
                    1 => None,
                    n => mdmaudit::flow::quick_shard(rec.linktype, chunk.bytes(rec), n),
                };
                assert_eq!(
                    Some(usize::from(rec.shard)),
                    placed,
                    "shard of frame {}",
                    rec.frame
                );
            }
            recs.push(*rec);
            bytes.push(chunk.bytes(rec).to_vec());
        }
        if fill != Fill::More {
            return Ok((recs, bytes, fill));
        }
    }
    panic!("no end after {max_fills} fills (map: {map})");
}

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("mdmaudit-fuzz-reader-{}", std::process::id()));
    std::fs::write(&path, data).expect("write the temporary capture");
    let p = path.to_str().expect("utf-8 temporary path");
    // Every fill but the last consumes at least one byte or one block.
    let max_fills = data.len() + 3;
    let mapped = read(p, true, 1, max_fills);
    assert_eq!(live_windows(), 0, "a window outlived its reader");
    let copied = read(p, false, 1, max_fills);
    // Placed while framed: the same records but for their worker.
    let placed = read(p, false, 3, max_fills).map(|(mut recs, bytes, fill)| {
        for r in recs.iter_mut() {
            assert!(
                r.shard < 3 || r.shard == Record::UNSHARDED,
                "shard {}",
                r.shard
            );
            r.shard = Record::UNSHARDED;
        }
        (recs, bytes, fill)
    });
    match (&copied, &placed) {
        (Err(a), Err(b)) => assert_eq!(a, b, "open errors differ (placed)"),
        (Ok(a), Ok(b)) => assert!(a == b, "records differ when placed while framed"),
        _ => panic!("placing records while framing changed whether the file opens"),
    }
    match (&mapped, &copied) {
        (Err(a), Err(b)) => assert_eq!(a, b, "open errors differ"),
        (Ok(a), Ok(b)) => {
            assert_eq!(a.0, b.0, "records differ");
            assert!(a.1 == b.1, "record bytes differ");
            assert_eq!(a.2, b.2, "ends differ");
        }
        _ => panic!("one way opened the file, the other did not: {mapped:?} / {copied:?}"),
    }
});
