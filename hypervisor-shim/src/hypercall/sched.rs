//! `sched_op` (`sched.h`) as far as one vCPU per domain and no event sources need:
//! yield, block, shutdown and shutdown_code. Poll and remote_shutdown arrive with
//! multiple domains.

use core::mem::offset_of;
use xen_sys::*;

use super::{err, Env};
use crate::domain::{Domain, RunState};
use crate::machine::{write_bytes, Machine};

pub fn sched_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> i64 {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        SCHEDOP_yield => 0,
        SCHEDOP_block => block(env, dom),
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
        SCHEDOP_yield => 0,
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

/// Blocking enables event delivery (it clears `evtchn_upcall_mask`, as Xen does). There
/// is no event source yet, so the vCPU wakes at once: callers loop on their condition.
fn block<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain) -> i64 {
    let mask = offset_of!(shared_info, vcpu_info) + offset_of!(vcpu_info, evtchn_upcall_mask);
    write_bytes(env.machine, dom.shared_info, mask, &[0]);
    0
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
