//! `event_channel_op` (`event_channel.h`; Xen's xen/common/event_channel.c): binding,
//! sending, closing and inspecting ports, 2-level ABI. Error codes are Xen 4.17's,
//! in Xen's order of checks.
//!
//! Rules the shim enforces for hostile guests: a domain acts on its own ports only
//! (another domain's need privilege: `alloc_unbound`, `status`, `reset`); it binds only
//! to a port left unbound *for it*; ports are limited per domain (`EventChannels`); an
//! operation on a port that is not in use is -EINVAL and changes nothing.

use core::mem::offset_of;

use xen_sys::*;

use super::env::{err, Env};
use crate::common::event_channel;
use crate::domain::lookup;
use crate::domain::Domain;
use crate::domain::Domains;
use crate::machine::{GuestMemory, Machine};
use crate::state::evtchn::Binding;
use xen_sys::domid_t;

/// VIRQs delivered per vCPU; all others are global (bound on vCPU 0 only).
fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

pub fn event_channel_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> i64 {
    match op(env, dom, cmd, arg) {
        Ok(()) => 0,
        Err(e) => err(e),
    }
}

/// The pre-3.2 interface: one `evtchn_op` struct, command first.
pub fn event_channel_op_compat<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
) -> i64 {
    let Ok(cmd) = env.guest(dom).read_u32(arg) else {
        return err(XEN_EFAULT);
    };
    event_channel_op(
        env,
        dom,
        cmd as u64,
        arg.wrapping_add(offset_of!(evtchn_op, u) as u64),
    )
}

type Result<T> = core::result::Result<T, xen_errno>;

fn fault<T>(_: T) -> xen_errno {
    XEN_EFAULT
}

fn op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> Result<()> {
    let at = |off: usize| arg.wrapping_add(off as u64);
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        EVTCHNOP_alloc_unbound => {
            let gm = env.guest(dom);
            let target = gm
                .read_u16(at(offset_of!(evtchn_alloc_unbound, dom)))
                .map_err(fault)?;
            let remote = gm
                .read_u16(at(offset_of!(evtchn_alloc_unbound, remote_dom)))
                .map_err(fault)?;
            let remote = if remote == DOMID_SELF { dom.id } else { remote };
            let port = with_domain(dom, env.domains, target, true, |d| {
                if d.dead {
                    return Err(XEN_EINVAL);
                }
                d.evtchn
                    .alloc(Binding::Unbound { remote })
                    .ok_or(XEN_ENOSPC)
            })??;
            env.guest(dom)
                .write_u32(at(offset_of!(evtchn_alloc_unbound, port)), port)
                .map_err(fault)
        }
        EVTCHNOP_bind_interdomain => {
            let gm = env.guest(dom);
            let rdom = gm
                .read_u16(at(offset_of!(evtchn_bind_interdomain, remote_dom)))
                .map_err(fault)?;
            let rport = gm
                .read_u32(at(offset_of!(evtchn_bind_interdomain, remote_port)))
                .map_err(fault)?;
            let lport =
                event_channel::bind_interdomain(env.machine, dom, env.domains, rdom, rport)?;
            env.guest(dom)
                .write_u32(at(offset_of!(evtchn_bind_interdomain, local_port)), lport)
                .map_err(fault)
        }
        EVTCHNOP_bind_virq => {
            let gm = env.guest(dom);
            let virq = gm
                .read_u32(at(offset_of!(evtchn_bind_virq, virq)))
                .map_err(fault)?;
            let vcpu = gm
                .read_u32(at(offset_of!(evtchn_bind_virq, vcpu)))
                .map_err(fault)?;
            if virq >= NR_VIRQS || (virq_is_global(virq) && vcpu != 0) {
                return Err(XEN_EINVAL);
            }
            if vcpu != 0 {
                return Err(XEN_ENOENT);
            }
            if dom.evtchn.virqs[virq as usize] != 0 {
                return Err(XEN_EEXIST);
            }
            let port = dom.evtchn.alloc(Binding::Virq(virq)).ok_or(XEN_ENOSPC)?;
            dom.evtchn.virqs[virq as usize] = port;
            env.guest(dom)
                .write_u32(at(offset_of!(evtchn_bind_virq, port)), port)
                .map_err(fault)
        }
        EVTCHNOP_bind_ipi => {
            let vcpu = env
                .guest(dom)
                .read_u32(at(offset_of!(evtchn_bind_ipi, vcpu)))
                .map_err(fault)?;
            if vcpu != 0 {
                return Err(XEN_ENOENT);
            }
            let port = dom.evtchn.alloc(Binding::Ipi).ok_or(XEN_ENOSPC)?;
            env.guest(dom)
                .write_u32(at(offset_of!(evtchn_bind_ipi, port)), port)
                .map_err(fault)
        }
        EVTCHNOP_close => {
            let port = env
                .guest(dom)
                .read_u32(at(offset_of!(evtchn_close, port)))
                .map_err(fault)?;
            event_channel::close(env.machine, dom, env.domains, port)
        }
        EVTCHNOP_send => {
            let port = env
                .guest(dom)
                .read_u32(at(offset_of!(evtchn_send, port)))
                .map_err(fault)?;
            env.effects.resched |= event_channel::send(env.machine, dom, env.domains, port)?;
            Ok(())
        }
        EVTCHNOP_status => status(env, dom, arg),
        EVTCHNOP_unmask => {
            let port = env
                .guest(dom)
                .read_u32(at(offset_of!(evtchn_unmask, port)))
                .map_err(fault)?;
            if !dom.evtchn.is_valid(port) {
                return Err(XEN_EINVAL);
            }
            event_channel::unmask(env.machine, dom, port);
            Ok(())
        }
        EVTCHNOP_bind_vcpu => {
            let gm = env.guest(dom);
            let port = gm
                .read_u32(at(offset_of!(evtchn_bind_vcpu, port)))
                .map_err(fault)?;
            let vcpu = gm
                .read_u32(at(offset_of!(evtchn_bind_vcpu, vcpu)))
                .map_err(fault)?;
            if vcpu != 0 {
                return Err(XEN_ENOENT);
            }
            if !dom.evtchn.is_valid(port) {
                return Err(XEN_EINVAL);
            }
            match dom.evtchn.get(port).map(|c| c.binding) {
                Some(Binding::Virq(v)) if virq_is_global(v) => Ok(()),
                Some(Binding::Unbound { .. } | Binding::Interdomain { .. }) => Ok(()),
                _ => Err(XEN_EINVAL),
            }
        }
        EVTCHNOP_reset => {
            let target = env
                .guest(dom)
                .read_u16(at(offset_of!(evtchn_reset, dom)))
                .map_err(fault)?;
            let target = if target == DOMID_SELF { dom.id } else { target };
            if target == dom.id {
                event_channel::close_all_ports(env.machine, dom, env.domains);
                return Ok(());
            }
            if !dom.privileged {
                return Err(XEN_EPERM);
            }
            let Some(mut t) = env.domains.take(target) else {
                return Err(XEN_ESRCH);
            };
            // The caller may be one of the target's peers: it is out of `domains`
            // while its hypercall runs, so hand it over too.
            event_channel::close_all_ports_with(env.machine, &mut t, env.domains, Some(dom));
            env.domains.put(t);
            Ok(())
        }
        // No physical interrupts are routed to guests: every PIRQ is out of range.
        EVTCHNOP_bind_pirq => Err(XEN_EINVAL),
        // The FIFO ABI is not offered: guests (Linux, Mini-OS) fall back to 2-level.
        EVTCHNOP_init_control | EVTCHNOP_expand_array | EVTCHNOP_set_priority => Err(XEN_ENOSYS),
        _ => Err(XEN_ENOSYS),
    }
}

