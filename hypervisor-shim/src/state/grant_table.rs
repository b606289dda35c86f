//! A domain's grant table, version 1 (`xen/include/public/grant_table.h`; the state of
//! Xen's `struct grant_table` in xen/common/grant_table.c): the shared grant frames the
//! domain fills with `grant_entry_v1`s, the active entries that shadow the grants in use
//! (pin counts, the granted frame), and the maptrack table of the domain's own mappings
//! of other domains' grants (a handle per mapping).
//!
//! The hypercalls that use this state are in `hypercall/grant_table.rs`; this module
//! holds the granter's side every operation is made of (check the entry, set
//! `GTF_reading`/`GTF_writing`, pin, and the reverse). What reaches across domains,
//! such as a dying mapper's teardown, is `common::grant_table`.
//!
//! Limits: [`DEFAULT_MAX_FRAMES`] grant frames per domain (Xen 4.17's default,
//! `gnttab_max_frames`, is 64; 32 frames are 16384 grant references, far more than a
//! domain of this system uses, and half the worst-case memory a domain can make the shim
//! allocate) and [`MAX_MAPTRACK`] mappings per domain (Xen: 1024 maptrack frames of 256).
//!
//! Grant frames are owned by their domain like its shared_info page (Xen's xenheap
//! pages shared with the guest): outside its reservation, mappable writable, freed when
//! the domain is torn down (or later, once the last mapping of them is gone).

use alloc::vec::Vec;
use core::mem::{offset_of, size_of};

use xen_sys::{
    grant_entry_v1, GNTMAP_device_map, GNTMAP_host_map, GNTMAP_readonly, GNTST_bad_gntref,
    GNTST_bad_page, GNTST_general_error, GTF_permit_access, GTF_reading, GTF_readonly,
    GTF_sub_page, GTF_type_mask, GTF_writing, XEN_EINVAL, XEN_ENOMEM,
};

use crate::frames::FrameAllocator;
use crate::machine::{write_bytes, Machine, Mfn, PAGE_SIZE};
use crate::mm::{Errno, FrameTable};
use xen_sys::domid_t;

/// Grant frames a domain may have (see the module doc).
pub const DEFAULT_MAX_FRAMES: u32 = 32;
/// Mappings (maptrack handles) a domain may hold at once.
pub const MAX_MAPTRACK: usize = 16384;
/// `grant_entry_v1`s per grant frame.
pub const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / size_of::<grant_entry_v1>()) as u32;

/// The pin counts of an active entry, one byte each as in Xen's `active_grant_entry`
/// (`GNTPIN_*`, private to xen/common/grant_table.c): writable and read-only host
/// mappings, writable and read-only device mappings.
pub const PIN_HSTW: u32 = 1;
pub const PIN_HSTR: u32 = 1 << 8;
pub const PIN_DEVW: u32 = 1 << 16;
pub const PIN_DEVR: u32 = 1 << 24;
const PIN_WRITERS: u32 = (0xff * PIN_HSTW) | (0xff * PIN_DEVW);
/// A count about to overflow its byte: Xen refuses another pin.
const PIN_OVERFLOW: u32 = 0x8080_8080;

/// Grant status codes are `int16_t` in the ABI.
pub type Status = i16;

/// The pin increment of a mapping with `GNTMAP_*` `flags`.
pub fn pin_of(flags: u32) -> u32 {
    let ro = flags & GNTMAP_readonly != 0;
    let mut inc = 0;
    if flags & GNTMAP_device_map != 0 {
        inc += if ro { PIN_DEVR } else { PIN_DEVW };
    }
    if flags & GNTMAP_host_map != 0 {
        inc += if ro { PIN_HSTR } else { PIN_HSTW };
    }
    inc
}

/// An entry in use (Xen's `active_grant_entry`, v1 full-page grants only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Active {
    pub pin: u32,
    /// The domain the grant is in use by.
    pub domid: domid_t,
    /// The granted frame, read from the entry when it was first pinned.
    pub mfn: Mfn,
}

