//! `memory_op` (`memory.h`; Xen's `do_memory_op` in `xen/common/memory.c` and
//! `arch_memory_op` in `xen/arch/x86/mm.c`) for a PV guest: its reservation (extents
//! are machine frames: MFNs out, GMFN = MFN in), the M2P mapping, its memory map.

use xen_sys::*;

use super::env::Env;
use super::error::{Error, Result};
use super::guest::{copy_field_to_guest, element};
use crate::domain::lookup;
use crate::domain::Domain;
use crate::machine::{Machine, PAGE_SHIFT};

/// `cmd[:6]` is the extent to resume from (`MEMOP_EXTENT_SHIFT`, `MEMOP_CMD_MASK`:
/// public `memory.h`, but only under `__XEN__`, so not in the bindings).
const MEMOP_EXTENT_SHIFT: u32 = 6;
const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;
/// Largest extent order per call (Xen's Kconfig defaults `CONFIG_DOMU_MAX_ORDER`,
/// `CONFIG_HWDOM_MAX_ORDER`).
const DOMU_MAX_ORDER: u32 = 9;
const HWDOM_MAX_ORDER: u32 = 12;
/// An E820 entry as `XENMEM_memory_map` returns it: `{u64 addr; u64 size; u32 type}`,
/// packed (Xen's `struct e820entry`, a private header, not in the bindings).
const E820_ENTRY_SIZE: usize = 20;
const E820_RAM: u32 = 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reservation {
    Increase,
    Decrease,
    Populate,
}

pub fn memory_op<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    arg: u64,
) -> Result<i64> {
    let op = (cmd & MEMOP_CMD_MASK) as u32;
    let start_extent = cmd >> MEMOP_EXTENT_SHIFT;
    let r = match op {
        XENMEM_increase_reservation => {
            reservation(env, dom, Reservation::Increase, start_extent, arg)
        }
        XENMEM_decrease_reservation => {
            reservation(env, dom, Reservation::Decrease, start_extent, arg)
        }
        XENMEM_populate_physmap => reservation(env, dom, Reservation::Populate, start_extent, arg),
        XENMEM_add_to_physmap => add_to_physmap(env, dom, start_extent, arg),
        XENMEM_exchange if start_extent == 0 => exchange(env, dom, arg),
        _ if start_extent != 0 => Err(XEN_ENOSYS.into()),
        XENMEM_maximum_ram_page => Ok(env.mm.table.nr_frames() as i64),
        XENMEM_current_reservation | XENMEM_maximum_reservation => {
            let domid: domid_t = env.read(dom, arg)?;
            own_domain(env, dom, domid)?;
            Ok(if op == XENMEM_current_reservation {
                dom.tot_pages
            } else {
                dom.max_pages
            } as i64)
        }
        XENMEM_machphys_mapping => {
            let map = xen_machphys_mapping {
                v_start: MACH2PHYS_VIRT_START,
                v_end: MACH2PHYS_VIRT_START + env.mm.m2p.mapped_bytes(),
                max_mfn: env.mm.table.nr_frames().saturating_sub(1),
            };
            env.write(dom, arg, &map).map(|()| 0)
        }
        XENMEM_memory_map => memory_map(env, dom, arg).map(|()| 0),
        XENMEM_machphys_mfn_list => machphys_mfn_list(env, dom, arg).map(|()| 0),
        _ => {
            log::warn!("d{}: memory_op {op} not implemented: -ENOSYS", dom.id);
            Err(XEN_ENOSYS.into())
        }
    };
    r
}

