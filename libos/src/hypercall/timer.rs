//! `HYPERVISOR_set_timer_op` (`xen/include/public/xen.h`): vCPU 0's one-shot timer.

use xen_sys::__HYPERVISOR_set_timer_op;

use super::{check, hypercall, XenError};

/// Arms the one-shot timer for system time `timeout_abs_ns` (nanoseconds since boot,
/// as in `vcpu_time_info`); 0 cancels it. A deadline in the past fires at once. On
/// expiry Xen sends `VIRQ_TIMER`.
pub fn set_timer_op(timeout_abs_ns: u64) -> Result<(), XenError> {
    // SAFETY: a value only.
    check(unsafe { hypercall(__HYPERVISOR_set_timer_op, timeout_abs_ns, 0, 0, 0, 0) }).map(|_| ())
}
