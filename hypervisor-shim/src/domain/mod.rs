//! A domain as the shim tracks it: its memory, its page tables, its saved vCPU state and
//! whether it is still running.

pub mod domains;
pub mod lookup;
pub use domains::Domains;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use alloc::boxed::Box;

use crate::machine::Mfn;
use crate::state::evtchn::{EventChannels, DOM0_MAX_PORTS, DOMU_MAX_PORTS};
use crate::state::grant_table::{GrantTable, DEFAULT_MAX_FRAMES};
use crate::state::sched::VcpuSched;
use crate::state::vcpu::{FpuArea, Vcpu, VcpuInfoAt};
use crate::trap::TrapFrame;
use xen_sys::{domid_t, evtchn_port_t};

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
    pub id: domid_t,
    pub name: String,
    pub privileged: bool,
    pub l4: Mfn,
    /// The user-mode base pointer (`MMUEXT_NEW_USER_BASEPTR`; `None` = none): loaded
    /// when the guest returns to user mode. Holds an L4 type reference, as `l4` does.
    pub user_l4: Option<Mfn>,
    /// The LDT set by `MMUEXT_SET_LDT`: linear base and number of entries.
    pub ldt: (u64, u32),
    /// GDT frames set by `set_gdt` (each holds a segment-descriptor type reference)
    /// and the number of entries.
    pub gdt_frames: Vec<Mfn>,
    pub gdt_entries: u32,
    /// Frames in the domain's reservation (`XENMEM_current_reservation`).
    pub tot_pages: u64,
    /// The reservation's limit (`XENMEM_maximum_reservation`).
    pub max_pages: u64,
    pub shared_info: Mfn,
    pub regs: TrapFrame,
    pub state: RunState,
    /// The reason recorded by `SCHEDOP_shutdown_code`, reported if it shuts down.
    pub shutdown_code: Option<u32>,
    /// Hypercall numbers already reported as unimplemented (one log line each).
    pub reported_enosys: u64,
    /// vCPU 0's virtual CPU state (trap table, callbacks, mode, segment bases...).
    pub vcpu: Vcpu,
    /// Where vCPU 0's `vcpu_info` lives (in `shared_info` unless moved).
    pub vcpu_info: VcpuInfoAt,
    /// The guest page `vcpu_info` moved to (`VCPUOP_register_vcpu_info`): held with a
    /// writable type reference.
    pub vcpu_info_page: Option<Mfn>,
    pub evtchn: EventChannels,
    pub sched: VcpuSched,
    /// vCPU 0's x87/SSE state while another domain runs (FXSAVE format).
    pub fpu: Box<FpuArea>,
    /// Torn down: its memory and ports are gone, only this record is left until a
    /// privileged domain destroys it (or the machine ends).
    pub dead: bool,
    /// A privileged domain destroyed it: the record goes once it is torn down.
    pub destroy: bool,
    /// `console_io` output not yet printed: the current line (domUs only).
    pub console_line: Vec<u8>,
    /// Serial-console input waiting for `CONSOLEIO_read` (domain 0's only).
    pub console_input: VecDeque<u8>,
    /// Its grant table (frames, active entries) and its own mappings of others' grants.
    pub grant: GrantTable,
    /// A domU's xenstore and console rings as its builder laid them out (what
    /// `HVMOP_get_param` tells the control domain).
    pub rings: Option<BootRings>,
}

/// The xenstore and console pages of a domU (pseudo-physical frames, as in its P2M)
/// and their event channels (its unbound ports for domain 0; 0 when the builder
/// allocated none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootRings {
    pub store_pfn: u64,
    pub store_evtchn: evtchn_port_t,
    pub console_pfn: u64,
    pub console_evtchn: evtchn_port_t,
}

/// What a domain starts from: what its builder laid out.
#[derive(Clone, Copy, Debug)]
pub struct Initial {
    pub l4: Mfn,
    pub shared_info: Mfn,
    /// The registers it enters with.
    pub regs: TrapFrame,
    /// Its reservation.
    pub nr_pages: u64,
}

impl Domain {
    pub fn new(id: domid_t, name: String, privileged: bool, built: Initial) -> Self {
        let nr_pages = built.nr_pages;
        let sched = VcpuSched {
            runstate: crate::state::sched::Runstate {
                state: xen_sys::RUNSTATE_runnable,
                ..Default::default()
            },
            ..Default::default()
        };
        Domain {
            id,
            name,
            privileged,
            l4: built.l4,
            user_l4: None,
            ldt: (0, 0),
            gdt_frames: Vec::new(),
            gdt_entries: 0,
            tot_pages: nr_pages,
            max_pages: nr_pages,
            shared_info: built.shared_info,
            regs: built.regs,
            state: RunState::Runnable,
            shutdown_code: None,
            reported_enosys: 0,
            vcpu: Vcpu::new(),
            vcpu_info: VcpuInfoAt::in_shared_info(built.shared_info),
            evtchn: EventChannels::new(if privileged {
                DOM0_MAX_PORTS
            } else {
                DOMU_MAX_PORTS
            }),
            sched,
            fpu: Box::default(),
            dead: false,
            destroy: false,
            console_line: Vec::new(),
            console_input: VecDeque::new(),
            vcpu_info_page: None,
            grant: GrantTable::new(DEFAULT_MAX_FRAMES),
            rings: None,
        }
    }

    /// The frames whose type references the domain's vCPU and descriptor state holds
    /// (base pointers, GDT frames): what teardown drops first.
    pub fn held_type_refs(&self) -> Vec<Mfn> {
        let mut v = alloc::vec![self.l4];
        v.extend(self.user_l4);
        v.extend(self.gdt_frames.iter().copied());
        v.extend(self.vcpu_info_page);
        v
    }

    /// Alive: not shut down, crashed or torn down.
    pub fn runnable(&self) -> bool {
        self.state == RunState::Runnable
    }

    /// Alive and ready for the CPU: not blocked, polling or paused.
    pub fn ready(&self) -> bool {
        self.runnable() && self.sched.ready()
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
