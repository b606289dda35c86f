//! `grant_table_op` (`grant_table.h`; Xen 4.17's `do_grant_table_op` in
//! xen/common/grant_table.c, and `create_grant_pv_mapping`/`replace_grant_pv_mapping`
//! of xen/arch/x86/pv/grant_table.c for host mappings): grant tables v1 for PV guests.
//!
//! Operations: `setup_table` (frame numbers are MFNs, as for any PV guest),
//! `query_size`, `set_version` (1; 2 is `-ENOSYS`, Xen's answer when v2 is disabled),
//! `get_version`, `get_status_frames` (a v1 table has none: `GNTST_general_error` unless
//! 0 frames are asked for), `map_grant_ref`, `unmap_grant_ref`, `unmap_and_replace`,
//! `copy`. Not offered (`-ENOSYS`): `transfer`, `swap_grant_ref`, `cache_flush`,
//! `dump_table`.
//!
//! Per-operation status codes and their order of checks are Xen's. In particular a grant
//! that names another domain, is not `GTF_permit_access`, or is read-only and asked
//! for writing is `GNTST_general_error` (Xen's `_set_status_v1`), a granted frame the
//! granter does not own is `GNTST_bad_page`, an unknown or already unmapped handle is
//! `GNTST_bad_handle`.
//!
//! Host mappings go into the mapper's current page tables: `host_addr` is a linear
//! address whose L1 must exist, or with `GNTMAP_contains_pte` the machine address of the
//! PTE; either way the L1 must be a live L1 table of the mapper. The PTE is
//! present, accessed, dirty, NX, user (a 64-bit PV kernel runs in ring 3), writable
//! unless `GNTMAP_readonly`. The mapping holds a general reference on the frame and,
//! writable, a writable type reference, so the frame cannot become a page table nor be
//! freed while mapped. The shim behaves as a release build of Xen, where `_PAGE_GNTTAB`
//! is 0: a grant PTE cleared through `mmu_update`/`update_va_mapping` drops the
//! references the PTE held, like any PTE, and the grant stays pinned (its granter sees
//! it in use) until the mapper dies; `unmap_grant_ref` of it then fails with
//! `GNTST_general_error` (the PTE no longer maps the frame).
//!
//! Deviations from Xen, each on the safe side: a dead domain (torn down, record kept)
//! is `GNTST_bad_domain` as a granter or copy party; a mapper's unmap of a grant whose
//! granter is gone (dead or destroyed) still removes the mapping and drops its
//! references (Xen keeps a dying granter as a zombie until then; it would crash the
//! mapper if the granter had vanished). Batches are preempted after [`BATCH`]
//! operations and re-issued for the rest (Xen's continuation); inside a multicall,
//! where the shim cannot re-issue, more than [`MAX_IN_MULTICALL`] operations are
//! `-EINVAL`.

use core::mem::{offset_of, size_of};

use xen_sys::*;

use super::env::{continuation, err, Env};
use super::mmu::{guest_l1, read_guest, write_guest};
use crate::domain::lookup;
use crate::domain::Domain;
use crate::machine::{Machine, Mfn, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::{rules, PageType};
use crate::paging::{self, Pte, ACCESSED, DIRTY, NX, PRESENT, USER, WRITABLE};
use crate::state::grant_table::{pin_of, Mapping, Status, PIN_HSTR, PIN_HSTW};
use xen_sys::domid_t;

/// Operations of a batch run before the call is preempted and re-issued.
pub const BATCH: u32 = 128;
/// Most operations of one call inside a multicall (see the module doc).
pub const MAX_IN_MULTICALL: u32 = 1024;
/// `GNTTABOP_CONTINUATION_ARG_SHIFT`: the bits above a command number are only for
/// `cache_flush` continuations (private to grant_table.c, part of the ABI).
const GNTTABOP_CMD_MASK: u64 = (1 << 12) - 1;
/// `_PAGE_AVAIL` (PTE bits 9..11), where `GNTMAP_guest_avail*` bits go.
const PAGE_AVAIL_SHIFT: u32 = 9;

const ST_OK: Status = GNTST_okay as Status;
const ST_GENERAL: Status = GNTST_general_error as Status;

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default())
}
fn put(b: &mut [u8], o: usize, v: &[u8]) {
    b[o..o + v.len()].copy_from_slice(v);
}

