//! The load harness: allocation counting (the index's bytes are measured, not estimated).

use super::*;

/// The binary's allocator, counting live bytes while [`COUNTING`] is set.
pub(crate) struct CountingAlloc;

/// Whether allocations are being counted (only while an index is built).
pub(crate) static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed while counting.
pub(crate) static COUNTED: AtomicI64 = AtomicI64::new(0);

pub(crate) fn count(delta: i64) {
    if COUNTING.load(Ordering::Relaxed) {
        COUNTED.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the binary's allocator; the counting touches
// only atomics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { INNER.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { INNER.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

/// The allocator the binary uses, which the counting wraps.
pub(crate) static INNER: savepoint_webhook::Allocator = mimalloc::MiMalloc;

#[global_allocator]
pub(crate) static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Net bytes allocated by `f`, and what it returned. Only meaningful while nothing else
/// allocates (the server is stopped and the client idle).
pub(crate) fn counting<T>(f: impl FnOnce() -> T) -> (i64, T) {
    let before = COUNTED.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let out = f();
    COUNTING.store(false, Ordering::SeqCst);
    (COUNTED.load(Ordering::SeqCst) - before, out)
}
