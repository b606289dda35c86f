//! `mmuext_op` (`xen.h` "MMU EXTENDED OPERATIONS"; Xen's `do_mmuext_op` in
//! `xen/arch/x86/mm.c`): pinning, base pointers, TLB and cache flushes, the LDT, and
//! page copy/clear. Flushes are satisfied by the CR3 reload on every return to the
//! guest (see [`crate::mm`]).

use xen_sys::*;

use super::env::Env;
use super::error::{Error, Result};
use super::guest::{element, field_addr};
use super::mmu::{batch_end, batch_start, pg_owner};
use crate::domain::Domain;
use crate::machine::{Machine, PAGE_SIZE};
use crate::mm::{rules, Errno, PageType};

/// Xen's limit on LDT entries (`MMUEXT_SET_LDT`: 8192 descriptors, 64 KiB).
const MAX_LDT_ENTRIES: u32 = 8192;

pub fn mmuext_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uops: u64,
    count: u64,
    pdone: u64,
    foreigndom: u64,
) -> Result<i64> {
    let (count, done) = batch_start(env, dom, count, pdone);
    let size = core::mem::size_of::<mmuext_op>() as u64;
    if !rules::array_ok(uops, count as u64, size) {
        return Err(Error::FAULT);
    }
    let owner = pg_owner(env, dom, foreigndom as u16)?;
    let mut rc = Ok(0);
    let mut i = 0;
    while i < count {
        let at = element::<mmuext_op>(uops, i as u64);
        let r = read_op(env, dom, at)
            .and_then(|(cmd, arg1, arg2)| one_op(env, dom, owner, cmd, arg1, arg2));
        if let Err(e) = r {
            rc = Err(e);
            break;
        }
        i += 1;
    }
    batch_end(env, dom, pdone, done, i);
    rc
}

/// The command of the `mmuext_op` at `at` and its two arguments (each a union of
/// 64 bits, read on its own).
fn read_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    at: u64,
) -> Result<(u32, u64, u64)> {
    let op: mmuext_op = env.read(dom, at)?;
    let arg1 = env.read(dom, field_addr(at, &op, &op.arg1))?;
    let arg2 = env.read(dom, field_addr(at, &op, &op.arg2))?;
    Ok((op.cmd, arg1, arg2))
}

fn one_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    owner: u16,
    cmd: u32,
    arg1: u64,
    arg2: u64,
) -> Result<()> {
    let e = |r: core::result::Result<(), Errno>| r.map_err(Error::from);
    let own = |dom: &Domain| {
        if owner == dom.id {
            Ok(())
        } else {
            Err(Error::from(XEN_EPERM))
        }
    };
    let table = &mut *env.mm.table;
    let m = &mut *env.machine;
    match cmd {
        MMUEXT_PIN_L1_TABLE..=MMUEXT_PIN_L4_TABLE => e(table.pin(m, arg1, cmd + 1, owner)),
        MMUEXT_UNPIN_TABLE => e(table.unpin(m, arg1, owner)),
        MMUEXT_NEW_BASEPTR => {
            own(dom)?;
            e(table.switch_base(m, dom.id, Some(arg1), Some(dom.l4)))?;
            dom.l4 = arg1;
            Ok(())
        }
        MMUEXT_NEW_USER_BASEPTR => {
            own(dom)?;
            let new = (arg1 != 0).then_some(arg1);
            e(table.switch_base(m, dom.id, new, dom.user_l4))?;
            dom.user_l4 = new;
            Ok(())
        }
        MMUEXT_TLB_FLUSH_LOCAL | MMUEXT_TLB_FLUSH_ALL | MMUEXT_INVLPG_ALL => own(dom),
        MMUEXT_INVLPG_LOCAL => own(dom), // a non-guest address is ignored, as in Xen
        MMUEXT_TLB_FLUSH_MULTI | MMUEXT_INVLPG_MULTI => {
            own(dom)?;
            env.read::<u64>(dom, arg2).map(|_| ())
        }
        MMUEXT_FLUSH_CACHE | MMUEXT_FLUSH_CACHE_GLOBAL => {
            own(dom)?;
            // Only a domain with I/O access may flush caches (Xen's
            // `cache_flush_permitted`); the shim has no non-coherent device to flush
            // for, so the permitted flush has nothing to do.
            if dom.privileged {
                Ok(())
            } else {
                Err(XEN_EACCES.into())
            }
        }
        MMUEXT_SET_LDT => {
            own(dom)?;
            let ents = arg2 as u32;
            let ptr = if ents != 0 { arg1 } else { 0 };
            if ptr & (PAGE_SIZE as u64 - 1) != 0
                || !rules::guest_addr_ok(ptr)
                || ents > MAX_LDT_ENTRIES
            {
                log::warn!(
                    "d{}: bad args to SET_LDT: ptr={ptr:#x}, ents={ents:#x}",
                    dom.id
                );
                return Err(XEN_EINVAL.into());
            }
            dom.ldt = (ptr, ents);
            Ok(())
        }
        MMUEXT_CLEAR_PAGE => {
            e(table
                .get_page_and_type(m, arg1, owner, PageType::Writable)
                .map_err(|_| XEN_EINVAL))?;
            m.zero_frame(arg1);
            table.put_page_and_type(m, arg1);
            Ok(())
        }
        MMUEXT_COPY_PAGE => {
            let (dst, src) = (arg1, arg2);
            e(table.get_page(src, owner))?;
            if table
                .get_page_and_type(m, dst, owner, PageType::Writable)
                .is_err()
            {
                table.put_page(src);
                return Err(XEN_EINVAL.into());
            }
            if let Some(data) = m.frame(src).copied() {
                if let Some(d) = m.frame_mut(dst) {
                    *d = data;
                }
            }
            table.put_page_and_type(m, dst);
            table.put_page(src);
            Ok(())
        }
        MMUEXT_MARK_SUPER | MMUEXT_UNMARK_SUPER => {
            log::warn!("d{}: PV superpages are not supported", dom.id);
            Err(XEN_ENOSYS.into())
        }
        _ => {
            log::warn!("d{}: unknown mmuext_op {cmd}", dom.id);
            Err(XEN_ENOSYS.into())
        }
    }
}
