//! Host tests of several domains together: event channels between them, blocking and
//! waking, timers, preemption, and one domain dying while the others go on. Each test
//! drives the [`Hypervisor`] the way the arch layer does: an entry from the current
//! domain (a hypercall or the timer interrupt), then whatever it decides.

use alloc::vec::Vec;

use xen_sys::*;

use crate::common::event_channel as evtchn;
use crate::hypervisor::{Hypervisor, Next};
use crate::state::evtchn::{Binding, DOMU_MAX_PORTS};
use crate::testing::TestMachine;
use crate::trap::TIMER_VECTOR;
use xen_sys::domid_t;

pub(crate) use crate::testing::hypervisor::{
    call, empty, peek_u32, poke, test_elf, three, BASE, MS, SCRATCH,
};

/// An `event_channel_op` with the op's struct at SCRATCH.
fn evtchn_op(h: &mut Hypervisor<TestMachine>, d: domid_t, cmd: u32, op: &[u8]) -> i64 {
    poke(h, d, SCRATCH, op);
    call(h, d, __HYPERVISOR_event_channel_op, &[cmd as u64, SCRATCH]).0
}

fn alloc_unbound(
    h: &mut Hypervisor<TestMachine>,
    d: domid_t,
    dom: u16,
    remote: u16,
) -> Result<u32, i64> {
    let mut op = [0u8; 8];
    op[0..2].copy_from_slice(&dom.to_le_bytes());
    op[2..4].copy_from_slice(&remote.to_le_bytes());
    match evtchn_op(h, d, EVTCHNOP_alloc_unbound, &op) {
        0 => Ok(peek_u32(h, d, SCRATCH + 4)),
        e => Err(e),
    }
}

fn bind_interdomain(
    h: &mut Hypervisor<TestMachine>,
    d: domid_t,
    remote: u16,
    port: u32,
) -> Result<u32, i64> {
    let mut op = [0u8; 12];
    op[0..2].copy_from_slice(&remote.to_le_bytes());
    op[4..8].copy_from_slice(&port.to_le_bytes());
    match evtchn_op(h, d, EVTCHNOP_bind_interdomain, &op) {
        0 => Ok(peek_u32(h, d, SCRATCH + 8)),
        e => Err(e),
    }
}

fn port_op(h: &mut Hypervisor<TestMachine>, d: domid_t, cmd: u32, port: u32) -> i64 {
    evtchn_op(h, d, cmd, &port.to_le_bytes())
}

pub(crate) fn e(code: xen_errno) -> i64 {
    -(code as i64)
}

/// Domains 1 and 2 joined by a channel: (port in 1, port in 2).
fn channel(h: &mut Hypervisor<TestMachine>) -> (u32, u32) {
    let p1 = alloc_unbound(h, 1, DOMID_SELF, 2).unwrap();
    let p2 = bind_interdomain(h, 2, 1, p1).unwrap();
    (p1, p2)
}

#[test]
fn an_interdomain_channel_carries_events_both_ways() {
    let mut h = three();
    let (p1, p2) = channel(&mut h);
    assert_eq!(
        (p1, p2),
        (1, 1),
        "the first free port, port 0 being reserved"
    );
    assert_eq!(
        h.domains[1].evtchn.get(p1).unwrap().binding,
        Binding::Interdomain {
            remote: 2,
            port: p2
        }
    );
    // Binding leaves the new local port pending, as Xen does.
    assert!(evtchn::is_pending(&h.machine, &h.domains[2], p2));
    evtchn::clear_pending(&mut h.machine, &h.domains[2], p2);

    assert_eq!(port_op(&mut h, 2, EVTCHNOP_send, p2), 0);
    assert!(evtchn::is_pending(&h.machine, &h.domains[1], p1));
    // Events start masked in vcpu_info (the builder's upcall mask) but the port is not
    // masked: the selector and upcall_pending are raised.
    let vi = h.domains[1].vcpu_info;
    assert_eq!(
        vi.read_u8(&h.machine, crate::state::vcpu::VcpuInfoAt::UPCALL_PENDING),
        Some(1)
    );
    assert_eq!(port_op(&mut h, 1, EVTCHNOP_send, p1), 0);
    assert!(evtchn::is_pending(&h.machine, &h.domains[2], p2));
}

