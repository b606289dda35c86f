//! The page-type state machine and every validation rule, on a small machine with
//! hand-built tables (frames are written directly, as a guest's plain `mmu_update`
//! writes to a not-yet-live table would).

use alloc::vec::Vec;

use xen_sys::{XEN_EBUSY, XEN_EINVAL, XEN_EPERM};

use super::*;
use crate::frames::FrameAllocator;
use crate::machine::{read_u64, write_u64, Machine, Mfn};
use crate::mm::m2p::{M2p, INVALID};
use crate::paging::{Pte, ACCESSED, HUGE, PRESENT, USER, WRITABLE};
use crate::testing::TestMachine;

pub(crate) const NR: u64 = 96;
pub(crate) const D: u16 = 1;
pub(crate) const OTHER: u16 = 2;
const RW: u64 = PRESENT | WRITABLE | ACCESSED;
const RO: u64 = PRESENT | ACCESSED;

pub(crate) struct T {
    pub m: TestMachine,
    pub alloc: FrameAllocator,
    pub m2p: M2p,
    pub ft: FrameTable,
    /// Frames of domain D, then of domain OTHER.
    pub mine: Vec<Mfn>,
    pub theirs: Vec<Mfn>,
}

pub(crate) fn setup(privileged: bool) -> T {
    let mut m = TestMachine::new(0, NR as usize);
    let mut alloc = FrameAllocator::new();
    alloc.add(1, NR);
    let m2p = M2p::new(&mut m, &mut alloc, NR).unwrap();
    let shim = [(M2p::l4_slot(), m2p.l4_entry)];
    let mut ft = FrameTable::new(NR, &alloc, &m2p, &shim);
    ft.register_domain(D, privileged);
    ft.register_domain(OTHER, false);
    let mine = (0..40)
        .map(|_| ft.alloc_for(&mut m, &mut alloc, D).unwrap())
        .collect();
    let theirs = (0..8)
        .map(|_| ft.alloc_for(&mut m, &mut alloc, OTHER).unwrap())
        .collect();
    T {
        m,
        alloc,
        m2p,
        ft,
        mine,
        theirs,
    }
}

impl T {
    pub fn set(&mut self, table: Mfn, i: usize, target: Mfn, flags: u64) {
        write_u64(&mut self.m, table, i * 8, Pte::new(target, flags).0);
    }
    pub fn get(&self, table: Mfn, i: usize) -> u64 {
        read_u64(self.m.frame(table).unwrap(), i)
    }
    pub fn p(&self, mfn: Mfn) -> PageInfo {
        *self.ft.page(mfn).unwrap()
    }
    /// Frame `0` of the shim (not free at start of day).
    pub fn shim_frame(&self) -> Mfn {
        0
    }
    /// A chain L4 -> L3 -> L2 -> L1 -> data in frames mine[0..5], data writable.
    pub fn chain(&mut self) -> [Mfn; 5] {
        let f = [
            self.mine[0],
            self.mine[1],
            self.mine[2],
            self.mine[3],
            self.mine[4],
        ];
        for k in 0..4 {
            self.set(f[k], 0, f[k + 1], RW);
        }
        f
    }
    pub fn pin(&mut self, mfn: Mfn, level: u32) -> Result<(), Errno> {
        self.ft.pin(&mut self.m, mfn, level, D)
    }
    pub fn unpin(&mut self, mfn: Mfn) -> Result<(), Errno> {
        self.ft.unpin(&mut self.m, mfn, D)
    }
    pub fn mod_entry(&mut self, t: Mfn, i: usize, target: Mfn, flags: u64) -> Result<(), Errno> {
        self.ft
            .mod_entry(&mut self.m, t, i, Pte::new(target, flags).0, D, false)
    }
    /// Every frame of D back to just its allocation reference, nothing typed.
    pub fn assert_quiet(&self) {
        for &f in self.mine.iter().chain(&self.theirs) {
            let p = self.p(f);
            assert_eq!(
                (p.refs, p.type_count, p.pinned),
                (1, 0, false),
                "frame {f:#x}: {p:?}"
            );
        }
    }
}

