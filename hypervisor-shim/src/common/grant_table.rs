//! Grant operations across domains (Xen's xen/common/grant_table.c): map, unmap and
//! copy on the frames behind grants, the granter's side of dropping a mapping, and a
//! dying mapper's teardown. `hypercall/grant_table.rs` decodes the guest's operations
//! and calls these; the host side of a mapping (a PTE, for a PV mapper) is behind
//! [`HostMapping`] (`pv::grant_table`), as Xen's arch hooks are.
//!
//! A mapping holds a general reference on the frame and, writable, a writable type
//! reference, so the frame cannot become a page table nor be freed while mapped. Per
//! operation status codes (`GNTST_*`) and their order of checks are Xen's: a grant
//! that names another domain, is not `GTF_permit_access`, or is read-only and asked
//! for writing is `GNTST_general_error` (Xen's `_set_status_v1`), a granted frame the
//! granter does not own is `GNTST_bad_page`, an unknown or already unmapped handle is
//! `GNTST_bad_handle`.

use xen_sys::*;

use crate::domain::{lookup, Domain, Domains};
use crate::machine::{Machine, Mfn, PAGE_SHIFT, PAGE_SIZE};
use crate::mm::{FrameTable, PageType};
use crate::state::grant_table::{pin_of, Mapping, Status, PIN_HSTR, PIN_HSTW};

const ST_OK: Status = GNTST_okay as Status;
const ST_GENERAL: Status = GNTST_general_error as Status;

/// What grant operations work on besides the calling domain.
pub struct Ctx<'a, M: Machine + ?Sized> {
    pub m: &'a mut M,
    pub table: &'a mut FrameTable,
    /// Every other domain (the caller is out of it while its hypercall runs).
    pub others: &'a mut Domains,
}

/// The host side of a mapping: where the mapper's own address space gets it.
pub trait HostMapping {
    /// Maps `mfn` at `addr` for `dom` (`create_grant_host_mapping`, `GNTMAP_*` `flags`);
    /// the old entry's references go.
    fn create<M: Machine + ?Sized>(
        cx: &mut Ctx<'_, M>,
        dom: &Domain,
        addr: u64,
        mfn: Mfn,
        flags: u32,
    ) -> Result<(), Status>;

    /// Removes the mapping of `mfn` at `addr` (`replace_grant_host_mapping`), putting
    /// there what `new_addr` mapped (if not 0), which `new_addr` loses. The grant's
    /// references are the caller's to drop.
    fn replace<M: Machine + ?Sized>(
        cx: &mut Ctx<'_, M>,
        dom: &Domain,
        addr: u64,
        mfn: Mfn,
        new_addr: u64,
        flags: u32,
    ) -> Result<(), Status>;
}

/// Drops what a (partial) mapping took: `types` writable type references, `refs`
/// general references, and the pins.
#[allow(clippy::too_many_arguments)]
fn undo_map<M: Machine + ?Sized>(
    cx: &mut Ctx<'_, M>,
    dom: &mut Domain,
    rd: domid_t,
    gref: u32,
    mfn: Mfn,
    flags: u32,
    types: u32,
    refs: u32,
) {
    for _ in 0..types {
        cx.table.put_page_type(&mut *cx.m, mfn);
    }
    for _ in 0..refs {
        cx.table.put_page(mfn);
    }
    if let Some(g) = lookup::this_or_caller(dom, cx.others, rd) {
        g.grant.release(
            &mut *cx.m,
            gref,
            pin_of(flags),
            flags & GNTMAP_readonly != 0,
        );
    }
}

