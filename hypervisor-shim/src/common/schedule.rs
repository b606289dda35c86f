//! Context switch and runstate (Xen's xen/common/sched/core.c: `sched_context_switch`,
//! `vcpu_runstate_change`, `update_runstate_area`): what changes for the vCPU leaving
//! the CPU and the one taking it. Which one runs next is the policy's (`sched/`).

use xen_sys::{vcpu_runstate_info, RUNSTATE_blocked, RUNSTATE_runnable, RUNSTATE_running};

use crate::domain::Domain;
use crate::machine::{GuestMemory, Machine};
use crate::time::Clock;

/// `prev` leaves the CPU at `now`: runnable if it is ready, blocked otherwise.
pub fn switch_out<M: Machine + ?Sized>(m: &mut M, prev: &mut Domain, now: u64) {
    if prev.sched.runstate.state != RUNSTATE_running {
        return;
    }
    let s = if prev.ready() {
        RUNSTATE_runnable
    } else {
        RUNSTATE_blocked
    };
    prev.sched.runstate.change(s, now);
    update_runstate_area(m, prev, now);
}

/// `next` takes the CPU at `now`: running, with its time info published again.
pub fn switch_in<M: Machine + ?Sized>(m: &mut M, clock: &Clock, next: &mut Domain, now: u64) {
    next.sched.runstate.change(RUNSTATE_running, now);
    update_runstate_area(m, next, now);
    // Another domain ran: its segment bases and CR0.TS are in the CPU.
    next.vcpu.cpu_dirty = true;
    let vi = next.vcpu_info;
    let tsc = m.tsc();
    clock.publish(
        m,
        vi.mfn,
        vi.offset + core::mem::offset_of!(xen_sys::vcpu_info, time),
        tsc,
    );
}

/// `vcpu_runstate_info` as the guest reads it: the current state's time includes the
/// stretch since it began (`vcpu_runstate_get`).
pub fn runstate_info(dom: &Domain, now: u64) -> vcpu_runstate_info {
    let r = &dom.sched.runstate;
    let mut time = r.time;
    if let Some(t) = time.get_mut(r.state as usize) {
        *t = t.saturating_add(now.saturating_sub(r.entry_time));
    }
    vcpu_runstate_info {
        state: r.state as i32,
        state_entry_time: r.entry_time,
        time,
    }
}

/// Copies the runstate to the area the guest registered, if any (on every change, as
/// Xen's `update_runstate_area`); a fault is ignored.
pub fn update_runstate_area<M: Machine + ?Sized>(m: &mut M, dom: &Domain, now: u64) {
    if let Some(va) = dom.sched.runstate_area {
        let mut gm = GuestMemory {
            machine: m,
            l4: dom.l4,
        };
        let _ = gm.write_obj(va, &runstate_info(dom, now));
    }
}
