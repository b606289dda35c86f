//! `mmu_update`, `update_va_mapping` and `update_va_mapping_otherdomain`
//! (`xen.h`; Xen's `do_mmu_update` and `__do_update_va_mapping` in
//! `xen/arch/x86/mm.c`): guest page-table updates, each validated by the frame table.
//!
//! No preemption: a batch runs to its end (or its first error) in one call. The
//! resume bit of `count` (Xen's internal `MMU_UPDATE_PREEMPTED`) is honoured as Xen
//! does (the done count is read back from `pdone`), since guests may pass it.

use xen_sys::*;

use super::env::Env;
use super::error::{Error, Result};
use super::guest::element;
use crate::domain::Domain;
use crate::machine::{Machine, PAGE_SHIFT};
use crate::mm::{rules, PageType};
use crate::paging;

/// Xen's `MMU_UPDATE_PREEMPTED` (`xen/arch/x86/mm.c`, not a public header): the top
/// bit of `count` marks a resumed batch.
pub(super) const MMU_UPDATE_PREEMPTED: u32 = 1 << 31;

/// Xen's `get_pg_owner`: the domain whose frames the caller's entries may reference.
pub(super) fn pg_owner<M: Machine + ?Sized>(
    env: &Env<'_, M>,
    dom: &Domain,
    domid: u16,
) -> Result<u16> {
    if domid == DOMID_SELF {
        return Ok(dom.id);
    }
    if domid == dom.id {
        log::warn!("d{}: cannot specify itself as foreign domain", dom.id);
        return Err(XEN_ESRCH.into());
    }
    if domid == DOMID_IO || domid == DOMID_XEN {
        if !dom.privileged {
            return Err(XEN_EPERM.into());
        }
        log::warn!("d{}: DOMID_IO/DOMID_XEN mappings are not supported", dom.id);
        return Err(XEN_ESRCH.into());
    }
    if !env.mm.table.domain_exists(domid) {
        return Err(XEN_ESRCH.into());
    }
    if !dom.privileged {
        return Err(XEN_EPERM.into());
    }
    Ok(domid)
}

/// The resume handling shared by `mmu_update` and `mmuext_op`: the real count and
/// the number already done.
pub(super) fn batch_start<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    count: u64,
    pdone: u64,
) -> (u32, u32) {
    let mut count = count as u32; // `unsigned int` in the ABI
    let mut done = 0;
    if count & MMU_UPDATE_PREEMPTED != 0 {
        count &= !MMU_UPDATE_PREEMPTED;
        if pdone != 0 {
            done = env.read::<u32>(dom, pdone).unwrap_or(0);
        }
    }
    (count, done)
}

pub(super) fn batch_end<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    pdone: u64,
    done: u32,
    i: u32,
) {
    if pdone != 0 {
        // As in Xen, a failure to report progress is not an error of the batch.
        let _ = env.write(dom, pdone, &done.wrapping_add(i));
    }
    env.mm.reclaim(&mut *env.machine);
}

pub fn mmu_update<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    ureqs: u64,
    count: u64,
    pdone: u64,
    foreigndom: u64,
) -> Result<i64> {
    let (count, done) = batch_start(env, dom, count, pdone);
    let size = core::mem::size_of::<mmu_update>() as u64;
    if !rules::array_ok(ureqs, count as u64, size) {
        return Err(Error::FAULT);
    }
    let foreigndom = foreigndom as u32;
    let pt_dom = (foreigndom >> 16) as u16;
    let pt_owner = if pt_dom == 0 || pt_dom - 1 == dom.id {
        dom.id
    } else if !env.mm.table.domain_exists(pt_dom - 1) {
        return Err(XEN_ESRCH.into());
    } else if !dom.privileged {
        return Err(XEN_EPERM.into());
    } else {
        pt_dom - 1
    };
    let pg_owner = pg_owner(env, dom, foreigndom as u16)?;
    let mut rc = Ok(0);
    let mut i = 0;
    while i < count {
        let req: mmu_update = match env.read(dom, element::<mmu_update>(ureqs, i as u64)) {
            Ok(r) => r,
            Err(e) => {
                rc = Err(e);
                break;
            }
        };
        let (ptr, val) = (req.ptr, req.val);
        let cmd = (ptr & 7) as u32;
        let r = match cmd {
            MMU_NORMAL_PT_UPDATE | MMU_PT_UPDATE_PRESERVE_AD | MMU_PT_UPDATE_NO_TRANSLATE => {
                env.mm.table.update_entry(
                    &mut *env.machine,
                    ptr - cmd as u64,
                    val,
                    pt_owner,
                    pg_owner,
                    cmd == MMU_PT_UPDATE_PRESERVE_AD,
                )
            }
            MMU_MACHPHYS_UPDATE => {
                let mfn = ptr >> PAGE_SHIFT;
                env.mm.table.get_page(mfn, pg_owner).map(|()| {
                    env.mm.m2p.set(&mut *env.machine, mfn, val);
                    env.mm.table.put_page(mfn);
                })
            }
            _ => Err(XEN_ENOSYS),
        };
        if let Err(e) = r {
            rc = Err(e.into());
            break;
        }
        i += 1;
    }
    batch_end(env, dom, pdone, done, i);
    rc
}

fn do_update_va_mapping<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    va: u64,
    val: u64,
    flags: u64,
    pg_owner: u16,
) -> Result<i64> {
    if !rules::guest_addr_ok(va) {
        return Err(XEN_EINVAL.into());
    }
    let Some(l1) = crate::machine::l1_table(&*env.machine, dom.l4, va) else {
        return Err(XEN_EINVAL.into());
    };
    let is_own_l1 = env.mm.table.page(l1).is_some_and(|p| {
        p.owner == crate::mm::Owner::Domain(dom.id) && p.ty == PageType::L1 && p.is_live_table()
    });
    if !is_own_l1 {
        return Err(XEN_EINVAL.into());
    }
    let r = env.mm.table.mod_entry(
        &mut *env.machine,
        l1,
        paging::index(va, 1),
        val,
        pg_owner,
        false,
    );
    env.mm.reclaim(&mut *env.machine);
    r?;
    // Every return to the guest reloads CR3 (see `mm`), which performs any flush
    // asked for; a vCPU mask pointer must still be readable, as in Xen.
    if matches!(flags & UVMF_FLUSHTYPE_MASK, UVMF_TLB_FLUSH | UVMF_INVLPG) {
        let bmap = flags & !UVMF_FLUSHTYPE_MASK;
        if bmap != UVMF_LOCAL && bmap != UVMF_ALL {
            env.read::<u64>(dom, bmap)?;
        }
    }
    Ok(0)
}

pub fn update_va_mapping<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    va: u64,
    val: u64,
    flags: u64,
) -> Result<i64> {
    let id = dom.id;
    do_update_va_mapping(env, dom, va, val, flags, id)
}

pub fn update_va_mapping_otherdomain<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    va: u64,
    val: u64,
    flags: u64,
    domid: u64,
) -> Result<i64> {
    if !dom.privileged {
        return Err(XEN_EPERM.into());
    }
    let owner = pg_owner(env, dom, domid as u16)?;
    do_update_va_mapping(env, dom, va, val, flags, owner)
}