/// Maps grant `gref` of domain `rd` for `dom`; returns the handle and the frame.
pub fn map<H: HostMapping, M: Machine + ?Sized>(
    cx: &mut Ctx<'_, M>,
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
    let exists = lookup::by_id_ref(dom, cx.others, rd).is_some_and(|d| !d.dead);
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
        let g = lookup::this_or_caller(dom, cx.others, rd).ok_or(GNTST_bad_domain as Status)?;
        g.grant
            .acquire(&mut *cx.m, cx.table, rd, gref, ld, ro, pin_of(flags), true)?
    };
    let (mut refs, mut types) = (took as u32, 0);
    let fail = |cx: &mut Ctx<'_, M>, dom: &mut Domain, refs: u32, types: u32| {
        log::warn!("d{ld}: could not pin grant frame {mfn:#x} of d{rd}");
        undo_map(cx, dom, rd, gref, mfn, flags, types, refs);
        Err(ST_GENERAL)
    };
    // An entry already pinned: the reference its owner still holds is taken here
    // (page_get_owner_and_reference, owner == rd).
    if refs == 0 {
        if cx.table.get_page(mfn, rd).is_err() {
            return fail(cx, dom, refs, types);
        }
        refs = 1;
    }
    let writable = |cx: &mut Ctx<'_, M>| {
        cx.table
            .get_page_type(&mut *cx.m, mfn, PageType::Writable)
            .is_ok()
    };
    if flags & GNTMAP_device_map != 0 && !ro {
        if !writable(cx) {
            return fail(cx, dom, refs, types);
        }
        types += 1;
    }
    if flags & GNTMAP_host_map != 0 {
        if flags & GNTMAP_device_map != 0 {
            if cx.table.get_page(mfn, rd).is_err() {
                return fail(cx, dom, refs, types);
            }
            refs += 1;
        }
        if !ro {
            if !writable(cx) {
                return fail(cx, dom, refs, types);
            }
            types += 1;
        }
        if let Err(s) = H::create(cx, dom, host_addr, mfn, flags) {
            undo_map(cx, dom, rd, gref, mfn, flags, types, refs);
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

/// `unmap_common` and `unmap_common_complete`: removes the host mapping (if
/// `host_addr` is given and the handle has one) and the device mapping (if
/// `dev_bus_addr` is given and it has one); the handle goes with its last mapping.
pub fn unmap<H: HostMapping, M: Machine + ?Sized>(
    cx: &mut Ctx<'_, M>,
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
        if let Err(s) = H::replace(cx, dom, host_addr, map.mfn, new_addr, map.flags) {
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
                cx.table.put_page(map.mfn);
            } else {
                cx.table.put_page_and_type(&mut *cx.m, map.mfn);
            }
        }
    }
    let pin = pin_of(done | (map.flags & GNTMAP_readonly));
    let ld = dom.id;
    let granter = lookup::this_or_caller(dom, cx.others, map.granter);
    unpin(&mut *cx.m, granter, ld, &map, pin);
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
    cx: &Ctx<'_, M>,
    dom: &Domain,
    domid: domid_t,
    is_gref: bool,
) -> Result<domid_t, Status> {
    if domid != DOMID_SELF && !is_gref {
        return Err(GNTST_permission_denied as Status);
    }
    lookup::live(dom, cx.others, domid).ok_or(GNTST_bad_domain as Status)
}

