//! `hvm_op` (`hvm/hvm_op.h`, `hvm/params.h`; Xen's `do_hvm_op` and `hvmop_get_param` in
//! xen/arch/x86/hvm/hvm.c): only `HVMOP_get_param` of the four parameters a toolstack
//! needs to attach to a domain's xenstore and console rings: `HVM_PARAM_STORE_PFN`,
//! `HVM_PARAM_STORE_EVTCHN`, `HVM_PARAM_CONSOLE_PFN`, `HVM_PARAM_CONSOLE_EVTCHN`.
//!
//! This is the interface of Xen's dom0less boot, where Xen builds the domUs and
//! `init-dom0less` reads these parameters to introduce them to xenstored. The shim
//! is the builder of its PV domUs too, so it answers them for PV domains, which Xen
//! does not (for a PV target Xen's `hvmop_get_param` is `-EINVAL`). Values: a PFN is the
//! page's pseudo-physical frame in the domain's P2M, an event channel is the domain's
//! unbound port for domain 0 (0 when the builder allocated none, and both 0 for a
//! domain built without rings, such as dom0).
//!
//! Checks in Xen's order: `-EFAULT` (unreadable argument), `-EINVAL` (index beyond
//! `HVM_NR_PARAMS`), `-ESRCH` (no such domain), `-EPERM` (another domain's parameter
//! without privilege: `XSM_TARGET`), `-EINVAL` (a parameter the shim does not keep).

use xen_sys::*;

use super::env::Env;
use super::error::Result;
use crate::domain::{lookup, Domain};
use crate::machine::Machine;

pub fn hvm_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    op: u64,
    arg: u64,
) -> Result<i64> {
    match u32::try_from(op).unwrap_or(u32::MAX) {
        HVMOP_get_param => get_param(env, dom, arg),
        op => {
            log::warn!("d{}: hvm_op {op} not implemented: -ENOSYS", dom.id);
            Err(XEN_ENOSYS.into())
        }
    }
}

fn get_param<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &Domain, arg: u64) -> Result<i64> {
    let mut op: xen_hvm_param = env.read(dom, arg)?;
    if op.index >= HVM_NR_PARAMS {
        return Err(XEN_EINVAL.into());
    }
    let may = lookup::may_act_on(dom, op.domid);
    let Some(t) = lookup::this_or_caller_ref(dom, env.domains, op.domid) else {
        return Err(XEN_ESRCH.into());
    };
    if !may {
        return Err(XEN_EPERM.into());
    }
    let r = t.rings.unwrap_or_default();
    op.value = match op.index {
        HVM_PARAM_STORE_PFN => r.store_pfn,
        HVM_PARAM_STORE_EVTCHN => r.store_evtchn as u64,
        HVM_PARAM_CONSOLE_PFN => r.console_pfn,
        HVM_PARAM_CONSOLE_EVTCHN => r.console_evtchn as u64,
        _ => return Err(XEN_EINVAL.into()),
    };
    env.write(dom, arg, &op).map(|()| 0)
}