pub fn grant_table_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    uop: u64,
    count: u64,
) -> i64 {
    let count = count as u32; // `unsigned int` in the ABI
    if (count as i32) < 0 {
        return err(XEN_EINVAL);
    }
    if cmd & !GNTTABOP_CMD_MASK != 0 {
        // Only cache_flush carries continuation bits, and it is not offered.
        return err(XEN_EINVAL);
    }
    let r = match cmd as u32 {
        GNTTABOP_map_grant_ref => {
            batch::<{ size_of::<gnttab_map_grant_ref>() }, M>(env, dom, cmd, uop, count, map_op)
        }
        GNTTABOP_unmap_grant_ref => {
            batch::<{ size_of::<gnttab_unmap_grant_ref>() }, M>(env, dom, cmd, uop, count, unmap_op)
        }
        GNTTABOP_unmap_and_replace => batch::<{ size_of::<gnttab_unmap_and_replace>() }, M>(
            env,
            dom,
            cmd,
            uop,
            count,
            unmap_and_replace_op,
        ),
        GNTTABOP_copy => {
            batch::<{ size_of::<gnttab_copy>() }, M>(env, dom, cmd, uop, count, copy_op)
        }
        GNTTABOP_setup_table => setup_table(env, dom, uop, count),
        GNTTABOP_query_size => query_size(env, dom, uop, count),
        GNTTABOP_set_version => set_version(env, dom, uop),
        GNTTABOP_get_version => get_version(env, dom, uop),
        GNTTABOP_get_status_frames => get_status_frames(env, dom, uop, count),
        op => {
            log::warn!("d{}: grant_table_op {op} not implemented: -ENOSYS", dom.id);
            Err(err(XEN_ENOSYS))
        }
    };
    env.mm.reclaim(&mut *env.machine);
    r.unwrap_or_else(|e| e)
}

/// Runs `op` on each of the `count` structures of `N` bytes at `uop`, writing each back
/// (the op decides which bytes change); preempts after [`BATCH`].
fn batch<const N: usize, M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    uop: u64,
    count: u32,
    op: fn(&mut Env<'_, M>, &mut Domain, &mut [u8; N]),
) -> Result<i64, i64> {
    if !rules::array_ok(uop, count as u64, N as u64) {
        return Err(err(XEN_EFAULT));
    }
    if dom.vcpu.in_multicall && count > MAX_IN_MULTICALL {
        log::warn!(
            "d{}: grant_table_op of {count} operations in a multicall refused",
            dom.id
        );
        return Err(err(XEN_EINVAL));
    }
    for i in 0..count {
        let at = uop + i as u64 * N as u64;
        if i == BATCH && !dom.vcpu.in_multicall {
            return Ok(continuation(
                dom,
                __HYPERVISOR_grant_table_op,
                &[cmd, at, (count - i) as u64],
            ));
        }
        let mut b = read_guest::<N, M>(env, dom, at)?;
        op(env, dom, &mut b);
        write_guest(env, dom, at, &b)?;
    }
    Ok(0)
}

fn setup_table<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
    count: u32,
) -> Result<i64, i64> {
    if count != 1 {
        return Err(err(XEN_EINVAL));
    }
    let op = read_guest::<{ size_of::<gnttab_setup_table>() }, M>(env, dom, uop)?;
    let nr = le32(&op, offset_of!(gnttab_setup_table, nr_frames));
    let list = le64(&op, offset_of!(gnttab_setup_table, frame_list));
    if !rules::array_ok(list, nr as u64, 8) {
        return Err(err(XEN_EFAULT));
    }
    let status = match lookup::live(
        dom,
        env.domains,
        le16(&op, offset_of!(gnttab_setup_table, dom)),
    ) {
        None => GNTST_bad_domain as Status,
        Some(id) if !lookup::may_act_on(dom, id) => GNTST_permission_denied as Status,
        Some(id) => {
            let Env {
                machine,
                mm,
                domains,
                ..
            } = env;
            let d = lookup::this_or_caller(dom, domains, id).ok_or(err(XEN_ESRCH))?;
            if nr > d.grant.max_frames() {
                log::info!(
                    "d{id} is limited to {} grant-table frames",
                    d.grant.max_frames()
                );
                ST_GENERAL
            } else if d
                .grant
                .grow(&mut **machine, mm.table, mm.alloc, id, nr)
                .is_err()
            {
                ST_GENERAL
            } else {
                let frames: alloc::vec::Vec<Mfn> = d.grant.frames()[..nr as usize].to_vec();
                let mut st = ST_OK;
                for (i, f) in frames.iter().enumerate() {
                    if write_guest(env, dom, list + i as u64 * 8, &f.to_le_bytes()).is_err() {
                        st = GNTST_bad_virt_addr as Status;
                    }
                }
                st
            }
        }
    };
    let at = uop + offset_of!(gnttab_setup_table, status) as u64;
    write_guest(env, dom, at, &status.to_le_bytes()).map(|()| 0)
}

