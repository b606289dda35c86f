//! The frame table: one [`PageInfo`] per machine frame, and Xen's reference-counting
//! model over it (`xen/arch/x86/mm.c`: `get_page`/`put_page`,
//! `get_page_type`/`put_page_type`, `alloc_page_type`/`free_page_type`,
//! `mod_l[1-4]_entry`, pinning, `relinquish_memory`).
//!
//! The invariants it keeps, for every frame:
//! - a frame is of one type at a time, and its type changes only when no user relies on
//!   it (type count zero): a page table is never writable-mapped and vice versa;
//! - a page-table frame in use (type count > 0) is validated: every present entry holds
//!   a reference on what it points to (an L1 writable entry a writable type reference,
//!   a read-only one a general reference, an L`n` entry an L`n-1` type reference), and
//!   points only at frames of the table's owner (or, in L1 entries, the read-only M2P);
//!   grant mappings of other domains' frames are written by the grant-table code
//!   ([`FrameTable::install_l1e`]), never through `mmu_update`, as in Xen;
//! - when the type count drops to zero the table is devalidated: every entry's
//!   reference is dropped;
//! - a frame whose general count drops to zero after its allocation reference is gone
//!   is freed (scrubbed, its M2P entry invalidated, back to the allocator).
//!
//! Linear (recursive) page tables are refused: an entry of a level-`n` table may not
//! point at a table of level `n` or above (Xen allows read-only same-level ones with
//! `pv-linear-pt`; the shim keeps the simpler rule, with one log line per refusal).
//! Levels strictly decrease along every reference, so validation never loops and
//! recursion is at most four deep.

use alloc::vec::Vec;

use xen_sys::{xen_errno, XEN_EBUSY, XEN_EINVAL, XEN_EPERM};

use super::descriptor::check_descriptor;
use super::page::{Owner, PageInfo, PageType};
use super::rules;
use crate::frames::FrameAllocator;
use crate::machine::{read_u64, write_u64, Machine, Mfn, PAGE_SHIFT};
use crate::mm::m2p::{M2p, INVALID};
use crate::paging::{Pte, ENTRIES, HUGE};

/// A positive Xen errno (`XEN_E*`); hypercalls return its negation.
pub type Errno = xen_errno;

#[derive(Debug)]
pub struct FrameTable {
    pages: Vec<PageInfo>,
    /// The L4 entries the shim puts in the reserved slots of every validated L4.
    shim_l4: Vec<(usize, u64)>,
    /// Live domains: id and whether they have I/O privileges (cache attributes in L1
    /// entries, foreign mappings).
    domains: Vec<(u16, bool)>,
    /// Frames whose last reference went: freed by [`FrameTable::reclaim`].
    pending_free: Vec<Mfn>,
    /// The devices' MMIO frames (inclusive ranges): an I/O-privileged domain may map
    /// them (Xen's `iomem_access_permitted`), nobody else; they hold no references.
    /// Nothing else outside RAM may be mapped: not the shim's local APIC, I/O APIC,
    /// HPET or firmware.
    iomem: Vec<(Mfn, Mfn)>,
}

impl FrameTable {
    /// A table for machine frames `0..nr_frames`: the allocator's free frames are
    /// free, the M2P's data frames shared read-only, everything else the shim's.
    pub fn new(nr_frames: u64, free: &FrameAllocator, m2p: &M2p, shim_l4: &[(usize, u64)]) -> Self {
        let mut pages = alloc::vec![PageInfo::new(Owner::Shim); nr_frames as usize];
        for mfn in free.free_list() {
            if let Some(p) = pages.get_mut(mfn as usize) {
                p.owner = Owner::Free;
            }
        }
        for &mfn in m2p.frames() {
            if let Some(p) = pages.get_mut(mfn as usize) {
                p.owner = Owner::M2pShared;
            }
        }
        FrameTable {
            pages,
            shim_l4: shim_l4.to_vec(),
            domains: Vec::new(),
            pending_free: Vec::new(),
            iomem: Vec::new(),
        }
    }