/// `gnttab_copy_claim_buf`: the frame behind `ptr` (a grant of `rd`, or the caller's
/// own frame), with a general reference, and for the destination a writable type one.
fn claim_buf<M: Machine + ?Sized>(
    cx: &mut Ctx<'_, M>,
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
        let g = lookup::this_or_caller(dom, cx.others, rd).ok_or(GNTST_bad_domain as Status)?;
        let (mfn, took) = g
            .grant
            .acquire(&mut *cx.m, cx.table, rd, gref, ld, readonly, pin, false)?;
        let buf = CopyBuf {
            mfn,
            grant: Some((rd, gref)),
            readonly,
        };
        if !took && cx.table.get_page(mfn, rd).is_err() {
            log::warn!("d{ld}: copy through d{rd}'s grant {gref}: frame {mfn:#x} is not d{rd}'s");
            g.grant.release(&mut *cx.m, gref, pin, readonly);
            return Err(GNTST_bad_domain as Status);
        }
        buf
    } else {
        if cx.table.get_page(ptr, ld).is_err() {
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
        && cx
            .table
            .get_page_type(&mut *cx.m, buf.mfn, PageType::Writable)
            .is_err()
    {
        log::warn!("d{ld}: could not get writable frame {:#x}", buf.mfn);
        release_buf(cx, dom, &buf, false);
        return Err(ST_GENERAL);
    }
    Ok(buf)
}

/// `gnttab_copy_release_buf`.
fn release_buf<M: Machine + ?Sized>(
    cx: &mut Ctx<'_, M>,
    dom: &mut Domain,
    buf: &CopyBuf,
    typed: bool,
) {
    if typed {
        cx.table.put_page_type(&mut *cx.m, buf.mfn);
    }
    cx.table.put_page(buf.mfn);
    if let Some((rd, gref)) = buf.grant {
        let pin = if buf.readonly { PIN_HSTR } else { PIN_HSTW };
        if let Some(g) = lookup::this_or_caller(dom, cx.others, rd).filter(|g| !g.dead) {
            g.grant.release(&mut *cx.m, gref, pin, buf.readonly);
        }
    }
}

/// One side of a `gnttab_copy`, decoded: a grant reference of `domid` or, for
/// `DOMID_SELF`, one of the caller's own frames, and the byte offset in it.
#[derive(Clone, Copy, Debug)]
pub struct CopySide {
    /// `u.ref` (a grant reference, 32 bits) or `u.gmfn`.
    pub ptr: u64,
    pub domid: domid_t,
    pub offset: u16,
}

/// `gnttab_copy_one`: copies `len` bytes from `src` to `dest` (`GNTCOPY_*` `flags`
/// say which sides are grant references), each side claimed for this operation alone.
pub fn copy<M: Machine + ?Sized>(
    cx: &mut Ctx<'_, M>,
    dom: &mut Domain,
    src: CopySide,
    dest: CopySide,
    len: u16,
    flags: u16,
) -> Result<(), Status> {
    let (len, flags) = (len as usize, flags as u32);
    let (src_off, dst_off) = (src.offset as usize, dest.offset as usize);
    let (src_dom, dst_dom) = (src.domid, dest.domid);
    let src_gref = flags & GNTCOPY_source_gref != 0;
    let dst_gref = flags & GNTCOPY_dest_gref != 0;
    // A grant reference is 32 bits of the union.
    let src_ptr = if src_gref {
        src.ptr as u32 as u64
    } else {
        src.ptr
    };
    let dst_ptr = if dst_gref {
        dest.ptr as u32 as u64
    } else {
        dest.ptr
    };
    let sd = copy_domain(cx, dom, src_dom, src_gref)?;
    let dd = copy_domain(cx, dom, dst_dom, dst_gref)?;
    let src = claim_buf(cx, dom, sd, src_ptr, src_gref, true)?;
    let dst = match claim_buf(cx, dom, dd, dst_ptr, dst_gref, false) {
        Ok(d) => d,
        Err(s) => {
            release_buf(cx, dom, &src, false);
            return Err(s);
        }
    };
    let r = if src_off + len > PAGE_SIZE || dst_off + len > PAGE_SIZE {
        log::warn!("d{}: copy beyond page area", dom.id);
        Err(GNTST_bad_copy_arg as Status)
    } else {
        let mut tmp = [0u8; PAGE_SIZE];
        match cx.m.frame(src.mfn) {
            Some(f) => {
                tmp[..len].copy_from_slice(&f[src_off..src_off + len]);
                crate::machine::write_bytes(&mut *cx.m, dst.mfn, dst_off, &tmp[..len]);
                Ok(())
            }
            None => Err(ST_GENERAL),
        }
    };
    release_buf(cx, dom, &dst, true);
    release_buf(cx, dom, &src, false);
    r
}

/// The granter's side of dropping a mapping of grant `map.gref` by `mapper`: unpins
/// the entry and clears the status bits, if the granter is alive (a dead granter's
/// table is gone with its frames: nothing to update).
pub fn unpin<M: Machine + ?Sized>(
    m: &mut M,
    granter: Option<&mut Domain>,
    mapper: domid_t,
    map: &Mapping,
    pin: u32,
) {
    let Some(g) = granter.filter(|g| !g.dead) else {
        return;
    };
    if g.grant
        .active(map.gref)
        .is_some_and(|a| a.domid == mapper && a.mfn == map.mfn)
    {
        g.grant
            .release(m, map.gref, pin, map.flags & GNTMAP_readonly != 0);
    }
}

/// `gnttab_release_mappings`: a dying domain's mappings go. Each granter's entry is
/// unpinned and its status bits cleared; device mappings drop their frame references
/// here. Host mappings do not: for a PV domain their references belong to the PTEs,
/// which the teardown of the domain's page tables drops next (Xen's
/// `gnttab_release_host_mappings()` is false for PV).
pub fn release_mappings<M: Machine + ?Sized>(
    m: &mut M,
    table: &mut FrameTable,
    dying: &mut Domain,
    others: &mut Domains,
) {
    let me = dying.id;
    for h in dying.grant.handles() {
        let Some(map) = dying.grant.remove(h) else {
            continue;
        };
        log::info!(
            "d{me}: grant release handle {h:#x}: d{} ref {:#x} flags {:#x}",
            map.granter,
            map.gref,
            map.flags
        );
        if map.flags & GNTMAP_device_map != 0 {
            if map.flags & GNTMAP_readonly != 0 {
                table.put_page(map.mfn);
            } else {
                table.put_page_and_type(m, map.mfn);
            }
        }
        let pin = pin_of(map.flags);
        if map.granter == me {
            unpin(m, Some(dying), me, &map, pin);
        } else {
            unpin(m, others.get_mut(map.granter), me, &map, pin);
        }
    }
}
