//! `vcpu_op` (`vcpu.h`) for a domain's one vCPU, 0: up/down/is_up, the runstate, the
//! single-shot and periodic timers, and moving `vcpu_info` into a guest page
//! (Xen's xen/common/domain.c `do_vcpu_op` and `map_vcpu_info`).

use core::mem::{offset_of, size_of};

use xen_sys::*;

use super::env::Env;
use super::error::Result;
use super::guest::field_addr;
use crate::common::schedule::{runstate_info, update_runstate_area};
use crate::domain::Domain;
use crate::machine::{write_bytes, Machine, PAGE_SIZE};
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
) -> Result<i64> {
    if vcpuid != 0 {
        return Err(XEN_ENOENT.into());
    }
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        // vCPU 0 was initialised by the domain builder.
        VCPUOP_initialise => return Err(XEN_EEXIST.into()),
        VCPUOP_up => {
            if dom.sched.down {
                dom.sched.down = false;
                env.effects.resched = true;
            }
        }
        VCPUOP_down => {
            dom.sched.down = true;
            env.effects.resched = true;
        }
        VCPUOP_is_up => return Ok((!dom.sched.down) as i64),
        VCPUOP_get_runstate_info => {
            let info = runstate_info(dom, env.now());
            env.write(dom, arg, &info)?;
        }
        VCPUOP_register_runstate_memory_area => {
            let op: vcpu_register_runstate_memory_area = env.read(dom, arg)?;
            // The union's `p`: the guest virtual address.
            let va: u64 = env.read(dom, field_addr(arg, &op, &op.addr))?;
            // As Xen: a bad address is accepted, and updates to it are dropped.
            dom.sched.runstate_area = (va != 0).then_some(va);
            let now = env.now();
            update_runstate_area(env.machine, dom, now);
        }
        VCPUOP_set_periodic_timer => {
            let op: vcpu_set_periodic_timer = env.read(dom, arg)?;
            let period = op.period_ns;
            if !(MIN_PERIOD_NS..=MAX_DELTA_NS).contains(&period) {
                return Err(XEN_EINVAL.into());
            }
            dom.sched.periodic = Some(Periodic {
                period,
                next: env.now().saturating_add(period),
            });
            env.effects.resched = true;
        }
        VCPUOP_stop_periodic_timer => dom.sched.periodic = None,
        VCPUOP_set_singleshot_timer => {
            let op: vcpu_set_singleshot_timer = env.read(dom, arg)?;
            if op.flags & VCPU_SSHOTTMR_future != 0 && op.timeout_abs_ns < env.now() {
                return Err(XEN_ETIME.into());
            }
            dom.sched.singleshot = Some(op.timeout_abs_ns);
            env.effects.resched = true;
        }
        VCPUOP_stop_singleshot_timer => dom.sched.singleshot = None,
        VCPUOP_register_vcpu_info => register_vcpu_info(env, dom, arg)?,
        // No NMIs between vCPUs; no physical CPU ids; no separate time area.
        _ => return Err(XEN_ENOSYS.into()),
    }
    Ok(0)
}

/// `VCPUOP_register_vcpu_info`: moves `vcpu_info` into a page of the guest's own, held
/// as writable so that it can never become a page table under the shim's writes.
fn register_vcpu_info<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    arg: u64,
) -> Result<()> {
    let op: vcpu_register_vcpu_info = env.read(dom, arg)?;
    let (mfn, offset) = (op.mfn, op.offset as usize);
    if offset > PAGE_SIZE - size_of::<vcpu_info>() {
        return Err(XEN_EINVAL.into());
    }
    // Once only, as in Xen.
    if dom.vcpu_info != VcpuInfoAt::in_shared_info(dom.shared_info) {
        return Err(XEN_EINVAL.into());
    }
    if env
        .mm
        .table
        .get_page_and_type(env.machine, mfn, dom.id, PageType::Writable)
        .is_err()
    {
        return Err(XEN_EINVAL.into());
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
    Ok(())
}
