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
//! The mechanisms are in `common::grant_table` (map, unmap and copy, with Xen's status
//! codes and their order of checks) and `pv::grant_table` (the PTE of a host mapping);
//! this file decodes the operations, calls them and writes the answers back.
//!
//! The shim behaves as a release build of Xen, where `_PAGE_GNTTAB`
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

use core::mem::size_of;

use xen_sys::*;

use super::env::{continuation, Env};
use super::error::{Error, Result};
use super::guest::{copy_field_to_guest, element, field_addr};
use crate::abi::FromGuest;
use crate::common::grant_table::{self as grant, CopySide, Ctx};
use crate::domain::lookup;
use crate::domain::Domain;
use crate::machine::{Machine, Mfn, PAGE_SHIFT};
use crate::mm::rules;
use crate::pv::grant_table::Pv;
use crate::state::grant_table::Status;
use xen_sys::domid_t;

/// Operations of a batch run before the call is preempted and re-issued.
pub const BATCH: u32 = 128;
/// Most operations of one call inside a multicall (see the module doc).
pub const MAX_IN_MULTICALL: u32 = 1024;
/// `GNTTABOP_CONTINUATION_ARG_SHIFT`: the bits above a command number are only for
/// `cache_flush` continuations (private to grant_table.c, part of the ABI).
const GNTTABOP_CMD_MASK: u64 = (1 << 12) - 1;

const ST_OK: Status = GNTST_okay as Status;
const ST_GENERAL: Status = GNTST_general_error as Status;

pub fn grant_table_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    uop: u64,
    count: u64,
) -> Result<i64> {
    let count = count as u32; // `unsigned int` in the ABI
    if (count as i32) < 0 {
        return Err(XEN_EINVAL.into());
    }
    if cmd & !GNTTABOP_CMD_MASK != 0 {
        // Only cache_flush carries continuation bits, and it is not offered.
        return Err(XEN_EINVAL.into());
    }
    let r = match cmd as u32 {
        GNTTABOP_map_grant_ref => {
            batch::<gnttab_map_grant_ref, M>(env, dom, cmd, uop, count, map_op)
        }
        GNTTABOP_unmap_grant_ref => {
            batch::<gnttab_unmap_grant_ref, M>(env, dom, cmd, uop, count, unmap_op)
        }
        GNTTABOP_unmap_and_replace => {
            batch::<gnttab_unmap_and_replace, M>(env, dom, cmd, uop, count, unmap_and_replace_op)
        }
        GNTTABOP_copy => batch::<gnttab_copy, M>(env, dom, cmd, uop, count, copy_op),
        GNTTABOP_setup_table => setup_table(env, dom, uop, count),
        GNTTABOP_query_size => query_size(env, dom, uop, count),
        GNTTABOP_set_version => set_version(env, dom, uop),
        GNTTABOP_get_version => get_version(env, dom, uop),
        GNTTABOP_get_status_frames => get_status_frames(env, dom, uop, count),
        op => {
            log::warn!("d{}: grant_table_op {op} not implemented: -ENOSYS", dom.id);
            Err(XEN_ENOSYS.into())
        }
    };
    env.mm.reclaim(&mut *env.machine);
    r
}

/// What the grant mechanisms work on, lent from `env`.
fn ctx<'e, M: Machine + ?Sized>(env: &'e mut Env<'_, M>) -> Ctx<'e, M> {
    Ctx {
        m: &mut *env.machine,
        table: &mut *env.mm.table,
        others: &mut *env.domains,
    }
}

/// An operation's outcome as its `status`: a grant status is the answer, an errno
/// ends the call.
fn status(r: Result<()>) -> Result<Status> {
    match r {
        Ok(()) => Ok(ST_OK),
        Err(Error::Grant(s)) => Ok(s),
        Err(e) => Err(e),
    }
}