/// One mapping the domain made of another's grant (Xen's `grant_mapping`, plus the
/// frame and address it was made with, which the mapper's unmap and teardown need
/// even when the granter is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub granter: domid_t,
    pub gref: u32,
    /// The `GNTMAP_*` flags still held (host/device map bits go as they are unmapped).
    pub flags: u32,
    pub mfn: Mfn,
    /// `host_addr` of the host mapping (a linear address, or with
    /// `GNTMAP_contains_pte` the machine address of the PTE).
    pub host_addr: u64,
}

#[derive(Debug, Default)]
pub struct GrantTable {
    frames: Vec<Mfn>,
    max_frames: u32,
    active: Vec<Active>,
    maptrack: Vec<Option<Mapping>>,
    /// Handles in use.
    mappings: usize,
}

impl GrantTable {
    pub fn new(max_frames: u32) -> Self {
        GrantTable {
            max_frames,
            ..Default::default()
        }
    }

    /// The shared grant frames, in order.
    pub fn frames(&self) -> &[Mfn] {
        &self.frames
    }

    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// Grant references the shared frames hold.
    pub fn nr_entries(&self) -> u32 {
        self.frames.len() as u32 * ENTRIES_PER_FRAME
    }

    pub fn active(&self, gref: u32) -> Option<&Active> {
        self.active.get(gref as usize)
    }

