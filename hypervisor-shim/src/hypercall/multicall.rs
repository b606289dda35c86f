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

use core::mem::{offset_of, size_of};
use xen_sys::*;

use super::call;
use super::env::{continuation, err, Env};
use crate::domain::Domain;
use crate::machine::Machine;

const ENTRY: u64 = size_of::<multicall_entry>() as u64;
/// Entries run before the multicall is preempted and re-issued.
pub const BATCH: u32 = 64;

pub fn multicall<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    list: u64,
    nr: u64,
) -> i64 {
    if dom.vcpu.in_multicall {
        log::info!("d{}: multicall reentry is disallowed", dom.id);
        return err(XEN_EINVAL);
    }
    let nr = nr as u32;
    // guest_handle_okay: the list must start in guest space.
    if (xen_sys::__HYPERVISOR_VIRT_START..xen_sys::__HYPERVISOR_VIRT_END).contains(&list) {
        return err(XEN_EFAULT);
    }
    dom.vcpu.in_multicall = true;
    let rc = run(env, dom, list, nr);
    dom.vcpu.in_multicall = false;
    rc
}

fn run<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, list: u64, nr: u32) -> i64 {
    for i in 0..nr {
        if i == BATCH {
            dom.vcpu.in_multicall = false;
            let at = list.wrapping_add(i as u64 * ENTRY);
            return continuation(dom, __HYPERVISOR_multicall, &[at, (nr - i) as u64]);
        }
        let at = list.wrapping_add(i as u64 * ENTRY);
        let mut b = [0u8; ENTRY as usize];
        if env.guest(dom).read(at, &mut b).is_err() {
            return err(XEN_EFAULT);
        }
        let word = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let op = word(offset_of!(multicall_entry, op));
        let a = offset_of!(multicall_entry, args);
        let args: [u64; 6] = core::array::from_fn(|k| word(a + 8 * k));
        let result = call(env, dom, op, args);
        let wrote = env
            .guest(dom)
            .write(
                at.wrapping_add(offset_of!(multicall_entry, result) as u64),
                &result.to_le_bytes(),
            )
            .is_ok();
        if op == __HYPERVISOR_iret as u64 || !dom.runnable() {
            // mc_exit: the result is written back on a best-effort basis.
            return result;
        }
        if !wrote {
            return err(XEN_EFAULT);
        }
    }
    0
}