#[test]
fn pinning_an_l1_takes_writable_and_general_references_and_unpinning_drops_them() {
    let mut t = setup(false);
    let (l1, a, b) = (t.mine[0], t.mine[1], t.mine[2]);
    t.set(l1, 0, a, RW);
    t.set(l1, 1, b, RO);
    t.pin(l1, 1).unwrap();
    let pl1 = t.p(l1);
    assert_eq!(
        (pl1.ty, pl1.type_count, pl1.pinned, pl1.validated),
        (PageType::L1, 1, true, true)
    );
    assert_eq!(
        (t.p(a).ty, t.p(a).type_count, t.p(a).refs),
        (PageType::Writable, 1, 2)
    );
    assert_eq!((t.p(b).type_count, t.p(b).refs), (0, 2));
    assert_ne!(
        t.get(l1, 0) & USER,
        0,
        "guest entries are made user-accessible"
    );
    t.unpin(l1).unwrap();
    assert!(!t.p(l1).validated);
    t.assert_quiet();
}

#[test]
fn a_whole_hierarchy_validates_from_its_l4() {
    let mut t = setup(false);
    let f = t.chain();
    t.ft.switch_base(&mut t.m, D, Some(f[0]), None).unwrap();
    for (k, ty) in [
        PageType::L4,
        PageType::L3,
        PageType::L2,
        PageType::L1,
        PageType::Writable,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!((t.p(f[k]).ty, t.p(f[k]).type_count), (ty, 1));
    }
    t.ft.switch_base(&mut t.m, D, None, Some(f[0])).unwrap();
    t.assert_quiet();
}

#[test]
fn foreign_frames_are_refused() {
    let mut t = setup(false);
    let (l1, l2, x) = (t.mine[0], t.mine[1], t.theirs[0]);
    t.set(l1, 0, x, RO);
    assert_eq!(t.pin(l1, 1), Err(XEN_EBUSY));
    t.set(l1, 0, 0, 0);
    t.set(l2, 0, x, RW);
    assert_eq!(t.pin(l2, 2), Err(XEN_EINVAL));
    t.assert_quiet();
}

#[test]
fn shim_frames_are_refused() {
    let mut t = setup(true);
    let (l1, s) = (t.mine[0], t.shim_frame());
    let _ = &s;
    assert_eq!(t.ft.page(s).unwrap().owner, Owner::Shim);
    t.set(l1, 0, s, RO);
    assert_eq!(t.pin(l1, 1), Err(XEN_EBUSY));
    // A frame beyond the frame table is I/O space: refused to an unprivileged domain.
    t.set(l1, 0, NR + 5, RO);
    assert_eq!(t.pin(l1, 1), Err(XEN_EPERM));
    t.assert_quiet();
}

#[test]
fn device_frames_map_for_the_io_privileged_only() {
    const DEV: Mfn = 0xfeb00;
    for privileged in [true, false] {
        let mut t = setup(privileged);
        t.ft.add_iomem(DEV, DEV + 2);
        let (l1, l2) = (t.mine[0], t.mine[1]);
        // Uncached and writable, as a driver maps a device's registers.
        t.set(l1, 0, DEV + 2, RW | 1 << 4);
        if privileged {
            t.pin(l1, 1).unwrap();
            // Mapped without references: unmapping drops none.
            t.mod_entry(l1, 1, DEV, RW).unwrap();
            t.mod_entry(l1, 1, 0, 0).unwrap();
            // Only the device's frames: the next one is not the guest's to map.
            assert_eq!(t.mod_entry(l1, 2, DEV + 3, RW), Err(XEN_EPERM));
            // Never as a page table.
            t.set(l2, 0, DEV, RW);
            assert_eq!(t.pin(l2, 2), Err(XEN_EPERM));
            t.unpin(l1).unwrap();
        } else {
            // (Cache attributes are refused first for an unprivileged domain.)
            assert_eq!(t.pin(l1, 1), Err(XEN_EINVAL));
            t.set(l1, 0, DEV + 2, RW);
            assert_eq!(t.pin(l1, 1), Err(XEN_EPERM));
        }
        t.assert_quiet();
    }
}

