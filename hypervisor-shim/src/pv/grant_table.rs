//! PV grant mappings in page tables (Xen's `create_grant_pv_mapping` and
//! `replace_grant_pv_mapping`, xen/arch/x86/pv/grant_table.c): the host side of
//! `map_grant_ref`/`unmap_grant_ref` for a PV mapper, which [`common::grant_table`]
//! calls through [`HostMapping`].
//!
//! Host mappings go into the mapper's current page tables: `host_addr` is a linear
//! address whose L1 must exist, or with `GNTMAP_contains_pte` the machine address of the
//! PTE; either way the L1 must be a live L1 table of the mapper. The PTE is
//! present, accessed, dirty, NX, user (a 64-bit PV kernel runs in ring 3), writable
//! unless `GNTMAP_readonly`.
//!
//! [`common::grant_table`]: crate::common::grant_table

use xen_sys::*;

use crate::common::grant_table::{Ctx, HostMapping};
use crate::domain::Domain;
use crate::machine::{Machine, Mfn, PAGE_SHIFT};
use crate::mm::rules;
use crate::paging::{self, Pte, ACCESSED, DIRTY, NX, PRESENT, USER, WRITABLE};
use crate::state::grant_table::Status;

/// `_PAGE_AVAIL` (PTE bits 9..11), where `GNTMAP_guest_avail*` bits go.
const PAGE_AVAIL_SHIFT: u32 = 9;
const ST_GENERAL: Status = GNTST_general_error as Status;

/// Host mappings of a PV domain: PTEs in its own page tables.
pub struct Pv;

impl HostMapping for Pv {
    /// `create_grant_pv_mapping`: writes the grant PTE; the old entry's references go.
    fn create<M: Machine + ?Sized>(
        cx: &mut Ctx<'_, M>,
        dom: &Domain,
        addr: u64,
        mfn: Mfn,
        flags: u32,
    ) -> Result<(), Status> {
        let (l1, index) = host_slot(cx, dom, addr, flags).ok_or(ST_GENERAL)?;
        let old = cx
            .table
            .install_l1e(&mut *cx.m, l1, index, grant_pte(mfn, flags))
            .map_err(|_| ST_GENERAL)?;
        cx.table.put_l1e(&mut *cx.m, old);
        Ok(())
    }

    /// `replace_grant_pv_mapping`: the PTE at `addr` must map `mfn` present and with the
    /// grant's write permission; it is replaced by the entry at `new_addr` (stolen) or
    /// cleared. The grant's references are the caller's to drop.
    fn replace<M: Machine + ?Sized>(
        cx: &mut Ctx<'_, M>,
        dom: &Domain,
        addr: u64,
        mfn: Mfn,
        new_addr: u64,
        flags: u32,
    ) -> Result<(), Status> {
        if flags & GNTMAP_contains_pte != 0 && new_addr != 0 {
            return Err(ST_GENERAL);
        }
        let new = if new_addr != 0 {
            steal_linear(cx, dom, new_addr).ok_or(ST_GENERAL)?
        } else {
            0
        };
        let fail = |cx: &mut Ctx<'_, M>| {
            cx.table.put_l1e(&mut *cx.m, new);
            Err(ST_GENERAL)
        };
        let Some((l1, index)) = host_slot(cx, dom, addr, flags) else {
            return fail(cx);
        };
        let old = Pte(cx
            .m
            .frame(l1)
            .map_or(0, |f| crate::machine::read_u64(f, index)));
        let writable = flags & GNTMAP_readonly == 0;
        if !old.present() || old.mfn() != mfn || old.writable() != writable {
            log::error!(
                "d{}: PTE {:#x} for {addr:#x} does not match the grant of {mfn:#x}",
                dom.id,
                old.0
            );
            return fail(cx);
        }
        if cx.table.install_l1e(&mut *cx.m, l1, index, new).is_err() {
            return fail(cx);
        }
        Ok(())
    }
}

/// The PTE of a host mapping of `mfn` with `GNTMAP_*` `flags` (`grant_to_pte_flags`,
/// then `adjust_guest_l1e`: user, as the guest kernel runs in ring 3).
fn grant_pte(mfn: Mfn, flags: u32) -> u64 {
    let mut f = PRESENT | ACCESSED | DIRTY | NX | USER;
    if flags & GNTMAP_readonly == 0 {
        f |= WRITABLE;
    }
    f |= (((flags >> _GNTMAP_guest_avail0) & 7) as u64) << PAGE_AVAIL_SHIFT;
    Pte::new(mfn, f).0
}

/// The L1 table and slot `addr` names for a host mapping: with `GNTMAP_contains_pte`
/// the machine address of a PTE (8-byte aligned), else a linear address whose L1 the
/// mapper's current tables reach. The L1 must be a live L1 of the mapper.
fn host_slot<M: Machine + ?Sized>(
    cx: &Ctx<'_, M>,
    dom: &Domain,
    addr: u64,
    flags: u32,
) -> Option<(Mfn, usize)> {
    let (l1, index) = if flags & GNTMAP_contains_pte != 0 {
        if !addr.is_multiple_of(8) {
            log::warn!("d{}: misaligned PTE address {addr:#x}", dom.id);
            return None;
        }
        (addr >> PAGE_SHIFT, ((addr & 0xfff) / 8) as usize)
    } else {
        if !rules::guest_addr_ok(addr) {
            return None;
        }
        let Some(l1) = crate::machine::l1_table(&*cx.m, dom.l4, addr) else {
            log::warn!("d{}: no L1 PTE for linear address {addr:#x}", dom.id);
            return None;
        };
        (l1, paging::index(addr, 1))
    };
    cx.table.is_live_l1_of(l1, dom.id).then_some((l1, index))
}

/// `steal_linear_address`: zaps the PTE mapping `linear`; its references move with the
/// returned entry.
fn steal_linear<M: Machine + ?Sized>(
    cx: &mut Ctx<'_, M>,
    dom: &Domain,
    linear: u64,
) -> Option<u64> {
    let (l1, index) = host_slot(cx, dom, linear, 0)?;
    cx.table.install_l1e(&mut *cx.m, l1, index, 0).ok()
}
