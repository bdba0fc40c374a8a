//! Read-ahead of a regular capture file in fixed blocks with pread(2), shared by
//! the worker threads.
//!
//! Copying the file out of the page cache is the largest single cost of an offline
//! run (about a fifth of its CPU time). Read sequentially, that copy belongs to
//! whichever worker frames the next chunk, so it is serial: at two threads the framing
//! worker was the bottleneck of the packets phase. Block `k` of a [`ReadAhead`] is
//! the file's bytes from `base + k * BLOCK_BYTES`: its offset does not depend on
//! framing, so any thread can read it ahead of need, while the framer takes the
//! blocks strictly in order ([`ReadAhead::take`]) and reads a block itself when no
//! one has started it. The records and their order do not depend on which thread
//! read which block.
//!
//! A block's buffer keeps [`HEADROOM`] bytes free in front of the block, where the
//! framer puts the tail of the previous block (a record cut by the boundary), so
//! the block itself is never copied again.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Bytes of the file per block.
pub const BLOCK_BYTES: usize = crate::reader::CHUNK_BYTES;

/// Room in front of a block's bytes for the previous block's unframed tail. A tail
/// longer than this (a record of more than 64 KiB cut by the boundary) is copied
/// together with the block instead.
pub const HEADROOM: usize = 64 << 10;

/// Blocks read, or being read, ahead of the framer at most (memory: this many
/// buffers of [`BUFFER_BYTES`] besides those of the chunks in flight). Each buffer
/// is memory fresh to the process, dear on the VMs measured: packets phase at 2
/// threads, medians of 12 alternating runs (2026-12-05), main capture 268.5 ms with
/// 4, 298 with 1, 264 with 2, 270 with 3; 200 MB capture 33.5, 32, 31 and 32 ms;
/// handshake capture level (242.5 vs 244 ms with 2).
const AHEAD: usize = 2;

/// Length of a block buffer: the headroom, then the block.
pub const BUFFER_BYTES: usize = HEADROOM + BLOCK_BYTES;

/// A block read from the file.
#[derive(Debug)]
pub struct Block {
    /// [`HEADROOM`] bytes of room, then the block's bytes (`len` of them) and, when
    /// the file ended inside the block, stale bytes after them.
    pub buf: Vec<u8>,
    /// Bytes of the file in the block: [`BLOCK_BYTES`] unless the file ends in it.
    pub len: usize,
}

enum Slot {
    /// A thread is reading the block.
    Reading,
    Ready(std::io::Result<Block>),
}

struct State {
    /// The number of the next block the framer takes (that of `slots[0]`).
    next_take: u64,
    /// The blocks issued ahead of the framer, in order.
    slots: VecDeque<Slot>,
    /// The first block known to end short (the end of the file): none after it is
    /// read ahead.
    last: Option<u64>,
    /// Buffers to read into.
    free: Vec<Vec<u8>>,
}

impl State {
    /// Block `n` was read as `r`: if the file ended inside it, nothing after it is
    /// read ahead.
    fn note_end(&mut self, n: u64, r: &std::io::Result<Block>) {
        if r.as_ref().is_ok_and(|b| b.len < BLOCK_BYTES) {
            self.last = Some(self.last.map_or(n, |l| l.min(n)));
        }
    }
}

/// Blocks of one regular file, read by any thread and taken in order by one.
pub struct ReadAhead {
    file: File,
    /// File offset of block 0.
    base: u64,
    state: Mutex<State>,
    cv: Condvar,
}

/// Marks a block's read as failed if the reading thread unwinds, so that the framer
/// waiting for it does not wait for ever.
struct ReadGuard<'a> {
    ra: &'a ReadAhead,
    block: u64,
    armed: bool,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let err = std::io::Error::other("the thread reading this block stopped");
            self.ra.complete(self.block, Err(err));
        }
    }
}

