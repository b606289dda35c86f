//! The small vCPU-register hypercalls of Xen's xen/arch/x86/pv/misc-hypercalls.c and
//! x86_64/traps.c: `stack_switch`, `set_segment_base`, `fpu_taskswitch`.

use xen_sys::*;

use super::error::Result;
use crate::domain::Domain;
use crate::paging::is_canonical;

/// `stack_switch(ss, sp)`: the kernel stack for bounce frames from user mode. Xen checks
/// nothing here (a bad stack crashes the guest when a frame is built on it); an RPL-0
/// selector gets RPL 3.
pub fn stack_switch(dom: &mut Domain, ss: u64, sp: u64) -> Result<i64> {
    dom.vcpu.kernel_ss = if ss & 3 == 0 { ss | 3 } else { ss };
    dom.vcpu.kernel_sp = sp;
    Ok(0)
}

/// `set_segment_base(which, base)` (`SEGBASE_*` of `arch-x86/xen-x86_64.h`).
pub fn set_segment_base(dom: &mut Domain, which: u64, base: u64) -> Result<i64> {
    let v = &mut dom.vcpu;
    let slot = match u32::try_from(which).unwrap_or(u32::MAX) {
        SEGBASE_FS => &mut v.fs_base,
        SEGBASE_GS_USER => &mut v.gs_base_user,
        SEGBASE_GS_KERNEL => &mut v.gs_base_kernel,
        // Load user %gs from a selector: the user GS base becomes the descriptor's base.
        // Every selector the shim's GDT offers a guest (NUL and the FLAT_* flat
        // segments) has base 0, and Xen loads NUL for a selector that faults, so the
        // result is always 0. (Guest GDT/LDT descriptors from set_gdt would supply
        // their own base once the PV MMU provides them.)
        SEGBASE_GS_USER_SEL => {
            v.gs_base_user = 0;
            return Ok(0);
        }
        _ => return Err(XEN_EINVAL.into()),
    };
    if !is_canonical(base) {
        return Err(XEN_EINVAL.into());
    }
    *slot = base;
    v.cpu_dirty = true;
    Ok(0)
}

/// `fpu_taskswitch(set)`: the virtual CR0.TS. With TS set the next FPU use raises #NM in
/// the guest (and clears TS), as in Xen's lazy FPU switching.
pub fn fpu_taskswitch(dom: &mut Domain, set: u64) -> Result<i64> {
    dom.vcpu.set_cr0_ts(set as i32 != 0);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::super::env::err;
    use super::super::tests::World;
    use super::*;

    #[test]
    fn segment_bases() {
        let mut w = World::new(true);
        let set = |w: &mut World, which: u32, base: u64| {
            w.call(__HYPERVISOR_set_segment_base, &[which as u64, base])
        };
        assert_eq!(set(&mut w, SEGBASE_FS, 0x7fff_0000), 0);
        assert_eq!(set(&mut w, SEGBASE_GS_USER, 0x6000), 0);
        assert_eq!(set(&mut w, SEGBASE_GS_KERNEL, 0xffff_8880_0000_0000), 0);
        let v = &w.dom.vcpu;
        assert_eq!(
            (v.fs_base, v.gs_base_user, v.gs_base_kernel),
            (0x7fff_0000, 0x6000, 0xffff_8880_0000_0000)
        );
        assert_eq!(
            set(&mut w, SEGBASE_FS, 0x8000_0000_0000_0000),
            err(XEN_EINVAL)
        );
        assert_eq!(
            set(&mut w, SEGBASE_GS_KERNEL, 0x0000_8000_0000_0000),
            err(XEN_EINVAL)
        );
        assert_eq!(w.dom.vcpu.fs_base, 0x7fff_0000);
        assert_eq!(set(&mut w, SEGBASE_GS_USER_SEL, 0xe02b), 0);
        assert_eq!(w.dom.vcpu.gs_base_user, 0);
        assert_eq!(set(&mut w, 4, 0), err(XEN_EINVAL));
    }

    #[test]
    fn stack_switch_and_fpu_taskswitch() {
        let mut w = World::new(true);
        assert_eq!(
            w.call(__HYPERVISOR_stack_switch, &[0xe028, 0xffff_ffff_8000_8000]),
            0
        );
        assert_eq!(
            (w.dom.vcpu.kernel_ss, w.dom.vcpu.kernel_sp),
            (0xe02b, 0xffff_ffff_8000_8000)
        );
        assert_eq!(w.call(__HYPERVISOR_fpu_taskswitch, &[1]), 0);
        assert!(w.dom.vcpu.cr0_ts);
        assert_eq!(w.call(__HYPERVISOR_fpu_taskswitch, &[1 << 32]), 0);
        assert!(!w.dom.vcpu.cr0_ts, "the argument is an int");
    }
}
