//! `domctl` (`domctl.h`; Xen's `do_domctl` in xen/common/domctl.c and the pause and
//! kill paths of xen/common/domain.c): the sub-operations a toolstack needs to watch and
//! control running domains: `getdomaininfo`, `pausedomain`, `unpausedomain`,
//! `destroydomain`. Creating domains is not here yet.
//!
//! The order of checks is Xen's: the structure must be readable (`-EFAULT`), its
//! `interface_version` must be this Xen's (`-EACCES`), the target domain must exist
//! (`-ESRCH`; `getdomaininfo` looks further instead), and only then is the caller's
//! privilege checked (`-EPERM`, the default XSM policy: control domain only).

use core::mem::{offset_of, size_of};
use xen_sys::tools::{
    xen_domctl, XEN_DOMCTL_createdomain, XEN_DOMCTL_destroydomain, XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_pausedomain, XEN_DOMCTL_unpausedomain, XEN_DOMCTL_INTERFACE_VERSION,
};
use xen_sys::*;

use super::domain_info;
use super::env::{err, Env};
use crate::domain::Domain;
use crate::domain::Domains;
use crate::machine::Machine;
use xen_sys::domid_t;

/// Xen's limit on the toolstack's pause count, "to prevent the toolstack overflowing
/// d->pause_count with many repeated hypercalls".
const MAX_CONTROLLER_PAUSE: u32 = 255;

type Op = [u8; size_of::<xen_domctl>()];

fn u32_at(op: &Op, off: usize) -> u32 {
    u32::from_le_bytes(op[off..off + 4].try_into().unwrap_or_default())
}

/// The domain `id` names, which may be the caller itself (taken out of `domains`
/// while its hypercall runs). `DOMID_SELF` is not accepted, as in Xen's
/// `rcu_lock_domain_by_id`.
fn lookup<'a>(
    domains: &'a mut Domains,
    caller: &'a mut Domain,
    id: domid_t,
) -> Option<&'a mut Domain> {
    if id == caller.id {
        Some(caller)
    } else {
        domains.get_mut(id)
    }
}

pub fn domctl<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, arg: u64) -> i64 {
    let mut op: Op = [0; size_of::<xen_domctl>()];
    if env.guest(dom).read(arg, &mut op).is_err() {
        return err(XEN_EFAULT);
    }
    if u32_at(&op, offset_of!(xen_domctl, interface_version)) != XEN_DOMCTL_INTERFACE_VERSION {
        return err(XEN_EACCES);
    }
    let cmd = u32_at(&op, offset_of!(xen_domctl, cmd));
    let d = offset_of!(xen_domctl, domain);
    let id = u16::from_le_bytes([op[d], op[d + 1]]);
    let exists = id == dom.id || env.domains.get(id).is_some();
    // createdomain names a domain that does not exist yet; getdomaininfo searches on.
    if !exists && cmd != XEN_DOMCTL_createdomain && cmd != XEN_DOMCTL_getdomaininfo {
        return err(XEN_ESRCH);
    }
    if !dom.privileged {
        return err(XEN_EPERM);
    }
    match cmd {
        XEN_DOMCTL_getdomaininfo => getdomaininfo(env, dom, arg, &mut op, id),
        XEN_DOMCTL_pausedomain => {
            if id == dom.id {
                // Xen: a domain cannot wait for itself to be descheduled.
                return err(XEN_EINVAL);
            }
            let Some(t) = env.domains.get_mut(id) else {
                return err(XEN_ESRCH);
            };
            if t.sched.pause_count >= MAX_CONTROLLER_PAUSE {
                return err(XEN_EOVERFLOW);
            }
            t.sched.pause_count += 1;
            env.effects.resched = true;
            0
        }
        XEN_DOMCTL_unpausedomain => {
            let Some(t) = lookup(env.domains, dom, id) else {
                return err(XEN_ESRCH);
            };
            if t.sched.pause_count == 0 {
                return err(XEN_EINVAL);
            }
            t.sched.pause_count -= 1;
            env.effects.resched = true;
            0
        }
        XEN_DOMCTL_destroydomain => {
            if id == dom.id {
                // Xen's domain_kill(): not on the current domain.
                return err(XEN_EINVAL);
            }
            let Some(t) = env.domains.get_mut(id) else {
                return err(XEN_ESRCH);
            };
            // The hypervisor tears it down (if it still runs) and drops its record
            // before anything else runs; destroying it again meanwhile is a no-op, as
            // for a domain Xen already has dead.
            if !t.destroy {
                log::info!("d{}: destroying d{} ({})", dom.id, t.id, t.name);
            }
            t.destroy = true;
            env.effects.resched = true;
            0
        }
        _ => {
            log::warn!("d{}: domctl {cmd} not implemented: -ENOSYS", dom.id);
            err(XEN_ENOSYS)
        }
    }
}

/// Xen 4.17's `XEN_DOMCTL_getdomaininfo`: the domain asked for or, if it does not
/// exist, the first one with a higher id (Xen 4.18 made this `-ESRCH`); the id found
/// is written to both `domain` fields and the whole structure is copied back.
fn getdomaininfo<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
    op: &mut Op,
    id: domid_t,
) -> i64 {
    if id >= DOMID_FIRST_RESERVED {
        // Only reached when no such domain exists: reserved ids never do.
        return err(XEN_EINVAL);
    }
    let found = env
        .domains
        .ids()
        .chain(core::iter::once(dom.id))
        .filter(|&d| d >= id)
        .min();
    let Some(found) = found else {
        return err(XEN_ESRCH);
    };
    let now = env.now();
    let record = match env.domains.get(found) {
        Some(t) => domain_info::record(t, false, now),
        None => domain_info::record(dom, true, now),
    };
    let u = offset_of!(xen_domctl, u);
    op[u..u + record.len()].copy_from_slice(&record);
    let d = offset_of!(xen_domctl, domain);
    op[d..d + 2].copy_from_slice(&found.to_le_bytes());
    if env.guest(dom).write(arg, op).is_err() {
        return err(XEN_EFAULT);
    }
    0
}