fn query_size<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
    count: u32,
) -> Result<i64, i64> {
    if count != 1 {
        return Err(err(XEN_EINVAL));
    }
    let mut op = read_guest::<{ size_of::<gnttab_query_size>() }, M>(env, dom, uop)?;
    let status = match lookup::live(
        dom,
        env.domains,
        le16(&op, offset_of!(gnttab_query_size, dom)),
    ) {
        None => GNTST_bad_domain as Status,
        Some(id) if !lookup::may_act_on(dom, id) => GNTST_permission_denied as Status,
        Some(id) => {
            let d = lookup::this_or_caller(dom, env.domains, id).ok_or(err(XEN_ESRCH))?;
            let nr = d.grant.frames().len() as u32;
            let max = d.grant.max_frames();
            put(
                &mut op,
                offset_of!(gnttab_query_size, nr_frames),
                &nr.to_le_bytes(),
            );
            put(
                &mut op,
                offset_of!(gnttab_query_size, max_nr_frames),
                &max.to_le_bytes(),
            );
            ST_OK
        }
    };
    put(
        &mut op,
        offset_of!(gnttab_query_size, status),
        &status.to_le_bytes(),
    );
    write_guest(env, dom, uop, &op).map(|()| 0)
}

fn set_version<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
) -> Result<i64, i64> {
    let op = read_guest::<4, M>(env, dom, uop)?;
    let rc = match u32::from_le_bytes(op) {
        1 => 0,
        // As a Xen whose `gnttab=max-ver:1`: "behave as before set_version was
        // introduced".
        2 => err(XEN_ENOSYS),
        _ => err(XEN_EINVAL),
    };
    // The version in use is written back whatever the outcome.
    write_guest(env, dom, uop, &1u32.to_le_bytes())?;
    Ok(rc)
}

fn get_version<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
) -> Result<i64, i64> {
    let op = read_guest::<{ size_of::<gnttab_get_version>() }, M>(env, dom, uop)?;
    let id = lookup::live(
        dom,
        env.domains,
        le16(&op, offset_of!(gnttab_get_version, dom)),
    )
    .ok_or(err(XEN_ESRCH))?;
    if !lookup::may_act_on(dom, id) {
        return Err(err(XEN_EPERM));
    }
    let at = uop + offset_of!(gnttab_get_version, version) as u64;
    write_guest(env, dom, at, &1u32.to_le_bytes()).map(|()| 0)
}

fn get_status_frames<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
    count: u32,
) -> Result<i64, i64> {
    if count != 1 {
        return Err(err(XEN_EINVAL));
    }
    let op = read_guest::<{ size_of::<gnttab_get_status_frames>() }, M>(env, dom, uop)?;
    let nr = le32(&op, offset_of!(gnttab_get_status_frames, nr_frames));
    let status = match lookup::live(
        dom,
        env.domains,
        le16(&op, offset_of!(gnttab_get_status_frames, dom)),
    ) {
        None => GNTST_bad_domain as Status,
        Some(id) if !lookup::may_act_on(dom, id) => GNTST_permission_denied as Status,
        // A v1 table has no status frames.
        Some(_) if nr > 0 => {
            log::info!("d{}: status frames asked of a v1 grant table", dom.id);
            ST_GENERAL
        }
        Some(_) => ST_OK,
    };
    let at = uop + offset_of!(gnttab_get_status_frames, status) as u64;
    write_guest(env, dom, at, &status.to_le_bytes()).map(|()| 0)
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
    env: &Env<'_, M>,
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
        let Some(l1) = guest_l1(env, dom, addr) else {
            log::warn!("d{}: no L1 PTE for linear address {addr:#x}", dom.id);
            return None;
        };
        (l1, paging::index(addr, 1))
    };
    env.mm
        .table
        .is_live_l1_of(l1, dom.id)
        .then_some((l1, index))
}

