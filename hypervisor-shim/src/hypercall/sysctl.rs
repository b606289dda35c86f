//! `sysctl` (`sysctl.h`; Xen's `do_sysctl` in xen/common/sysctl.c): the machine-wide
//! control operations. The shim has `XEN_SYSCTL_getdomaininfolist`, the toolstack's
//! way to list domains; the others are `-ENOSYS`.

use alloc::vec::Vec;
use xen_sys::tools::{
    xen_domctl_getdomaininfo, xen_sysctl, xen_sysctl_getdomaininfolist,
    XEN_SYSCTL_getdomaininfolist, XEN_SYSCTL_INTERFACE_VERSION,
};
use xen_sys::*;

use super::domain_info;
use super::env::Env;
use super::error::Result;
use super::guest::{copy_field_to_guest, element, field_addr};
use crate::domain::Domain;
use crate::machine::Machine;

pub fn sysctl<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
) -> Result<i64> {
    let op: xen_sysctl = env.read(dom, arg)?;
    if op.interface_version != XEN_SYSCTL_INTERFACE_VERSION {
        return Err(XEN_EACCES.into());
    }
    // The default XSM policy: every sysctl is the control domain's.
    if !dom.privileged {
        return Err(XEN_EPERM.into());
    }
    match op.cmd {
        XEN_SYSCTL_getdomaininfolist => getdomaininfolist(env, dom, field_addr(arg, &op, &op.u)),
        cmd => {
            log::warn!("d{}: sysctl {cmd} not implemented: -ENOSYS", dom.id);
            Err(XEN_ENOSYS.into())
        }
    }
}

/// Fills the guest's buffer with the records of up to `max_domains` domains, in id
/// order from `first_domain`, and reports how many in `num_domains` (the
/// `getdomaininfolist` at `at`, inside the `xen_sysctl`).
fn getdomaininfolist<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    at: u64,
) -> Result<i64> {
    let mut op: xen_sysctl_getdomaininfolist = env.read(dom, at)?;
    let buffer = op.buffer.p as u64;
    let mut ids: Vec<_> = env.domains.ids().chain(core::iter::once(dom.id)).collect();
    ids.sort_unstable();
    let now = env.now();
    op.num_domains = 0;
    for id in ids.into_iter().filter(|&id| id >= op.first_domain) {
        if op.num_domains == op.max_domains {
            break;
        }
        let record = match env.domains.get(id) {
            Some(t) => domain_info::record(t, false, now),
            None => domain_info::record(dom, true, now),
        };
        let slot = element::<xen_domctl_getdomaininfo>(buffer, op.num_domains.into());
        env.write(dom, slot, &record)?;
        op.num_domains += 1;
    }
    copy_field_to_guest!(env, dom, at, op.num_domains).map(|()| 0)
}
