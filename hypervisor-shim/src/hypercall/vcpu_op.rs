//! `vcpu_op` (`vcpu.h`) for a domain's one vCPU, 0: up/down/is_up, the runstate, the
//! single-shot and periodic timers, and moving `vcpu_info` into a guest page
//! (Xen's xen/common/domain.c `do_vcpu_op` and `map_vcpu_info`).

use core::mem::{offset_of, size_of};

use xen_sys::*;

use super::env::{err, Env};
use crate::domain::Domain;
use crate::machine::{write_bytes, GuestMemory, Machine, PAGE_SIZE};
use crate::mm::page::PageType;
use crate::state::sched::Periodic;
use crate::state::vcpu::VcpuInfoAt;

/// The shortest period Xen accepts (1 ms), and the longest delta (`STIME_DELTA_MAX`).
const MIN_PERIOD_NS: u64 = 1_000_000;
const MAX_DELTA_NS: u64 = i64::MAX as u64;

pub fn vcpu_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    vcpuid: u64,
    arg: u64,
) -> i64 {
    if vcpuid != 0 {
        return err(XEN_ENOENT);
    }
    let at = |off: usize| arg.wrapping_add(off as u64);
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        // vCPU 0 was initialised by the domain builder.
        VCPUOP_initialise => err(XEN_EEXIST),
        VCPUOP_up => {
            if dom.sched.down {
                dom.sched.down = false;
                env.effects.resched = true;
            }
            0
        }
        VCPUOP_down => {
            dom.sched.down = true;
            env.effects.resched = true;
            0
        }
        VCPUOP_is_up => (!dom.sched.down) as i64,
        VCPUOP_get_runstate_info => {
            let bytes = runstate_bytes(dom, env.now());
            match env.guest(dom).write(arg, &bytes) {
                Ok(()) => 0,
                Err(_) => err(XEN_EFAULT),
            }
        }
        VCPUOP_register_runstate_memory_area => {
            let Ok(va) = env.guest(dom).read_u64(arg) else {
                return err(XEN_EFAULT);
            };
            // As Xen: a bad address is accepted, and updates to it are dropped.
            dom.sched.runstate_area = (va != 0).then_some(va);
            let now = env.now();
            update_runstate_area(env.machine, dom, now);
            0
        }
        VCPUOP_set_periodic_timer => {
            let Ok(period) = env
                .guest(dom)
                .read_u64(at(offset_of!(vcpu_set_periodic_timer, period_ns)))
            else {
                return err(XEN_EFAULT);
            };
            if !(MIN_PERIOD_NS..=MAX_DELTA_NS).contains(&period) {
                return err(XEN_EINVAL);
            }
            dom.sched.periodic = Some(Periodic {
                period,
                next: env.now().saturating_add(period),
            });
            env.effects.resched = true;
            0
        }
        VCPUOP_stop_periodic_timer => {
            dom.sched.periodic = None;
            0
        }
        VCPUOP_set_singleshot_timer => {
            let g = env.guest(dom);
            let (Ok(timeout), Ok(flags)) = (
                g.read_u64(at(offset_of!(vcpu_set_singleshot_timer, timeout_abs_ns))),
                g.read_u32(at(offset_of!(vcpu_set_singleshot_timer, flags))),
            ) else {
                return err(XEN_EFAULT);
            };
            if flags & VCPU_SSHOTTMR_future != 0 && timeout < env.now() {
                return err(XEN_ETIME);
            }
            dom.sched.singleshot = Some(timeout);
            env.effects.resched = true;
            0
        }
        VCPUOP_stop_singleshot_timer => {
            dom.sched.singleshot = None;
            0
        }
        VCPUOP_register_vcpu_info => register_vcpu_info(env, dom, arg),
        // No NMIs between vCPUs; no physical CPU ids; no separate time area.
        _ => err(XEN_ENOSYS),
    }
}

/// `vcpu_runstate_info` as the guest reads it: the current state's time includes the
/// stretch since it began (`vcpu_runstate_get`).
fn runstate_bytes(dom: &Domain, now: u64) -> [u8; size_of::<vcpu_runstate_info>()] {
    let r = &dom.sched.runstate;
    let mut time = r.time;
    if let Some(t) = time.get_mut(r.state as usize) {
        *t = t.saturating_add(now.saturating_sub(r.entry_time));
    }
    let mut b = [0u8; size_of::<vcpu_runstate_info>()];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(
        offset_of!(vcpu_runstate_info, state),
        &r.state.to_le_bytes(),
    );
    put(
        offset_of!(vcpu_runstate_info, state_entry_time),
        &r.entry_time.to_le_bytes(),
    );
    for (i, t) in time.iter().enumerate() {
        put(
            offset_of!(vcpu_runstate_info, time) + 8 * i,
            &t.to_le_bytes(),
        );
    }
    b
}

/// Copies the runstate to the area the guest registered, if any (on every change, as
/// Xen's `update_runstate_area`); a fault is ignored.
pub fn update_runstate_area<M: Machine + ?Sized>(m: &mut M, dom: &Domain, now: u64) {
    if let Some(va) = dom.sched.runstate_area {
        let bytes = runstate_bytes(dom, now);
        let _ = GuestMemory {
            machine: m,
            l4: dom.l4,
        }
        .write(va, &bytes);
    }
}

/// `VCPUOP_register_vcpu_info`: moves `vcpu_info` into a page of the guest's own, held
/// as writable so that it can never become a page table under the shim's writes.
fn register_vcpu_info<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
) -> i64 {
    let g = env.guest(dom);
    let (Ok(mfn), Ok(offset)) = (
        g.read_u64(arg.wrapping_add(offset_of!(vcpu_register_vcpu_info, mfn) as u64)),
        g.read_u32(arg.wrapping_add(offset_of!(vcpu_register_vcpu_info, offset) as u64)),
    ) else {
        return err(XEN_EFAULT);
    };
    let offset = offset as usize;
    if offset > PAGE_SIZE - size_of::<vcpu_info>() {
        return err(XEN_EINVAL);
    }
    // Once only, as in Xen.
    if dom.vcpu_info != VcpuInfoAt::in_shared_info(dom.shared_info) {
        return err(XEN_EINVAL);
    }
    if env
        .mm
        .table
        .get_page_and_type(env.machine, mfn, dom.id, PageType::Writable)
        .is_err()
    {
        return err(XEN_EINVAL);
    }
    let old = dom.vcpu_info;
    let mut copy = [0u8; size_of::<vcpu_info>()];
    if let Some(f) = env.machine.frame(old.mfn) {
        let n = copy.len();
        copy.copy_from_slice(&f[old.offset..old.offset + n]);
    }
    write_bytes(env.machine, mfn, offset, &copy);
    let new = VcpuInfoAt { mfn, offset };
    dom.vcpu_info = new;
    dom.vcpu_info_page = Some(mfn);
    // Everything pending, so that nothing is lost in the move (as Xen: the guest gets
    // a spurious upcall and rescans).
    new.write_u8(env.machine, VcpuInfoAt::UPCALL_PENDING, 1);
    write_bytes(
        env.machine,
        mfn,
        offset + VcpuInfoAt::PENDING_SEL,
        &u64::MAX.to_le_bytes(),
    );
    let tsc = env.machine.tsc();
    env.clock
        .publish(env.machine, mfn, offset + offset_of!(vcpu_info, time), tsc);
    0
}
