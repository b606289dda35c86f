//! Host tests of the toolstack hypercalls (`domctl`, `sysctl`) between dom0 and two
//! domUs: listing, pausing, unpausing and destroying, and domUs refused.

use alloc::vec::Vec;
use core::mem::{offset_of, size_of};

use xen_sys::tools::*;
use xen_sys::{
    __HYPERVISOR_domctl, __HYPERVISOR_sched_op, __HYPERVISOR_sysctl, RUNSTATE_running,
    SCHEDOP_block, SCHEDOP_shutdown, SHUTDOWN_reboot, DOMID_SELF, XEN_EACCES, XEN_EFAULT,
    XEN_EINVAL, XEN_ENOSYS, XEN_EOVERFLOW, XEN_EPERM, XEN_ESRCH,
};

use crate::hypervisor::many_domains_tests::{call, e, poke, three, MS, SCRATCH};
use crate::hypervisor::{Hypervisor, Next};
use crate::machine::GuestMemory;
use crate::testing::TestMachine;
use crate::trap::TIMER_VECTOR;
use xen_sys::domid_t;

type Info = xen_domctl_getdomaininfo;
const INFO: usize = size_of::<Info>();
/// Where sysctl tests put the getdomaininfolist buffer.
const LIST: u64 = SCRATCH + 0x1000;