#[test]
fn m2p_frames_map_read_only_only() {
    let mut t = setup(false);
    let l1 = t.mine[0];
    let m2p = t.m2p.frames()[0];
    t.set(l1, 0, m2p, RO);
    t.pin(l1, 1).unwrap();
    assert_eq!(t.mod_entry(l1, 1, m2p, RW), Err(XEN_EBUSY));
    t.unpin(l1).unwrap();
    t.set(l1, 1, m2p, RW);
    assert_eq!(t.pin(l1, 1), Err(XEN_EBUSY));
    assert_eq!(t.p(m2p).owner, Owner::M2pShared);
}

#[test]
fn a_live_table_cannot_be_mapped_writable() {
    let mut t = setup(false);
    let (x, y) = (t.mine[0], t.mine[1]);
    t.pin(x, 1).unwrap();
    t.pin(y, 1).unwrap();
    assert_eq!(t.mod_entry(y, 0, x, RW), Err(XEN_EBUSY));
    t.mod_entry(y, 0, x, RO).unwrap();
    // Upgrading the read-only mapping to writable goes through the same check.
    assert_eq!(t.mod_entry(y, 0, x, RW), Err(XEN_EBUSY));
    assert_eq!(t.p(x).ty, PageType::L1);
    t.mod_entry(y, 0, 0, 0).unwrap();
    t.unpin(x).unwrap();
    t.unpin(y).unwrap();
    t.assert_quiet();
}

#[test]
fn a_writable_frame_cannot_become_a_table() {
    let mut t = setup(false);
    let (y, x) = (t.mine[0], t.mine[1]);
    t.pin(y, 1).unwrap();
    t.mod_entry(y, 0, x, RW).unwrap();
    assert_eq!(t.pin(x, 1), Err(XEN_EINVAL));
    t.mod_entry(y, 0, x, RO).unwrap();
    t.pin(x, 1).unwrap();
}

#[test]
fn a_table_mapping_itself_writable_cannot_be_pinned() {
    let mut t = setup(false);
    let x = t.mine[0];
    t.set(x, 3, x, RW);
    assert_eq!(t.pin(x, 1), Err(XEN_EBUSY));
    t.assert_quiet();
    t.set(x, 3, x, RO);
    t.pin(x, 1).unwrap();
}

#[test]
fn unpinning_an_unpinned_table_and_pinning_twice_are_refused() {
    let mut t = setup(false);
    let x = t.mine[0];
    assert_eq!(t.unpin(x), Err(XEN_EINVAL));
    t.pin(x, 1).unwrap();
    assert_eq!(t.pin(x, 1), Err(XEN_EINVAL));
    assert_eq!(t.pin(x, 2), Err(XEN_EINVAL), "already an L1");
    assert_eq!(t.p(x).type_count, 1);
    assert_eq!(
        t.ft.unpin(&mut t.m, x, OTHER),
        Err(XEN_EINVAL),
        "not the owner"
    );
    t.unpin(x).unwrap();
    t.assert_quiet();
}

#[test]
fn base_pointers_must_be_own_l4s() {
    let mut t = setup(false);
    let (l1, other) = (t.mine[0], t.theirs[0]);
    t.pin(l1, 1).unwrap();
    assert_eq!(
        t.ft.switch_base(&mut t.m, D, Some(l1), None),
        Err(XEN_EINVAL)
    );
    assert_eq!(
        t.ft.switch_base(&mut t.m, D, Some(other), None),
        Err(XEN_EINVAL)
    );
    let s = t.shim_frame();
    assert_eq!(
        t.ft.switch_base(&mut t.m, D, Some(s), None),
        Err(XEN_EINVAL)
    );
}

#[test]
fn the_shim_fills_the_reserved_l4_slots_and_guests_cannot_write_them() {
    let mut t = setup(false);
    let (l4, junk) = (t.mine[0], t.mine[1]);
    let s = t.shim_frame();
    t.set(l4, 257, s, RW);
    t.set(l4, 262, junk, RW);
    t.pin(l4, 4).unwrap();
    assert_eq!(t.get(l4, 257), 0);
    assert_eq!(t.get(l4, 262), 0);
    assert_eq!(t.get(l4, M2p::l4_slot()), t.m2p.l4_entry);
    assert_eq!(
        t.p(junk).refs,
        1,
        "nothing referenced through reserved slots"
    );
    assert_eq!(t.mod_entry(l4, 262, junk, RO), Err(XEN_EINVAL));
    assert_eq!(t.mod_entry(l4, 271, junk, RO), Err(XEN_EINVAL));
}

