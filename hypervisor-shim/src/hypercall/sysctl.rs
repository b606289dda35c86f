//! `sysctl` (`sysctl.h`; Xen's `do_sysctl` in xen/common/sysctl.c): the machine-wide
//! control operations. The shim has `XEN_SYSCTL_getdomaininfolist`, the toolstack's
//! way to list domains; the others are `-ENOSYS`.

use alloc::vec::Vec;
use core::mem::{offset_of, size_of};
use xen_sys::tools::{
    xen_domctl_getdomaininfo, xen_sysctl, xen_sysctl_getdomaininfolist,
    XEN_SYSCTL_getdomaininfolist, XEN_SYSCTL_INTERFACE_VERSION,
};
use xen_sys::*;

use super::domain_info;
use super::env::{err, Env};
use crate::domain::Domain;
use crate::machine::Machine;

type Op = [u8; size_of::<xen_sysctl>()];

fn u32_at(op: &Op, off: usize) -> u32 {
    u32::from_le_bytes(op[off..off + 4].try_into().unwrap_or_default())
}

pub fn sysctl<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, arg: u64) -> i64 {
    let mut op: Op = [0; size_of::<xen_sysctl>()];
    if env.guest(dom).read(arg, &mut op).is_err() {
        return err(XEN_EFAULT);
    }
    if u32_at(&op, offset_of!(xen_sysctl, interface_version)) != XEN_SYSCTL_INTERFACE_VERSION {
        return err(XEN_EACCES);
    }
    // The default XSM policy: every sysctl is the control domain's.
    if !dom.privileged {
        return err(XEN_EPERM);
    }
    match u32_at(&op, offset_of!(xen_sysctl, cmd)) {
        XEN_SYSCTL_getdomaininfolist => getdomaininfolist(env, dom, arg, &mut op),
        cmd => {
            log::warn!("d{}: sysctl {cmd} not implemented: -ENOSYS", dom.id);
            err(XEN_ENOSYS)
        }
    }
}

/// Fills the guest's buffer with the records of up to `max_domains` domains, in id
/// order from `first_domain`, and reports how many in `num_domains` (the whole
/// structure is copied back, as Xen does on success).
fn getdomaininfolist<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
    op: &mut Op,
) -> i64 {
    type L = xen_sysctl_getdomaininfolist;
    let u = offset_of!(xen_sysctl, u);
    let f = u + offset_of!(L, first_domain);
    let first = u16::from_le_bytes([op[f], op[f + 1]]);
    let max = u32_at(op, u + offset_of!(L, max_domains));
    let b = u + offset_of!(L, buffer);
    let buffer = u64::from_le_bytes(op[b..b + 8].try_into().unwrap_or_default());

    let mut ids: Vec<_> = env.domains.ids().chain(core::iter::once(dom.id)).collect();
    ids.sort_unstable();
    let now = env.now();
    let mut num: u32 = 0;
    for id in ids.into_iter().filter(|&id| id >= first) {
        if num == max {
            break;
        }
        let record = match env.domains.get(id) {
            Some(t) => domain_info::record(t, false, now),
            None => domain_info::record(dom, true, now),
        };
        let at = buffer.wrapping_add(u64::from(num) * size_of::<xen_domctl_getdomaininfo>() as u64);
        if env.guest(dom).write(at, &record).is_err() {
            return err(XEN_EFAULT);
        }
        num += 1;
    }
    let n = u + offset_of!(L, num_domains);
    op[n..n + 4].copy_from_slice(&num.to_le_bytes());
    if env.guest(dom).write(arg, op).is_err() {
        return err(XEN_EFAULT);
    }
    0
}
