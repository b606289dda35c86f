//! `sched_op` (`sched.h`; Xen's xen/common/sched/core.c): yield, block, poll,
//! shutdown, shutdown_code and remote_shutdown. Blocking and polling take the vCPU off
//! the CPU until an event (or the poll's timeout); the scheduler (`scheduler.rs`)
//! runs another domain meanwhile.

use alloc::vec::Vec;
use xen_sys::*;

use super::env::Env;
use super::error::Result;
use super::guest::element;
use crate::common::event_channel as evtchn;
use crate::domain::{lookup, Domain, RunState};
use crate::machine::Machine;
use crate::state::sched::Poll;
use crate::state::vcpu::VcpuInfoAt;

/// Ports one poll may wait on (Xen's "fairly arbitrary limit").
const MAX_POLL_PORTS: u32 = 128;

pub fn sched_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> Result<i64> {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        SCHEDOP_yield => Ok(yield_cpu(env, dom)),
        SCHEDOP_block => Ok(block(env, dom)),
        SCHEDOP_poll => poll(env, dom, arg),
        SCHEDOP_remote_shutdown => remote_shutdown(env, dom, arg),
        SCHEDOP_shutdown | SCHEDOP_shutdown_code => {
            let op: sched_shutdown = env.read(dom, arg)?;
            if cmd == SCHEDOP_shutdown as u64 {
                shutdown(dom, op.reason)
            } else if op.reason > SHUTDOWN_MAX {
                Err(XEN_EINVAL.into())
            } else {
                dom.shutdown_code = Some(op.reason);
                Ok(0)
            }
        }
        _ => Err(XEN_ENOSYS.into()),
    }
}

/// The pre-3.0.2 interface: the argument is the value itself, not a pointer.
pub fn sched_op_compat<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> Result<i64> {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        SCHEDOP_yield => Ok(yield_cpu(env, dom)),
        SCHEDOP_block => Ok(block(env, dom)),
        SCHEDOP_shutdown => shutdown(dom, u32::try_from(arg).unwrap_or(u32::MAX)),
        _ => Err(XEN_ENOSYS.into()),
    }
}

fn shutdown(dom: &mut Domain, reason: u32) -> Result<i64> {
    if reason > SHUTDOWN_MAX {
        return Err(XEN_EINVAL.into());
    }
    // A crash request is always a crash; otherwise a recorded shutdown_code wins.
    let reason = match (reason, dom.shutdown_code) {
        (SHUTDOWN_crash, _) => SHUTDOWN_crash,
        (_, Some(code)) => code,
        _ => reason,
    };
    dom.state = RunState::Shutdown(reason);
    Ok(0)
}

fn yield_cpu<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain) -> i64 {
    dom.sched.yielded = true;
    env.effects.resched = true;
    0
}

/// `do_block`: enables event delivery (clears `evtchn_upcall_mask`) and sleeps unless
/// an event is already due, checked after blocking so no wake-up is lost.
fn block<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain) -> i64 {
    dom.vcpu_info
        .write_u8(env.machine, VcpuInfoAt::UPCALL_MASK, 0);
    dom.sched.blocked = !evtchn::upcall_due(env.machine, dom);
    env.effects.resched = true;
    0
}

/// `do_poll`: sleeps until one of the ports is pending (masked or not) or the timeout
/// (absolute system time; 0 = none) passes; returns 0 either way.
fn poll<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, arg: u64) -> Result<i64> {
    let op: sched_poll = env.read(dom, arg)?;
    if op.nr_ports > MAX_POLL_PORTS {
        return Err(XEN_EINVAL.into());
    }
    let ports = op.ports.p as u64;
    let mut list = Vec::with_capacity(op.nr_ports as usize);
    for i in 0..op.nr_ports as u64 {
        let port: evtchn_port_t = env.read(dom, element::<evtchn_port_t>(ports, i))?;
        if port >= dom.evtchn.max_ports() {
            return Err(XEN_EINVAL.into());
        }
        list.push(port);
    }
    if list
        .iter()
        .any(|&p| evtchn::is_pending(env.machine, dom, p))
    {
        return Ok(0);
    }
    dom.sched.poll = Some(Poll {
        ports: list,
        deadline: (op.timeout != 0).then_some(op.timeout),
    });
    env.effects.resched = true;
    Ok(0)
}

/// `SCHEDOP_remote_shutdown`: the control domain shuts another down.
fn remote_shutdown<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
) -> Result<i64> {
    let op: sched_remote_shutdown = env.read(dom, arg)?;
    let id = lookup::resolve(dom, op.domain_id);
    if id == dom.id {
        if !dom.privileged {
            return Err(XEN_EPERM.into());
        }
        return shutdown(dom, op.reason);
    }
    let Some(target) = env.domains.get_mut(id) else {
        return Err(XEN_ESRCH.into());
    };
    if !dom.privileged {
        return Err(XEN_EPERM.into());
    }
    // Already shut down: nothing more to do, as Xen.
    if target.dead || !target.runnable() {
        return Ok(0);
    }
    let r = shutdown(target, op.reason);
    env.effects.resched = true;
    r
}

#[cfg(test)]
mod tests {
    use super::super::env::err;
    use super::super::tests::{World, SCRATCH};
    use super::*;

    fn shutdown_with(w: &mut World, cmd: u32, reason: u32) -> i64 {
        w.poke(SCRATCH, &reason.to_le_bytes());
        w.call(__HYPERVISOR_sched_op, &[cmd as u64, SCRATCH])
    }

    #[test]
    fn shutdown_records_each_reason() {
        for reason in 0..=SHUTDOWN_MAX {
            let mut w = World::new(true);
            assert_eq!(shutdown_with(&mut w, SCHEDOP_shutdown, reason), 0);
            assert_eq!(w.dom.state, RunState::Shutdown(reason));
        }
        let mut w = World::new(true);
        assert_eq!(shutdown_with(&mut w, SCHEDOP_shutdown, 99), err(XEN_EINVAL));
        assert_eq!(w.dom.state, RunState::Runnable);
        assert_eq!(
            w.call(__HYPERVISOR_sched_op, &[SCHEDOP_shutdown as u64, 0]),
            err(XEN_EFAULT)
        );
        assert_eq!(w.dom.state, RunState::Runnable);
    }

    #[test]
    fn shutdown_code_is_what_gets_reported() {
        let mut w = World::new(true);
        assert_eq!(
            shutdown_with(&mut w, SCHEDOP_shutdown_code, SHUTDOWN_reboot),
            0
        );
        assert_eq!(w.dom.state, RunState::Runnable);
        assert_eq!(
            shutdown_with(&mut w, SCHEDOP_shutdown, SHUTDOWN_poweroff),
            0
        );
        assert_eq!(w.dom.state, RunState::Shutdown(SHUTDOWN_reboot));
    }

    #[test]
    fn compat_interface_and_yield_block() {
        let mut w = World::new(true);
        assert_eq!(w.call(__HYPERVISOR_sched_op, &[SCHEDOP_yield as u64, 0]), 0);
        assert_eq!(w.call(__HYPERVISOR_sched_op, &[SCHEDOP_block as u64, 0]), 0);
        assert_eq!(w.call(__HYPERVISOR_sched_op, &[42, 0]), err(XEN_ENOSYS));
        assert_eq!(
            w.call(__HYPERVISOR_sched_op_compat, &[SCHEDOP_shutdown as u64, 3]),
            0
        );
        assert_eq!(w.dom.state, RunState::Shutdown(SHUTDOWN_crash));
    }
}
