//! Grant operations across domains (Xen's xen/common/grant_table.c): the granter's
//! side of dropping a mapping, and a dying mapper's teardown.

use xen_sys::{domid_t, GNTMAP_device_map, GNTMAP_readonly};

use crate::domain::{Domain, Domains};
use crate::machine::Machine;
use crate::mm::FrameTable;
use crate::state::grant_table::{pin_of, Mapping};

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
