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