fn peek(h: &mut Hypervisor<TestMachine>, d: domid_t, va: u64, n: usize) -> Vec<u8> {
    let l4 = h.domains[d].l4;
    let mut v = alloc::vec![0; n];
    GuestMemory {
        machine: &mut h.machine,
        l4,
    }
    .read(va, &mut v)
    .unwrap();
    v
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// A `xen_domctl` with `cmd` for `domain`, interface version `version`.
fn domctl_op(cmd: u32, domain: u16, version: u32) -> [u8; size_of::<xen_domctl>()] {
    let mut op = [0u8; size_of::<xen_domctl>()];
    op[offset_of!(xen_domctl, cmd)..][..4].copy_from_slice(&cmd.to_le_bytes());
    op[offset_of!(xen_domctl, interface_version)..][..4].copy_from_slice(&version.to_le_bytes());
    op[offset_of!(xen_domctl, domain)..][..2].copy_from_slice(&domain.to_le_bytes());
    op
}

/// Domain `caller` issues domctl `cmd` on `domain`; the result.
fn domctl(h: &mut Hypervisor<TestMachine>, caller: domid_t, cmd: u32, domain: u16) -> i64 {
    let op = domctl_op(cmd, domain, XEN_DOMCTL_INTERFACE_VERSION);
    poke(h, caller, SCRATCH, &op);
    call(h, caller, __HYPERVISOR_domctl, &[SCRATCH]).0
}

/// dom0's getdomaininfo on `domain`: the whole `xen_domctl` as copied back.
fn getdomaininfo(h: &mut Hypervisor<TestMachine>, domain: u16) -> Result<Vec<u8>, i64> {
    match domctl(h, 0, XEN_DOMCTL_getdomaininfo, domain) {
        0 => Ok(peek(h, 0, SCRATCH, size_of::<xen_domctl>())),
        r => Err(r),
    }
}

/// The getdomaininfo record inside a copied-back `xen_domctl`.
fn info(op: &[u8]) -> &[u8] {
    &op[offset_of!(xen_domctl, u)..][..INFO]
}

fn flags(h: &mut Hypervisor<TestMachine>, domain: u16) -> u32 {
    u32_at(
        info(&getdomaininfo(h, domain).unwrap()),
        offset_of!(Info, flags),
    )
}

fn cpu_time(h: &mut Hypervisor<TestMachine>, domain: u16) -> u64 {
    u64_at(
        info(&getdomaininfo(h, domain).unwrap()),
        offset_of!(Info, cpu_time),
    )
}

/// The timer interrupt `n` times, `SLICE` apart: every ready domain gets slices.
fn run_slices(h: &mut Hypervisor<TestMachine>, n: usize) -> Vec<domid_t> {
    let mut ran = Vec::new();
    for _ in 0..n {
        h.machine.tsc += crate::common::sched::rr_boost::SLICE_NS;
        let mut f = h.domains[h.current].regs;
        f.vector = TIMER_VECTOR;
        h.save_entry_frame(&f);
        assert!(matches!(h.handle(0, &mut |_| {}), Next::Resume { .. }));
        ran.push(h.current);
    }
    ran
}

#[test]
fn getdomaininfo_reports_a_domain_and_copies_the_whole_structure_back() {
    let mut h = three();
    let mut op = domctl_op(XEN_DOMCTL_getdomaininfo, 1, XEN_DOMCTL_INTERFACE_VERSION);
    // Bytes of the union past the record: Xen copies the whole structure back, so
    // they come back as they were.
    let tail = offset_of!(xen_domctl, u) + INFO;
    op[tail..].fill(0xa5);
    poke(&mut h, 0, SCRATCH, &op);
    assert_eq!(call(&mut h, 0, __HYPERVISOR_domctl, &[SCRATCH]).0, 0);
    let out = peek(&mut h, 0, SCRATCH, op.len());
    assert!(out[tail..].iter().all(|&b| b == 0xa5));
    assert_eq!(u16_at(&out, offset_of!(xen_domctl, domain)), 1);
    let i = info(&out);
    let d1 = &h.domains[1];
    assert_eq!(u16_at(i, offset_of!(Info, domain)), 1);
    assert_eq!(u64_at(i, offset_of!(Info, tot_pages)), 1100);
    assert_eq!(u64_at(i, offset_of!(Info, max_pages)), d1.max_pages);
    assert_eq!(
        u64_at(i, offset_of!(Info, shared_info_frame)),
        d1.shared_info
    );
    assert_eq!(u32_at(i, offset_of!(Info, nr_online_vcpus)), 1);
    assert_eq!(u32_at(i, offset_of!(Info, max_vcpu_id)), 0);
    let f = u32_at(i, offset_of!(Info, flags));
    // Ready, not running (dom0 is), not paused, not shut down: only the shutdown code
    // field, which holds Xen's SHUTDOWN_CODE_INVALID (~0) while none was recorded.
    assert_eq!(f & 0xffff, 0);
    assert_eq!(f >> XEN_DOMINF_shutdownshift, 0xffff);
}

#[test]
fn the_caller_is_running_a_blocked_domain_blocked() {
    let mut h = three();
    assert_ne!(flags(&mut h, 0) & XEN_DOMINF_running, 0);
    assert_eq!(flags(&mut h, 2) & XEN_DOMINF_running, 0);
    call(&mut h, 2, __HYPERVISOR_sched_op, &[SCHEDOP_block as u64, 0]);
    let f = flags(&mut h, 2);
    assert_ne!(f & XEN_DOMINF_blocked, 0);
    assert_eq!(f & XEN_DOMINF_running, 0);
}

#[test]
fn getdomaininfo_finds_the_next_domain_up_as_in_xen_4_17() {
    let mut h = three();
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_destroydomain, 1), 0);
    assert!(h.domains.get(1).is_none(), "destroyed and reaped");
    let out = getdomaininfo(&mut h, 1).unwrap();
    assert_eq!(u16_at(&out, offset_of!(xen_domctl, domain)), 2);
    assert_eq!(u16_at(info(&out), offset_of!(Info, domain)), 2);
    assert_eq!(getdomaininfo(&mut h, 3), Err(e(XEN_ESRCH)));
    assert_eq!(getdomaininfo(&mut h, DOMID_SELF), Err(e(XEN_EINVAL)));
}

#[test]
fn a_shut_down_domain_reports_dying_shutdown_and_its_reason() {
    let mut h = three();
    run_slices(&mut h, 3);
    let ran = cpu_time(&mut h, 2);
    assert!(ran > 0);
    poke(&mut h, 2, SCRATCH, &SHUTDOWN_reboot.to_le_bytes());
    call(
        &mut h,
        2,
        __HYPERVISOR_sched_op,
        &[SCHEDOP_shutdown as u64, SCRATCH],
    );
    assert!(h.domains[2].dead, "torn down, record kept");
    let out = getdomaininfo(&mut h, 2).unwrap();
    let f = u32_at(info(&out), offset_of!(Info, flags));
    assert_ne!(f & XEN_DOMINF_shutdown, 0);
    assert_ne!(f & XEN_DOMINF_dying, 0);
    assert_eq!(f & (XEN_DOMINF_running | XEN_DOMINF_blocked), 0);
    assert_eq!(
        (f >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask,
        SHUTDOWN_reboot
    );
    assert_eq!(u32_at(info(&out), offset_of!(Info, nr_online_vcpus)), 0);
    assert_eq!(u64_at(info(&out), offset_of!(Info, tot_pages)), 0);
    assert!(
        u64_at(info(&out), offset_of!(Info, cpu_time)) >= ran,
        "the time it ran stays"
    );
    // dom0 destroys the record.
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_destroydomain, 2), 0);
    assert!(h.domains.get(2).is_none());
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_destroydomain, 2), e(XEN_ESRCH));
}