impl ReadAhead {
    /// Blocks of `file` from offset `base` on.
    pub fn new(file: File, base: u64) -> ReadAhead {
        ReadAhead {
            file,
            base,
            state: Mutex::new(State {
                next_take: 0,
                slots: VecDeque::new(),
                last: None,
                free: Vec::new(),
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read block `n` into `buf` (any length; resized to [`BUFFER_BYTES`]).
    fn read_block(&self, n: u64, mut buf: Vec<u8>) -> std::io::Result<Block> {
        // A recycled buffer already has the length: nothing is written here then. A
        // new one comes zeroed from the allocator (calloc: fresh pages from the
        // kernel are not cleared a second time), not filled by resize.
        if buf.capacity() < BUFFER_BYTES {
            buf = vec![0; BUFFER_BYTES];
        }
        buf.resize(BUFFER_BYTES, 0);
        let offset = n
            .saturating_mul(BLOCK_BYTES as u64)
            .saturating_add(self.base);
        let dst = buf.get_mut(HEADROOM..).unwrap_or_default();
        let mut got = 0usize;
        while let Some(rest) = dst.get_mut(got..).filter(|r| !r.is_empty()) {
            match self.file.read_at(rest, offset.saturating_add(got as u64)) {
                Ok(0) => break,
                Ok(k) => got = got.saturating_add(k),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Block { buf, len: got })
    }

    /// Store the outcome of reading block `n`, read ahead by [`ReadAhead::prefetch`].
    fn complete(&self, n: u64, r: std::io::Result<Block>) {
        let mut g = self.lock();
        g.note_end(n, &r);
        let at = n.saturating_sub(g.next_take);
        if let Some(slot) = usize::try_from(at).ok().and_then(|i| g.slots.get_mut(i)) {
            *slot = Slot::Ready(r);
        }
        drop(g);
        self.cv.notify_all();
    }

    /// Read the next block nobody has started, if it is few enough blocks ahead of
    /// the framer and not past the end of the file; false when there was nothing to
    /// read.
    pub fn prefetch(&self) -> bool {
        let mut g = self.lock();
        let n = g.next_take.saturating_add(g.slots.len() as u64);
        if g.slots.len() >= AHEAD || g.last.is_some_and(|l| n > l) {
            return false;
        }
        g.slots.push_back(Slot::Reading);
        let buf = g.free.pop().unwrap_or_default();
        drop(g);
        let mut guard = ReadGuard {
            ra: self,
            block: n,
            armed: true,
        };
        let r = self.read_block(n, buf);
        guard.armed = false;
        self.complete(n, r);
        true
    }

    /// The next block in file order: read ahead, or being read by another thread
    /// (then this waits for it), or else read now.
    pub fn take(&self) -> std::io::Result<Block> {
        let mut g = self.lock();
        loop {
            match g.slots.front() {
                Some(Slot::Reading) => {
                    g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                Some(Slot::Ready(_)) => {
                    g.next_take = g.next_take.saturating_add(1);
                    if let Some(Slot::Ready(r)) = g.slots.pop_front() {
                        return r;
                    }
                }
                None => {
                    let n = g.next_take;
                    g.next_take = n.saturating_add(1);
                    let buf = g.free.pop().unwrap_or_default();
                    drop(g);
                    let r = self.read_block(n, buf);
                    self.lock().note_end(n, &r);
                    return r;
                }
            }
        }
    }

    /// Return a buffer (of a block, or of a chunk that held one) for later reads.
    pub fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() < BUFFER_BYTES {
            return;
        }
        let mut g = self.lock();
        if g.free.len() < AHEAD.saturating_add(2) {
            g.free.push(buf);
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(len: usize) -> (File, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        let path = std::env::temp_dir().join(format!(
            "mdmaudit-readahead-{}-{len}",
            std::process::id()
        ));
        let mut f = File::create(&path).unwrap();
        f.write_all(&bytes).unwrap();
        drop(f);
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        (f, bytes)
    }

    /// Every byte after `base`, in order, whoever read the blocks.
    #[test]
    fn blocks_taken_in_order_whoever_reads_them() {
        let len = 3 * BLOCK_BYTES + 12_345;
        let (f, bytes) = file_of(len);
        let ra = std::sync::Arc::new(ReadAhead::new(f, 100));
        let helper = {
            let ra = ra.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while n < 50 {
                    if !ra.prefetch() {
                        std::thread::yield_now();
                    }
                    n += 1;
                }
            })
        };
        let mut seen = Vec::new();
        loop {
            let b = ra.take().unwrap();
            seen.extend_from_slice(&b.buf[HEADROOM..HEADROOM + b.len]);
            let short = b.len < BLOCK_BYTES;
            ra.give_back(b.buf);
            if short {
                break;
            }
        }
        helper.join().unwrap();
        assert_eq!(seen, bytes[100..]);
        // Nothing is read past the block that ended short.
        assert!(!ra.prefetch());
    }

    #[test]
    fn a_file_of_whole_blocks_ends_with_an_empty_block() {
        let (f, bytes) = file_of(2 * BLOCK_BYTES);
        let ra = ReadAhead::new(f, 0);
        while ra.prefetch() {}
        let a = ra.take().unwrap();
        let b = ra.take().unwrap();
        let c = ra.take().unwrap();
        assert_eq!((a.len, b.len, c.len), (BLOCK_BYTES, BLOCK_BYTES, 0));
        assert_eq!(&b.buf[HEADROOM..], &bytes[BLOCK_BYTES..]);
    }
}