/// `create_grant_pv_mapping`: writes the grant PTE; the old entry's references go.
fn create_host_mapping<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    addr: u64,
    mfn: Mfn,
    flags: u32,
) -> Result<(), Status> {
    let (l1, index) = host_slot(env, dom, addr, flags).ok_or(ST_GENERAL)?;
    let old = env
        .mm
        .table
        .install_l1e(&mut *env.machine, l1, index, grant_pte(mfn, flags))
        .map_err(|_| ST_GENERAL)?;
    env.mm.table.put_l1e(&mut *env.machine, old);
    Ok(())
}

/// `steal_linear_address`: zaps the PTE mapping `linear`; its references move with the
/// returned entry.
fn steal_linear<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    linear: u64,
) -> Option<u64> {
    let (l1, index) = host_slot(env, dom, linear, 0)?;
    env.mm
        .table
        .install_l1e(&mut *env.machine, l1, index, 0)
        .ok()
}

/// `replace_grant_pv_mapping`: the PTE at `addr` must map `mfn` present and with the
/// grant's write permission; it is replaced by the entry at `new_addr` (stolen) or
/// cleared. The grant's references are the caller's to drop.
fn replace_host_mapping<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
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
        steal_linear(env, dom, new_addr).ok_or(ST_GENERAL)?
    } else {
        0
    };
    let fail = |env: &mut Env<'_, M>| {
        env.mm.table.put_l1e(&mut *env.machine, new);
        Err(ST_GENERAL)
    };
    let Some((l1, index)) = host_slot(env, dom, addr, flags) else {
        return fail(env);
    };
    let old = Pte(env
        .machine
        .frame(l1)
        .map_or(0, |f| crate::machine::read_u64(f, index)));
    let writable = flags & GNTMAP_readonly == 0;
    if !old.present() || old.mfn() != mfn || old.writable() != writable {
        log::error!(
            "d{}: PTE {:#x} for {addr:#x} does not match the grant of {mfn:#x}",
            dom.id,
            old.0
        );
        return fail(env);
    }
    if env
        .mm
        .table
        .install_l1e(&mut *env.machine, l1, index, new)
        .is_err()
    {
        return fail(env);
    }
    Ok(())
}

/// Drops what a (partial) mapping took: `types` writable type references, `refs`
/// general references, and the pins.
#[allow(clippy::too_many_arguments)]
fn undo_map<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    rd: domid_t,
    gref: u32,
    mfn: Mfn,
    flags: u32,
    types: u32,
    refs: u32,
) {
    for _ in 0..types {
        env.mm.table.put_page_type(&mut *env.machine, mfn);
    }
    for _ in 0..refs {
        env.mm.table.put_page(mfn);
    }
    if let Some(g) = lookup::this_or_caller(dom, env.domains, rd) {
        g.grant.release(
            &mut *env.machine,
            gref,
            pin_of(flags),
            flags & GNTMAP_readonly != 0,
        );
    }
}

/// `map_grant_ref` of one `gnttab_map_grant_ref`.
fn map_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    b: &mut [u8; size_of::<gnttab_map_grant_ref>()],
) {
    let host_addr = le64(b, offset_of!(gnttab_map_grant_ref, host_addr));
    let flags = le32(b, offset_of!(gnttab_map_grant_ref, flags));
    let gref = le32(b, offset_of!(gnttab_map_grant_ref, ref_));
    let rd = le16(b, offset_of!(gnttab_map_grant_ref, dom));
    let status = match map_grant_ref(env, dom, host_addr, flags, gref, rd) {
        Ok((handle, mfn)) => {
            put(
                b,
                offset_of!(gnttab_map_grant_ref, handle),
                &handle.to_le_bytes(),
            );
            put(
                b,
                offset_of!(gnttab_map_grant_ref, dev_bus_addr),
                &(mfn << PAGE_SHIFT).to_le_bytes(),
            );
            ST_OK
        }
        Err(s) => s,
    };
    put(
        b,
        offset_of!(gnttab_map_grant_ref, status),
        &status.to_le_bytes(),
    );
}

