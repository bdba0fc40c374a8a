//! Windows of a capture file mapped read-only into memory, so that the reader frames
//! records in the page cache's own pages instead of copying the file into buffers
//! with read(2) (that copy was a quarter of a run's CPU: benches/README.md).
//!
//! A window covers a few MiB of the file; chunks handed to the workers keep their
//! window alive (an `Arc`), and it is unmapped when the last of them is dropped, so
//! the resident memory is a few windows whatever the file's size.
//!
//! A mapping has one hazard that a read(2) does not: if the file shrinks while it is
//! mapped (another program truncates or rewrites it) or the disk fails under it, the
//! next access to a page past the new end raises SIGBUS, which would kill the process.
//! [`Window::map`] installs, once, a SIGBUS handler that recognises faults inside our
//! windows: it maps a page of zeros over the faulting page, so the access completes,
//! and records the file offset of the fault against the window's owner. The reader
//! checks [`first_fault`] after framing each chunk and reports the loss as damage to
//! the input (what came before is kept), and the engine checks it once more after the
//! workers are done, for a fault met only in packet bytes. A fault anywhere else is
//! handed back to the handler that was there before (Rust's own, then the default).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

/// Windows that may be mapped at once (a few per input are; slots are reused).
const SLOTS: usize = 256;
/// Owners whose faults are remembered (the first fault of each: one file, one
/// entry; more files failing in one run are unlikely).
const FAULTS: usize = 64;

/// A registered window: its address range, the file offset of its first byte and
/// its owner. `start == 0` marks a free slot.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    offset: AtomicU64,
    owner: AtomicU64,
}

/// Faults seen: owner (0: a free entry) and the lowest file offset that faulted.
struct Fault {
    owner: AtomicU64,
    offset: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    offset: AtomicU64::new(0),
    owner: AtomicU64::new(0),
};
#[allow(clippy::declare_interior_mutable_const)]
const NO_FAULT: Fault = Fault {
    owner: AtomicU64::new(0),
    offset: AtomicU64::new(u64::MAX),
};

static WINDOWS: [Slot; SLOTS] = [FREE_SLOT; SLOTS];
static SEEN: [Fault; FAULTS] = [NO_FAULT; FAULTS];
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
/// The SIGBUS disposition before ours (written once, before ours is installed).
static mut PREVIOUS: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();

/// Windows mapped now, in the whole process (for tests: none may outlive its readers).
pub fn live_windows() -> usize {
    WINDOWS
        .iter()
        .filter(|s| s.start.load(Ordering::Acquire) != 0)
        .count()
}

/// A fresh owner id for [`Window::map`] and [`first_fault`] (one per opened file).
pub fn new_owner() -> u64 {
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed)
}

/// The file offset of the first page of `owner`'s file found missing, if any.
pub fn first_fault(owner: u64) -> Option<u64> {
    SEEN.iter()
        .find(|f| f.owner.load(Ordering::Acquire) == owner)
        .map(|f| f.offset.load(Ordering::Acquire))
        .filter(|&o| o != u64::MAX)
}

/// Note a fault of `owner` at `offset` (from the signal handler: atomics only).
fn note_fault(owner: u64, offset: u64) {
    for f in SEEN.iter() {
        let mine = match f
            .owner
            .compare_exchange(0, owner, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(o) => o == owner,
        };
        if mine {
            f.offset.fetch_min(offset, Ordering::AcqRel);
            return;
        }
    }
}

/// What a report says of a mapped file whose page at `at` went missing; `now` is the
/// file's size after the fact.
pub fn changed_reason(at: u64, now: u64) -> String {
    format!(
        "the file changed while it was read: its bytes from offset {at} could not be read \
         (it now has {now} bytes; it shrank, or the disk failed)"
    )
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for slot in WINDOWS.iter() {
        let start = slot.start.load(Ordering::Acquire);
        let len = slot.len.load(Ordering::Acquire);
        if start == 0 || addr < start || addr - start >= len {
            continue;
        }
        let at = addr & !(page - 1);
        // SAFETY: the page lies inside a live read-only mapping of ours (its slot is
        // cleared before the mapping is dropped); replacing it with zeros only changes
        // the bytes the reader sees, which is reported through `first_fault`.
        let r = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            break;
        }
        let offset = slot
            .offset
            .load(Ordering::Acquire)
            .saturating_add(at.saturating_sub(start) as u64);
        note_fault(slot.owner.load(Ordering::Acquire), offset);
        return;
    }
    // Not ours: put the previous disposition back and return; the access faults
    // again and that handler (or the default action) deals with it.
    let _ = (sig, ctx);
    // SAFETY: PREVIOUS was written before this handler was installed.
    unsafe {
        libc::sigaction(
            libc::SIGBUS,
            std::ptr::addr_of!(PREVIOUS).cast::<libc::sigaction>(),
            std::ptr::null_mut(),
        );
    }
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: plain libc calls; PREVIOUS is written here only, before the handler
        // that reads it exists.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(
                libc::SIGBUS,
                &sa,
                std::ptr::addr_of_mut!(PREVIOUS).cast::<libc::sigaction>(),
            );
        }
    });
}

/// A read-only mapping of `len` bytes of a file from `offset`.
pub struct Window {
    map: memmap2::Mmap,
    offset: u64,
    slot: Option<usize>,
}

impl Window {
    /// Map `len` bytes of `file` from `offset` for `owner` ([`new_owner`]).
    pub fn map(file: &std::fs::File, offset: u64, len: usize, owner: u64) -> std::io::Result<Self> {
        install();
        // SAFETY: the mapping is read-only and private. The file may still change
        // under it: a shrink is caught by the SIGBUS handler above and reported; other
        // writes show as changed bytes, as they would to a read(2) at that moment.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(file)?
        };
        // Pages are read ahead of the reader, asynchronously (a populated mapping
        // would wait for a whole window of a cold file to come from disk).
        let _ = map.advise(memmap2::Advice::Sequential);
        let _ = map.advise(memmap2::Advice::WillNeed);
        let start = map.as_ptr() as usize;
        let mut slot = None;
        for (i, s) in WINDOWS.iter().enumerate() {
            if s.start
                .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                s.len.store(map.len(), Ordering::Release);
                s.offset.store(offset, Ordering::Release);
                s.owner.store(owner, Ordering::Release);
                s.start.store(start.max(1), Ordering::Release);
                slot = Some(i);
                break;
            }
        }
        if slot.is_none() {
            // More windows than slots: only unguarded mappings could follow.
            return Err(std::io::Error::other("too many mapped windows"));
        }
        Ok(Window { map, offset, slot })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// File offset of the first mapped byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if let Some(s) = self.slot.and_then(|i| WINDOWS.get(i)) {
            s.start.store(0, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("offset", &self.offset)
            .field("len", &self.map.len())
            .finish()
    }
}

/// Bytes ahead of the record being framed that the framer asks the cache for: the
/// next record headers' places are not known before each is read, so without this
/// every header of a mapped file is a wait for memory, one after the other.
pub const PREFETCH_BYTES: usize = 4096;