/// `XENMEM_exchange` (Xen's `memory_exchange`) for a PV guest: gives back the frames of
/// `in` (MFNs, extents of `2^in.extent_order`) and gets as many new ones in extents of
/// `2^out.extent_order` machine-contiguous frames, whose MFNs are written to `out`'s
/// list; each new frame takes the pseudo-physical frame (M2P entry) of the old one in
/// the same place, and comes zeroed. The guest unmaps the old frames first (a frame
/// still mapped, typed or pinned cannot be stolen: -EINVAL) and maps the new ones
/// itself. This is how a PV kernel gets DMA buffers that span pages (Linux's
/// `xen_create_contiguous_region`). Work goes in chunks of the larger order, each
/// done whole or not at all; `nr_exchanged` says how many `in` extents are done.
fn exchange<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, arg: u64) -> Result<i64> {
    let mut x: xen_memory_exchange = env.read(dom, arg)?;
    let (inp, out) = (x.in_, x.out);
    if x.nr_exchanged > inp.nr_extents {
        return Err(XEN_EINVAL.into());
    }
    let (in_list, out_list) = (inp.extent_start.p as u64, out.extent_start.p as u64);
    if !crate::mm::rules::array_ok(in_list, inp.nr_extents, 8)
        || !crate::mm::rules::array_ok(out_list, out.nr_extents, 8)
    {
        return Err(Error::FAULT);
    }
    let max_order = if dom.privileged {
        HWDOM_MAX_ORDER
    } else {
        DOMU_MAX_ORDER
    };
    let (io, oo) = (inp.extent_order, out.extent_order);
    if io > max_order || oo > max_order {
        return Err(XEN_EPERM.into());
    }
    // The same number of pages on both sides.
    let pages = |n: u64, order: u32| n.checked_mul(1 << order);
    if inp.nr_extents > u32::MAX as u64 || pages(inp.nr_extents, io) != pages(out.nr_extents, oo) {
        return Err(XEN_EINVAL.into());
    }
    own_domain(env, dom, inp.domid)?;
    own_domain(env, dom, out.domid)?;
    let chunk = io.max(oo);
    let (in_per_chunk, out_per_chunk) = (1u64 << (chunk - io), 1u64 << (chunk - oo));
    // A resumed exchange continues at a chunk boundary.
    if !x.nr_exchanged.is_multiple_of(in_per_chunk) {
        return Err(XEN_EINVAL.into());
    }
    while x.nr_exchanged < inp.nr_extents {
        let first_in = x.nr_exchanged;
        // The old frames of this chunk, all checked before any is touched.
        let mut old = alloc::vec::Vec::with_capacity(1 << chunk);
        for e in first_in..first_in + in_per_chunk {
            let gmfn: xen_pfn_t = env.read(dom, element::<xen_pfn_t>(in_list, e))?;
            for j in 0..1u64 << io {
                let mfn = gmfn.checked_add(j).ok_or(XEN_EINVAL)?;
                if !env.mm.table.stealable(mfn, dom.id) {
                    log::warn!("d{}: exchange of frame {mfn:#x}, which is in use", dom.id);
                    return Err(XEN_EINVAL.into());
                }
                old.push(mfn);
            }
        }
        // The new extents of this chunk.
        let first_out = first_in / in_per_chunk * out_per_chunk;
        let mut new = alloc::vec::Vec::with_capacity(out_per_chunk as usize);
        for _ in 0..out_per_chunk {
            match env.mm.alloc.alloc_contiguous(oo) {
                Some(base) => new.push(base),
                None => {
                    give_back(env.mm.alloc, &new, oo);
                    return Err(XEN_ENOMEM.into());
                }
            }
        }
        // The MFNs go to the guest first: if its list cannot take them, nothing has
        // changed hands yet and the new frames go back.
        for (k, &base) in new.iter().enumerate() {
            let slot = element::<xen_pfn_t>(out_list, first_out + k as u64);
            if let Err(e) = env.write(dom, slot, &base) {
                give_back(env.mm.alloc, &new, oo);
                return Err(e);
            }
        }
        let mut at = 0;
        for &base in &new {
            for j in 0..1u64 << oo {
                let mfn = base + j;
                let gpfn = env.mm.m2p.get(&*env.machine, old[at]);
                env.machine.zero_frame(mfn);
                if env.mm.table.assign(mfn, dom.id, false).is_err() {
                    log::error!("allocator returned frame {mfn:#x} the frame table cannot use");
                }
                env.mm.m2p.set(&mut *env.machine, mfn, gpfn);
                at += 1;
            }
        }
        for &mfn in &old {
            // Checked stealable above: nothing else holds it, it is freed now.
            let _ = env.mm.table.release(&mut *env.machine, mfn, dom.id);
            env.mm
                .m2p
                .set(&mut *env.machine, mfn, crate::mm::m2p::INVALID);
        }
        env.mm.reclaim(&mut *env.machine);
        x.nr_exchanged += in_per_chunk;
        copy_field_to_guest!(env, dom, arg, x.nr_exchanged)?;
    }
    Ok(0)
}

/// Returns extents of order `order` that were allocated and not handed out.
fn give_back(alloc: &mut crate::frames::FrameAllocator, extents: &[u64], order: u32) {
    for &base in extents {
        for j in 0..1u64 << order {
            alloc.free(base + j);
        }
    }
}

