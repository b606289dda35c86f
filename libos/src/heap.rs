//! The heap: `linked_list_allocator` over the guest memory the domain builder mapped
//! after our bootstrap stack (the padding of the initial region, at least 512 KiB).
//!
//! The end of that mapping is found by walking our own page tables: the bootstrap
//! tables are mapped read-only in the region, and the read-only M2P (`xen-x86_64.h`,
//! `MACH2PHYS_VIRT_START`) turns their machine frames back into pseudo-physical ones.
//! Mapping the rest of the domain's memory needs `mmu_update` (the PV MMU).

use linked_list_allocator::LockedHeap;
use xen_sys::MACH2PHYS_VIRT_START;

use crate::start_info::StartInfo;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

unsafe extern "C" {
    static __virt_base: u8;
}

const PAGE: u64 = 4096;

fn virt_base() -> u64 {
    core::ptr::addr_of!(__virt_base) as u64
}

/// Virtual address, in the initial region, of machine frame `mfn`.
fn mfn_to_virt(mfn: u64) -> u64 {
    // SAFETY: the M2P is mapped read-only at MACH2PHYS_VIRT_START for every PV guest,
    // and the frames we ask about are our own page tables.
    let pfn =
        unsafe { core::ptr::read_volatile((MACH2PHYS_VIRT_START as *const u64).add(mfn as usize)) };
    virt_base() + pfn * PAGE
}

/// Is `va` mapped by our current page tables?
fn mapped(si: &StartInfo, va: u64) -> bool {
    let mut table = si.pt_base();
    for level in (1..=4).rev() {
        let index = (va >> (12 + 9 * (level - 1))) & 0x1ff;
        // SAFETY: `table` is one of our bootstrap page-table pages, mapped read-only.
        let entry = unsafe { core::ptr::read_volatile((table as *const u64).add(index as usize)) };
        if entry & 1 == 0 {
            return false;
        }
        if level > 1 {
            table = mfn_to_virt((entry >> 12) & 0xff_ffff_ffff);
        }
    }
    true
}

pub(crate) fn init(si: &StartInfo) {
    // Skip the page tables and the bootstrap stack that follows them.
    let start = si.pt_base() + (si.nr_pt_frames() + 1) * PAGE;
    let limit = virt_base() + si.nr_pages() * PAGE;
    let mut end = start;
    while end < limit && mapped(si, end) {
        end += PAGE;
    }
    // SAFETY: [start, end) is mapped, writable bootstrap padding that nothing else uses.
    unsafe { HEAP.lock().init(start as *mut u8, (end - start) as usize) };
    log::info!("heap: {} KiB at {start:#x}", (end - start) / 1024);
}
