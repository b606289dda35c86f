//! The PV MMU: frame ownership, page types and validated guest page tables, Xen's
//! model of `xen/arch/x86/mm.c` (see [`frame_table`] for the invariants).
//!
//! TLB model: the arch layer reloads CR3 on every return to a guest and the shim does
//! not enable global pages (CR4.PGE), so every return is a full TLB flush of the
//! guest's mappings. The flush requests of `update_va_mapping` and `mmuext_op`
//! (local, multi, all, invlpg) are checked as Xen checks them and are then satisfied
//! by that reload. With one vCPU per domain and one CPU, no other TLB holds a guest's
//! mappings.

pub mod descriptor;
pub mod frame_table;
pub mod m2p;
pub mod page;
pub mod rules;

#[cfg(test)]
mod tests;

pub use frame_table::{Errno, FrameTable};
pub use page::{Owner, PageInfo, PageType};

use crate::frames::FrameAllocator;
use crate::machine::Machine;
use crate::mm::m2p::M2p;

/// The memory state hypercalls work on, borrowed from the [`Hypervisor`](crate::hypervisor::Hypervisor).
pub struct Mm<'a> {
    pub table: &'a mut FrameTable,
    pub alloc: &'a mut FrameAllocator,
    pub m2p: &'a M2p,
}

impl Mm<'_> {
    /// Frees what the last operation released (see [`FrameTable::reclaim`]).
    pub fn reclaim<M: Machine + ?Sized>(&mut self, m: &mut M) -> usize {
        self.table.reclaim(m, self.alloc, self.m2p)
    }
}

/// Takes a freshly built domain into the frame table, as Xen's dom0 builder leaves
/// it: every frame of its reservation (and its shared_info page) owned by it with its
/// allocation reference, and its bootstrap L4 validated as the kernel base pointer,
/// which types the bootstrap tables (L4..L1), gives every writable mapping a writable
/// type reference and every read-only one a general reference.
pub fn adopt_domain<M: Machine + ?Sized>(
    table: &mut FrameTable,
    m: &mut M,
    domid: u16,
    privileged: bool,
    built: &crate::pv::build::BuiltDomain,
) -> Result<(), Errno> {
    table.register_domain(domid, privileged);
    for &mfn in &built.p2m {
        table.assign(mfn, domid, false)?;
    }
    table.assign(built.shared_info, domid, true)?;
    table.switch_base(m, domid, Some(built.l4), None)?;
    // Xen's builders pin the initial L4 too (dom0_build.c, libxenguest's
    // `arch_setup_bootlate`); kernels rely on it, e.g. Linux unpins it once it has
    // built its own tables.
    table.pin(m, built.l4, 4, domid)
}
