//! Publishes this domain's P2M frame lists in `shared_info` (`arch.max_pfn`,
//! `arch.pfn_to_mfn_frame_list_list`; the layout is [`pv_core::p2m_lists`]'s), as Linux
//! and Mini-OS do at boot: the toolstack's save, restore and migration find the
//! domain's P2M list through them (without, `xl save` stops with "Bad mfn 0 for p2m
//! frame list list"). The P2M pages named are the live list at `start_info.mfn_list`,
//! so later changes to it ([`crate::paging::set_p2m`]) need no republishing.

use alloc::alloc::{alloc_zeroed, Layout};

use pv_core::p2m_lists::{self, PER_PAGE};

use crate::paging::{self, PAGE_SIZE};
use crate::start_info;

/// Builds the two upper levels (heap pages kept for the domain's life) and publishes
/// them; the error says why not.
pub(crate) fn publish() -> Result<(), &'static str> {
    let si = start_info::get();
    let entries = si.nr_pages();
    let layout = p2m_lists::layout(entries).ok_or("more frames than one frame list list names")?;
    let bytes = (layout.list_pages + 1) * PAGE_SIZE as usize;
    let pages = Layout::from_size_align(bytes, PAGE_SIZE as usize).map_err(|_| "layout")?;
    // SAFETY: a non-zero size; the memory is never freed (the tools read it while the
    // domain lives).
    let base = unsafe { alloc_zeroed(pages) };
    if base.is_null() {
        return Err("no heap for the frame lists");
    }
    // SAFETY: `base` is `list_pages + 1` zeroed, page-aligned pages of our heap, ours
    // alone from here on; u64 arrays of 512 have no invalid bit patterns.
    let (lists, top) = unsafe {
        let lists =
            core::slice::from_raw_parts_mut(base as *mut [u64; PER_PAGE], layout.list_pages);
        let top = &mut *(base.add(layout.list_pages * PAGE_SIZE as usize) as *mut [u64; PER_PAGE]);
        (lists, top)
    };
    let p2m = si.mfn_list();
    let list_va = |j: usize| base as u64 + (j as u64) * PAGE_SIZE;
    p2m_lists::fill(
        layout,
        |i| paging::virt_to_mfn(p2m + i as u64 * PAGE_SIZE),
        |j| paging::virt_to_mfn(list_va(j)),
        lists,
        top,
    );
    let top_mfn = paging::virt_to_mfn(top.as_ptr() as u64);
    let shared = crate::shared_info::get().ok_or("shared_info is not mapped")?;
    // SAFETY: shared_info is mapped writable for the domain's life; these two fields
    // are the guest's to write (the hypervisor does not).
    unsafe {
        core::ptr::addr_of_mut!((*shared).arch.max_pfn).write_volatile(entries);
        core::ptr::addr_of_mut!((*shared).arch.pfn_to_mfn_frame_list_list).write_volatile(top_mfn);
    }
    Ok(())
}

/// What the tools would find: the published `max_pfn` and frame list list, walked
/// through our own mappings (each MFN back to its page with Xen's M2P); the MFN of
/// `pfn`'s entry. For checks (examples/pagetables).
pub fn lookup(pfn: u64) -> Option<u64> {
    let shared = crate::shared_info::get()?;
    // SAFETY: shared_info is mapped; plain integers, read volatile.
    let (max_pfn, top_mfn) = unsafe {
        (
            core::ptr::addr_of!((*shared).arch.max_pfn).read_volatile(),
            core::ptr::addr_of!((*shared).arch.pfn_to_mfn_frame_list_list).read_volatile(),
        )
    };
    let read_page = |mfn: u64| -> [u64; PER_PAGE] {
        let va = paging::pfn_to_virt(paging::mfn_to_pfn(mfn));
        // SAFETY: the MFNs the lists name are our own frames (checked by the M2P round
        // trip below), mapped in the linear region.
        unsafe { core::ptr::read_volatile(va as *const [u64; PER_PAGE]) }
    };
    let owned = |mfn: u64| {
        let pfn = paging::mfn_to_pfn(mfn);
        pfn < start_info::get().nr_pages() && paging::pfn_to_mfn(pfn) == mfn
    };
    if top_mfn == 0 || !owned(top_mfn) {
        return None;
    }
    let top = read_page(top_mfn);
    p2m_lists::lookup(&top, max_pfn, pfn, |mfn| {
        if owned(mfn) {
            read_page(mfn)
        } else {
            [0; PER_PAGE]
        }
    })
}
