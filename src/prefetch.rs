//! Hints to the cache: ask for memory a little before it is needed, where the
//! hardware cannot guess the next address (the next record header of a capture, the
//! next flow record of the audit in first-frame order). Each is a hint only: it never
//! faults and reads nothing into the program.

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
