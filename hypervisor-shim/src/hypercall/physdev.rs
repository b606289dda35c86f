//! `physdev_op` (`physdev.h`; Xen's `do_physdev_op` in xen/arch/x86/physdev.c and
//! irq.c): `PHYSDEVOP_set_iopl`, the virtual IOPL a PV kernel asks for before it touches
//! I/O ports or runs `cli`/`sti` (Linux does so early in `xen_start_kernel`; which ports a
//! domain may use is decided separately, `emulate::io_permitted`), and the device
//! interrupt lines of `crate::devices` for the control domain: `map_pirq` (GSIs only:
//! there is no PCI, so no MSI), `unmap_pirq`, `eoi` and `irq_status_query`.
//! A domU gets Xen's answer to a domain without I/O capabilities: -EPERM.

use xen_sys::*;

use super::env::Env;
use super::error::Result;
use crate::devices::nr_pirqs;
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
        PHYSDEVOP_map_pirq => {
            let mut op: physdev_map_pirq = env.read(dom, arg)?;
            io_capable(dom, op.domid)?;
            if op.type_ != MAP_PIRQ_TYPE_GSI as i32 {
                log::warn!("d{}: map_pirq of type {}: only GSIs", dom.id, op.type_);
                return Err(XEN_EINVAL.into());
            }
            let gsi = u32::try_from(op.index).map_err(|_| XEN_EINVAL)?;
            // The hardware domain's pirq of a GSI is the GSI (asked for, or by -1).
            if op.pirq >= 0 && op.pirq != op.index {
                log::warn!("d{}: map_pirq of GSI {gsi} as pirq {}", dom.id, op.pirq);
                return Err(XEN_EINVAL.into());
            }
            op.pirq = env.irqs.map(dom.id, gsi)? as i32;
            env.write(dom, arg, &op)?;
            Ok(0)
        }
        PHYSDEVOP_unmap_pirq => {
            let op: physdev_unmap_pirq = env.read(dom, arg)?;
            io_capable(dom, op.domid)?;
            let pirq = u32::try_from(op.pirq).map_err(|_| XEN_EINVAL)?;
            env.irqs.unmap(dom.id, pirq)?;
            Ok(0)
        }
        PHYSDEVOP_eoi => {
            let op: physdev_eoi = env.read(dom, arg)?;
            if op.irq >= nr_pirqs(dom.privileged) {
                return Err(XEN_EINVAL.into());
            }
            env.irqs.eoi(dom.id, op.irq)?;
            Ok(0)
        }
        PHYSDEVOP_irq_status_query => {
            let mut op: physdev_irq_status_query = env.read(dom, arg)?;
            if op.irq >= nr_pirqs(dom.privileged) {
                return Err(XEN_EINVAL.into());
            }
            // Every line is level-triggered: its owner must EOI it.
            let owned = env
                .irqs
                .line(op.irq)
                .is_some_and(|l| l.owner == Some(dom.id));
            op.flags = if owned { XENIRQSTAT_needs_eoi } else { 0 };
            env.write(dom, arg, &op)?;
            Ok(0)
        }
        op => {
            log::warn!("d{}: physdev_op {op} not implemented: -ENOSYS", dom.id);
            Err(XEN_ENOSYS.into())
        }
    }
}

/// `map_pirq`/`unmap_pirq` act on the caller's own lines only (Xen would let the
/// hardware domain map one into another domain for passthrough; the shim has none), and
/// only a domain with I/O capabilities has any (`xsm_map_domain_pirq`: -EPERM).
fn io_capable(dom: &Domain, domid: domid_t) -> Result<()> {
    if !dom.privileged {
        return Err(XEN_EPERM.into());
    }
    if domid != DOMID_SELF as domid_t && domid != dom.id {
        log::warn!("d{}: pirq of d{domid}: no passthrough", dom.id);
        return Err(XEN_EPERM.into());
    }
    Ok(())
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