#[test]
fn a_paused_domain_gets_no_cpu_until_unpaused() {
    let mut h = three();
    run_slices(&mut h, 3);
    let before = cpu_time(&mut h, 1);
    assert!(before > 0, "domain 1 ran a slice");
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_pausedomain, 1), 0);
    assert_ne!(flags(&mut h, 1) & XEN_DOMINF_paused, 0);
    let ran = run_slices(&mut h, 6);
    assert!(!ran.contains(&1), "paused domain scheduled: {ran:?}");
    assert_eq!(cpu_time(&mut h, 1), before, "no cpu time while paused");
    // Paused twice needs two unpauses (the toolstack's count).
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_pausedomain, 1), 0);
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_unpausedomain, 1), 0);
    assert!(!run_slices(&mut h, 3).contains(&1));
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_unpausedomain, 1), 0);
    assert_eq!(flags(&mut h, 1) & XEN_DOMINF_paused, 0);
    assert!(run_slices(&mut h, 3).contains(&1));
    assert!(cpu_time(&mut h, 1) >= before + crate::common::sched::rr_boost::SLICE_NS);
    // Not paused: -EINVAL, as Xen's controller pause count cannot go below 0.
    assert_eq!(
        domctl(&mut h, 0, XEN_DOMCTL_unpausedomain, 1),
        e(XEN_EINVAL)
    );
}

#[test]
fn pause_rules_self_and_overflow() {
    let mut h = three();
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_pausedomain, 0), e(XEN_EINVAL));
    assert_eq!(
        domctl(&mut h, 0, XEN_DOMCTL_unpausedomain, 0),
        e(XEN_EINVAL)
    );
    assert_eq!(
        domctl(&mut h, 0, XEN_DOMCTL_destroydomain, 0),
        e(XEN_EINVAL)
    );
    for _ in 0..255 {
        assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_pausedomain, 2), 0);
    }
    assert_eq!(
        domctl(&mut h, 0, XEN_DOMCTL_pausedomain, 2),
        e(XEN_EOVERFLOW)
    );
    assert_eq!(h.domains[2].sched.pause_count, 255);
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_pausedomain, 7), e(XEN_ESRCH));
}

#[test]
fn destroy_tears_a_running_domain_down_and_frees_its_memory() {
    let mut h = three();
    let free = h.frames.free_frames();
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_destroydomain, 2), 0);
    assert!(h.domains.get(2).is_none());
    assert!(h.frames.free_frames() >= free + 1100);
    // The others go on, and the list no longer has it.
    assert!(run_slices(&mut h, 2).contains(&1));
    assert_eq!(list(&mut h, 0, 0, 10), Ok(alloc::vec![0, 1]));
}

#[test]
fn domus_are_refused_and_bad_versions_come_first() {
    let mut h = three();
    // Xen's order: version, then the target's existence, then privilege.
    let op = domctl_op(XEN_DOMCTL_pausedomain, 2, XEN_DOMCTL_INTERFACE_VERSION - 1);
    poke(&mut h, 0, SCRATCH, &op);
    assert_eq!(
        call(&mut h, 0, __HYPERVISOR_domctl, &[SCRATCH]).0,
        e(XEN_EACCES)
    );
    assert_eq!(domctl(&mut h, 1, XEN_DOMCTL_pausedomain, 9), e(XEN_ESRCH));
    for cmd in [
        XEN_DOMCTL_pausedomain,
        XEN_DOMCTL_unpausedomain,
        XEN_DOMCTL_destroydomain,
        XEN_DOMCTL_getdomaininfo,
    ] {
        assert_eq!(domctl(&mut h, 1, cmd, 2), e(XEN_EPERM), "cmd {cmd}");
        assert_eq!(domctl(&mut h, 1, cmd, 1), e(XEN_EPERM), "cmd {cmd} on self");
    }
    assert_eq!(h.domains[2].sched.pause_count, 0);
    assert!(!h.domains[2].destroy && h.domains[2].runnable());
    assert_eq!(list(&mut h, 1, 0, 10), Err(e(XEN_EPERM)));
    assert_eq!(call(&mut h, 0, __HYPERVISOR_domctl, &[0]).0, e(XEN_EFAULT));
    // Sub-ops the shim does not have.
    assert_eq!(domctl(&mut h, 0, XEN_DOMCTL_createdomain, 5), e(XEN_ENOSYS));
}