    /// Grows the table to `nr` frames (`gnttab_grow_table`): each new frame is scrubbed
    /// and given to `owner` outside its reservation. `-EINVAL` beyond the maximum,
    /// `-ENOMEM` when the allocator is empty (frames added so far stay).
    pub fn grow<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        table: &mut FrameTable,
        alloc: &mut FrameAllocator,
        owner: domid_t,
        nr: u32,
    ) -> Result<(), Errno> {
        if nr > self.max_frames {
            return Err(XEN_EINVAL);
        }
        while (self.frames.len() as u32) < nr {
            let mfn = alloc.alloc().ok_or(XEN_ENOMEM)?;
            if m.zero_frame(mfn).is_none() || table.assign(mfn, owner, true).is_err() {
                log::error!("allocator returned frame {mfn:#x} the frame table cannot use");
                return Err(XEN_ENOMEM);
            }
            self.frames.push(mfn);
            self.active
                .resize(self.nr_entries() as usize, Active::default());
        }
        Ok(())
    }

    /// Forgets the frames and entries of a dead domain (its frames went with its
    /// teardown): nothing may reach them through this table any more.
    pub fn forget(&mut self) {
        self.frames.clear();
        self.active.clear();
    }

    /// Frame and byte offset of entry `gref`.
    fn entry_at(&self, gref: u32) -> Option<(Mfn, usize)> {
        let frame = *self.frames.get((gref / ENTRIES_PER_FRAME) as usize)?;
        let off = (gref % ENTRIES_PER_FRAME) as usize * size_of::<grant_entry_v1>();
        Some((frame, off))
    }

    /// `(flags, domid, frame)` of entry `gref` as the guest wrote it.
    pub fn read_entry<M: Machine + ?Sized>(&self, m: &M, gref: u32) -> Option<(u16, u16, u32)> {
        let (mfn, off) = self.entry_at(gref)?;
        let f = m.frame(mfn)?;
        let u16_at = |o: usize| u16::from_le_bytes([f[off + o], f[off + o + 1]]);
        let o = offset_of!(grant_entry_v1, frame) + off;
        Some((
            u16_at(offset_of!(grant_entry_v1, flags)),
            u16_at(offset_of!(grant_entry_v1, domid)),
            u32::from_le_bytes([f[o], f[o + 1], f[o + 2], f[o + 3]]),
        ))
    }

    /// Writes entry `gref` whole, the frame and domain before the flags, as a toolstack
    /// seeds the reserved entries (`xc_dom_gnttab_seed`).
    pub fn write_entry<M: Machine + ?Sized>(
        &self,
        m: &mut M,
        gref: u32,
        flags: u16,
        domid: domid_t,
        frame: u32,
    ) -> Option<()> {
        let (mfn, off) = self.entry_at(gref)?;
        write_bytes(
            m,
            mfn,
            off + offset_of!(grant_entry_v1, frame),
            &frame.to_le_bytes(),
        );
        write_bytes(
            m,
            mfn,
            off + offset_of!(grant_entry_v1, domid),
            &domid.to_le_bytes(),
        );
        write_bytes(
            m,
            mfn,
            off + offset_of!(grant_entry_v1, flags),
            &flags.to_le_bytes(),
        );
        Some(())
    }

    fn update_flags<M: Machine + ?Sized>(&self, m: &mut M, gref: u32, f: impl Fn(u16) -> u16) {
        if let Some((flags, _, _)) = self.read_entry(m, gref) {
            if let Some((mfn, off)) = self.entry_at(gref) {
                let at = off + offset_of!(grant_entry_v1, flags);
                write_bytes(m, mfn, at, &f(flags).to_le_bytes());
            }
        }
    }

    /// The granter's side of `map_grant_ref` and `acquire_grant_for_copy` for domain
    /// `ld` on this table (owned by `me`): checks the entry (unless already pinned),
    /// sets `GTF_reading` (and `GTF_writing`), and on the first pin takes a general
    /// reference on the granted frame, which must be `me`'s (`get_paged_frame`).
    /// Adds `pin` to the pin count. Returns the frame and whether a reference was
    /// taken (an entry already pinned leaves that to the caller, as in Xen).
    /// `mapflag`: a mapping, which a sub-page grant cannot be.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire<M: Machine + ?Sized>(
        &mut self,
        m: &mut M,
        table: &mut FrameTable,
        me: domid_t,
        gref: u32,
        ld: domid_t,
        readonly: bool,
        pin: u32,
        mapflag: bool,
    ) -> Result<(Mfn, bool), Status> {
        if gref >= self.nr_entries() {
            log::info!("d{ld}: bad grant reference {gref:#x} of d{me}");
            return Err(GNTST_bad_gntref as Status);
        }
        let act = self.active[gref as usize];
        if act.pin != 0 && (act.domid != ld || act.pin & PIN_OVERFLOW != 0) {
            log::warn!(
                "d{ld}: grant {gref:#x} of d{me} in use by d{} (pin {:#x})",
                act.domid,
                act.pin
            );
            return Err(GNTST_general_error as Status);
        }
        let mut took_ref = false;
        if act.pin == 0 || (!readonly && act.pin & PIN_WRITERS == 0) {
            // _set_status_v1.
            let (flags, domid, frame) = self
                .read_entry(m, gref)
                .ok_or(GNTST_general_error as Status)?;
            let (flags, frame) = (flags as u32, frame as Mfn);
            let mask = GTF_type_mask | if mapflag { GTF_sub_page } else { 0 };
            if act.pin == 0 && (flags & mask != GTF_permit_access || domid != ld) {
                log::warn!(
                    "d{ld}: grant {gref:#x} of d{me}: bad flags {flags:#x} or domain {domid}"
                );
                return Err(GNTST_general_error as Status);
            }
            if !readonly && flags & GTF_readonly != 0 {
                log::warn!("d{ld}: attempt to write-pin read-only grant {gref:#x} of d{me}");
                return Err(GNTST_general_error as Status);
            }
            let set = GTF_reading | if readonly { 0 } else { GTF_writing };
            self.update_flags(m, gref, |f| f | set as u16);
            if act.pin == 0 {
                if table.get_page(frame, me).is_err() {
                    log::warn!(
                        "d{ld}: grant {gref:#x} of d{me} names frame {frame:#x} it does not own"
                    );
                    self.clear_status(m, gref, readonly);
                    return Err(GNTST_bad_page as Status);
                }
                took_ref = true;
                self.active[gref as usize] = Active {
                    pin: 0,
                    domid: ld,
                    mfn: frame,
                };
            }
        }
        let a = &mut self.active[gref as usize];
        a.pin += pin;
        Ok((a.mfn, took_ref))
    }

    /// Clears `GTF_writing` if `readonly` is false and no writer is left, and
    /// `GTF_reading` if nothing is pinned any more.
    fn clear_status<M: Machine + ?Sized>(&self, m: &mut M, gref: u32, readonly: bool) {
        let pin = self.active.get(gref as usize).map_or(0, |a| a.pin);
        let mut clear = 0;
        if !readonly && pin & PIN_WRITERS == 0 {
            clear |= GTF_writing;
        }
        if pin == 0 {
            clear |= GTF_reading;
        }
        if clear != 0 {
            self.update_flags(m, gref, |f| f & !(clear as u16));
        }
    }

    /// Drops `pin` from entry `gref` and clears the status bits no longer true (the
    /// pin half of `unmap_common_complete` and `release_grant_for_copy`; frame
    /// references are the caller's).
    pub fn release<M: Machine + ?Sized>(&mut self, m: &mut M, gref: u32, pin: u32, readonly: bool) {
        let Some(a) = self.active.get_mut(gref as usize) else {
            return;
        };
        if a.pin < pin {
            log::error!("grant {gref:#x}: pin {:#x} below {pin:#x}", a.pin);
            a.pin = 0;
        } else {
            a.pin -= pin;
        }
        self.clear_status(m, gref, readonly);
    }

    /// Whether another mapping can be recorded (Xen checks this first).
    pub fn has_free_handle(&self) -> bool {
        self.mappings < MAX_MAPTRACK
    }

    /// Records a mapping; returns its handle.
    pub fn insert(&mut self, map: Mapping) -> Option<u32> {
        if !self.has_free_handle() {
            return None;
        }
        let h = match self.maptrack.iter().position(Option::is_none) {
            Some(h) => {
                self.maptrack[h] = Some(map);
                h
            }
            None => {
                self.maptrack.push(Some(map));
                self.maptrack.len() - 1
            }
        };
        self.mappings += 1;
        Some(h as u32)
    }

    pub fn mapping(&self, handle: u32) -> Option<&Mapping> {
        self.maptrack.get(handle as usize)?.as_ref()
    }

    pub fn mapping_mut(&mut self, handle: u32) -> Option<&mut Mapping> {
        self.maptrack.get_mut(handle as usize)?.as_mut()
    }

    /// Frees a handle.
    pub fn remove(&mut self, handle: u32) -> Option<Mapping> {
        let m = self.maptrack.get_mut(handle as usize)?.take();
        if m.is_some() {
            self.mappings -= 1;
        }
        m
    }

    /// Mappings in use.
    pub fn nr_mappings(&self) -> usize {
        self.mappings
    }

    /// The handles of the mappings in use.
    pub fn handles(&self) -> Vec<u32> {
        (0..self.maptrack.len() as u32)
            .filter(|&h| self.mapping(h).is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_follow_xens_layout() {
        assert_eq!(ENTRIES_PER_FRAME, 512);
        assert_eq!(pin_of(GNTMAP_host_map), PIN_HSTW);
        assert_eq!(pin_of(GNTMAP_host_map | GNTMAP_readonly), PIN_HSTR);
        assert_eq!(
            pin_of(GNTMAP_host_map | GNTMAP_device_map),
            PIN_HSTW | PIN_DEVW
        );
        assert_eq!(pin_of(GNTMAP_device_map | GNTMAP_readonly), PIN_DEVR);
    }

    #[test]
    fn handles_are_reused_and_bounded() {
        let mut t = GrantTable::new(1);
        let map = Mapping {
            granter: 1,
            gref: 8,
            flags: GNTMAP_host_map,
            mfn: 5,
            host_addr: 0,
        };
        let a = t.insert(map).unwrap();
        let b = t.insert(map).unwrap();
        assert_eq!((a, b), (0, 1));
        assert_eq!(t.remove(a), Some(map));
        assert_eq!(t.remove(a), None, "a handle frees once");
        assert_eq!(t.insert(map), Some(0), "the freed handle is reused");
        for _ in 2..MAX_MAPTRACK {
            t.insert(map).unwrap();
        }
        assert!(!t.has_free_handle());
        assert_eq!(t.insert(map), None);
    }
}
