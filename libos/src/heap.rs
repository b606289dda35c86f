//! The heap: `linked_list_allocator` over the free memory [`crate::memory`] mapped
//! (the bootstrap padding followed by every frame the domain builder left unmapped).

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives [start, end) to the heap.
pub(crate) fn init(start: u64, end: u64) {
    // SAFETY: [start, end) is mapped, writable memory that nothing else uses
    // (`memory::init` set it aside for the heap).
    unsafe { HEAP.lock().init(start as *mut u8, (end - start) as usize) };
}

/// Bytes the heap manages.
pub fn size() -> usize {
    HEAP.lock().size()
}

/// Bytes free in the heap.
pub fn free() -> usize {
    HEAP.lock().free()
}