#[test]
fn superpages_are_refused() {
    let mut t = setup(true);
    let (l2, l3, x) = (t.mine[0], t.mine[1], t.mine[2]);
    t.set(l2, 0, x, RW | HUGE);
    assert_eq!(t.pin(l2, 2), Err(XEN_EINVAL));
    t.set(l3, 0, x, RW | HUGE);
    assert_eq!(t.pin(l3, 3), Err(XEN_EINVAL));
    t.assert_quiet();
}

#[test]
fn disallowed_flag_bits_are_refused() {
    let mut t = setup(false);
    let (l1, x) = (t.mine[0], t.mine[1]);
    for bad in [1 << 3, 1 << 4, 1 << 7, 1 << 62] {
        t.set(l1, 0, x, RO | bad);
        assert_eq!(t.pin(l1, 1), Err(XEN_EINVAL), "flag {bad:#x}");
    }
    // Allowed: GLOBAL, NX, the software bits.
    t.set(l1, 0, x, RO | 1 << 8 | 1 << 63 | 1 << 52 | 1 << 9);
    t.pin(l1, 1).unwrap();
    let l2 = t.mine[2];
    t.set(l2, 0, l1, RO | 1 << 8);
    assert_eq!(t.pin(l2, 2), Err(XEN_EINVAL), "no GLOBAL above L1");
}

#[test]
fn cache_attributes_need_io_privilege() {
    let mut t = setup(true);
    let (l1, x) = (t.mine[0], t.mine[1]);
    t.set(l1, 0, x, RO | 1 << 4 | 1 << 3);
    t.pin(l1, 1).unwrap();
}

#[test]
fn linear_page_tables_are_refused() {
    let mut t = setup(false);
    let (l4, l2a, l2b) = (t.mine[0], t.mine[1], t.mine[2]);
    t.set(l4, 0, l4, RO);
    assert_eq!(t.pin(l4, 4), Err(XEN_EINVAL));
    t.set(l4, 0, 0, 0);
    t.pin(l4, 4).unwrap();
    t.pin(l2a, 2).unwrap();
    t.set(l2b, 0, l2a, RO);
    assert_eq!(t.pin(l2b, 2), Err(XEN_EINVAL));
    // Hooking a live L4 (self or other) into an L4 is refused too.
    assert_eq!(t.mod_entry(l4, 1, l4, RO), Err(XEN_EINVAL));
}

#[test]
fn plain_writes_then_hooking_validates_the_new_table() {
    let mut t = setup(false);
    let (l2, l1, x) = (t.mine[0], t.mine[1], t.mine[2]);
    t.pin(l2, 2).unwrap();
    // The kernel fills the new L1 with mmu_update while it is not a live table.
    let ptr = (l1 << 12) + 5 * 8;
    t.ft.update_entry(&mut t.m, ptr, Pte::new(x, RW).0, D, D, false)
        .unwrap();
    assert_eq!(t.p(l1).type_count, 0);
    assert_eq!(t.p(x).refs, 1, "a plain write takes nothing");
    t.mod_entry(l2, 0, l1, RW).unwrap();
    assert_eq!((t.p(l1).ty, t.p(l1).type_count), (PageType::L1, 1));
    assert_eq!(t.p(x).ty, PageType::Writable);
    // Now a live table: updates are validated.
    let bad = (l1 << 12) + 6 * 8;
    let r =
        t.ft.update_entry(&mut t.m, bad, Pte::new(t.theirs[0], RO).0, D, D, false);
    assert_eq!(r, Err(XEN_EBUSY));
    // A frame of another domain cannot be written at all.
    let r =
        t.ft.update_entry(&mut t.m, t.theirs[0] << 12, 0, D, D, false);
    assert_eq!(r, Err(XEN_EINVAL));
    t.mod_entry(l2, 0, 0, 0).unwrap();
    t.unpin(l2).unwrap();
    t.assert_quiet();
}