/// `XENMEM_machphys_mfn_list`: the first machine frame of each 2 MiB chunk of the M2P,
/// at most `max_extents` of them, and how many were written (`nr_extents`).
fn machphys_mfn_list<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    arg: u64,
) -> Result<()> {
    let mut op: xen_machphys_mfn_list = env.read(dom, arg)?;
    let list = op.extent_start.p as u64;
    let chunks: alloc::vec::Vec<u64> = env.mm.m2p.chunks().take(op.max_extents as usize).collect();
    for (i, mfn) in chunks.iter().enumerate() {
        let slot = list.checked_add(i as u64 * 8).ok_or(Error::FAULT)?;
        env.write(dom, slot, mfn)?;
    }
    op.nr_extents = chunks.len() as u32;
    copy_field_to_guest!(env, dom, arg, op.nr_extents)
}

/// The domain a `domid_t` argument names: only the caller itself is reachable from
/// here (another domain's reservation is toolstack business, issue 4).
fn own_domain<M: Machine + ?Sized>(env: &Env<'_, M>, dom: &Domain, domid: domid_t) -> Result<()> {
    let id = lookup::resolve(dom, domid);
    if id == dom.id {
        Ok(())
    } else if !env.mm.table.domain_exists(id) {
        Err(XEN_ESRCH.into())
    } else if !lookup::may_act_on(dom, id) {
        Err(XEN_EPERM.into())
    } else {
        log::warn!(
            "d{}: memory_op on another domain's reservation is not supported",
            dom.id
        );
        Err(XEN_ESRCH.into())
    }
}

/// `XENMEM_add_to_physmap` for a PV domain: makes a grant frame (growing the table up
/// to frame `idx`, as `gnttab_map_frame` does) or the shared_info page (`idx` 0) known
/// at pseudo-physical frame `gpfn`, i.e. sets its M2P entry to `gpfn`, which is all
/// Xen 4.17's `guest_physmap_add_page` does for a domain that is not translated. The
/// guest still maps the frame itself, by MFN. `XENMAPIDX_grant_table_status` names
/// status frames, which a v1 table has none of: such an index is `-EINVAL`.
/// Deviations: the `gmfn` spaces (moving a frame to another pseudo-physical slot,
/// meaningless without a P2M kept by the hypervisor) are `-ENOSYS`; and the shim
/// skips Xen's removal of whatever was "mapped" at `gpfn` before, which for a
/// non-translated guest would treat `gpfn` as a frame number.
fn add_to_physmap<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    start_extent: u64,
    arg: u64,
) -> Result<i64> {
    // The extent (`size` of a range) is 16 bits.
    if start_extent > u16::MAX as u64 {
        return Err(XEN_EDOM.into());
    }
    let op: xen_add_to_physmap = env.read(dom, arg)?;
    let (space, idx, gpfn) = (op.space, op.idx, op.gpfn);
    if space == XENMAPSPACE_gmfn_foreign {
        // Foreign mappings only through add_to_physmap_batch.
        return Err(XEN_ENOSYS.into());
    }
    let id = lookup::live(dom, env.domains, op.domid).ok_or(XEN_ESRCH)?;
    if !lookup::may_act_on(dom, id) {
        return Err(XEN_EPERM.into());
    }
    let Env {
        machine,
        mm,
        domains,
        ..
    } = env;
    let d = lookup::this_or_caller(dom, domains, id).ok_or(XEN_ESRCH)?;
    let mfn = match space {
        XENMAPSPACE_grant_table => {
            let i = u32::try_from(idx).map_err(|_| XEN_EINVAL)?;
            if i as usize >= d.grant.frames().len() && i < d.grant.max_frames() {
                // As Xen: a failure to grow shows as the index still out of range.
                let _ = d.grant.grow(&mut **machine, mm.table, mm.alloc, id, i + 1);
            }
            *d.grant.frames().get(i as usize).ok_or(XEN_EINVAL)?
        }
        XENMAPSPACE_shared_info if idx == 0 => d.shared_info,
        XENMAPSPACE_shared_info => return Err(XEN_EINVAL.into()),
        _ => {
            log::warn!(
                "d{}: add_to_physmap space {space} not supported: -ENOSYS",
                dom.id
            );
            return Err(XEN_ENOSYS.into());
        }
    };
    mm.m2p.set(&mut **machine, mfn, gpfn);
    Ok(0)
}