#[test]
fn only_the_named_domain_binds_and_foreign_ports_are_refused() {
    let mut h = three();
    let p1 = alloc_unbound(&mut h, 1, DOMID_SELF, 2).unwrap();
    // Domain 0 is privileged but the port waits for domain 2, not for it.
    assert_eq!(bind_interdomain(&mut h, 0, 1, p1), Err(e(XEN_EINVAL)));
    assert_eq!(bind_interdomain(&mut h, 2, 1, 77), Err(e(XEN_EINVAL)));
    assert_eq!(bind_interdomain(&mut h, 2, 9, 1), Err(e(XEN_ESRCH)));
    // An unprivileged domain cannot allocate in another's table; dom0 can.
    assert_eq!(alloc_unbound(&mut h, 2, 1, 2), Err(e(XEN_EPERM)));
    assert_eq!(alloc_unbound(&mut h, 2, 9, 2), Err(e(XEN_ESRCH)));
    assert!(alloc_unbound(&mut h, 0, 1, 2).is_ok());
    // Closing or sending on a port that is not in use changes nothing.
    assert_eq!(port_op(&mut h, 2, EVTCHNOP_send, 5), e(XEN_EINVAL));
    assert_eq!(port_op(&mut h, 2, EVTCHNOP_close, 5), e(XEN_EINVAL));
    assert_eq!(port_op(&mut h, 2, EVTCHNOP_close, 0), e(XEN_EINVAL));
    assert_eq!(port_op(&mut h, 2, EVTCHNOP_send, 1 << 20), e(XEN_EINVAL));
    assert_eq!(port_op(&mut h, 2, EVTCHNOP_unmask, 1 << 20), e(XEN_EINVAL));
    // Status of another domain's port needs privilege.
    let mut st = [0u8; 24];
    st[0..2].copy_from_slice(&1u16.to_le_bytes());
    st[4..8].copy_from_slice(&p1.to_le_bytes());
    assert_eq!(evtchn_op(&mut h, 2, EVTCHNOP_status, &st), e(XEN_EPERM));
    assert_eq!(evtchn_op(&mut h, 0, EVTCHNOP_status, &st), 0);
    assert_eq!(peek_u32(&mut h, 0, SCRATCH + 8), EVTCHNSTAT_unbound);
}

#[test]
fn closing_one_end_leaves_the_peer_unbound() {
    let mut h = three();
    let (p1, p2) = channel(&mut h);
    assert_eq!(port_op(&mut h, 1, EVTCHNOP_close, p1), 0);
    assert_eq!(
        h.domains[2].evtchn.get(p2).unwrap().binding,
        Binding::Unbound { remote: 1 }
    );
    // Sending on an unbound port is dropped without error, as in Xen.
    assert_eq!(port_op(&mut h, 2, EVTCHNOP_send, p2), 0);
    assert_eq!(port_op(&mut h, 1, EVTCHNOP_send, p1), e(XEN_EINVAL));
}

#[test]
fn a_domu_runs_out_of_ports_at_its_limit() {
    let mut h = three();
    let mut n = 0;
    let err = loop {
        match alloc_unbound(&mut h, 1, DOMID_SELF, 2) {
            Ok(_) => n += 1,
            Err(err) => break err,
        }
    };
    assert_eq!(err, e(XEN_ENOSPC));
    assert_eq!(n, DOMU_MAX_PORTS - 1, "every port but the reserved port 0");
    // The others are unaffected.
    assert!(alloc_unbound(&mut h, 2, DOMID_SELF, 1).is_ok());
}