#[test]
fn preserve_ad_keeps_the_hardware_bits() {
    let mut t = setup(false);
    let (l1, x) = (t.mine[0], t.mine[1]);
    t.set(l1, 0, x, RO | crate::paging::DIRTY);
    t.pin(l1, 1).unwrap();
    let ptr = (l1 << 12) + xen_sys::MMU_PT_UPDATE_PRESERVE_AD as u64;
    let v = Pte::new(x, PRESENT).0;
    t.ft.update_entry(&mut t.m, ptr - 2, v, D, D, true).unwrap();
    assert_ne!(t.get(l1, 0) & crate::paging::DIRTY, 0);
}

#[test]
fn foreign_mappings_for_a_privileged_pg_owner() {
    let mut t = setup(true);
    let (l1, x) = (t.mine[0], t.theirs[0]);
    t.pin(l1, 1).unwrap();
    t.ft.mod_entry(&mut t.m, l1, 0, Pte::new(x, RW).0, OTHER, false)
        .unwrap();
    assert_eq!((t.p(x).ty, t.p(x).refs), (PageType::Writable, 2));
    t.mod_entry(l1, 0, 0, 0).unwrap();
    t.unpin(l1).unwrap();
    t.assert_quiet();
}

#[test]
fn teardown_frees_every_frame_and_drops_every_reference() {
    let mut t = setup(false);
    let free_before = t.alloc.free_frames();
    let f = t.chain();
    t.ft.switch_base(&mut t.m, D, Some(f[0]), None).unwrap();
    let extra = t.mine[10];
    let eleven = t.mine[11];
    t.set(extra, 7, eleven, RO);
    t.pin(extra, 1).unwrap();
    // A frame D gave away to the allocator's accounting as xenheap (shared_info).
    let shared = t.alloc.alloc().unwrap();
    t.ft.assign(shared, D, true).unwrap();
    t.m2p.set(&mut t.m, f[4], 4);
    let still = t.ft.teardown(&mut t.m, D, &[f[0]]);
    assert_eq!(still, 0);
    let freed = t.ft.reclaim(&mut t.m, &mut t.alloc, &t.m2p);
    assert_eq!(freed, t.mine.len() + 1);
    assert_eq!(t.alloc.free_frames(), free_before + t.mine.len() as u64);
    for &x in t.mine.iter().chain([&shared]) {
        assert_eq!(t.p(x), PageInfo::new(Owner::Free));
        assert!(t.m.frame(x).unwrap().iter().all(|&b| b == 0), "scrubbed");
    }
    assert!(!t.ft.domain_exists(D));
    let mut g = [0u8; 8];
    t.m.read_phys(t.m2p.frames()[0] * 4096 + f[4] * 8, &mut g)
        .unwrap();
    assert_eq!(u64::from_le_bytes(g), INVALID);
    // The other domain is untouched.
    for &x in &t.theirs {
        assert_eq!(t.p(x).refs, 1);
    }
}

#[test]
fn released_frames_go_when_their_last_mapping_does() {
    let mut t = setup(false);
    let (l1, x) = (t.mine[0], t.mine[1]);
    t.pin(l1, 1).unwrap();
    t.mod_entry(l1, 0, x, RW).unwrap();
    t.ft.release(&mut t.m, x, D).unwrap();
    assert_eq!(
        t.ft.reclaim(&mut t.m, &mut t.alloc, &t.m2p),
        0,
        "still mapped"
    );
    assert_eq!(
        t.ft.release(&mut t.m, x, D),
        Err(XEN_EINVAL),
        "released twice"
    );
    t.mod_entry(l1, 0, 0, 0).unwrap();
    assert_eq!(t.ft.reclaim(&mut t.m, &mut t.alloc, &t.m2p), 1);
    assert_eq!(t.p(x).owner, Owner::Free);
    // A pinned table is unpinned by its release.
    t.ft.release(&mut t.m, l1, D).unwrap();
    assert_eq!(t.ft.reclaim(&mut t.m, &mut t.alloc, &t.m2p), 1);
}

