//! Hints to the cache: ask for memory a little before it is needed, where the
//! hardware cannot guess the next address (the next record header of a capture, the
//! next flow record of the audit in first-frame order). Each is a hint only: it never
//! faults and reads nothing into the program. Also the one hint to the kernel of the
//! same kind: transparent huge pages for large vectors about to be filled
//! ([`huge_spare`]).

/// Ask for the cache line at the start of `bytes` (a hint; nothing is read).
#[inline(always)]
pub fn prefetch(bytes: Option<&[u8]>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(b) = bytes {
        // SAFETY: a prefetch is a hint that never faults and reads nothing into the
        // program; the pointer is that of a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                b.as_ptr().cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Ask for every cache line of `value` (a hint; nothing is read).
#[inline(always)]
pub fn prefetch_value<T>(value: &T) {
    let size = std::mem::size_of::<T>();
    let base = (value as *const T).cast::<u8>();
    let mut at = 0;
    while at < size {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint that never faults; the address lies inside `value`.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                base.add(at).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
        at += 64;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = base;
}

/// Ask for every cache line of `data` from `*next` up to `until`; `*next` moves on.
#[inline(always)]
pub fn prefetch_lines(data: &[u8], next: &mut usize, until: usize) {
    while *next < until && *next < data.len() {
        prefetch(data.get(*next..));
        *next = next.saturating_add(64);
    }
}

/// Bytes of a transparent huge page (x86_64 and most Linux targets).
const HUGE_PAGE: usize = 2 << 20;

/// Ask the kernel to back the whole 2 MiB pages inside a large allocation that is
/// about to be written (`bytes` bytes from `ptr`) with transparent huge pages: one
/// fault and one zeroing per 2 MiB instead of one fault per 4 KiB page. Filling a
/// fresh vector of a few hundred thousand flow records otherwise takes tens of
/// thousands of faults. A hint only: on a kernel without THP, or with THP set to
/// "never", nothing changes; nothing is read or written; smaller ranges are left
/// alone.
pub fn huge_pages(ptr: *const u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        if bytes < 2 * HUGE_PAGE {
            return;
        }
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize).saturating_add(bytes) & !(HUGE_PAGE - 1);
        if end > start {
            // SAFETY: MADV_HUGEPAGE changes no memory contents and only advises on
            // pages of this allocation (the aligned range lies inside it).
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes, HUGE_PAGE);
}

/// [`huge_pages`] for the unused capacity of `v` (call it right after reserving).
pub fn huge_spare<T>(v: &mut Vec<T>) {
    let spare = v.spare_capacity_mut();
    huge_pages(spare.as_ptr().cast::<u8>(), std::mem::size_of_val(spare));
}