/// Domain `caller` lists up to `max` domains from `first`: their ids.
fn list(
    h: &mut Hypervisor<TestMachine>,
    caller: domid_t,
    first: u16,
    max: u32,
) -> Result<Vec<u16>, i64> {
    let mut op = [0u8; size_of::<xen_sysctl>()];
    type L = xen_sysctl_getdomaininfolist;
    let u = offset_of!(xen_sysctl, u);
    op[offset_of!(xen_sysctl, cmd)..][..4]
        .copy_from_slice(&XEN_SYSCTL_getdomaininfolist.to_le_bytes());
    op[offset_of!(xen_sysctl, interface_version)..][..4]
        .copy_from_slice(&XEN_SYSCTL_INTERFACE_VERSION.to_le_bytes());
    op[u + offset_of!(L, first_domain)..][..2].copy_from_slice(&first.to_le_bytes());
    op[u + offset_of!(L, max_domains)..][..4].copy_from_slice(&max.to_le_bytes());
    op[u + offset_of!(L, buffer)..][..8].copy_from_slice(&LIST.to_le_bytes());
    poke(h, caller, SCRATCH, &op);
    let r = call(h, caller, __HYPERVISOR_sysctl, &[SCRATCH]).0;
    if r != 0 {
        return Err(r);
    }
    let out = peek(h, caller, SCRATCH, op.len());
    let n = u32_at(&out, u + offset_of!(L, num_domains)) as usize;
    let buf = peek(h, caller, LIST, n * INFO);
    Ok((0..n)
        .map(|i| u16_at(&buf[i * INFO..], offset_of!(Info, domain)))
        .collect())
}

#[test]
fn getdomaininfolist_lists_in_id_order_from_first_up_to_max() {
    let mut h = three();
    assert_eq!(list(&mut h, 0, 0, 10), Ok(alloc::vec![0, 1, 2]));
    assert_eq!(list(&mut h, 0, 0, 2), Ok(alloc::vec![0, 1]));
    assert_eq!(list(&mut h, 0, 1, 10), Ok(alloc::vec![1, 2]));
    assert_eq!(list(&mut h, 0, 3, 10), Ok(alloc::vec![]));
    assert_eq!(list(&mut h, 0, 0, 0), Ok(alloc::vec![]));
    // The records are getdomaininfo's: the caller's says running, with cpu time.
    h.machine.tsc += MS;
    list(&mut h, 0, 0, 1).unwrap();
    let r = peek(&mut h, 0, LIST, INFO);
    assert_ne!(u32_at(&r, offset_of!(Info, flags)) & XEN_DOMINF_running, 0);
    assert_eq!(h.domains[0].sched.runstate.state, RUNSTATE_running);
    assert!(u64_at(&r, offset_of!(Info, cpu_time)) >= MS);
    // A buffer the caller cannot write.
    let mut op = [0u8; size_of::<xen_sysctl>()];
    op[..4].copy_from_slice(&XEN_SYSCTL_getdomaininfolist.to_le_bytes());
    op[4..8].copy_from_slice(&XEN_SYSCTL_INTERFACE_VERSION.to_le_bytes());
    op[offset_of!(xen_sysctl, u) + 4..][..4].copy_from_slice(&3u32.to_le_bytes());
    poke(&mut h, 0, SCRATCH, &op);
    assert_eq!(
        call(&mut h, 0, __HYPERVISOR_sysctl, &[SCRATCH]).0,
        e(XEN_EFAULT)
    );
    // Wrong version, unknown sub-op.
    op[4..8].copy_from_slice(&0u32.to_le_bytes());
    poke(&mut h, 0, SCRATCH, &op);
    assert_eq!(
        call(&mut h, 0, __HYPERVISOR_sysctl, &[SCRATCH]).0,
        e(XEN_EACCES)
    );
    op[..4].copy_from_slice(&XEN_SYSCTL_physinfo.to_le_bytes());
    op[4..8].copy_from_slice(&XEN_SYSCTL_INTERFACE_VERSION.to_le_bytes());
    poke(&mut h, 0, SCRATCH, &op);
    assert_eq!(
        call(&mut h, 0, __HYPERVISOR_sysctl, &[SCRATCH]).0,
        e(XEN_ENOSYS)
    );
}