/// `XENMEM_memory_map`: the pseudo-physical map the toolstack would have set for a PV
/// domain: one RAM range covering its maximum reservation.
fn memory_map<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &Domain, arg: u64) -> Result<()> {
    let mut op: xen_memory_map = env.read(dom, arg)?;
    op.nr_entries = op.nr_entries.min(1);
    if op.nr_entries == 1 {
        let mut e = [0u8; E820_ENTRY_SIZE];
        let size = dom.max_pages.saturating_mul(1 << PAGE_SHIFT);
        e[8..16].copy_from_slice(&size.to_le_bytes());
        e[16..20].copy_from_slice(&E820_RAM.to_le_bytes());
        env.write(dom, op.buffer.p as u64, &e)?;
    }
    copy_field_to_guest!(env, dom, arg, op.nr_entries)
}

/// increase/decrease_reservation and populate_physmap: returns the number of extents
/// done (from `start_extent`), as Xen does; a request it cannot (fully) satisfy stops
/// at the first extent it cannot do.
fn reservation<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    kind: Reservation,
    start_extent: u64,
    arg: u64,
) -> Result<i64> {
    let r: xen_memory_reservation = env.read(dom, arg)?;
    let (list, nr_extents, order) = (r.extent_start.p as u64, r.nr_extents, r.extent_order);
    let done = i64::try_from(start_extent).map_err(|_| XEN_EINVAL)?;
    if nr_extents > u64::MAX >> MEMOP_EXTENT_SHIFT {
        return Err(XEN_EINVAL.into());
    }
    if start_extent >= nr_extents {
        return Ok(done);
    }
    if list != 0 && !crate::mm::rules::array_ok(list, nr_extents, 8) {
        return Ok(done);
    }
    own_domain(env, dom, r.domid)?;
    let max_order = if dom.privileged {
        HWDOM_MAX_ORDER
    } else {
        DOMU_MAX_ORDER
    };
    if order > max_order {
        log::warn!("d{}: extent order {order} > {max_order} refused", dom.id);
        return Ok(done);
    }
    let n = 1u64 << order;
    let mut i = start_extent;
    while i < nr_extents {
        if kind == Reservation::Decrease {
            if list == 0 {
                break;
            }
            let Ok(gmfn) = env.read::<xen_pfn_t>(dom, element::<xen_pfn_t>(list, i)) else {
                break;
            };
            let mut ok = true;
            for j in 0..n {
                let Some(mfn) = gmfn.checked_add(j) else {
                    ok = false;
                    break;
                };
                if env
                    .mm
                    .table
                    .release(&mut *env.machine, mfn, dom.id)
                    .is_err()
                {
                    ok = false;
                    break;
                }
                env.mm
                    .m2p
                    .set(&mut *env.machine, mfn, crate::mm::m2p::INVALID);
                dom.tot_pages = dom.tot_pages.saturating_sub(1);
            }
            env.mm.reclaim(&mut *env.machine);
            if !ok {
                break;
            }
        } else {
            let gpfn = if kind == Reservation::Populate {
                match env.read::<xen_pfn_t>(dom, element::<xen_pfn_t>(list, i)) {
                    Ok(g) if list != 0 => Some(g),
                    _ => break,
                }
            } else {
                None
            };
            if dom.tot_pages.saturating_add(n) > dom.max_pages {
                log::warn!(
                    "d{}: over-allocation ({} + {n} > {} pages)",
                    dom.id,
                    dom.tot_pages,
                    dom.max_pages
                );
                break;
            }
            let Some(base) = env.mm.alloc.alloc_contiguous(order) else {
                break;
            };
            for j in 0..n {
                let mfn = base + j;
                env.machine.zero_frame(mfn);
                if env.mm.table.assign(mfn, dom.id, false).is_err() {
                    log::error!("allocator returned frame {mfn:#x} the frame table cannot use");
                }
                let m2p = gpfn.map_or(crate::mm::m2p::INVALID, |g| g.wrapping_add(j));
                env.mm.m2p.set(&mut *env.machine, mfn, m2p);
            }
            dom.tot_pages += n;
            if list != 0
                && env
                    .write(dom, element::<xen_pfn_t>(list, i), &base)
                    .is_err()
            {
                break;
            }
        }
        i += 1;
    }
    Ok(i as i64)
}
