//! Segment descriptors a 64-bit PV guest may put in its GDT/LDT, as Xen's
//! `check_descriptor` (`xen/arch/x86/pv/descriptor-tables.c`) decides: not-present
//! descriptors and code/data segments are fine once their DPL is raised to the guest
//! kernel's ring (3); call gates must target a guest or Xen flat code selector, and get
//! DPL 0 (the original DPL kept in the selector's RPL) so that using them faults into
//! the shim; every other system descriptor (TSS, LDT, interrupt/trap gates) is refused.

use xen_sys::{FIRST_RESERVED_GDT_ENTRY, FLAT_KERNEL_CS};

const P: u32 = 1 << 15;
const DPL: u32 = 3 << 13;
const S: u32 = 1 << 12;
const TYPE: u32 = 0xf << 8;
const CALL_GATE: u32 = 0xc << 8;
/// The ring of a 64-bit PV guest kernel (`GUEST_KERNEL_RPL`).
const GUEST_KERNEL_RPL: u32 = 3;

/// `guest_gate_selector_okay`: a guest GDT selector, Xen's flat kernel code selector,
/// or an LDT selector.
fn gate_selector_ok(sel: u32) -> bool {
    (sel >> 3) < FIRST_RESERVED_GDT_ENTRY || sel == FLAT_KERNEL_CS || sel & 4 != 0
}

/// The descriptor as it may be installed, or `None` if the guest may not have it.
pub fn check_descriptor(desc: u64) -> Option<u64> {
    let mut a = desc as u32;
    let mut b = (desc >> 32) as u32;
    if b & P == 0 {
        return Some(desc);
    }
    let dpl = ((b & DPL) >> 13).max(GUEST_KERNEL_RPL);
    b = (b & !DPL) | (dpl << 13);
    if b & S == 0 {
        if b & TYPE == 0 {
            return Some(desc); // the upper half of a 64-bit call gate
        }
        if b & TYPE != CALL_GATE {
            return None;
        }
        let cs = a >> 16;
        if !gate_selector_ok(cs) {
            return None;
        }
        b &= !DPL;
        a = (a & 0xffff) | (((cs & !3) | dpl) << 16);
        if b & 0xff != 0 {
            return None; // reserved bits
        }
    }
    Some(((b as u64) << 32) | a as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat 64-bit code segment with DPL `dpl`.
    fn code(dpl: u64) -> u64 {
        0x00af_9a00_0000_ffff | (dpl << 45)
    }

    #[test]
    fn ring0_code_becomes_ring3() {
        let d = check_descriptor(code(0)).unwrap();
        assert_eq!((d >> 45) & 3, 3);
        assert_eq!(check_descriptor(code(3)), Some(code(3)));
    }

    #[test]
    fn not_present_is_harmless() {
        assert_eq!(check_descriptor(0x1234_0000_5678), Some(0x1234_0000_5678));
    }

    #[test]
    fn system_descriptors_are_refused() {
        // 64-bit TSS (type 9) and interrupt gate (type 0xe), present.
        assert_eq!(check_descriptor(0x0000_8900_0000_0067), None);
        assert_eq!(check_descriptor(0x0000_8e00_0010_0000), None);
    }

    #[test]
    fn call_gates_get_dpl0_and_a_checked_selector() {
        // Call gate, DPL 3, to selector 0x10 (a guest GDT entry).
        let g = 0x0000_ec00_0010_1000;
        let d = check_descriptor(g).unwrap();
        assert_eq!((d >> 45) & 3, 0);
        assert_eq!((d >> 16) & 0xffff, 0x13);
        // Target in Xen's reserved range but not the flat kernel CS: refused.
        assert_eq!(check_descriptor(0x0000_ec00_e008_1000), None);
        assert!(
            check_descriptor(0x0000_ec00_0000_1000 | ((FLAT_KERNEL_CS as u64) << 16)).is_some()
        );
    }
}