#[test]
fn virqs_bind_once_and_per_vcpu_rules_hold() {
    let mut h = three();
    let bind = |h: &mut Hypervisor<TestMachine>, virq: u32, vcpu: u32| {
        let mut op = [0u8; 12];
        op[0..4].copy_from_slice(&virq.to_le_bytes());
        op[4..8].copy_from_slice(&vcpu.to_le_bytes());
        evtchn_op(h, 1, EVTCHNOP_bind_virq, &op)
    };
    assert_eq!(bind(&mut h, VIRQ_TIMER, 0), 0);
    assert_eq!(bind(&mut h, VIRQ_TIMER, 0), e(XEN_EEXIST));
    assert_eq!(bind(&mut h, VIRQ_DOM_EXC, 1), e(XEN_EINVAL));
    assert_eq!(bind(&mut h, VIRQ_DEBUG, 1), e(XEN_ENOENT));
    assert_eq!(bind(&mut h, NR_VIRQS, 0), e(XEN_EINVAL));
}

#[test]
fn a_blocked_domain_sleeps_until_its_event_and_others_run() {
    let mut h = three();
    let (p1, p2) = channel(&mut h);
    evtchn::clear_pending(&mut h.machine, &h.domains[2], p2);
    // Domain 1 blocks (events enabled by the block itself): another domain runs.
    let (_, next) = call(&mut h, 1, __HYPERVISOR_sched_op, &[SCHEDOP_block as u64, 0]);
    assert!(matches!(next, Next::Resume { .. }));
    assert_ne!(h.current, 1);
    assert!(!h.domains[1].ready());
    // Domain 2 sends: domain 1 is ready again, and gets its upcall when it runs.
    h.domains[1].vcpu.event.address = BASE + 0x100;
    assert_eq!(port_op(&mut h, 2, EVTCHNOP_send, p2), 0);
    assert!(h.domains[1].ready());
    let _ = p1;
    // Domain 2 yields: round robin reaches domain 1 (after 0 if it is ahead).
    for _ in 0..3 {
        if h.current == 1 {
            break;
        }
        let cur = h.current;
        call(
            &mut h,
            cur,
            __HYPERVISOR_sched_op,
            &[SCHEDOP_yield as u64, 0],
        );
    }
    assert_eq!(h.current, 1);
    assert_eq!(
        h.domains[1].regs.rip,
        BASE + 0x100,
        "entered its event callback"
    );
}

#[test]
fn timers_fire_virq_timer_at_their_deadline_and_the_cpu_idles_meanwhile() {
    let mut h = three();
    let mut op = [0u8; 12];
    op[0..4].copy_from_slice(&VIRQ_TIMER.to_le_bytes());
    assert_eq!(evtchn_op(&mut h, 1, EVTCHNOP_bind_virq, &op), 0);
    let port = peek_u32(&mut h, 1, SCRATCH + 8);
    let deadline = h.now() + 5 * MS;
    call(&mut h, 1, __HYPERVISOR_set_timer_op, &[deadline]);
    // Everyone blocks: the CPU idles until the deadline.
    for d in [0, 2, 1] {
        call(&mut h, d, __HYPERVISOR_sched_op, &[SCHEDOP_block as u64, 0]);
    }
    assert_eq!(h.take_deadline(), Some(Some(h.clock.tsc_at(deadline))));
    h.machine.tsc = h.clock.tsc_at(deadline) - 1;
    assert_eq!(h.wake_from_idle(), Next::Idle, "not before its time");
    assert!(!evtchn::is_pending(&h.machine, &h.domains[1], port));
    h.machine.tsc = h.clock.tsc_at(deadline);
    h.domains[1].vcpu.event.address = BASE + 0x100;
    assert!(matches!(h.wake_from_idle(), Next::Resume { .. }));
    assert_eq!(h.current, 1);
    assert!(evtchn::is_pending(&h.machine, &h.domains[1], port));
}

