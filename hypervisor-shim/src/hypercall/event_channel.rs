//! `event_channel_op` (`event_channel.h`; Xen's xen/common/event_channel.c): binding,
//! sending, closing and inspecting ports, 2-level ABI. Error codes are Xen 4.17's,
//! in Xen's order of checks.
//!
//! Rules the shim enforces for hostile guests: a domain acts on its own ports only
//! (another domain's need privilege: `alloc_unbound`, `status`, `reset`); it binds only
//! to a port left unbound *for it*; ports are limited per domain (`EventChannels`); an
//! operation on a port that is not in use is -EINVAL and changes nothing.

use xen_sys::*;

use super::env::Env;
use super::error::{Error, Result};
use super::guest::{copy_field_to_guest, field_addr};
use crate::common::event_channel;
use crate::domain::lookup;
use crate::domain::Domain;
use crate::domain::Domains;
use crate::machine::Machine;
use crate::state::evtchn::Binding;
use xen_sys::domid_t;

/// VIRQs delivered per vCPU; all others are global (bound on vCPU 0 only).
fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

/// The pre-3.2 interface: one `evtchn_op` struct, command first.
pub fn event_channel_op_compat<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
) -> Result<i64> {
    let op: evtchn_op = env.read(dom, arg)?;
    event_channel_op(env, dom, op.cmd as u64, field_addr(arg, &op, &op.u))
}

pub fn event_channel_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> Result<i64> {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        EVTCHNOP_alloc_unbound => {
            let mut op: evtchn_alloc_unbound = env.read(dom, arg)?;
            let remote = lookup::resolve(dom, op.remote_dom);
            op.port = with_domain(dom, env.domains, op.dom, true, |d| {
                if d.dead {
                    return Err(XEN_EINVAL);
                }
                d.evtchn
                    .alloc(Binding::Unbound { remote })
                    .ok_or(XEN_ENOSPC)
            })??;
            env.write(dom, arg, &op)?;
        }
        EVTCHNOP_bind_interdomain => {
            let mut op: evtchn_bind_interdomain = env.read(dom, arg)?;
            op.local_port = event_channel::bind_interdomain(
                env.machine,
                dom,
                env.domains,
                op.remote_dom,
                op.remote_port,
            )?;
            copy_field_to_guest!(env, dom, arg, op.local_port)?;
        }
        EVTCHNOP_bind_virq => {
            let mut op: evtchn_bind_virq = env.read(dom, arg)?;
            let (virq, vcpu) = (op.virq, op.vcpu);
            if virq >= NR_VIRQS || (virq_is_global(virq) && vcpu != 0) {
                return Err(XEN_EINVAL.into());
            }
            if vcpu != 0 {
                return Err(XEN_ENOENT.into());
            }
            if dom.evtchn.virqs[virq as usize] != 0 {
                return Err(XEN_EEXIST.into());
            }
            op.port = dom.evtchn.alloc(Binding::Virq(virq)).ok_or(XEN_ENOSPC)?;
            dom.evtchn.virqs[virq as usize] = op.port;
            env.write(dom, arg, &op)?;
        }
        EVTCHNOP_bind_ipi => {
            let mut op: evtchn_bind_ipi = env.read(dom, arg)?;
            if op.vcpu != 0 {
                return Err(XEN_ENOENT.into());
            }
            op.port = dom.evtchn.alloc(Binding::Ipi).ok_or(XEN_ENOSPC)?;
            env.write(dom, arg, &op)?;
        }
        EVTCHNOP_close => {
            let op: evtchn_close = env.read(dom, arg)?;
            if let Some(Binding::Pirq(pirq)) = dom.evtchn.get(op.port).map(|c| c.binding) {
                env.irqs.unbind(pirq);
            }
            event_channel::close(env.machine, dom, env.domains, op.port)?;
        }
        EVTCHNOP_send => {
            let op: evtchn_send = env.read(dom, arg)?;
            env.effects.resched |= event_channel::send(env.machine, dom, env.domains, op.port)?;
        }
        EVTCHNOP_status => status(env, dom, arg)?,
        EVTCHNOP_unmask => {
            let op: evtchn_unmask = env.read(dom, arg)?;
            if !dom.evtchn.is_valid(op.port) {
                return Err(XEN_EINVAL.into());
            }
            event_channel::unmask(env.machine, dom, op.port);
        }
        EVTCHNOP_bind_vcpu => {
            let op: evtchn_bind_vcpu = env.read(dom, arg)?;
            if op.vcpu != 0 {
                return Err(XEN_ENOENT.into());
            }
            if !dom.evtchn.is_valid(op.port) {
                return Err(XEN_EINVAL.into());
            }
            match dom.evtchn.get(op.port).map(|c| c.binding) {
                Some(Binding::Virq(v)) if virq_is_global(v) => {}
                Some(Binding::Unbound { .. } | Binding::Interdomain { .. } | Binding::Pirq(_)) => {}
                _ => return Err(XEN_EINVAL.into()),
            }
        }
        EVTCHNOP_reset => {
            let op: evtchn_reset = env.read(dom, arg)?;
            let target = lookup::resolve(dom, op.dom);
            if target == dom.id {
                event_channel::close_all_ports(env.machine, dom, env.domains);
                return Ok(0);
            }
            if !dom.privileged {
                return Err(XEN_EPERM.into());
            }
            let Some(mut t) = env.domains.take(target) else {
                return Err(XEN_ESRCH.into());
            };
            // The caller may be one of the target's peers: it is out of `domains`
            // while its hypercall runs, so hand it over too.
            event_channel::close_all_ports_with(env.machine, &mut t, env.domains, Some(dom));
            env.domains.put(t);
        }
        EVTCHNOP_bind_pirq => {
            let mut op: evtchn_bind_pirq = env.read(dom, arg)?;
            let pirq = op.pirq;
            // Xen's order: the pirq's range, the domain's access to it, a binding.
            if pirq >= crate::devices::nr_pirqs(dom.privileged) {
                return Err(XEN_EINVAL.into());
            }
            if !dom.privileged {
                return Err(XEN_EPERM.into());
            }
            let Some(line) = env.irqs.line(pirq).copied() else {
                return Err(XEN_EINVAL.into());
            };
            // A port closed by `EVTCHNOP_reset` or teardown leaves a stale record.
            if line.owner == Some(dom.id)
                && line.port != 0
                && dom.evtchn.get(line.port).map(|c| c.binding) != Some(Binding::Pirq(pirq))
            {
                env.irqs.unbind(pirq);
            }
            env.irqs.can_bind(dom.id, pirq)?;
            op.port = dom.evtchn.alloc(Binding::Pirq(pirq)).ok_or(XEN_ENOSPC)?;
            env.irqs.bind(dom.id, pirq, op.port)?;
            env.write(dom, arg, &op)?;
        }
        // The FIFO ABI is not offered: guests (Linux, Mini-OS) fall back to 2-level.
        EVTCHNOP_init_control | EVTCHNOP_expand_array | EVTCHNOP_set_priority => {
            return Err(XEN_ENOSYS.into())
        }
        _ => return Err(XEN_ENOSYS.into()),
    }
    Ok(0)
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
        return Err(XEN_EPERM.into());
    }
    lookup::this_or_caller(dom, others, id)
        .map(f)
        .ok_or(Error::Errno(XEN_ESRCH))
}

