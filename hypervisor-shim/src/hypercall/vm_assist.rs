//! `vm_assist(cmd, type)` (`VMASST_*` of `xen.h`; Xen's `vm_assist` in
//! xen/common/domain.c with x86's `VM_ASSIST_VALID`).
//!
//! Accepted (and honoured) for a 64-bit PV guest:
//! - `4gb_segments`, `4gb_segments_notify`, `pae_extended_cr3`: meaningful for 32-bit
//!   guests only; Xen accepts them from 64-bit guests and they change nothing.
//! - `architectural_iopl`: the virtual IOPL follows `iret`'s RFLAGS and the guest
//!   kernel counts as CPL 0 for I/O (bounce frames and `emulate.rs` honour it).
//! - `runstate_update_flag`: only affects runstate areas, which the shim does not
//!   offer yet, so it is trivially honoured; recorded for when it does.
//!
//! Refused with -EINVAL (what Xen answers for a type it does not support), each logged:
//! - `writable_pagetables`: needs emulation of guest writes to its page tables (Xen's
//!   ptwr), which the shim does not do; guests must use `mmu_update`.
//! - `m2p_strict`: needs the PV MMU to keep the M2P out of user page tables.
//! - any other type. A bad command is -ENOSYS.

use xen_sys::*;

use super::error::Result;
use crate::domain::Domain;

const HONOURED: u64 = 1 << VMASST_TYPE_4gb_segments
    | 1 << VMASST_TYPE_4gb_segments_notify
    | 1 << VMASST_TYPE_pae_extended_cr3
    | 1 << VMASST_TYPE_architectural_iopl
    | 1 << VMASST_TYPE_runstate_update_flag;

pub fn vm_assist(dom: &mut Domain, cmd: u64, ty: u64) -> Result<i64> {
    let ty = ty as u32;
    if ty >= 64 || HONOURED & 1 << ty == 0 {
        let why = match ty {
            VMASST_TYPE_writable_pagetables => "writable page tables are not emulated",
            VMASST_TYPE_m2p_strict => "strict M2P mode is not implemented",
            _ => "unknown type",
        };
        log::warn!("d{}: vm_assist type {ty} refused ({why}): -EINVAL", dom.id);
        return Err(XEN_EINVAL.into());
    }
    match cmd as u32 {
        VMASST_CMD_enable => dom.vcpu.vm_assist |= 1 << ty,
        VMASST_CMD_disable => dom.vcpu.vm_assist &= !(1 << ty),
        _ => return Err(XEN_ENOSYS.into()),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::env::err;
    use super::super::tests::World;
    use super::*;

    #[test]
    fn honoured_types_toggle_and_the_rest_are_refused() {
        let mut w = World::new(true);
        let va = |w: &mut World, cmd: u32, ty: u32| {
            w.call(__HYPERVISOR_vm_assist, &[cmd as u64, ty as u64])
        };
        assert_eq!(
            va(&mut w, VMASST_CMD_enable, VMASST_TYPE_architectural_iopl),
            0
        );
        assert!(w.dom.vcpu.vm_assist(VMASST_TYPE_architectural_iopl));
        assert_eq!(
            va(&mut w, VMASST_CMD_disable, VMASST_TYPE_architectural_iopl),
            0
        );
        assert!(!w.dom.vcpu.vm_assist(VMASST_TYPE_architectural_iopl));
        assert_eq!(
            va(&mut w, VMASST_CMD_enable, VMASST_TYPE_pae_extended_cr3),
            0
        );
        assert_eq!(
            va(&mut w, VMASST_CMD_enable, VMASST_TYPE_writable_pagetables),
            err(XEN_EINVAL)
        );
        assert_eq!(
            va(&mut w, VMASST_CMD_enable, VMASST_TYPE_m2p_strict),
            err(XEN_EINVAL)
        );
        assert_eq!(va(&mut w, VMASST_CMD_enable, 63), err(XEN_EINVAL));
        assert_eq!(va(&mut w, VMASST_CMD_enable, 64), err(XEN_EINVAL));
        assert_eq!(va(&mut w, 2, VMASST_TYPE_4gb_segments), err(XEN_ENOSYS));
        assert_eq!(w.dom.vcpu.vm_assist, 1 << VMASST_TYPE_pae_extended_cr3);
    }
}
