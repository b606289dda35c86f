//! `domctl` (`domctl.h`; Xen's `do_domctl` in xen/common/domctl.c and the pause and
//! kill paths of xen/common/domain.c): the sub-operations a toolstack needs to watch and
//! control running domains: `getdomaininfo`, `pausedomain`, `unpausedomain`,
//! `destroydomain`. Creating domains is not here yet.
//!
//! The order of checks is Xen's: the structure must be readable (`-EFAULT`), its
//! `interface_version` must be this Xen's (`-EACCES`), the target domain must exist
//! (`-ESRCH`; `getdomaininfo` looks further instead), and only then is the caller's
//! privilege checked (`-EPERM`, the default XSM policy: control domain only).

use xen_sys::tools::{
    xen_domctl, XEN_DOMCTL_createdomain, XEN_DOMCTL_destroydomain, XEN_DOMCTL_getdomaininfo,
    XEN_DOMCTL_pausedomain, XEN_DOMCTL_unpausedomain, XEN_DOMCTL_INTERFACE_VERSION,
};
use xen_sys::*;

use super::domain_info;
use super::env::Env;
use super::error::Result;
use super::guest::{copy_field_to_guest, field_addr};
use crate::domain::{lookup, Domain};
use crate::machine::Machine;

/// Xen's limit on the toolstack's pause count, "to prevent the toolstack overflowing
/// d->pause_count with many repeated hypercalls".
const MAX_CONTROLLER_PAUSE: u32 = 255;

pub fn domctl<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
) -> Result<i64> {
    let op: xen_domctl = env.read(dom, arg)?;
    if op.interface_version != XEN_DOMCTL_INTERFACE_VERSION {
        return Err(XEN_EACCES.into());
    }
    let (cmd, id) = (op.cmd, op.domain);
    let exists = lookup::by_id_ref(dom, env.domains, id).is_some();
    // createdomain names a domain that does not exist yet; getdomaininfo searches on.
    if !exists && cmd != XEN_DOMCTL_createdomain && cmd != XEN_DOMCTL_getdomaininfo {
        return Err(XEN_ESRCH.into());
    }
    if !dom.privileged {
        return Err(XEN_EPERM.into());
    }
    match cmd {
        XEN_DOMCTL_getdomaininfo => getdomaininfo(env, dom, arg, op),
        XEN_DOMCTL_pausedomain => {
            if id == dom.id {
                // Xen: a domain cannot wait for itself to be descheduled.
                return Err(XEN_EINVAL.into());
            }
            let Some(t) = env.domains.get_mut(id) else {
                return Err(XEN_ESRCH.into());
            };
            if t.sched.pause_count >= MAX_CONTROLLER_PAUSE {
                return Err(XEN_EOVERFLOW.into());
            }
            t.sched.pause_count += 1;
            env.effects.resched = true;
            Ok(0)
        }
        XEN_DOMCTL_unpausedomain => {
            let Some(t) = lookup::by_id(dom, env.domains, id) else {
                return Err(XEN_ESRCH.into());
            };
            if t.sched.pause_count == 0 {
                return Err(XEN_EINVAL.into());
            }
            t.sched.pause_count -= 1;
            env.effects.resched = true;
            Ok(0)
        }
        XEN_DOMCTL_destroydomain => {
            if id == dom.id {
                // Xen's domain_kill(): not on the current domain.
                return Err(XEN_EINVAL.into());
            }
            let Some(t) = env.domains.get_mut(id) else {
                return Err(XEN_ESRCH.into());
            };
            // The hypervisor tears it down (if it still runs) and drops its record
            // before anything else runs; destroying it again meanwhile is a no-op, as
            // for a domain Xen already has dead.
            if !t.destroy {
                log::info!("d{}: destroying d{} ({})", dom.id, t.id, t.name);
            }
            t.destroy = true;
            env.effects.resched = true;
            Ok(0)
        }
        _ => {
            log::warn!("d{}: domctl {cmd} not implemented: -ENOSYS", dom.id);
            Err(XEN_ENOSYS.into())
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
    mut op: xen_domctl,
) -> Result<i64> {
    if op.domain >= DOMID_FIRST_RESERVED {
        // Only reached when no such domain exists: reserved ids never do.
        return Err(XEN_EINVAL.into());
    }
    let found = env
        .domains
        .ids()
        .chain(core::iter::once(dom.id))
        .filter(|&d| d >= op.domain)
        .min()
        .ok_or(XEN_ESRCH)?;
    let now = env.now();
    let record = match env.domains.get(found) {
        Some(t) => domain_info::record(t, false, now),
        None => domain_info::record(dom, true, now),
    };
    op.domain = found;
    // The header and the record: what changed of the structure Xen copies back.
    env.write(dom, field_addr(arg, &op, &op.u), &record)?;
    copy_field_to_guest!(env, dom, arg, op.domain).map(|()| 0)
}
