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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::traps::*;
    use crate::testing::world::{World, BASE, SCRATCH};

    #[test]
    fn multicall_runs_entries_refuses_nesting_and_stops_at_iret() {
        let mut w = world();
        let list = SCRATCH + 0x4000;
        let entry = |op: u32, args: &[u64]| {
            let mut e = [0u64; 8];
            e[0] = op as u64;
            e[1] = 0xbad;
            e[2..2 + args.len()].copy_from_slice(args);
            e
        };
        let ctx_at = SCRATCH + 0x800;
        let ctx = [
            5u64,
            0,
            0,
            0,
            BASE + 0x80,
            0xe030,
            0x200,
            SCRATCH + 0x1000,
            0xe02b,
        ];
        let cbytes: Vec<u8> = ctx.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.poke(ctx_at, &cbytes);
        w.dom.regs.rsp = ctx_at;
        let entries = [
            entry(__HYPERVISOR_xen_version, &[XENVER_pagesize as u64]),
            entry(__HYPERVISOR_multicall, &[list, 1]),
            entry(__HYPERVISOR_fpu_taskswitch, &[1]),
            entry(__HYPERVISOR_iret, &[]),
            entry(__HYPERVISOR_fpu_taskswitch, &[0]),
        ];
        let bytes: Vec<u8> = entries
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        w.poke(list, &bytes);
        // iret ends the multicall (Xen's mc_exit) with its own result: the frame's RAX.
        assert_eq!(w.call(__HYPERVISOR_multicall, &[list, 5]), 5);
        let result = |w: &mut World, i: u64| {
            u64::from_le_bytes(w.peek(list + i * 64 + 8, 8).try_into().unwrap()) as i64
        };
        assert_eq!(result(&mut w, 0), 4096);
        assert_eq!(result(&mut w, 1), -(XEN_EINVAL as i64));
        assert_eq!(result(&mut w, 2), 0);
        assert_eq!(result(&mut w, 3), 5);
        assert_eq!(result(&mut w, 4), 0xbad, "not run after iret");
        assert!(w.dom.vcpu.cr0_ts);
        assert_eq!(w.dom.regs.rip, BASE + 0x80);
        assert!(!w.dom.vcpu.in_multicall);
        // Bad lists.
        assert_eq!(
            w.call(__HYPERVISOR_multicall, &[0x10, 1]),
            -(XEN_EFAULT as i64)
        );
        assert_eq!(
            w.call(__HYPERVISOR_multicall, &[__HYPERVISOR_VIRT_START, 1]),
            -(XEN_EFAULT as i64)
        );
        assert_eq!(w.call(__HYPERVISOR_multicall, &[0x10, 0]), 0);
        assert!(!w.dom.vcpu.in_multicall);
    }

    #[test]
    fn a_long_multicall_is_preempted() {
        let mut w = world();
        let list = SCRATCH + 0x4000;
        let n = crate::hypercall::MULTICALL_BATCH as u64 + 3;
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| {
                let mut e = [0u64; 8];
                e[0] = __HYPERVISOR_fpu_taskswitch as u64;
                e
            })
            .flat_map(|v| v.to_le_bytes())
            .collect();
        w.poke(list, &bytes);
        w.dom.regs.rip = 0x2002;
        assert_eq!(
            w.call(__HYPERVISOR_multicall, &[list, n]),
            __HYPERVISOR_multicall as i64
        );
        assert_eq!(w.dom.regs.rip, 0x2000);
        let (rest, left) = (w.dom.regs.rdi, w.dom.regs.rsi);
        assert_eq!((rest, left), (list + 64 * (n - 3), 3));
        assert_eq!(w.call(__HYPERVISOR_multicall, &[rest, left]), 0);
    }
}
