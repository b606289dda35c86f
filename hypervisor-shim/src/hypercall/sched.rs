//! `sched_op` (`sched.h`; Xen's xen/common/sched/core.c): yield, block, poll,
//! shutdown, shutdown_code and remote_shutdown. Blocking and polling take the vCPU off
//! the CPU until an event (or the poll's timeout); the scheduler (`scheduler.rs`)
//! runs another domain meanwhile.

use alloc::vec::Vec;
use core::mem::offset_of;
use xen_sys::*;

use super::env::{err, Env};
use crate::common::event_channel as evtchn;
use crate::domain::{Domain, RunState};
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
) -> i64 {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        SCHEDOP_yield => yield_cpu(env, dom),
        SCHEDOP_block => block(env, dom),
        SCHEDOP_poll => poll(env, dom, arg),
        SCHEDOP_remote_shutdown => remote_shutdown(env, dom, arg),
        SCHEDOP_shutdown | SCHEDOP_shutdown_code => {
            let Ok(reason) = env
                .guest(dom)
                .read_u32(arg.wrapping_add(offset_of!(sched_shutdown, reason) as u64))
            else {
                return err(XEN_EFAULT);
            };
            if cmd == SCHEDOP_shutdown as u64 {
                shutdown(dom, reason)
            } else if reason > SHUTDOWN_MAX {
                err(XEN_EINVAL)
            } else {
                dom.shutdown_code = Some(reason);
                0
            }
        }
        _ => err(XEN_ENOSYS),
    }
}

/// The pre-3.0.2 interface: the argument is the value itself, not a pointer.
pub fn sched_op_compat<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> i64 {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        SCHEDOP_yield => yield_cpu(env, dom),
        SCHEDOP_block => block(env, dom),
        SCHEDOP_shutdown => shutdown(dom, u32::try_from(arg).unwrap_or(u32::MAX)),
        _ => err(XEN_ENOSYS),
    }
}

fn shutdown(dom: &mut Domain, reason: u32) -> i64 {
    if reason > SHUTDOWN_MAX {
        return err(XEN_EINVAL);
    }
    // A crash request is always a crash; otherwise a recorded shutdown_code wins.
    let reason = match (reason, dom.shutdown_code) {
        (SHUTDOWN_crash, _) => SHUTDOWN_crash,
        (_, Some(code)) => code,
        _ => reason,
    };
    dom.state = RunState::Shutdown(reason);
    0
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
fn poll<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, arg: u64) -> i64 {
    let at = |off: usize| arg.wrapping_add(off as u64);
    let g = env.guest(dom);
    let (Ok(ports), Ok(nr), Ok(timeout)) = (
        g.read_u64(at(offset_of!(sched_poll, ports))),
        g.read_u32(at(offset_of!(sched_poll, nr_ports))),
        g.read_u64(at(offset_of!(sched_poll, timeout))),
    ) else {
        return err(XEN_EFAULT);
    };
    if nr > MAX_POLL_PORTS {
        return err(XEN_EINVAL);
    }
    let mut list = Vec::with_capacity(nr as usize);
    for i in 0..nr as u64 {
        let Ok(port) = g.read_u32(ports.wrapping_add(4 * i)) else {
            return err(XEN_EFAULT);
        };
        if port >= dom.evtchn.max_ports() {
            return err(XEN_EINVAL);
        }
        list.push(port);
    }
    if list
        .iter()
        .any(|&p| evtchn::is_pending(env.machine, dom, p))
    {
        return 0;
    }
    dom.sched.poll = Some(Poll {
        ports: list,
        deadline: (timeout != 0).then_some(timeout),
    });
    env.effects.resched = true;
    0
}

/// `SCHEDOP_remote_shutdown`: the control domain shuts another down.
fn remote_shutdown<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, arg: u64) -> i64 {
    let at = |off: usize| arg.wrapping_add(off as u64);
    let g = env.guest(dom);
    let (Ok(id), Ok(reason)) = (
        g.read_u16(at(offset_of!(sched_remote_shutdown, domain_id))),
        g.read_u32(at(offset_of!(sched_remote_shutdown, reason))),
    ) else {
        return err(XEN_EFAULT);
    };
    if id == dom.id || id == DOMID_SELF {
        if !dom.privileged {
            return err(XEN_EPERM);
        }
        return shutdown(dom, reason);
    }
    let Some(target) = env.domains.get_mut(id) else {
        return err(XEN_ESRCH);
    };
    if !dom.privileged {
        return err(XEN_EPERM);
    }
    if target.dead || !target.runnable() {
        // Already shut down: nothing more to do, as Xen.
        return 0;
    }
    let r = shutdown(target, reason);
    env.effects.resched = true;
    r
}

#[cfg(test)]
mod tests {
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
