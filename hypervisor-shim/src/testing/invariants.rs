//! The isolation invariants of the shim, checked from the outside over a whole
//! [`Hypervisor`]: what must hold after any sequence of guest actions, however hostile.
//! The hypercall-sequence fuzzer and the host tests call [`check`] after every step
//! and [`check_all_freed`] once every domain is gone.
//!
//! 1. A live page table maps no frame writably unless the frame holds a writable type
//!    reference (so no frame is both writable and a page table), and its upper-level
//!    entries point at live tables of the level below.
//! 2. A domain's page tables map only its own frames, the frames granted to it (its
//!    maptrack), the M2P read-only, or, for the privileged domain, foreign frames.
//! 3. Every interdomain event channel's peer exists, is alive, and points back.
//! 4. Grant active entries and the mappers' maptracks agree: each mapping is counted
//!    in its granter's entry for that mapper, and each entry's pin count is the sum of
//!    the mappings it counts.

use alloc::format;
use alloc::string::String;

use super::TestMachine;
use crate::domain::Domain;
use crate::hypervisor::Hypervisor;
use crate::machine::{read_u64, Machine, Mfn};
use crate::mm::page::{Owner, PageType};
use crate::paging::Pte;
use crate::state::evtchn::Binding;
use crate::state::grant_table::pin_of;

/// Checks every invariant; the first one broken, described.
pub fn check(h: &Hypervisor<TestMachine>) -> Result<(), String> {
    page_tables(h)?;
    event_channels(h)?;
    grants(h)
}

/// After every domain was destroyed: every frame a domain had is back in the
/// allocator (`free` frames were free before the first domain was built) and no
/// frame is still owned or referenced.
pub fn check_all_freed(h: &Hypervisor<TestMachine>, free: u64) -> Result<(), String> {
    for (mfn, p) in h.frame_table.pages() {
        if let Owner::Domain(d) = p.owner {
            return Err(format!("frame {mfn:#x} still owned by d{d}: {p:?}"));
        }
        if p.owner == Owner::Free && (p.refs != 0 || p.type_count != 0) {
            return Err(format!("free frame {mfn:#x} still referenced: {p:?}"));
        }
    }
    let now = h.frames.free_frames();
    if now != free {
        return Err(format!("{now} frames free after teardown, {free} before"));
    }
    Ok(())
}

/// Whether `d` may map `mfn` (invariant 2).
fn may_map(h: &Hypervisor<TestMachine>, d: &Domain, mfn: Mfn, writable: bool) -> bool {
    match h.frame_table.page(mfn).map(|p| p.owner) {
        Some(Owner::Domain(o)) if o == d.id => true,
        Some(Owner::M2pShared) => !writable,
        Some(Owner::Domain(_)) => {
            d.privileged
                || d.grant
                    .handles()
                    .iter()
                    .filter_map(|&hd| d.grant.mapping(hd))
                    .any(|m| m.mfn == mfn)
        }
        _ => false,
    }
}

fn page_tables(h: &Hypervisor<TestMachine>) -> Result<(), String> {
    for (table, p) in h.frame_table.pages() {
        let Some(level) = p.ty.level() else { continue };
        if !p.is_live_table() {
            continue;
        }
        let Owner::Domain(owner) = p.owner else {
            continue;
        };
        let Some(dom) = h.domains.get(owner) else {
            return Err(format!("live L{level} {table:#x} of a vanished d{owner}"));
        };
        let frame = h
            .machine
            .frame(table)
            .ok_or_else(|| format!("live table {table:#x} is not RAM"))?;
        for i in 0..512 {
            let pte = Pte(read_u64(frame, i));
            if !pte.present() {
                continue;
            }
            if level == 4 && h.shim_l4.iter().any(|&(slot, e)| slot == i && e == pte.0) {
                continue;
            }
            let target = pte.mfn();
            if level == 1 && h.frame_table.is_iomem(target) {
                if !dom.privileged {
                    return Err(format!(
                        "L1 {table:#x}[{i}] of unprivileged d{owner} maps device frame {target:#x}"
                    ));
                }
                continue;
            }
            let t = h.frame_table.page(target).ok_or_else(|| {
                format!("L{level} {table:#x}[{i}] of d{owner} maps {target:#x}: not a frame")
            })?;
            if level > 1 {
                if t.ty != PageType::table(level - 1) || !t.is_live_table() {
                    return Err(format!(
                        "L{level} {table:#x}[{i}] of d{owner} points at {target:#x}, \
                         not a live L{}: {t:?}",
                        level - 1
                    ));
                }
                continue;
            }
            if pte.writable() && !(t.ty == PageType::Writable && t.type_count > 0) {
                return Err(format!(
                    "L1 {table:#x}[{i}] of d{owner} maps {target:#x} writable, \
                     which holds no writable type: {t:?}"
                ));
            }
            if !may_map(h, dom, target, pte.writable()) {
                return Err(format!(
                    "L1 {table:#x}[{i}] of d{owner} maps {target:#x}, neither its own \
                     nor granted to it: {t:?}"
                ));
            }
        }
    }
    Ok(())
}

fn event_channels(h: &Hypervisor<TestMachine>) -> Result<(), String> {
    for d in h.domains.iter().filter(|d| !d.dead) {
        for (port, c) in d.evtchn.in_use() {
            let Binding::Interdomain {
                remote,
                port: rport,
            } = c.binding
            else {
                continue;
            };
            let back = h
                .domains
                .get(remote)
                .filter(|r| !r.dead)
                .and_then(|r| r.evtchn.get(rport))
                .map(|c| c.binding);
            if back != Some(Binding::Interdomain { remote: d.id, port }) {
                return Err(format!(
                    "d{} port {port} bound to d{remote} port {rport}, which is {back:?}",
                    d.id
                ));
            }
        }
    }
    Ok(())
}

fn grants(h: &Hypervisor<TestMachine>) -> Result<(), String> {
    let alive = |id| h.domains.get(id).filter(|d| !d.dead);
    // Each mapping is counted by its granter.
    for m in h.domains.iter().filter(|d| !d.dead) {
        for hd in m.grant.handles() {
            let Some(map) = m.grant.mapping(hd) else {
                continue;
            };
            let Some(g) = alive(map.granter) else {
                continue;
            };
            let ok = g
                .grant
                .active(map.gref)
                .is_some_and(|a| a.domid == m.id && a.mfn == map.mfn && a.pin != 0);
            if !ok {
                return Err(format!(
                    "d{} handle {hd} maps d{} ref {} ({map:?}), whose entry is {:?}",
                    m.id,
                    map.granter,
                    map.gref,
                    g.grant.active(map.gref)
                ));
            }
        }
    }
    // Each entry's pins are its mapper's mappings.
    for g in h.domains.iter().filter(|d| !d.dead) {
        for gref in 0..g.grant.nr_entries() {
            let Some(a) = g.grant.active(gref).filter(|a| a.pin != 0) else {
                continue;
            };
            let Some(m) = alive(a.domid) else {
                return Err(format!(
                    "d{} ref {gref} pinned ({:#x}) by d{}, which is gone",
                    g.id, a.pin, a.domid
                ));
            };
            let pins: u32 = m
                .grant
                .handles()
                .iter()
                .filter_map(|&hd| m.grant.mapping(hd))
                .filter(|map| map.granter == g.id && map.gref == gref)
                .map(|map| pin_of(map.flags))
                .sum();
            if pins != a.pin {
                return Err(format!(
                    "d{} ref {gref}: pin {:#x}, but d{}'s mappings add up to {pins:#x}",
                    g.id, a.pin, a.domid
                ));
            }
        }
    }
    Ok(())
}