/// Maps grant `gref` of domain `rd` for `dom`; returns the handle and the frame.
fn map_grant_ref<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    host_addr: u64,
    flags: u32,
    gref: u32,
    rd: domid_t,
) -> Result<(u32, Mfn), Status> {
    if flags & (GNTMAP_device_map | GNTMAP_host_map) == 0 {
        log::info!("d{}: bad flags in grant map op: {flags:#x}", dom.id);
        return Err(GNTST_bad_gntref as Status);
    }
    // rcu_lock_domain_by_id: a real id (DOMID_SELF is not one), alive.
    let exists = rd == dom.id || env.domains.get(rd).is_some_and(|d| !d.dead);
    if !exists {
        return Err(GNTST_bad_domain as Status);
    }
    if !dom.grant.has_free_handle() {
        log::info!("d{}: no maptrack handle left", dom.id);
        return Err(GNTST_no_device_space as Status);
    }
    let ld = dom.id;
    let ro = flags & GNTMAP_readonly != 0;
    let (mfn, took) = {
        let g = lookup::this_or_caller(dom, env.domains, rd).ok_or(GNTST_bad_domain as Status)?;
        g.grant.acquire(
            &mut *env.machine,
            env.mm.table,
            rd,
            gref,
            ld,
            ro,
            pin_of(flags),
            true,
        )?
    };
    let (mut refs, mut types) = (took as u32, 0);
    let fail = |env: &mut Env<'_, M>, dom: &mut Domain, refs: u32, types: u32| {
        log::warn!("d{ld}: could not pin grant frame {mfn:#x} of d{rd}");
        undo_map(env, dom, rd, gref, mfn, flags, types, refs);
        Err(ST_GENERAL)
    };
    // An entry already pinned: the reference its owner still holds is taken here
    // (page_get_owner_and_reference, owner == rd).
    if refs == 0 {
        if env.mm.table.get_page(mfn, rd).is_err() {
            return fail(env, dom, refs, types);
        }
        refs = 1;
    }
    let writable = |env: &mut Env<'_, M>| {
        env.mm
            .table
            .get_page_type(&mut *env.machine, mfn, PageType::Writable)
            .is_ok()
    };
    if flags & GNTMAP_device_map != 0 && !ro {
        if !writable(env) {
            return fail(env, dom, refs, types);
        }
        types += 1;
    }
    if flags & GNTMAP_host_map != 0 {
        if flags & GNTMAP_device_map != 0 {
            if env.mm.table.get_page(mfn, rd).is_err() {
                return fail(env, dom, refs, types);
            }
            refs += 1;
        }
        if !ro {
            if !writable(env) {
                return fail(env, dom, refs, types);
            }
            types += 1;
        }
        if let Err(s) = create_host_mapping(env, dom, host_addr, mfn, flags) {
            undo_map(env, dom, rd, gref, mfn, flags, types, refs);
            return Err(s);
        }
    }
    let handle = dom.grant.insert(Mapping {
        granter: rd,
        gref,
        flags,
        mfn,
        host_addr,
    });
    // A free handle was checked first and nothing since used one.
    handle
        .map(|h| (h, mfn))
        .ok_or(GNTST_no_device_space as Status)
}

fn unmap_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    b: &mut [u8; size_of::<gnttab_unmap_grant_ref>()],
) {
    let status = unmap_common(
        env,
        dom,
        le64(b, offset_of!(gnttab_unmap_grant_ref, host_addr)),
        le64(b, offset_of!(gnttab_unmap_grant_ref, dev_bus_addr)),
        le32(b, offset_of!(gnttab_unmap_grant_ref, handle)),
        0,
    );
    put(
        b,
        offset_of!(gnttab_unmap_grant_ref, status),
        &status.to_le_bytes(),
    );
}

fn unmap_and_replace_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    b: &mut [u8; size_of::<gnttab_unmap_and_replace>()],
) {
    let status = unmap_common(
        env,
        dom,
        le64(b, offset_of!(gnttab_unmap_and_replace, host_addr)),
        0,
        le32(b, offset_of!(gnttab_unmap_and_replace, handle)),
        le64(b, offset_of!(gnttab_unmap_and_replace, new_addr)),
    );
    put(
        b,
        offset_of!(gnttab_unmap_and_replace, status),
        &status.to_le_bytes(),
    );
}

