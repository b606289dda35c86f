//! `HYPERVISOR_hvm_op` (`xen/include/public/hvm/hvm_op.h`): `HVMOP_get_param`, which a
//! control domain uses to learn where another domain's xenstore and console rings are
//! (`HVM_PARAM_STORE_PFN`/`_EVTCHN`, `HVM_PARAM_CONSOLE_PFN`/`_EVTCHN`, as
//! `init-dom0less` does; hypervisor-shim answers it for the PV domUs it built).

use xen_sys::*;

use super::{check, hypercall, XenError};

/// Parameter `index` of domain `domid`.
pub fn hvm_get_param(domid: domid_t, index: u32) -> Result<u64, XenError> {
    let mut p = xen_hvm_param {
        domid,
        pad: 0,
        index,
        value: 0,
    };
    // SAFETY: `p` is the `xen_hvm_param` HVMOP_get_param reads and writes back, alive
    // and exclusively borrowed across the call.
    check(unsafe {
        hypercall(
            __HYPERVISOR_hvm_op,
            u64::from(HVMOP_get_param),
            &mut p as *mut xen_hvm_param as u64,
            0,
            0,
            0,
        )
    })?;
    Ok(p.value)
}