#[test]
fn descriptor_pages_are_checked_and_exclusive() {
    let mut t = setup(false);
    let (g, l1) = (t.mine[0], t.mine[1]);
    write_u64(&mut t.m, g, 8, 0x00af_9a00_0000_ffff); // ring-0 code
    t.ft.get_page_and_type(&mut t.m, g, D, PageType::SegDesc)
        .unwrap();
    assert_eq!((t.get(g, 1) >> 45) & 3, 3, "DPL raised to 3");
    t.pin(l1, 1).unwrap();
    assert_eq!(t.mod_entry(l1, 0, g, RW), Err(XEN_EBUSY));
    t.ft.put_page_and_type(&mut t.m, g);
    write_u64(&mut t.m, g, 16, 0x0000_8e00_0010_0000); // an interrupt gate
    assert_eq!(
        t.ft.get_page_and_type(&mut t.m, g, D, PageType::SegDesc),
        Err(XEN_EINVAL)
    );
    assert_eq!(t.p(g).type_count, 0);
}

/// Random sequences of guest operations on a small domain: after each, the counts are
/// exactly what the live tables, pins and base pointer account for, no frame is both a
/// live table and writable-mapped, no live entry reaches a frame the domain does not
/// own (the M2P read-only excepted); after teardown every frame of the domain is free.
mod property {
    use super::*;
    use proptest::prelude::*;

    const FRAMES: usize = 10;

    #[derive(Clone, Debug)]
    enum Op {
        /// mmu_update of `table`'s slot to point at target `t` (see `target`).
        Write {
            table: usize,
            slot: usize,
            t: usize,
            flags: u64,
        },
        Pin {
            f: usize,
            level: u32,
        },
        Unpin {
            f: usize,
        },
        NewBase {
            f: usize,
        },
        /// update_va_mapping-style change of an entry of a pinned L1.
        ModL1 {
            f: usize,
            slot: usize,
            t: usize,
            writable: bool,
        },
        Release {
            f: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let flags = prop_oneof![
            Just(0),
            Just(RO),
            Just(RW),
            Just(RW | HUGE),
            Just(RO | 1 << 4)
        ];
        prop_oneof![
            4 => (0..FRAMES, 0..3usize, 0..FRAMES + 3, flags)
                .prop_map(|(table, slot, t, flags)| Op::Write { table, slot, t, flags }),
            2 => (0..FRAMES, 1..=4u32).prop_map(|(f, level)| Op::Pin { f, level }),
            1 => (0..FRAMES).prop_map(|f| Op::Unpin { f }),
            1 => (0..FRAMES).prop_map(|f| Op::NewBase { f }),
            2 => (0..FRAMES, 0..3usize, 0..FRAMES + 3, any::<bool>())
                .prop_map(|(f, slot, t, writable)| Op::ModL1 { f, slot, t, writable }),
            1 => (0..FRAMES).prop_map(|f| Op::Release { f }),
        ]
    }

    /// Target `i`: one of the domain's frames, or a foreign, M2P or shim frame.
    fn target(t: &T, i: usize) -> Mfn {
        match i.checked_sub(FRAMES) {
            None => t.mine[i],
            Some(0) => t.theirs[0],
            Some(1) => t.m2p.frames()[0],
            Some(_) => t.shim_frame(),
        }
    }

    fn apply(t: &mut T, base: &mut Option<Mfn>, op: &Op) {
        let _ = match *op {
            Op::Write {
                table,
                slot,
                t: i,
                flags,
            } => {
                let (tb, tg) = (t.mine[table], target(t, i));
                // Slots 0..3, and for an L4 one slot in the shim's range.
                let slot = if slot == 2 { 262 } else { slot };
                let v = if flags == 0 { 0 } else { Pte::new(tg, flags).0 };
                t.ft.update_entry(&mut t.m, (tb << 12) + slot as u64 * 8, v, D, D, false)
            }
            Op::Pin { f, level } => t.pin(t.mine[f], level),
            Op::Unpin { f } => t.unpin(t.mine[f]),
            Op::NewBase { f } => {
                let new = t.mine[f];
                let r = t.ft.switch_base(&mut t.m, D, Some(new), *base);
                if r.is_ok() {
                    *base = Some(new);
                }
                r
            }
            Op::ModL1 {
                f,
                slot,
                t: i,
                writable,
            } => {
                let tg = target(t, i);
                let flags = if writable { RW } else { RO };
                t.ft.mod_entry(&mut t.m, t.mine[f], slot, Pte::new(tg, flags).0, D, false)
            }
            Op::Release { f } => {
                let mfn = t.mine[f];
                if Some(mfn) == *base {
                    Ok(()) // the base pointer's frame stays allocated in this model
                } else {
                    t.ft.release(&mut t.m, mfn, D)
                }
            }
        };
    }

