//! A domain as the shim tracks it: its memory, its page tables, its saved vCPU state and
//! whether it is still running.

use alloc::string::String;
use alloc::vec::Vec;

use crate::builder::BuiltDomain;
use crate::machine::Mfn;
use crate::trap::TrapFrame;
use crate::vcpu::Vcpu;

/// Why a domain stopped (`SHUTDOWN_*` of `sched.h`), or that it crashed on a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Runnable,
    /// Shut down through `SCHEDOP_shutdown` with this reason.
    Shutdown(u32),
    /// Killed by the shim: an exception with no handler, or a crash request.
    Crashed,
}

#[derive(Debug)]
pub struct Domain {
    pub id: u16,
    pub name: String,
    pub privileged: bool,
    pub p2m: Vec<Mfn>,
    pub l4: Mfn,
    pub user_l4: Option<Mfn>,
    pub shared_info: Mfn,
    pub regs: TrapFrame,
    pub state: RunState,
    /// The reason recorded by `SCHEDOP_shutdown_code`, reported if it shuts down.
    pub shutdown_code: Option<u32>,
    /// Hypercall numbers already reported as unimplemented (one log line each).
    pub reported_enosys: u64,
    /// vCPU 0's virtual CPU state (trap table, callbacks, mode, segment bases...).
    pub vcpu: Vcpu,
}

impl Domain {
    pub fn new(id: u16, name: String, privileged: bool, built: BuiltDomain) -> Self {
        Domain {
            id,
            name,
            privileged,
            p2m: built.p2m,
            l4: built.l4,
            user_l4: None,
            shared_info: built.shared_info,
            regs: built.regs,
            state: RunState::Runnable,
            shutdown_code: None,
            reported_enosys: 0,
            vcpu: Vcpu::new(),
        }
    }

    pub fn runnable(&self) -> bool {
        self.state == RunState::Runnable
    }

    /// The base pointer the vCPU runs on: the user one in guest user mode (Xen's
    /// `guest_table_user`), else the kernel one.
    pub fn active_l4(&self) -> Mfn {
        match (self.vcpu.kernel_mode, self.user_l4) {
            (false, Some(u)) => u,
            _ => self.l4,
        }
    }
}

/// Name of a `SHUTDOWN_*` reason as Xen's logs spell it.
pub fn shutdown_reason_name(reason: u32) -> &'static str {
    match reason {
        xen_sys::SHUTDOWN_poweroff => "poweroff",
        xen_sys::SHUTDOWN_reboot => "reboot",
        xen_sys::SHUTDOWN_suspend => "suspend",
        xen_sys::SHUTDOWN_crash => "crash",
        xen_sys::SHUTDOWN_watchdog => "watchdog",
        xen_sys::SHUTDOWN_soft_reset => "soft_reset",
        _ => "unknown",
    }
}