/// Runs `op` on each of the `count` structures `T` at `uop` (the op reads its
/// structure and writes back what changes); preempts after [`BATCH`].
fn batch<T: FromGuest, M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    uop: u64,
    count: u32,
    op: fn(&mut Env<'_, M>, &mut Domain, u64) -> Result<()>,
) -> Result<i64> {
    if !rules::array_ok(uop, count as u64, size_of::<T>() as u64) {
        return Err(Error::FAULT);
    }
    if dom.vcpu.in_multicall && count > MAX_IN_MULTICALL {
        log::warn!(
            "d{}: grant_table_op of {count} operations in a multicall refused",
            dom.id
        );
        return Err(XEN_EINVAL.into());
    }
    for i in 0..count {
        let at = element::<T>(uop, i as u64);
        if i == BATCH && !dom.vcpu.in_multicall {
            return Ok(continuation(
                dom,
                __HYPERVISOR_grant_table_op,
                &[cmd, at, (count - i) as u64],
            ));
        }
        op(env, dom, at)?;
    }
    Ok(0)
}

/// The domain a table operation names (`DOMID_SELF` or an id): live, and one the
/// caller may act on; as a grant status otherwise.
fn target<M: Machine + ?Sized>(env: &Env<'_, M>, dom: &Domain, id: domid_t) -> Result<domid_t> {
    match lookup::live(dom, env.domains, id) {
        None => Err(Error::Grant(GNTST_bad_domain as Status)),
        Some(id) if !lookup::may_act_on(dom, id) => {
            Err(Error::Grant(GNTST_permission_denied as Status))
        }
        Some(id) => Ok(id),
    }
}

fn setup_table<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
    count: u32,
) -> Result<i64> {
    if count != 1 {
        return Err(XEN_EINVAL.into());
    }
    let mut op: gnttab_setup_table = env.read(dom, uop)?;
    let (nr, list) = (op.nr_frames, op.frame_list.p as u64);
    if !rules::array_ok(list, nr as u64, 8) {
        return Err(Error::FAULT);
    }
    op.status = status(grow_and_list(env, dom, op.dom, nr, list))?;
    copy_field_to_guest!(env, dom, uop, op.status).map(|()| 0)
}

/// `setup_table` proper: grows domain `id`'s table to `nr` frames and writes their
/// numbers at `list`.
fn grow_and_list<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    id: domid_t,
    nr: u32,
    list: u64,
) -> Result<()> {
    let id = target(env, dom, id)?;
    let Env {
        machine,
        mm,
        domains,
        ..
    } = &mut *env;
    let d = lookup::this_or_caller(dom, domains, id).ok_or(XEN_ESRCH)?;
    if nr > d.grant.max_frames() {
        log::info!(
            "d{id} is limited to {} grant-table frames",
            d.grant.max_frames()
        );
        return Err(Error::Grant(ST_GENERAL));
    }
    d.grant
        .grow(&mut **machine, mm.table, mm.alloc, id, nr)
        .map_err(|_| Error::Grant(ST_GENERAL))?;
    let frames: alloc::vec::Vec<Mfn> = d.grant.frames()[..nr as usize].to_vec();
    let mut r = Ok(());
    for (i, f) in frames.iter().enumerate() {
        if env.write(dom, element::<u64>(list, i as u64), f).is_err() {
            r = Err(Error::Grant(GNTST_bad_virt_addr as Status));
        }
    }
    r
}

fn query_size<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
    count: u32,
) -> Result<i64> {
    if count != 1 {
        return Err(XEN_EINVAL.into());
    }
    let mut op: gnttab_query_size = env.read(dom, uop)?;
    let sizes = target(env, dom, op.dom).and_then(|id| {
        let d = lookup::this_or_caller(dom, env.domains, id).ok_or(XEN_ESRCH)?;
        Ok((d.grant.frames().len() as u32, d.grant.max_frames()))
    });
    if let Ok((nr, max)) = sizes {
        (op.nr_frames, op.max_nr_frames) = (nr, max);
    }
    op.status = status(sizes.map(|_| ()))?;
    env.write(dom, uop, &op).map(|()| 0)
}

