//! Page tables as a PV guest sees them (`xen.h`, `arch-x86/xen-x86_64.h`): entries hold
//! *machine* frame numbers, tables are mapped read-only, and two lists translate
//! between the guest's pseudo-physical frames (pfn) and machine frames (mfn): the
//! P2M list the domain builder left at `start_info.mfn_list`, and Xen's read-only M2P
//! table at `MACH2PHYS_VIRT_START`.
//!
//! libos keeps every pseudo-physical frame at `VIRT_BASE + pfn * 4096` (the bootstrap
//! mapping's layout, extended to all memory by [`crate::memory`]), so any frame,
//! page tables included, can be read through that linear region.

use xen_sys::MACH2PHYS_VIRT_START;

use crate::start_info;

pub const PAGE_SIZE: u64 = 4096;
/// Entries per table.
pub const ENTRIES: usize = 512;

/// x86 page-table entry bits (architectural, Intel SDM vol. 3 §4.5; not part of Xen's
/// public headers, so they are written here).
pub mod pte {
    pub const PRESENT: u64 = 1 << 0;
    pub const RW: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const ACCESSED: u64 = 1 << 5;
    pub const DIRTY: u64 = 1 << 6;
    /// A large page (2 MiB in an L2 entry, 1 GiB in an L3 entry).
    pub const PSE: u64 = 1 << 7;
    pub const NX: u64 = 1 << 63;
    /// The machine address bits of an entry.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    /// What libos puts in a table entry that points to a lower table.
    pub const TABLE: u64 = PRESENT | RW | USER | ACCESSED;
    /// A writable data page.
    pub const DATA_RW: u64 = PRESENT | RW | USER | ACCESSED | DIRTY;
    /// A read-only page.
    pub const DATA_RO: u64 = PRESENT | USER | ACCESSED;
}

unsafe extern "C" {
    static __virt_base: u8;
}

/// Where the image, and pfn 0 of the linear region, starts (`XEN_ELFNOTE_VIRT_BASE`).
pub fn virt_base() -> u64 {
    core::ptr::addr_of!(__virt_base) as u64
}

/// Virtual address of pseudo-physical frame `pfn` in the linear region.
pub fn pfn_to_virt(pfn: u64) -> u64 {
    virt_base() + pfn * PAGE_SIZE
}

/// Pseudo-physical frame of a linear-region address.
pub fn virt_to_pfn(va: u64) -> u64 {
    (va - virt_base()) / PAGE_SIZE
}

/// Machine frame of pseudo-physical frame `pfn` (the P2M list).
pub fn pfn_to_mfn(pfn: u64) -> u64 {
    let si = start_info::get();
    assert!(pfn < si.nr_pages(), "pfn {pfn:#x} beyond our memory");
    // SAFETY: the P2M list (nr_pages entries) is mapped read-write in the bootstrap
    // mapping at `mfn_list` for the life of the domain, and `pfn` is in range.
    unsafe { core::ptr::read_volatile((si.mfn_list() as *const u64).add(pfn as usize)) }
}

/// Points pseudo-physical frame `pfn` at machine frame `mfn` in our P2M list (after a
/// `XENMEM_exchange` gave us new frames for old ones).
pub fn set_p2m(pfn: u64, mfn: u64) {
    let si = start_info::get();
    assert!(pfn < si.nr_pages(), "pfn {pfn:#x} beyond our memory");
    // SAFETY: as in `pfn_to_mfn`; the list is ours to write (a PV guest keeps it).
    unsafe { core::ptr::write_volatile((si.mfn_list() as *mut u64).add(pfn as usize), mfn) }
}

/// Pseudo-physical frame of machine frame `mfn` (Xen's read-only M2P table). Only
/// meaningful for frames we own.
pub fn mfn_to_pfn(mfn: u64) -> u64 {
    // SAFETY: the M2P is mapped read-only at MACH2PHYS_VIRT_START for every PV guest
    // and covers every machine frame; callers ask about our own frames.
    unsafe { core::ptr::read_volatile((MACH2PHYS_VIRT_START as *const u64).add(mfn as usize)) }
}

/// Machine frame behind a linear-region address.
pub fn virt_to_mfn(va: u64) -> u64 {
    pfn_to_mfn(virt_to_pfn(va))
}

/// Index of `va` in its level-`level` table (4 = L4 ... 1 = L1).
pub fn table_index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// Entry `index` of the table in machine frame `mfn`, read through the linear region.
pub fn read_entry(mfn: u64, index: usize) -> u64 {
    assert!(index < ENTRIES);
    let va = pfn_to_virt(mfn_to_pfn(mfn));
    // SAFETY: every frame of ours, page tables included, is mapped (at least
    // read-only) in the linear region; `index` is within the page.
    unsafe { core::ptr::read_volatile((va as *const u64).add(index)) }
}

/// The machine frame of the L4 table libos booted with (`start_info.pt_base`).
pub fn boot_l4_mfn() -> u64 {
    virt_to_mfn(start_info::get().pt_base())
}

/// Where `va` is mapped under the L4 table `l4_mfn`: the machine address of the
/// entry that maps it (an L1 entry, or the L2/L3 entry of a large page) and the entry
/// itself, or `None` where some level is not present. The walk stops at `stop_level`
/// (1 = the L1 entry) even if it is present.
pub fn walk(l4_mfn: u64, va: u64, stop_level: u32) -> Option<(u64, u64)> {
    let mut table = l4_mfn;
    for level in (stop_level..=4).rev() {
        let index = table_index(va, level);
        let entry = read_entry(table, index);
        let maddr = table * PAGE_SIZE + index as u64 * 8;
        if level == stop_level || (level < 4 && entry & pte::PSE != 0) {
            return Some((maddr, entry));
        }
        if entry & pte::PRESENT == 0 {
            return None;
        }
        table = (entry & pte::ADDR_MASK) / PAGE_SIZE;
    }
    None
}

/// Is `va` mapped (present at every level) by the boot page tables?
pub fn is_mapped(va: u64) -> bool {
    walk(boot_l4_mfn(), va, 1).is_some_and(|(_, e)| e & pte::PRESENT != 0)
}