    pub fn nr_frames(&self) -> u64 {
        self.pages.len() as u64
    }

    pub fn page(&self, mfn: Mfn) -> Option<&PageInfo> {
        self.pages.get(usize::try_from(mfn).ok()?)
    }

    fn page_mut(&mut self, mfn: Mfn) -> Option<&mut PageInfo> {
        self.pages.get_mut(usize::try_from(mfn).ok()?)
    }

    /// All frames with their state (for checks and tests).
    pub fn pages(&self) -> impl Iterator<Item = (Mfn, &PageInfo)> {
        self.pages.iter().enumerate().map(|(i, p)| (i as Mfn, p))
    }

    pub fn register_domain(&mut self, id: u16, io_privileged: bool) {
        self.domains.retain(|&(d, _)| d != id);
        self.domains.push((id, io_privileged));
    }

    pub fn domain_exists(&self, id: u16) -> bool {
        self.domains.iter().any(|&(d, _)| d == id)
    }

    /// Lets I/O-privileged domains map the device frames `first..=last`.
    pub fn add_iomem(&mut self, first: Mfn, last: Mfn) {
        self.iomem.push((first, last));
    }

    pub fn is_iomem(&self, mfn: Mfn) -> bool {
        self.iomem.iter().any(|&(a, b)| (a..=b).contains(&mfn))
    }

    fn io_privileged(&self, id: u16) -> bool {
        self.domains.iter().any(|&(d, p)| d == id && p)
    }

    /// Gives the free frame `mfn` to domain `d` with its allocation reference.
    /// `xenheap` marks a frame outside the reservation (the shared_info page).
    pub fn assign(&mut self, mfn: Mfn, d: u16, xenheap: bool) -> Result<(), Errno> {
        let p = self.page_mut(mfn).ok_or(XEN_EINVAL)?;
        if p.owner != Owner::Free {
            return Err(XEN_EBUSY);
        }
        *p = PageInfo {
            owner: Owner::Domain(d),
            refs: 1,
            allocated: true,
            xenheap,
            ..PageInfo::new(Owner::Domain(d))
        };
        Ok(())
    }

