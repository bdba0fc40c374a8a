//! `mdmaudit::reader::FileReader` on a whole capture file: the file is written to a
//! temporary file and read twice, through mapped windows and through read(2).
//!
//! Contract checked: both ways open or refuse the file alike (same message), then give
//! the same records with the same bytes and end the same way (the same damage, at the
//! same offset, after the same number of packets); frame numbers run 1, 2, 3...;
//! every record's bytes lie inside its chunk and are no longer than libpcap's
//! maximum; every fill but the last makes progress (no hang); a regular file is mapped
//! (the fall-back to read(2) is for file systems that cannot map), and no mapped window
//! outlives its reader and chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mdmaudit::mapped::live_windows;
use mdmaudit::reader::{Chunk, FileReader, Fill, Record, MAX_RECORD};

/// What one way of reading gave: records, their bytes, and how it ended.
type Read = Result<(Vec<Record>, Vec<Vec<u8>>, Fill), String>;

fn read(path: &str, map: bool, max_fills: usize) -> Read {
    let mut r = FileReader::open_with(path, 0, map).map_err(|e| e.reason)?;
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
    let mapped = read(p, true, max_fills);
    assert_eq!(live_windows(), 0, "a window outlived its reader");
    let copied = read(p, false, max_fills);
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
