//! Domain lifecycle (Xen's xen/common/domain.c): a crash with its report
//! (`domain_crash`), the teardown of a domain that stopped (`domain_kill` and
//! `domain_relinquish_resources`), and the control domain told of it (`VIRQ_DOM_EXC`).
//! Building a domain is the PV builder's (`pv::build`); the hypervisor puts the two
//! together.

use alloc::format;
use alloc::string::String;
use core::fmt::Display;

use crate::common::{event_channel, grant_table};
use crate::domain::{Domain, Domains, RunState};
use crate::machine::Machine;
use crate::mm::Mm;
use crate::trap::{write_fault_report, TrapFrame};

/// Words of the guest's stack shown when it crashes.
const STACK_WORDS: u64 = 4;

/// Tears down a stopped domain at system time `now`: its ports closed (their peers see
/// them unbound), its mappings of others' grants released, memory scrubbed and
/// returned. The record stays (`dead`), for a privileged domain to read and destroy.
pub fn teardown<M: Machine + ?Sized>(
    m: &mut M,
    mm: &mut Mm<'_>,
    dom: &mut Domain,
    others: &mut Domains,
    now: u64,
) {
    event_channel::close_all_ports(m, dom, others);
    // Its mappings of others' grants: their entries unpinned (the PTEs' references
    // go with its page tables below).
    grant_table::release_mappings(m, mm.table, dom, others);
    m.release_address_space(dom.l4);
    if let Some(user) = dom.user_l4 {
        m.release_address_space(user);
    }
    // Every reference the domain holds goes, then every frame it owns (its
    // reservation, what populate_physmap gave it, shared_info) is scrubbed, its
    // M2P entry invalidated and returned.
    let still_mapped = mm.table.teardown(m, dom.id, &dom.held_type_refs());
    // Its grant frames went with the rest (or go when their last mapping does).
    dom.grant.forget();
    let freed = mm.reclaim(m);
    log::info!(
        "d{}: {freed} frames freed ({still_mapped} still mapped elsewhere), {} frames free",
        dom.id,
        mm.alloc.free_frames()
    );
    // Its timers and waits go; the time it ran stays (getdomaininfo's cpu_time).
    let mut runstate = dom.sched.runstate;
    runstate.change(xen_sys::RUNSTATE_offline, now);
    dom.sched = crate::state::sched::VcpuSched {
        runstate,
        ..Default::default()
    };
    dom.tot_pages = 0;
    dom.dead = true;
    if dom.state == RunState::Runnable {
        // Destroyed while running: it ends as if it crashed.
        dom.state = RunState::Crashed;
    }
}

/// `VIRQ_DOM_EXC` for every live control domain: a domain stopped.
pub fn notify_control_domains<M: Machine + ?Sized>(m: &mut M, domains: &mut Domains) {
    for d in domains.iter_mut().filter(|d| d.privileged && d.runnable()) {
        event_channel::send_virq(m, d, xen_sys::VIRQ_DOM_EXC);
    }
}

/// Kills `dom` for `why`, with a report of what it did (`frame`: its registers when it
/// entered the shim).
#[cold]
#[inline(never)]
pub fn crash<M: Machine + ?Sized>(
    m: &mut M,
    dom: &mut Domain,
    frame: &TrapFrame,
    cr2: u64,
    why: &dyn Display,
) {
    let mut report = String::new();
    let who = format!("d{} ({}) crashed", dom.id, dom.name);
    let _ = write_fault_report(&mut report, &who, frame, cr2);
    for line in report.lines() {
        log::error!("{line}");
    }
    log::error!("  {why}");
    // The top of the guest's stack, read through its own tables: for a kernel built
    // without frame pointers it names the caller of the faulting code.
    let guest = crate::machine::GuestMemory {
        machine: m,
        l4: dom.active_l4(),
    };
    let mut words = String::new();
    for i in 0..STACK_WORDS {
        let mut b = [0u8; 8];
        match guest.read(frame.rsp.wrapping_add(i * 8), &mut b) {
            Ok(()) => words.push_str(&format!(" {:#018x}", u64::from_le_bytes(b))),
            Err(_) => break,
        }
    }
    if !words.is_empty() {
        log::error!("  stack:{words}");
    }
    dom.state = RunState::Crashed;
}