    fn check(t: &T, base: Option<Mfn>) -> Result<(), TestCaseError> {
        let mut types = alloc::collections::BTreeMap::<Mfn, u32>::new();
        let mut refs = alloc::collections::BTreeMap::<Mfn, u32>::new();
        for (mfn, p) in t.ft.pages() {
            if p.owner != Owner::Domain(D) {
                continue;
            }
            *refs.entry(mfn).or_default() += p.allocated as u32 + p.pinned as u32;
            *types.entry(mfn).or_default() += p.pinned as u32;
            let Some(level) = p.ty.level().filter(|_| p.is_live_table()) else {
                continue;
            };
            for i in 0..ENTRIES_ {
                if level == 4 && rules::is_reserved_l4_slot(i) {
                    continue;
                }
                let e = Pte(t.get(mfn, i));
                if !e.present() {
                    continue;
                }
                let tgt = e.mfn();
                let tp = t.ft.page(tgt).copied();
                let owner = tp.map(|p| p.owner);
                if owner == Some(Owner::M2pShared) && level == 1 && !e.writable() {
                    continue;
                }
                prop_assert_eq!(
                    owner,
                    Some(Owner::Domain(D)),
                    "entry of {:#x} to {:#x}",
                    mfn,
                    tgt
                );
                let tp = tp.unwrap();
                *refs.entry(tgt).or_default() += 1;
                if level > 1 || e.writable() {
                    *types.entry(tgt).or_default() += 1;
                }
                if level == 1 && e.writable() {
                    prop_assert_eq!(
                        tp.ty,
                        PageType::Writable,
                        "writable mapping of a {:?}",
                        tp.ty
                    );
                } else if level > 1 {
                    prop_assert_eq!(tp.ty, PageType::table(level - 1));
                    prop_assert!(tp.is_live_table());
                }
            }
        }
        if let Some(b) = base {
            *refs.entry(b).or_default() += 1;
            *types.entry(b).or_default() += 1;
            prop_assert_eq!(t.p(b).ty, PageType::L4);
        }
        for (mfn, p) in t.ft.pages() {
            if p.owner != Owner::Domain(D) {
                continue;
            }
            prop_assert_eq!(p.refs, refs[&mfn], "refs of {:#x}: {:?}", mfn, p);
            prop_assert_eq!(
                p.type_count,
                types[&mfn],
                "type count of {:#x}: {:?}",
                mfn,
                p
            );
            if p.ty.level().is_some() && p.type_count > 0 {
                prop_assert!(p.validated);
            }
        }
        Ok(())
    }

    const ENTRIES_: usize = crate::paging::ENTRIES;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn random_operations_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
            let mut t = setup(false);
            let free_before = t.alloc.free_frames();
            let mut base = None;
            for op in &ops {
                apply(&mut t, &mut base, op);
                t.ft.reclaim(&mut t.m, &mut t.alloc, &t.m2p);
                check(&t, base)?;
            }
            let held: Vec<Mfn> = base.into_iter().collect();
            prop_assert_eq!(t.ft.teardown(&mut t.m, D, &held), 0);
            t.ft.reclaim(&mut t.m, &mut t.alloc, &t.m2p);
            prop_assert_eq!(t.alloc.free_frames(), free_before + t.mine.len() as u64);
            for &x in &t.mine {
                prop_assert_eq!(t.p(x), PageInfo::new(Owner::Free));
            }
            for &x in &t.theirs {
                prop_assert_eq!((t.p(x).refs, t.p(x).type_count), (1, 0));
            }
        }
    }
}