fn status<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, arg: u64) -> Result<()> {
    let mut op: evtchn_status = env.read(dom, arg)?;
    let port = op.port;
    let binding = with_domain(dom, env.domains, op.dom, true, |d| {
        if !d.evtchn.is_valid(port) {
            return Err(XEN_EINVAL);
        }
        let c = d.evtchn.get(port);
        Ok((c.map_or(0, |c| c.vcpu), c.map(|c| c.binding)))
    })??;
    (op.vcpu, op.status) = match binding {
        (vcpu, None | Some(Binding::Free | Binding::Reserved)) => (vcpu, EVTCHNSTAT_closed),
        (vcpu, Some(Binding::Unbound { .. })) => (vcpu, EVTCHNSTAT_unbound),
        (vcpu, Some(Binding::Interdomain { .. })) => (vcpu, EVTCHNSTAT_interdomain),
        (vcpu, Some(Binding::Virq(_))) => (vcpu, EVTCHNSTAT_virq),
        (vcpu, Some(Binding::Ipi)) => (vcpu, EVTCHNSTAT_ipi),
        (vcpu, Some(Binding::Pirq(_))) => (vcpu, EVTCHNSTAT_pirq),
    };
    copy_field_to_guest!(env, dom, arg, op.status)?;
    copy_field_to_guest!(env, dom, arg, op.vcpu)?;
    // The union's variant for the status, written on its own.
    let u = field_addr(arg, &op, &op.u);
    match binding.1 {
        Some(Binding::Unbound { remote }) => env.write(
            dom,
            u,
            &evtchn_status__bindgen_ty_1__bindgen_ty_1 { dom: remote },
        ),
        Some(Binding::Interdomain { remote, port }) => env.write(
            dom,
            u,
            &evtchn_status__bindgen_ty_1__bindgen_ty_2 { dom: remote, port },
        ),
        Some(Binding::Virq(v) | Binding::Pirq(v)) => env.write(dom, u, &v),
        _ => Ok(()),
    }
}