/// `unmap_common` and `unmap_common_complete`: removes the host mapping (if
/// `host_addr` is given and the handle has one) and the device mapping (if
/// `dev_bus_addr` is given and it has one); the handle goes with its last mapping.
fn unmap_common<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    host_addr: u64,
    dev_bus_addr: u64,
    handle: u32,
    new_addr: u64,
) -> Status {
    let Some(map) = dom.grant.mapping(handle).copied() else {
        log::info!("d{}: bad handle {handle:#x}", dom.id);
        return GNTST_bad_handle as Status;
    };
    if dev_bus_addr != 0 && dev_bus_addr != map.mfn << PAGE_SHIFT {
        log::warn!(
            "d{}: bus address {dev_bus_addr:#x} does not match the grant ({:#x})",
            dom.id,
            map.mfn << PAGE_SHIFT
        );
        return ST_GENERAL;
    }
    let mut done = 0;
    if host_addr != 0 && map.flags & GNTMAP_host_map != 0 {
        if let Err(s) = replace_host_mapping(env, dom, host_addr, map.mfn, new_addr, map.flags) {
            return s;
        }
        done |= GNTMAP_host_map;
    }
    if dev_bus_addr != 0 && map.flags & GNTMAP_device_map != 0 {
        done |= GNTMAP_device_map;
    }
    if done == 0 {
        return ST_OK;
    }
    let left = map.flags & !done;
    if left & (GNTMAP_host_map | GNTMAP_device_map) == 0 {
        dom.grant.remove(handle);
    } else if let Some(m) = dom.grant.mapping_mut(handle) {
        m.flags = left;
    }
    let ro = map.flags & GNTMAP_readonly != 0;
    // Each mapping kind held one general reference, and a writable type one if RW.
    for kind in [GNTMAP_device_map, GNTMAP_host_map] {
        if done & kind != 0 {
            if ro {
                env.mm.table.put_page(map.mfn);
            } else {
                env.mm.table.put_page_and_type(&mut *env.machine, map.mfn);
            }
        }
    }
    let pin = pin_of(done | (map.flags & GNTMAP_readonly));
    let ld = dom.id;
    let granter = lookup::this_or_caller(dom, env.domains, map.granter);
    crate::common::grant_table::unpin(&mut *env.machine, granter, ld, &map, pin);
    ST_OK
}

/// One side of a copy: a frame held for the copy.
struct CopyBuf {
    mfn: Mfn,
    /// The grant it came through: granter and reference.
    grant: Option<(domid_t, u32)>,
    readonly: bool,
}

/// `gnttab_copy_lock_domain`: only `DOMID_SELF` may name a frame directly.
fn copy_domain<M: Machine + ?Sized>(
    env: &Env<'_, M>,
    dom: &Domain,
    domid: domid_t,
    is_gref: bool,
) -> Result<domid_t, Status> {
    if domid != DOMID_SELF && !is_gref {
        return Err(GNTST_permission_denied as Status);
    }
    lookup::live(dom, env.domains, domid).ok_or(GNTST_bad_domain as Status)
}

/// `gnttab_copy_claim_buf`: the frame behind `ptr` (a grant of `rd`, or the caller's
/// own frame), with a general reference, and for the destination a writable type one.
fn claim_buf<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    rd: domid_t,
    ptr: u64,
    is_gref: bool,
    readonly: bool,
) -> Result<CopyBuf, Status> {
    let ld = dom.id;
    let buf = if is_gref {
        let gref = ptr as u32;
        let pin = if readonly { PIN_HSTR } else { PIN_HSTW };
        let g = lookup::this_or_caller(dom, env.domains, rd).ok_or(GNTST_bad_domain as Status)?;
        let (mfn, took) = g.grant.acquire(
            &mut *env.machine,
            env.mm.table,
            rd,
            gref,
            ld,
            readonly,
            pin,
            false,
        )?;
        let buf = CopyBuf {
            mfn,
            grant: Some((rd, gref)),
            readonly,
        };
        if !took && env.mm.table.get_page(mfn, rd).is_err() {
            g.grant.release(&mut *env.machine, gref, pin, readonly);
            return Err(GNTST_bad_domain as Status);
        }
        buf
    } else {
        if env.mm.table.get_page(ptr, ld).is_err() {
            log::warn!("d{ld}: copy frame {ptr:#x} invalid");
            return Err(GNTST_bad_page as Status);
        }
        CopyBuf {
            mfn: ptr,
            grant: None,
            readonly,
        }
    };
    if !readonly
        && env
            .mm
            .table
            .get_page_type(&mut *env.machine, buf.mfn, PageType::Writable)
            .is_err()
    {
        log::warn!("d{ld}: could not get writable frame {:#x}", buf.mfn);
        release_buf(env, dom, &buf, false);
        return Err(ST_GENERAL);
    }
    Ok(buf)
}

