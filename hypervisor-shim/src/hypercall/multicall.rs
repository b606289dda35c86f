//! `multicall(list, nr)` (`multicall_entry` of `xen.h`; Xen's xen/common/multicall.c
//! and `pv_do_multicall_call`): runs each entry through the normal dispatch and writes
//! its result back into the entry.
//!
//! - A multicall inside a multicall is refused with -EINVAL ("Multicall reentry is
//!   disallowed"); the outer one records that result and goes on.
//! - `iret` is the one call that ends a multicall (`mc_exit`): Xen 4.17 performs it, then
//!   stops and returns its result; so does the shim. (It is not refused: Xen's table
//!   lets it run, and a guest relying on either behaviour must see Xen's.)
//! - A list starting in the hypervisor's range, or an entry that cannot be read, is
//!   -EFAULT; a result that cannot be written back is -EFAULT and stops the list.
//! - After a batch of entries the call is preempted: it is re-issued for the rest of
//!   the list (Xen's continuation), so a huge list cannot hold the shim.

use xen_sys::*;

use super::call;
use super::env::{continuation, Env};
use super::error::{Error, Result};
use super::guest::{copy_field_to_guest, element};
use crate::domain::Domain;
use crate::machine::Machine;

/// Entries run before the multicall is preempted and re-issued.
pub const BATCH: u32 = 64;

pub fn multicall<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    list: u64,
    nr: u64,
) -> Result<i64> {
    if dom.vcpu.in_multicall {
        log::info!("d{}: multicall reentry is disallowed", dom.id);
        return Err(XEN_EINVAL.into());
    }
    let nr = nr as u32;
    // guest_handle_okay: the list must start in guest space.
    if (xen_sys::__HYPERVISOR_VIRT_START..xen_sys::__HYPERVISOR_VIRT_END).contains(&list) {
        return Err(Error::FAULT);
    }
    dom.vcpu.in_multicall = true;
    let rc = run(env, dom, list, nr);
    dom.vcpu.in_multicall = false;
    rc
}

fn run<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    list: u64,
    nr: u32,
) -> Result<i64> {
    for i in 0..nr {
        let at = element::<multicall_entry>(list, i as u64);
        if i == BATCH {
            dom.vcpu.in_multicall = false;
            return Ok(continuation(
                dom,
                __HYPERVISOR_multicall,
                &[at, (nr - i) as u64],
            ));
        }
        let mut entry: multicall_entry = env.read(dom, at)?;
        entry.result = call(env, dom, entry.op, entry.args) as u64;
        let wrote = copy_field_to_guest!(env, dom, at, entry.result);
        if entry.op == __HYPERVISOR_iret as u64 || !dom.runnable() {
            // mc_exit: the result is written back on a best-effort basis.
            return Ok(entry.result as i64);
        }
        wrote?;
    }
    Ok(0)
}
