//! `HYPERVISOR_vcpu_op` (`xen/include/public/vcpu.h`): is_up, the one-shot and periodic
//! timers, register_vcpu_info and get_runstate_info.

use core::ffi::c_void;

use xen_sys::*;

use super::{check, hypercall, XenError};

/// `vcpu_op(cmd, vcpu, arg)` with a raw argument pointer.
///
/// # Safety
/// `arg` must point to the structure `cmd` expects (or be ignored by `cmd`).
pub unsafe fn vcpu_op(cmd: u32, vcpu: u32, arg: *mut c_void) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe {
        hypercall(
            __HYPERVISOR_vcpu_op,
            u64::from(cmd),
            u64::from(vcpu),
            arg as u64,
            0,
            0,
        )
    }
}

fn op<T>(cmd: u32, vcpu: u32, arg: Option<&mut T>) -> Result<i64, XenError> {
    let arg = arg.map_or(core::ptr::null_mut(), |a| a as *mut T as *mut c_void);
    // SAFETY: `arg` is null or the structure for `cmd` (each wrapper pairs them), alive
    // and exclusively borrowed across the call.
    check(unsafe { vcpu_op(cmd, vcpu, arg) })
}

/// `VCPUOP_is_up`: whether `vcpu` is running (not down).
pub fn vcpu_is_up(vcpu: u32) -> Result<bool, XenError> {
    op::<()>(VCPUOP_is_up, vcpu, None).map(|r| r != 0)
}

/// `VCPUOP_set_singleshot_timer`: `VIRQ_TIMER` at system time `timeout_abs_ns`. With
/// `future`, a deadline already past fails with `ETIME` instead of firing at once.
pub fn vcpu_set_singleshot_timer(
    vcpu: u32,
    timeout_abs_ns: u64,
    future: bool,
) -> Result<(), XenError> {
    let mut t = vcpu_set_singleshot_timer {
        timeout_abs_ns,
        flags: if future { VCPU_SSHOTTMR_future } else { 0 },
    };
    op(VCPUOP_set_singleshot_timer, vcpu, Some(&mut t)).map(|_| ())
}

/// `VCPUOP_stop_singleshot_timer`.
pub fn vcpu_stop_singleshot_timer(vcpu: u32) -> Result<(), XenError> {
    op::<()>(VCPUOP_stop_singleshot_timer, vcpu, None).map(|_| ())
}

/// `VCPUOP_set_periodic_timer`: `VIRQ_TIMER` every `period_ns` (Xen starts PV vCPUs
/// with a 10 ms one).
pub fn vcpu_set_periodic_timer(vcpu: u32, period_ns: u64) -> Result<(), XenError> {
    let mut t = vcpu_set_periodic_timer { period_ns };
    op(VCPUOP_set_periodic_timer, vcpu, Some(&mut t)).map(|_| ())
}

/// `VCPUOP_stop_periodic_timer`.
pub fn vcpu_stop_periodic_timer(vcpu: u32) -> Result<(), XenError> {
    op::<()>(VCPUOP_stop_periodic_timer, vcpu, None).map(|_| ())
}

/// `VCPUOP_register_vcpu_info`: moves `vcpu`'s `vcpu_info` out of shared_info to
/// machine frame `mfn` at byte `offset` (the structure must not cross a page).
pub fn vcpu_register_vcpu_info(vcpu: u32, mfn: u64, offset: u32) -> Result<(), XenError> {
    let mut r = vcpu_register_vcpu_info {
        mfn,
        offset,
        rsvd: 0,
    };
    op(VCPUOP_register_vcpu_info, vcpu, Some(&mut r)).map(|_| ())
}

/// `VCPUOP_get_runstate_info`: `vcpu`'s state (`RUNSTATE_*`) and the time it has spent
/// in each.
pub fn vcpu_get_runstate_info(vcpu: u32) -> Result<vcpu_runstate_info, XenError> {
    let mut r = vcpu_runstate_info::default();
    op(VCPUOP_get_runstate_info, vcpu, Some(&mut r))?;
    Ok(r)
}
