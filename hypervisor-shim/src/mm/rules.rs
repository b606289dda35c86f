//! The per-entry rules of Xen's PV page-table validation (`xen/arch/x86/mm.c`,
//! `get_page_from_l[1-4]e`, `adjust_guest_l[1-4]e`; the masks of
//! `xen/arch/x86/include/asm/x86_64/page.h`).
//!
//! Xen expresses the masks over a 24-bit "flags" value (PTE bits 0..11 and 52..63);
//! here they are written directly over the 64-bit entry. `BASE_DISALLOW_MASK` is
//! `0xFF800198 & ~_PAGE_NX`: PWT, PCD, PSE/PAT and GLOBAL; the software bits 52..62
//! and NX are allowed. L1 entries may also not carry Xen's grant-mapping marker (bit
//! 62, `_PAGE_GNTTAB`), and since user mappings are global in Xen the GLOBAL bit is
//! allowed in L1 entries. Cache attributes (PWT, PCD, PAT) are allowed in L1 entries
//! only for a domain with I/O privileges (`l1_disallow_mask`): here, the privileged
//! domain.

use xen_sys::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};

use crate::paging::{self, ACCESSED, DIRTY, HUGE, PRESENT, USER};

const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
/// PSE in L2/L3 entries, PAT in L1 entries.
const PSE_PAT: u64 = HUGE;
const GLOBAL: u64 = 1 << 8;
/// Xen's `_PAGE_GNTTAB` (flag bit 22 = PTE bit 62).
const GNTTAB: u64 = 1 << 62;
const CACHE_ATTRS: u64 = PWT | PCD | PSE_PAT;

pub const BASE_DISALLOW: u64 = PWT | PCD | PSE_PAT | GLOBAL;

/// Flag bits a present entry of a level-`level` table may not have.
pub fn disallow_mask(level: u32, io_privileged: bool) -> u64 {
    match level {
        1 => {
            let m = (BASE_DISALLOW | GNTTAB) & !GLOBAL;
            if io_privileged {
                m & !CACHE_ATTRS
            } else {
                m
            }
        }
        // PSE is refused separately (no PV superpages), with its own message.
        2 => BASE_DISALLOW & !PSE_PAT,
        _ => BASE_DISALLOW,
    }
}

/// Xen's bits that decide whether a change of an entry needs new references (the
/// "fast path" of `mod_l1_entry`): frame and write permission. A change of the other
/// bits keeps the references it had.
pub fn same_target(level: u32, old: u64, new: u64) -> bool {
    let (o, n) = (paging::Pte(old), paging::Pte(new));
    o.present() && n.present() && o.mfn() == n.mfn() && (level != 1 || o.writable() == n.writable())
}

/// `adjust_guest_l*e` for a 64-bit PV guest: its kernel runs in ring 3, so every
/// present entry is made user-accessible. (Xen also tags such entries with its private
/// `_PAGE_GUEST_KERNEL` bit; the shim keeps no such tag.)
pub fn adjust(entry: u64) -> u64 {
    if entry & PRESENT != 0 {
        entry | USER
    } else {
        entry
    }
}

/// `MMU_PT_UPDATE_PRESERVE_AD`: keep the accessed and dirty bits the hardware set.
pub fn preserve_ad(old: u64, new: u64) -> u64 {
    new | (old & (ACCESSED | DIRTY))
}

/// L4 slots of Xen's reserved range (`HYPERVISOR_VIRT_START..HYPERVISOR_VIRT_END`,
/// slots 256..272): the shim fills them in every validated L4; guests cannot write them.
pub fn is_reserved_l4_slot(slot: usize) -> bool {
    let first = paging::index(HYPERVISOR_VIRT_START, 4);
    let end = paging::index(HYPERVISOR_VIRT_END, 4);
    (first..end).contains(&slot)
}

/// Xen's `__addr_ok` for a 64-bit PV guest: a guest address, i.e. below the
/// hypervisor hole or above it (the upper canonical half past `HYPERVISOR_VIRT_END`).
pub fn guest_addr_ok(va: u64) -> bool {
    va < HYPERVISOR_VIRT_START && paging::is_canonical(va) || va >= HYPERVISOR_VIRT_END
}

/// `array_access_ok`: `count` elements of `size` bytes at `va` do not overflow and
/// start at a guest address (faults on the way are caught element by element).
pub fn array_ok(va: u64, count: u64, size: u64) -> bool {
    count
        .checked_mul(size)
        .is_some_and(|n| va.checked_add(n).is_some())
        && guest_addr_ok(va)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::WRITABLE;

    #[test]
    fn masks_match_xen() {
        assert_eq!(BASE_DISALLOW, 0x198);
        assert_eq!(disallow_mask(1, false), 0x98 | GNTTAB);
        assert_eq!(disallow_mask(1, true), GNTTAB);
        assert_eq!(disallow_mask(2, false), 0x118);
        assert_eq!(disallow_mask(4, false), 0x198);
        assert_eq!(disallow_mask(3, false) & paging::NX, 0, "NX allowed");
    }

    #[test]
    fn reserved_l4_range_is_256_to_271() {
        assert!(!is_reserved_l4_slot(255));
        assert!(is_reserved_l4_slot(256));
        assert!(is_reserved_l4_slot(262));
        assert!(is_reserved_l4_slot(271));
        assert!(!is_reserved_l4_slot(272));
    }

    #[test]
    fn guest_addresses() {
        assert!(guest_addr_ok(0));
        assert!(guest_addr_ok(0x7fff_ffff_f000));
        assert!(!guest_addr_ok(0x8000_0000_0000));
        assert!(!guest_addr_ok(HYPERVISOR_VIRT_START));
        assert!(guest_addr_ok(HYPERVISOR_VIRT_END));
        assert!(!array_ok(u64::MAX - 8, 2, 16));
        assert!(array_ok(0x1000, 4, 16));
        assert!(adjust(PRESENT) & USER != 0);
        assert_eq!(adjust(WRITABLE), WRITABLE);
    }
}