fn set_version<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
) -> Result<i64> {
    let mut op: gnttab_set_version = env.read(dom, uop)?;
    let rc = match op.version {
        1 => Ok(0),
        // As a Xen whose `gnttab=max-ver:1`: "behave as before set_version was
        // introduced".
        2 => Err(XEN_ENOSYS.into()),
        _ => Err(XEN_EINVAL.into()),
    };
    // The version in use is written back whatever the outcome.
    op.version = 1;
    env.write(dom, uop, &op)?;
    rc
}

fn get_version<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
) -> Result<i64> {
    let mut op: gnttab_get_version = env.read(dom, uop)?;
    let id = lookup::live(dom, env.domains, op.dom).ok_or(XEN_ESRCH)?;
    if !lookup::may_act_on(dom, id) {
        return Err(XEN_EPERM.into());
    }
    op.version = 1;
    copy_field_to_guest!(env, dom, uop, op.version).map(|()| 0)
}

fn get_status_frames<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    uop: u64,
    count: u32,
) -> Result<i64> {
    if count != 1 {
        return Err(XEN_EINVAL.into());
    }
    let mut op: gnttab_get_status_frames = env.read(dom, uop)?;
    op.status = status(target(env, dom, op.dom).and_then(|_| {
        if op.nr_frames > 0 {
            // A v1 table has no status frames.
            log::info!("d{}: status frames asked of a v1 grant table", dom.id);
            return Err(Error::Grant(ST_GENERAL));
        }
        Ok(())
    }))?;
    copy_field_to_guest!(env, dom, uop, op.status).map(|()| 0)
}

/// `map_grant_ref` of one `gnttab_map_grant_ref`.
fn map_op<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, at: u64) -> Result<()> {
    let mut op: gnttab_map_grant_ref = env.read(dom, at)?;
    let r = grant::map::<Pv, M>(&mut ctx(env), dom, op.host_addr, op.flags, op.ref_, op.dom);
    op.status = match r {
        Ok((handle, mfn)) => {
            op.handle = handle;
            op.dev_bus_addr = mfn << PAGE_SHIFT;
            ST_OK
        }
        Err(s) => s,
    };
    env.write(dom, at, &op)
}

fn unmap_op<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, at: u64) -> Result<()> {
    let mut op: gnttab_unmap_grant_ref = env.read(dom, at)?;
    op.status = grant::unmap::<Pv, M>(
        &mut ctx(env),
        dom,
        op.host_addr,
        op.dev_bus_addr,
        op.handle,
        0,
    );
    copy_field_to_guest!(env, dom, at, op.status)
}

fn unmap_and_replace_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    at: u64,
) -> Result<()> {
    let mut op: gnttab_unmap_and_replace = env.read(dom, at)?;
    op.status = grant::unmap::<Pv, M>(&mut ctx(env), dom, op.host_addr, 0, op.handle, op.new_addr);
    copy_field_to_guest!(env, dom, at, op.status)
}

fn copy_op<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, at: u64) -> Result<()> {
    let mut op: gnttab_copy = env.read(dom, at)?;
    // The unions (`ref` or `gmfn`) are read on their own, as 64 bits.
    let src = CopySide {
        ptr: env.read(dom, field_addr(at, &op, &op.source.u))?,
        domid: op.source.domid,
        offset: op.source.offset,
    };
    let dest = CopySide {
        ptr: env.read(dom, field_addr(at, &op, &op.dest.u))?,
        domid: op.dest.domid,
        offset: op.dest.offset,
    };
    op.status = grant::copy(&mut ctx(env), dom, src, dest, op.len, op.flags)
        .err()
        .unwrap_or(ST_OK);
    copy_field_to_guest!(env, dom, at, op.status)
}
