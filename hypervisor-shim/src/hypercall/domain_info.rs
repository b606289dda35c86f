//! The `xen_domctl_getdomaininfo` record (`domctl.h`) that `XEN_DOMCTL_getdomaininfo`
//! and `XEN_SYSCTL_getdomaininfolist` report for a domain: Xen's `getdomaininfo()` in
//! xen/common/domctl.c, for a PV domain with one vCPU.

use xen_sys::tools::{
    xen_domctl_getdomaininfo, XEN_DOMINF_blocked, XEN_DOMINF_dying, XEN_DOMINF_paused,
    XEN_DOMINF_running, XEN_DOMINF_shutdown, XEN_DOMINF_shutdownshift,
};
use xen_sys::SHUTDOWN_crash;

use crate::domain::{Domain, RunState};

/// Xen's `SHUTDOWN_CODE_INVALID`: the code of a domain that has recorded none. Xen
/// shifts it into the flags as it is, so a running domain reports bits 16..31 set.
const SHUTDOWN_CODE_INVALID: u32 = !0;

/// The record for `dom` at system time `now`; `running`: it is the domain on the CPU
/// (the caller: with one physical CPU no other domain runs during a hypercall).
pub fn record(dom: &Domain, running: bool, now: u64) -> xen_domctl_getdomaininfo {
    // A torn-down domain has no vCPU left; an offline one (VCPUOP_down) is not counted.
    let online = !dom.dead && !dom.sched.down;
    let mut flags = 0;
    if online {
        // A vCPU is blocked in SCHEDOP_block and in SCHEDOP_poll alike (VPF_blocked).
        if dom.sched.blocked || dom.sched.poll.is_some() {
            flags |= XEN_DOMINF_blocked;
        }
        if running {
            flags |= XEN_DOMINF_running;
        }
    }
    if dom.dead {
        flags |= XEN_DOMINF_dying;
    }
    let (shut_down, code) = match dom.state {
        RunState::Shutdown(reason) => (true, reason),
        // The shim crashes a domain the way Xen's domain_crash() does: a shutdown
        // with reason crash.
        RunState::Crashed => (true, SHUTDOWN_crash),
        RunState::Runnable => (false, dom.shutdown_code.unwrap_or(SHUTDOWN_CODE_INVALID)),
    };
    if shut_down {
        flags |= XEN_DOMINF_shutdown;
    }
    if dom.sched.pause_count > 0 {
        flags |= XEN_DOMINF_paused;
    }
    flags |= code << XEN_DOMINF_shutdownshift;

    // vCPU 0 is the only one (`max_vcpu_id` 0). Left zero, as for a PV domain in Xen's
    // default configuration: outstanding/shared/paged pages, ssidref (no XSM policy),
    // the handle (set by XEN_DOMCTL_setdomainhandle, which the shim does not have),
    // cpupool 0, arch_config (no emulated devices). gpaddr_bits is also left zero: the
    // shim does not report the host's physical address width to its domains.
    xen_domctl_getdomaininfo {
        domain: dom.id,
        flags,
        tot_pages: dom.tot_pages,
        max_pages: dom.max_pages,
        // For a PV domain the GMFN is the machine frame.
        shared_info_frame: dom.shared_info,
        cpu_time: dom.sched.runstate.running_time(now),
        nr_online_vcpus: u32::from(online),
        max_vcpu_id: 0,
        ..Default::default()
    }
}
