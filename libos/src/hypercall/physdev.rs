//! `HYPERVISOR_physdev_op` (`xen/include/public/physdev.h`): a device's interrupt line
//! for the control domain, as a physical IRQ (`map_pirq` of a GSI), and its EOI.

use xen_sys::*;

use super::{check, hypercall, XenError};

fn op<T>(cmd: u32, arg: &mut T) -> Result<(), XenError> {
    // SAFETY: `arg` is the structure for `cmd` (each wrapper below pairs them), alive and
    // exclusively borrowed across the call.
    check(unsafe {
        hypercall(
            __HYPERVISOR_physdev_op,
            u64::from(cmd),
            arg as *mut T as u64,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// `PHYSDEVOP_map_pirq` of GSI `gsi` for ourselves: the pirq to bind (the GSI).
pub fn map_gsi_pirq(gsi: u32) -> Result<u32, XenError> {
    let mut m = physdev_map_pirq {
        domid: DOMID_SELF as domid_t,
        type_: MAP_PIRQ_TYPE_GSI as i32,
        index: gsi as i32,
        pirq: -1,
        bus: 0,
        devfn: 0,
        entry_nr: 0,
        table_base: 0,
    };
    op(PHYSDEVOP_map_pirq, &mut m)?;
    Ok(m.pirq as u32)
}

/// `PHYSDEVOP_unmap_pirq`.
pub fn unmap_pirq(pirq: u32) -> Result<(), XenError> {
    let mut m = physdev_unmap_pirq {
        domid: DOMID_SELF as domid_t,
        pirq: pirq as i32,
    };
    op(PHYSDEVOP_unmap_pirq, &mut m)
}

/// `PHYSDEVOP_eoi`: the interrupt of `pirq` is handled; the line may fire again.
pub fn pirq_eoi(pirq: u32) -> Result<(), XenError> {
    op(PHYSDEVOP_eoi, &mut physdev_eoi { irq: pirq })
}

/// `PHYSDEVOP_irq_status_query`: whether `pirq` needs an EOI.
pub fn pirq_needs_eoi(pirq: u32) -> Result<bool, XenError> {
    let mut q = physdev_irq_status_query {
        irq: pirq,
        flags: 0,
    };
    op(PHYSDEVOP_irq_status_query, &mut q)?;
    Ok(q.flags & XENIRQSTAT_needs_eoi != 0)
}