/// `gnttab_copy_release_buf`.
fn release_buf<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    buf: &CopyBuf,
    typed: bool,
) {
    if typed {
        env.mm.table.put_page_type(&mut *env.machine, buf.mfn);
    }
    env.mm.table.put_page(buf.mfn);
    if let Some((rd, gref)) = buf.grant {
        let pin = if buf.readonly { PIN_HSTR } else { PIN_HSTW };
        if let Some(g) = lookup::this_or_caller(dom, env.domains, rd).filter(|g| !g.dead) {
            g.grant.release(&mut *env.machine, gref, pin, buf.readonly);
        }
    }
}

fn copy_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    b: &mut [u8; size_of::<gnttab_copy>()],
) {
    let status = copy_one(env, dom, b).err().unwrap_or(ST_OK);
    put(b, offset_of!(gnttab_copy, status), &status.to_le_bytes());
}

/// `gnttab_copy_one`, with each side claimed for this operation alone.
fn copy_one<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    b: &[u8; size_of::<gnttab_copy>()],
) -> Result<(), Status> {
    let ptr = |side: usize| {
        let o = |f: usize| side + f;
        (
            le64(b, o(offset_of!(gnttab_copy_gnttab_copy_ptr, u))),
            le16(b, o(offset_of!(gnttab_copy_gnttab_copy_ptr, domid))),
            le16(b, o(offset_of!(gnttab_copy_gnttab_copy_ptr, offset))) as usize,
        )
    };
    let (src_ptr, src_dom, src_off) = ptr(offset_of!(gnttab_copy, source));
    let (dst_ptr, dst_dom, dst_off) = ptr(offset_of!(gnttab_copy, dest));
    let len = le16(b, offset_of!(gnttab_copy, len)) as usize;
    let flags = le16(b, offset_of!(gnttab_copy, flags)) as u32;
    let src_gref = flags & GNTCOPY_source_gref != 0;
    let dst_gref = flags & GNTCOPY_dest_gref != 0;
    // A grant reference is 32 bits of the union.
    let src_ptr = if src_gref {
        src_ptr as u32 as u64
    } else {
        src_ptr
    };
    let dst_ptr = if dst_gref {
        dst_ptr as u32 as u64
    } else {
        dst_ptr
    };
    let sd = copy_domain(env, dom, src_dom, src_gref)?;
    let dd = copy_domain(env, dom, dst_dom, dst_gref)?;
    let src = claim_buf(env, dom, sd, src_ptr, src_gref, true)?;
    let dst = match claim_buf(env, dom, dd, dst_ptr, dst_gref, false) {
        Ok(d) => d,
        Err(s) => {
            release_buf(env, dom, &src, false);
            return Err(s);
        }
    };
    let r = if src_off + len > PAGE_SIZE || dst_off + len > PAGE_SIZE {
        log::warn!("d{}: copy beyond page area", dom.id);
        Err(GNTST_bad_copy_arg as Status)
    } else {
        let mut tmp = [0u8; PAGE_SIZE];
        match env.machine.frame(src.mfn) {
            Some(f) => {
                tmp[..len].copy_from_slice(&f[src_off..src_off + len]);
                crate::machine::write_bytes(&mut *env.machine, dst.mfn, dst_off, &tmp[..len]);
                Ok(())
            }
            None => Err(ST_GENERAL),
        }
    };
    release_buf(env, dom, &dst, true);
    release_buf(env, dom, &src, false);
    r
}