/// Runs `f` on domain `id` (`DOMID_SELF` or the caller's own id: the caller). Another
/// domain needs privilege when `needs_privilege` (-EPERM), and must exist (-ESRCH).
fn with_domain<R>(
    dom: &mut Domain,
    others: &mut Domains,
    id: domid_t,
    needs_privilege: bool,
    f: impl FnOnce(&mut Domain) -> R,
) -> Result<R> {
    let id = lookup::resolve(dom, id);
    if needs_privilege && !lookup::may_act_on(dom, id) && others.get(id).is_some() {
        return Err(XEN_EPERM);
    }
    lookup::this_or_caller(dom, others, id)
        .map(f)
        .ok_or(XEN_ESRCH)
}

fn status<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, arg: u64) -> Result<()> {
    let at = |off: usize| arg.wrapping_add(off as u64);
    let gm = GuestMemory {
        machine: &mut *env.machine,
        l4: dom.l4,
    };
    let target = gm
        .read_u16(at(offset_of!(evtchn_status, dom)))
        .map_err(fault)?;
    let port = gm
        .read_u32(at(offset_of!(evtchn_status, port)))
        .map_err(fault)?;
    let (st, vcpu, a, b) = with_domain(dom, env.domains, target, true, |d| {
        if !d.evtchn.is_valid(port) {
            return Err(XEN_EINVAL);
        }
        let c = d.evtchn.get(port);
        let vcpu = c.map_or(0, |c| c.vcpu);
        Ok(match c.map(|c| c.binding) {
            None | Some(Binding::Free | Binding::Reserved) => (EVTCHNSTAT_closed, vcpu, 0, 0),
            Some(Binding::Unbound { remote }) => (EVTCHNSTAT_unbound, vcpu, remote as u32, 0),
            Some(Binding::Interdomain { remote, port }) => {
                (EVTCHNSTAT_interdomain, vcpu, remote as u32, port)
            }
            Some(Binding::Virq(v)) => (EVTCHNSTAT_virq, vcpu, v, 0),
            Some(Binding::Ipi) => (EVTCHNSTAT_ipi, vcpu, 0, 0),
        })
    })??;
    let mut gm = GuestMemory {
        machine: &mut *env.machine,
        l4: dom.l4,
    };
    let u = offset_of!(evtchn_status, u);
    gm.write_u32(at(offset_of!(evtchn_status, status)), st)
        .map_err(fault)?;
    gm.write_u32(at(offset_of!(evtchn_status, vcpu)), vcpu)
        .map_err(fault)?;
    match st {
        EVTCHNSTAT_unbound => gm.write(at(u), &(a as u16).to_le_bytes()),
        EVTCHNSTAT_interdomain => gm
            .write(at(u), &(a as u16).to_le_bytes())
            .and_then(|()| gm.write_u32(at(u + 4), b)),
        EVTCHNSTAT_virq => gm.write_u32(at(u), a),
        _ => Ok(()),
    }
    .map_err(fault)
}
