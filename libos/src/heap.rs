//! The heap: `linked_list_allocator` over the free memory [`crate::memory`] mapped
//! (the bootstrap padding followed by every frame the domain builder left unmapped).

//!
//! Its lock is only taken with events masked, so an event handler may allocate (the
//! power control that obeys `control/shutdown` runs in one: [`crate::control`]) without
//! waiting for a lock the code it interrupted holds.

use core::alloc::{GlobalAlloc, Layout};

use linked_list_allocator::LockedHeap;

use crate::events;

static HEAP: LockedHeap = LockedHeap::empty();

/// [`HEAP`] with events masked around each call.
struct Masked;

// SAFETY: forwards to LockedHeap, a GlobalAlloc, unchanged; masking events only keeps
// event handlers from running meanwhile.
unsafe impl GlobalAlloc for Masked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        events::masked(|| unsafe { HEAP.alloc(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        events::masked(|| unsafe { HEAP.dealloc(ptr, layout) })
    }
}

#[global_allocator]
static ALLOCATOR: Masked = Masked;

/// Gives [start, end) to the heap.
pub(crate) fn init(start: u64, end: u64) {
    // SAFETY: [start, end) is mapped, writable memory that nothing else uses
    // (`memory::init` set it aside for the heap).
    unsafe { HEAP.lock().init(start as *mut u8, (end - start) as usize) };
}

/// Bytes the heap manages.
pub fn size() -> usize {
    events::masked(|| HEAP.lock().size())
}

/// Bytes free in the heap.
pub fn free() -> usize {
    events::masked(|| HEAP.lock().free())
}
