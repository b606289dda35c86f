//! `HYPERVISOR_sched_op` (`xen/include/public/sched.h`): yield, block, poll, shutdown,
//! shutdown_code and remote_shutdown.

use core::ffi::c_void;

use xen_sys::*;

use super::event_channel::Port;
use super::{check, hypercall, XenError};

/// `sched_op(cmd, arg)` with a raw argument pointer.
///
/// # Safety
/// `arg` must point to the structure `cmd` expects (or be ignored by `cmd`).
pub unsafe fn sched_op(cmd: u32, arg: *const c_void) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall(__HYPERVISOR_sched_op, u64::from(cmd), arg as u64, 0, 0, 0) }
}

fn op<T>(cmd: u32, arg: &T) -> Result<(), XenError> {
    // SAFETY: `arg` is the structure for `cmd` (each wrapper pairs them), alive across
    // the call; sched_op only reads its argument.
    check(unsafe { sched_op(cmd, arg as *const T as *const c_void) }).map(|_| ())
}

/// `SCHEDOP_yield`: lets other vCPUs run; we stay runnable.
pub fn sched_yield() {
    // SAFETY: no argument.
    unsafe { sched_op(SCHEDOP_yield, core::ptr::null()) };
}

/// `SCHEDOP_block`: sleeps until an event is pending for us. Called with events masked
/// (`evtchn_upcall_mask` set), Xen unmasks them and checks for pending events
/// atomically before blocking, so an event that arrives just before cannot be missed;
/// the upcall then runs as the hypercall returns.
pub fn sched_block() -> Result<(), XenError> {
    // SAFETY: no argument.
    check(unsafe { sched_op(SCHEDOP_block, core::ptr::null()) }).map(|_| ())
}

/// `SCHEDOP_poll`: sleeps until one of `ports` is pending, or until system time
/// `timeout_abs_ns` (0: no timeout). Does not deliver an upcall and leaves the event
/// mask alone; returns at once if a port is already pending.
pub fn sched_poll(ports: &[Port], timeout_abs_ns: u64) -> Result<(), XenError> {
    let arg = sched_poll {
        ports: __guest_handle_evtchn_port_t {
            p: ports.as_ptr() as *mut Port,
        },
        nr_ports: ports.len() as u32,
        timeout: timeout_abs_ns,
    };
    op(SCHEDOP_poll, &arg)
}

/// `SCHEDOP_shutdown` with a `SHUTDOWN_*` reason. Does not return.
pub fn shutdown(reason: u32) -> ! {
    let arg = sched_shutdown { reason };
    loop {
        let _ = op(SCHEDOP_shutdown, &arg);
    }
}

/// `SCHEDOP_shutdown_code`: the reason to report should the domain shut down later
/// without one (e.g. when it crashes during a suspend).
pub fn sched_shutdown_code(reason: u32) -> Result<(), XenError> {
    op(SCHEDOP_shutdown_code, &sched_shutdown { reason })
}

/// `SCHEDOP_remote_shutdown` (privileged): shuts domain `domain_id` down with `reason`.
pub fn sched_remote_shutdown(domain_id: domid_t, reason: u32) -> Result<(), XenError> {
    op(
        SCHEDOP_remote_shutdown,
        &sched_remote_shutdown { domain_id, reason },
    )
}