    /// Allocates, scrubs and assigns a frame to `d`.
    pub fn alloc_for<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        alloc: &mut FrameAllocator,
        d: u16,
    ) -> Option<Mfn> {
        let mfn = alloc.alloc()?;
        if m.zero_frame(mfn).is_none() || self.assign(mfn, d, false).is_err() {
            // Not a frame this table covers: leave it out of circulation.
            log::error!("allocator returned frame {mfn:#x} the frame table cannot use");
            return None;
        }
        Some(mfn)
    }

    /// `get_page`: a general reference on a frame of domain `d`.
    pub fn get_page(&mut self, mfn: Mfn, d: u16) -> Result<(), Errno> {
        let p = self.page_mut(mfn).ok_or(XEN_EINVAL)?;
        if p.owner != Owner::Domain(d) || p.refs == 0 {
            return Err(XEN_EINVAL);
        }
        p.refs = p.refs.checked_add(1).ok_or(XEN_EINVAL)?;
        Ok(())
    }

    /// `put_page`: drops a general reference; the last one frees the frame.
    pub fn put_page(&mut self, mfn: Mfn) {
        let Some(p) = self.page_mut(mfn) else { return };
        if p.refs == 0 {
            log::error!("put_page on frame {mfn:#x} with no references");
            return;
        }
        p.refs -= 1;
        if p.refs == 0 && matches!(p.owner, Owner::Domain(_)) {
            self.pending_free.push(mfn);
        }
    }

    /// `get_page_type`: a type reference, validating the frame's contents if the type
    /// is taken anew. Fails with `-EINVAL` if the frame is in use as another type.
    pub fn get_page_type<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        mfn: Mfn,
        ty: PageType,
    ) -> Result<(), Errno> {
        let p = self.page_mut(mfn).ok_or(XEN_EINVAL)?;
        if p.type_count > 0 {
            if p.ty != ty || !p.validated {
                log::debug!("frame {mfn:#x}: bad type ({:?} != {ty:?})", p.ty);
                return Err(XEN_EINVAL);
            }
            p.type_count = p.type_count.checked_add(1).ok_or(XEN_EINVAL)?;
            return Ok(());
        }
        if p.ty != ty {
            p.ty = ty;
            p.validated = false;
        }
        p.type_count = 1;
        if !ty.needs_validation() {
            p.validated = true;
            return Ok(());
        }
        if p.validated {
            // Kept valid while unused (only possible for a type that was never left).
            return Ok(());
        }
        match self.validate(m, mfn, ty) {
            Ok(()) => {
                if let Some(p) = self.page_mut(mfn) {
                    p.validated = true;
                }
                Ok(())
            }
            Err(e) => {
                if let Some(p) = self.page_mut(mfn) {
                    p.type_count = 0;
                }
                Err(e)
            }
        }
    }

    /// `put_page_type`: drops a type reference; the last one devalidates a table.
    pub fn put_page_type<M: Machine + ?Sized>(&mut self, m: &mut M, mfn: Mfn) {
        let Some(p) = self.page_mut(mfn) else { return };
        if p.type_count == 0 {
            log::error!("put_page_type on frame {mfn:#x} with no type references");
            return;
        }
        p.type_count -= 1;
        if p.type_count == 0 && p.validated && p.ty.needs_validation() {
            p.validated = false;
            let ty = p.ty;
            self.devalidate(m, mfn, ty);
        }
    }

    pub fn get_page_and_type<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        mfn: Mfn,
        d: u16,
        ty: PageType,
    ) -> Result<(), Errno> {
        self.get_page(mfn, d)?;
        self.get_page_type(m, mfn, ty)
            .inspect_err(|_| self.put_page(mfn))
    }

    pub fn put_page_and_type<M: Machine + ?Sized>(&mut self, m: &mut M, mfn: Mfn) {
        self.put_page_type(m, mfn);
        self.put_page(mfn);
    }

    fn owner_of(&self, mfn: Mfn) -> Option<u16> {
        match self.page(mfn)?.owner {
            Owner::Domain(d) => Some(d),
            _ => None,
        }
    }

    /// `alloc_page_type`: checks every entry of a new page table (taking its
    /// references) or descriptor page. On failure nothing is left referenced.
    fn validate<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        mfn: Mfn,
        ty: PageType,
    ) -> Result<(), Errno> {
        let owner = self.owner_of(mfn).ok_or(XEN_EINVAL)?;
        if ty == PageType::SegDesc {
            for i in 0..ENTRIES {
                let d = read_u64(m.frame(mfn).ok_or(XEN_EINVAL)?, i);
                let fixed = check_descriptor(d).ok_or(XEN_EINVAL)?;
                if fixed != d {
                    write_u64(m, mfn, i * 8, fixed);
                }
            }
            return Ok(());
        }
        let level = ty.level().ok_or(XEN_EINVAL)?;
        for i in 0..ENTRIES {
            if level == 4 && rules::is_reserved_l4_slot(i) {
                continue;
            }
            let e = read_u64(m.frame(mfn).ok_or(XEN_EINVAL)?, i);
            if let Err(err) = self.get_entry(m, level, e, owner, owner) {
                log::warn!(
                    "d{owner}: L{level} table {mfn:#x} slot {i}: entry {e:#x} refused (-{err})"
                );
                for j in 0..i {
                    if level == 4 && rules::is_reserved_l4_slot(j) {
                        continue;
                    }
                    let e = m.frame(mfn).map_or(0, |f| read_u64(f, j));
                    self.put_entry(m, level, e);
                }
                return Err(err);
            }
            let adjusted = rules::adjust(e);
            if adjusted != e {
                write_u64(m, mfn, i * 8, adjusted);
            }
        }
        if level == 4 {
            for i in 0..ENTRIES {
                if rules::is_reserved_l4_slot(i) {
                    write_u64(m, mfn, i * 8, 0);
                }
            }
            for k in 0..self.shim_l4.len() {
                let (slot, entry) = self.shim_l4[k];
                write_u64(m, mfn, slot * 8, entry);
            }
        }
        Ok(())
    }

    /// `free_page_type`: drops the references of every entry of a table.
    fn devalidate<M: Machine + ?Sized>(&mut self, m: &mut M, mfn: Mfn, ty: PageType) {
        let Some(level) = ty.level() else { return };
        for i in 0..ENTRIES {
            if level == 4 && rules::is_reserved_l4_slot(i) {
                continue;
            }
            let e = m.frame(mfn).map_or(0, |f| read_u64(f, i));
            self.put_entry(m, level, e);
        }
    }

    /// Flag rules of a present entry of a level-`level` table owned by `owner`.
    fn check_flags(&self, level: u32, e: u64, owner: u16) -> Result<(), Errno> {
        if level == 2 && e & HUGE != 0 {
            log::warn!("d{owner}: superpage (PSE) L2 entry {e:#x} refused");
            return Err(XEN_EINVAL);
        }
        let bad = e & rules::disallow_mask(level, self.io_privileged(owner));
        if bad != 0 {
            log::warn!("d{owner}: bad L{level} flags {bad:#x} in entry {e:#x}");
            return Err(XEN_EINVAL);
        }
        Ok(())
    }

    /// `get_page_from_l[1-4]e`: takes what the present entry `e` of a table owned by
    /// `table_owner` needs; L1 entries may map frames of `pg_owner` (a foreign domain
    /// for a privileged caller).
    fn get_entry<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        level: u32,
        e: u64,
        table_owner: u16,
        pg_owner: u16,
    ) -> Result<(), Errno> {
        let pte = Pte(e);
        if !pte.present() {
            return Ok(());
        }
        self.check_flags(level, e, table_owner)?;
        let target = pte.mfn();
        if level == 1 && self.is_iomem(target) {
            // get_page_from_l1e's MMIO branch: the page owner's I/O capability decides.
            if pg_owner == table_owner && self.io_privileged(pg_owner) {
                return Ok(());
            }
            log::warn!("d{table_owner}: non-privileged attempt to map MMIO frame {target:#x}");
            return Err(XEN_EPERM);
        }
        let Some(page) = self.page(target).copied() else {
            log::warn!("d{table_owner}: attempt to map I/O space {target:#x}");
            return Err(XEN_EPERM);
        };
        if level == 1 {
            let writable = pte.writable();
            return match page.owner {
                Owner::M2pShared if !writable => Ok(()),
                // A granted frame is never mapped this way: only `map_grant_ref` makes
                // grant mappings (Xen's get_page_from_l1e refuses another's frame too).
                Owner::Domain(o) if o == pg_owner => {
                    self.get_page(target, o).map_err(|_| XEN_EBUSY)?;
                    if writable {
                        let r = self.get_page_type(m, target, PageType::Writable);
                        if r.is_err() {
                            self.put_page(target);
                            log::warn!(
                                "d{table_owner}: writable mapping of {target:#x} refused: it is {:?}",
                                page.ty
                            );
                            return Err(XEN_EBUSY);
                        }
                    }
                    Ok(())
                }
                other => {
                    log::warn!(
                        "d{table_owner}: mapping frame {target:#x} ({other:?}{}) refused",
                        if writable { ", writable" } else { "" }
                    );
                    Err(XEN_EBUSY)
                }
            };
        }
        if page.owner != Owner::Domain(table_owner) {
            log::warn!(
                "d{table_owner}: L{level} entry to frame {target:#x} it does not own ({:?})",
                page.owner
            );
            return Err(XEN_EINVAL);
        }
        if page.type_count > 0 && page.ty.level().is_some_and(|l| l >= level) {
            log::warn!(
                "d{table_owner}: linear page table refused (L{level} entry to {target:#x}, a {:?})",
                page.ty
            );
            return Err(XEN_EINVAL);
        }
        self.get_page_and_type(m, target, table_owner, PageType::table(level - 1))
    }

    /// `put_page_from_l[1-4]e`.
    fn put_entry<M: Machine + ?Sized>(&mut self, m: &mut M, level: u32, e: u64) {
        let pte = Pte(e);
        if !pte.present() {
            return;
        }
        let target = pte.mfn();
        if level == 1 && self.is_iomem(target) {
            return;
        }
        match self.page(target).map(|p| p.owner) {
            None | Some(Owner::M2pShared) if level == 1 => {}
            _ if level == 1 && pte.writable() => self.put_page_and_type(m, target),
            _ if level == 1 => self.put_page(target),
            _ => self.put_page_and_type(m, target),
        }
    }

    /// `mod_l[1-4]_entry`: writes entry `index` of the live table `table`, with the
    /// references the new entry needs taken before the old one's are dropped.
    pub fn mod_entry<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        table: Mfn,
        index: usize,
        new: u64,
        pg_owner: u16,
        preserve_ad: bool,
    ) -> Result<(), Errno> {
        let page = *self.page(table).ok_or(XEN_EINVAL)?;
        let (Some(level), Owner::Domain(owner)) = (page.ty.level(), page.owner) else {
            return Err(XEN_EINVAL);
        };
        if !page.is_live_table() || index >= ENTRIES {
            return Err(XEN_EINVAL);
        }
        if level == 4 && rules::is_reserved_l4_slot(index) {
            log::warn!("d{owner}: illegal L4 update in the shim's slot {index}");
            return Err(XEN_EINVAL);
        }
        // Foreign frames only in L1 entries (Xen: pg_owner applies to L1 updates).
        let pg_owner = if level == 1 { pg_owner } else { owner };
        let old = read_u64(m.frame(table).ok_or(XEN_EINVAL)?, index);
        let mut new = if preserve_ad {
            rules::preserve_ad(old, new)
        } else {
            new
        };
        if Pte(new).present() {
            new = rules::adjust(new);
            if rules::same_target(level, old, new) {
                self.check_flags(level, new, owner)?;
                write_u64(m, table, index * 8, new);
                return Ok(());
            }
            self.get_entry(m, level, new, owner, pg_owner)?;
        }
        write_u64(m, table, index * 8, new);
        self.put_entry(m, level, old);
        Ok(())
    }

    /// Whether `l1` is a live L1 table of domain `d`: where a grant mapping may go
    /// (`create_grant_pv_mapping` checks the table is the caller's and an L1).
    pub fn is_live_l1_of(&self, l1: Mfn, d: u16) -> bool {
        self.page(l1).is_some_and(|p| {
            p.owner == Owner::Domain(d) && p.ty == PageType::L1 && p.is_live_table()
        })
    }

    /// Writes entry `index` of the live L1 `l1` without taking references for the new
    /// entry (the grant-table code holds them) and returns the old entry, whose
    /// references are now the caller's to drop ([`Self::put_l1e`]) or keep.
    pub fn install_l1e<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        l1: Mfn,
        index: usize,
        new: u64,
    ) -> Result<u64, Errno> {
        if index >= ENTRIES
            || !self
                .page(l1)
                .is_some_and(|p| p.ty == PageType::L1 && p.is_live_table())
        {
            return Err(XEN_EINVAL);
        }
        let old = read_u64(m.frame(l1).ok_or(XEN_EINVAL)?, index);
        write_u64(m, l1, index * 8, new);
        Ok(old)
    }

    /// `put_page_from_l1e`: drops the references an L1 entry held.
    pub fn put_l1e<M: Machine + ?Sized>(&mut self, m: &mut M, e: u64) {
        self.put_entry(m, 1, e);
    }

    /// `MMU_NORMAL_PT_UPDATE` of the entry at machine address `ptr` in a frame of
    /// `pt_owner`: through [`Self::mod_entry`] if the frame is a live page table, else
    /// a plain write, allowed if the frame can be writable (Xen does the same, which is
    /// how kernels fill new tables before hooking or pinning them).
    pub fn update_entry<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        ptr: u64,
        val: u64,
        pt_owner: u16,
        pg_owner: u16,
        preserve_ad: bool,
    ) -> Result<(), Errno> {
        let mfn = ptr >> PAGE_SHIFT;
        let index = ((ptr & 0xfff) / 8) as usize;
        let page = *self.page(mfn).ok_or(XEN_EINVAL)?;
        if page.owner != Owner::Domain(pt_owner) {
            log::warn!("d{pt_owner}: mmu_update on frame {mfn:#x} it does not own");
            return Err(XEN_EINVAL);
        }
        if page.is_live_table() {
            return self.mod_entry(m, mfn, index, val, pg_owner, preserve_ad);
        }
        self.get_page(mfn, pt_owner)?;
        if self.get_page_type(m, mfn, PageType::Writable).is_err() {
            self.put_page(mfn);
            return Err(XEN_EINVAL);
        }
        write_u64(m, mfn, index * 8, val);
        self.put_page_and_type(m, mfn);
        Ok(())
    }

    /// `MMUEXT_PIN_L<level>_TABLE`.
    pub fn pin<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        mfn: Mfn,
        level: u32,
        d: u16,
    ) -> Result<(), Errno> {
        self.get_page_and_type(m, mfn, d, PageType::table(level))?;
        let p = self.page_mut(mfn).ok_or(XEN_EINVAL)?;
        if p.pinned {
            log::warn!("d{d}: frame {mfn:#x} already pinned");
            self.put_page_and_type(m, mfn);
            return Err(XEN_EINVAL);
        }
        p.pinned = true;
        Ok(())
    }

    /// `MMUEXT_UNPIN_TABLE`.
    pub fn unpin<M: Machine + ?Sized>(&mut self, m: &mut M, mfn: Mfn, d: u16) -> Result<(), Errno> {
        let p = self.page_mut(mfn).ok_or(XEN_EINVAL)?;
        if p.owner != Owner::Domain(d) {
            return Err(XEN_EINVAL);
        }
        if !p.pinned {
            log::warn!("d{d}: frame {mfn:#x} not pinned");
            return Err(XEN_EINVAL);
        }
        p.pinned = false;
        self.put_page_and_type(m, mfn);
        Ok(())
    }

    /// Replaces a base pointer (`new_guest_cr3`): a root-table reference on `new`
    /// (validating it) is taken before the one on `old` is dropped.
    pub fn switch_base<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        d: u16,
        new: Option<Mfn>,
        old: Option<Mfn>,
    ) -> Result<(), Errno> {
        if let Some(n) = new {
            self.get_page_and_type(m, n, d, PageType::L4)?;
        }
        if let Some(o) = old {
            self.put_page_and_type(m, o);
        }
        Ok(())
    }

    /// Whether domain `d` could give frame `mfn` away at once (`steal_page`'s test):
    /// its own, allocated, not the shared_info page, and used by nothing but its
    /// allocation (no mapping, no page type, not pinned).
    pub fn stealable(&self, mfn: Mfn, d: u16) -> bool {
        self.page(mfn).is_some_and(|p| {
            p.owner == Owner::Domain(d)
                && p.allocated
                && !p.xenheap
                && !p.pinned
                && p.refs == 1
                && p.type_count == 0
        })
    }

    /// `guest_remove_page` for `decrease_reservation`: unpins the frame and drops its
    /// allocation reference; it is freed once nothing maps it any more.
    pub fn release<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        mfn: Mfn,
        d: u16,
    ) -> Result<(), Errno> {
        let p = *self.page(mfn).ok_or(XEN_EINVAL)?;
        if p.owner != Owner::Domain(d) || !p.allocated || p.xenheap {
            log::warn!("d{d}: bad page free for frame {mfn:#x}");
            return Err(XEN_EINVAL);
        }
        if p.pinned {
            if let Some(p) = self.page_mut(mfn) {
                p.pinned = false;
            }
            self.put_page_and_type(m, mfn);
        }
        if let Some(p) = self.page_mut(mfn) {
            p.allocated = false;
        }
        self.put_page(mfn);
        Ok(())
    }

    /// Drops every reference domain `d` holds (`held`: the type references its vCPU
    /// and descriptor state keeps, e.g. base pointers and GDT frames), unpins and
    /// devalidates its tables and drops the allocation reference of each of its
    /// frames (Xen's `domain_relinquish_resources`). Returns how many of its frames
    /// are still referenced (by another domain's mappings) and so not freed yet.
    pub fn teardown<M: Machine + ?Sized>(&mut self, m: &mut M, d: u16, held: &[Mfn]) -> usize {
        for &mfn in held {
            self.put_page_and_type(m, mfn);
        }
        let owned: Vec<Mfn> = self
            .pages()
            .filter(|(_, p)| p.owner == Owner::Domain(d))
            .map(|(mfn, _)| mfn)
            .collect();
        for &mfn in &owned {
            if self.page(mfn).is_some_and(|p| p.pinned) {
                if let Some(p) = self.page_mut(mfn) {
                    p.pinned = false;
                }
                self.put_page_and_type(m, mfn);
            }
        }
        // Nothing of d can be typed now unless another domain relies on it; a leftover
        // table is devalidated by force so that its entries' references go.
        for &mfn in &owned {
            let Some(p) = self.page(mfn).copied() else {
                continue;
            };
            // A writable type still held comes from another domain's mapping (a grant
            // or a privileged foreign mapping): it is that mapping's to drop.
            if p.type_count > 0 && p.ty.needs_validation() {
                log::warn!("d{d}: frame {mfn:#x} still a {:?} at teardown", p.ty);
                if let Some(q) = self.page_mut(mfn) {
                    q.type_count = 0;
                    q.validated = false;
                }
                if p.validated {
                    self.devalidate(m, mfn, p.ty);
                }
            }
        }
        for &mfn in &owned {
            if self.page(mfn).is_some_and(|p| p.allocated) {
                if let Some(p) = self.page_mut(mfn) {
                    p.allocated = false;
                }
                self.put_page(mfn);
            }
        }
        self.domains.retain(|&(id, _)| id != d);
        owned
            .iter()
            .filter(|&&mfn| self.page(mfn).is_some_and(|p| p.refs > 0))
            .count()
    }

    /// Frees the frames whose last reference went: scrubbed, M2P entry invalidated,
    /// returned to the allocator. Returns how many.
    pub fn reclaim<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        alloc: &mut FrameAllocator,
        m2p: &M2p,
    ) -> usize {
        let mut n = 0;
        while let Some(mfn) = self.pending_free.pop() {
            let Some(p) = self.page_mut(mfn) else {
                continue;
            };
            if p.refs != 0 || !matches!(p.owner, Owner::Domain(_)) {
                continue;
            }
            *p = PageInfo::new(Owner::Free);
            // A dead L4 may still be the loaded address space (e.g. after the
            // hypercall that dropped its last reference): leave it before scrubbing.
            m.release_address_space(mfn);
            m.zero_frame(mfn);
            m2p.set(m, mfn, INVALID);
            alloc.free(mfn);
            n += 1;
        }
        n
    }

    /// Frames owned by `d` (for accounting and tests).
    pub fn owned_by(&self, d: u16) -> usize {
        self.pages
            .iter()
            .filter(|p| p.owner == Owner::Domain(d))
            .count()
    }
}
