//! `physdev_op` (`physdev.h`; Xen's `do_physdev_op` in xen/arch/x86/physdev.c): only
//! `PHYSDEVOP_set_iopl`, the virtual IOPL a PV kernel asks for before it touches I/O
//! ports or runs `cli`/`sti` (Linux does so early in `xen_start_kernel`). Which ports a
//! domain may use is decided separately (`emulate::io_permitted`). Interrupt routing
//! sub-ops come with devices and event channels (issue 4).

use xen_sys::*;

use super::env::Env;
use super::error::Result;
use crate::domain::Domain;
use crate::machine::Machine;
use crate::state::vcpu::eflags;

pub fn physdev_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> Result<i64> {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        PHYSDEVOP_set_iopl => {
            let op: physdev_set_iopl = env.read(dom, arg)?;
            if op.iopl > 3 {
                return Err(XEN_EINVAL.into());
            }
            // Kept as RFLAGS.IOPL bits, as `Vcpu::iopl_ok` compares them.
            dom.vcpu.iopl = (u64::from(op.iopl) << 12) & eflags::IOPL;
            Ok(0)
        }
        op => {
            log::warn!("d{}: physdev_op {op} not implemented: -ENOSYS", dom.id);
            Err(XEN_ENOSYS.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::env::err;
    use super::super::tests::{World, SCRATCH};
    use super::*;

    #[test]
    fn set_iopl_sets_the_virtual_iopl() {
        let mut w = World::new(true);
        assert!(!w.dom.vcpu.iopl_ok());
        w.poke(SCRATCH, &1u32.to_le_bytes());
        let set = PHYSDEVOP_set_iopl as u64;
        assert_eq!(w.call(__HYPERVISOR_physdev_op, &[set, SCRATCH]), 0);
        assert_eq!(w.dom.vcpu.iopl, 1 << 12);
        assert!(w.dom.vcpu.iopl_ok());
        w.poke(SCRATCH, &4u32.to_le_bytes());
        assert_eq!(
            w.call(__HYPERVISOR_physdev_op, &[set, SCRATCH]),
            err(XEN_EINVAL)
        );
        assert_eq!(w.dom.vcpu.iopl, 1 << 12);
        assert_eq!(w.call(__HYPERVISOR_physdev_op, &[set, 0]), err(XEN_EFAULT));
        assert_eq!(
            w.call(__HYPERVISOR_physdev_op, &[99, SCRATCH]),
            err(XEN_ENOSYS)
        );
    }
}