#[test]
fn a_spinning_domain_is_preempted_when_its_slice_ends() {
    let mut h = three();
    assert_eq!(h.current, 0);
    let tick = |h: &mut Hypervisor<TestMachine>| {
        let mut f = h.domains[h.current].regs;
        f.vector = TIMER_VECTOR;
        h.save_entry_frame(&f);
        h.handle(0, &mut |_| {})
    };
    // Before the slice ends, a tick changes nothing.
    h.machine.tsc += crate::common::sched::rr_boost::SLICE_NS / 2;
    tick(&mut h);
    assert_eq!(h.current, 0);
    let mut order = Vec::new();
    for _ in 0..6 {
        h.machine.tsc += crate::common::sched::rr_boost::SLICE_NS;
        tick(&mut h);
        order.push(h.current);
    }
    assert_eq!(order, [1, 2, 0, 1, 2, 0], "round robin, each in turn");
}

#[test]
fn a_crashing_domain_closes_its_ports_and_tells_dom0() {
    let mut h = three();
    let (p1, p2) = channel(&mut h);
    let mut op = [0u8; 12];
    op[0..4].copy_from_slice(&VIRQ_DOM_EXC.to_le_bytes());
    assert_eq!(evtchn_op(&mut h, 0, EVTCHNOP_bind_virq, &op), 0);
    let exc = peek_u32(&mut h, 0, SCRATCH + 8);
    let free_before = h.frames.free_frames();
    // Domain 1 takes a page fault with no handler.
    h.current = 1;
    let mut f = h.domains[1].regs;
    f.vector = 14;
    h.save_entry_frame(&f);
    assert!(matches!(h.handle(0xdead, &mut |_| {}), Next::Resume { .. }));
    assert!(h.domains[1].dead);
    assert!(h.frames.free_frames() > free_before + 1100);
    assert_eq!(
        h.domains[2].evtchn.get(p2).unwrap().binding,
        Binding::Unbound { remote: 1 }
    );
    assert!(evtchn::is_pending(&h.machine, &h.domains[0], exc));
    assert!(h.domains[1]
        .evtchn
        .get(p1)
        .is_none_or(|c| c.binding == Binding::Free));
    // The others go on: domain 2 still makes hypercalls.
    assert_eq!(
        call(&mut h, 2, __HYPERVISOR_xen_version, &[0, 0]).0,
        4 << 16 | 17
    );
}

#[test]
fn remote_shutdown_needs_privilege() {
    let mut h = three();
    let mut op = [0u8; 8];
    op[0..2].copy_from_slice(&2u16.to_le_bytes());
    op[4..8].copy_from_slice(&SHUTDOWN_poweroff.to_le_bytes());
    poke(&mut h, 1, SCRATCH, &op);
    let r = call(
        &mut h,
        1,
        __HYPERVISOR_sched_op,
        &[SCHEDOP_remote_shutdown as u64, SCRATCH],
    );
    assert_eq!(r.0, e(XEN_EPERM));
    assert!(h.domains[2].runnable());
    poke(&mut h, 0, SCRATCH, &op);
    let r = call(
        &mut h,
        0,
        __HYPERVISOR_sched_op,
        &[SCHEDOP_remote_shutdown as u64, SCRATCH],
    );
    assert_eq!(r.0, 0);
    assert!(h.domains[2].dead);
}

#[test]
fn the_machine_ends_when_the_last_domain_stops_with_dom0s_status() {
    let mut h = three();
    let off = |h: &mut Hypervisor<TestMachine>, d: domid_t, reason: u32| {
        poke(h, d, SCRATCH, &reason.to_le_bytes());
        call(
            h,
            d,
            __HYPERVISOR_sched_op,
            &[SCHEDOP_shutdown as u64, SCRATCH],
        )
        .1
    };
    assert!(matches!(
        off(&mut h, 0, SHUTDOWN_poweroff),
        Next::Resume { .. }
    ));
    assert!(matches!(
        off(&mut h, 1, SHUTDOWN_crash),
        Next::Resume { .. }
    ));
    assert_eq!(
        off(&mut h, 2, SHUTDOWN_reboot),
        Next::Halt(crate::exit::ShimExit::PoweredOff)
    );
}
