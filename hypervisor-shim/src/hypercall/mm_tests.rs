//! The memory hypercalls end to end on a built domain (`World`): arguments read from
//! and results written to guest memory, Xen's error codes.

use xen_sys::*;

use super::env::err;
use super::tests::{World, SCRATCH};
use crate::machine::{read_u64, GuestMemory, Machine, Mfn};
use crate::mm::{Owner, PageType};
use crate::paging::{self, Pte, ACCESSED, PRESENT, WRITABLE};

const BUF: u64 = SCRATCH + 0x100;
const PDONE: u64 = SCRATCH;

fn put_u64s(w: &mut World, va: u64, v: &[u64]) {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    w.poke(va, &b);
}

fn get_u64(w: &mut World, va: u64) -> u64 {
    u64::from_le_bytes(w.peek(va, 8).try_into().unwrap())
}

/// The L1 entry mapping `va` in the domain's tables: (L1 frame, index, entry).
fn l1e(w: &World, va: u64) -> (Mfn, usize, u64) {
    let mut t = w.dom.l4;
    for level in (2..=4).rev() {
        t = Pte(read_u64(w.m.frame(t).unwrap(), paging::index(va, level))).mfn();
    }
    let i = paging::index(va, 1);
    (t, i, read_u64(w.m.frame(t).unwrap(), i))
}

/// A domain frame outside the initial mapping (free for the test to use).
fn spare(w: &World, k: usize) -> Mfn {
    w.p2m[1100 + k]
}

fn mmuext(w: &mut World, ops: &[(u32, u64, u64)]) -> i64 {
    let words: Vec<u64> = ops.iter().flat_map(|&(c, a, b)| [c as u64, a, b]).collect();
    put_u64s(w, BUF, &words);
    w.call(
        __HYPERVISOR_mmuext_op,
        &[BUF, ops.len() as u64, PDONE, DOMID_SELF as u64],
    )
}

#[test]
fn mmu_update_stops_where_the_buffer_ends_and_reports_progress() {
    let mut w = World::new(true);
    let mfn = spare(&w, 0);
    let last = w.v_end - 16;
    put_u64s(
        &mut w,
        last,
        &[(mfn << 12) | MMU_MACHPHYS_UPDATE as u64, 42],
    );
    let r = w.call(
        __HYPERVISOR_mmu_update,
        &[last, 2, PDONE, DOMID_SELF as u64],
    );
    assert_eq!(r, err(XEN_EFAULT));
    assert_eq!(w.peek(PDONE, 4), 1u32.to_le_bytes());
    let hole = HYPERVISOR_VIRT_START;
    let r = w.call(__HYPERVISOR_mmu_update, &[hole, 1, 0, DOMID_SELF as u64]);
    assert_eq!(r, err(XEN_EFAULT));
    let r = w.call(
        __HYPERVISOR_mmu_update,
        &[u64::MAX - 8, 4, 0, DOMID_SELF as u64],
    );
    assert_eq!(r, err(XEN_EFAULT));
    // The next legitimate call works.
    put_u64s(&mut w, BUF, &[(mfn << 12) | 1, 43]);
    assert_eq!(
        w.call(__HYPERVISOR_mmu_update, &[BUF, 1, 0, DOMID_SELF as u64]),
        0
    );
}

#[test]
fn foreign_domains_need_privilege() {
    let mut w = World::new(false);
    let s = spare(&w, 0);
    put_u64s(&mut w, BUF, &[(s << 12) | 1, 1]);
    let call = |w: &mut World, fd: u64| w.call(__HYPERVISOR_mmu_update, &[BUF, 1, 0, fd]);
    assert_eq!(call(&mut w, 0), err(XEN_ESRCH), "itself by id");
    assert_eq!(call(&mut w, 5), err(XEN_ESRCH), "unknown");
    w.table.register_domain(7, false);
    assert_eq!(call(&mut w, 7), err(XEN_EPERM));
    assert_eq!(call(&mut w, DOMID_IO as u64), err(XEN_EPERM));
    assert_eq!(
        call(&mut w, (8 << 16) | DOMID_SELF as u64),
        err(XEN_EPERM),
        "pt owner 7"
    );
    let uvmo = __HYPERVISOR_update_va_mapping_otherdomain;
    assert_eq!(
        w.call(uvmo, &[SCRATCH, 0, 0, DOMID_SELF as u64]),
        err(XEN_EPERM)
    );
}

#[test]
fn update_va_mapping_remaps_and_checks() {
    let mut w = World::new(true);
    let (_, _, e) = l1e(&w, SCRATCH);
    let ro = Pte::new(Pte(e).mfn(), PRESENT | ACCESSED).0;
    assert_eq!(
        w.call(__HYPERVISOR_update_va_mapping, &[SCRATCH, ro, UVMF_INVLPG]),
        0
    );
    let g = GuestMemory {
        machine: &mut w.m,
        l4: w.dom.l4,
    };
    assert!(g.translate(SCRATCH, true).is_err());
    assert!(g.translate(SCRATCH, false).is_ok());
    assert_eq!(
        w.call(
            __HYPERVISOR_update_va_mapping,
            &[SCRATCH, e, UVMF_TLB_FLUSH | UVMF_ALL]
        ),
        0
    );
    w.poke(SCRATCH, &[1]);
    // A bad vCPU mask pointer.
    let r = w.call(
        __HYPERVISOR_update_va_mapping,
        &[SCRATCH, e, UVMF_TLB_FLUSH | 0xdead_0000],
    );
    assert_eq!(r, err(XEN_EFAULT));
    // A page-table frame may not be mapped writable.
    let (l1, _, _) = l1e(&w, SCRATCH);
    let rw_pt = Pte::new(l1, PRESENT | WRITABLE | ACCESSED).0;
    assert_eq!(
        w.call(__HYPERVISOR_update_va_mapping, &[SCRATCH, rw_pt, 0]),
        err(XEN_EBUSY)
    );
    // Addresses outside the guest range or with no L1.
    let hole = HYPERVISOR_VIRT_START + 0x1000;
    assert_eq!(
        w.call(__HYPERVISOR_update_va_mapping, &[hole, 0, 0]),
        err(XEN_EINVAL)
    );
    assert_eq!(
        w.call(__HYPERVISOR_update_va_mapping, &[0x1000, 0, 0]),
        err(XEN_EINVAL)
    );
    assert_eq!(
        w.call(__HYPERVISOR_update_va_mapping, &[1 << 47, 0, 0]),
        err(XEN_EINVAL)
    );
}

#[test]
fn a_guest_builds_pins_switches_to_and_drops_its_own_l4() {
    let mut w = World::new(true);
    let old = w.dom.l4;
    let new = spare(&w, 0);
    // Copy the kernel's L4 slot with plain mmu_update writes to the new frame.
    let slot = paging::index(SCRATCH, 4);
    let e = read_u64(w.m.frame(old).unwrap(), slot);
    put_u64s(&mut w, BUF, &[(new << 12) + slot as u64 * 8, e]);
    assert_eq!(
        w.call(__HYPERVISOR_mmu_update, &[BUF, 1, 0, DOMID_SELF as u64]),
        0
    );
    assert_eq!(
        mmuext(
            &mut w,
            &[(MMUEXT_PIN_L4_TABLE, new, 0), (MMUEXT_NEW_BASEPTR, new, 0)]
        ),
        0
    );
    assert_eq!(w.dom.l4, new);
    assert_eq!(w.peek(PDONE, 4), 2u32.to_le_bytes());
    assert_eq!(
        w.peek(SCRATCH + 8, 8).len(),
        8,
        "still reachable through the new L4"
    );
    // The builder pinned the initial L4, as Xen's do: it stays a live table until the
    // guest unpins it.
    let p = *w.table.page(old).unwrap();
    assert_eq!((p.ty, p.type_count, p.validated), (PageType::L4, 1, true));
    assert_eq!(mmuext(&mut w, &[(MMUEXT_UNPIN_TABLE, old, 0)]), 0);
    let p = *w.table.page(old).unwrap();
    assert_eq!((p.ty, p.type_count, p.validated), (PageType::L4, 0, false));
    assert_eq!(
        mmuext(
            &mut w,
            &[(MMUEXT_NEW_BASEPTR, old, 0), (MMUEXT_UNPIN_TABLE, new, 0)]
        ),
        0
    );
    assert_eq!(w.table.page(new).unwrap().type_count, 0);
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_UNPIN_TABLE, new, 0)]),
        err(XEN_EINVAL)
    );
    assert_eq!(w.peek(PDONE, 4), 0u32.to_le_bytes());
}

#[test]
fn mmuext_refusals() {
    let mut w = World::new(false);
    let data = w.p2m[0];
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_NEW_BASEPTR, data, 0)]),
        err(XEN_EINVAL)
    );
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_PIN_L1_TABLE, data, 0)]),
        err(XEN_EINVAL)
    );
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_FLUSH_CACHE, 0, 0)]),
        err(XEN_EACCES)
    );
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_MARK_SUPER, data, 0)]),
        err(XEN_ENOSYS)
    );
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_TLB_FLUSH_MULTI, 0, 0xdead_0000)]),
        err(XEN_EFAULT)
    );
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_SET_LDT, 0x1234, 2)]),
        err(XEN_EINVAL)
    );
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_SET_LDT, 0x10000, 8193)]),
        err(XEN_EINVAL)
    );
    assert_eq!(mmuext(&mut w, &[(MMUEXT_SET_LDT, 0x10000, 16)]), 0);
    assert_eq!(w.dom.ldt, (0x10000, 16));
    let pt = w.dom.l4;
    assert_eq!(
        mmuext(&mut w, &[(MMUEXT_CLEAR_PAGE, pt, 0)]),
        err(XEN_EINVAL)
    );
    let s = spare(&w, 1);
    assert_eq!(
        mmuext(
            &mut w,
            &[(MMUEXT_COPY_PAGE, s, data), (MMUEXT_CLEAR_PAGE, s, 0)]
        ),
        0
    );
    assert_eq!(mmuext(&mut w, &[(MMUEXT_NEW_USER_BASEPTR, 0, 0)]), 0);
    assert_eq!(w.dom.user_l4, None);
    assert_eq!(mmuext(&mut w, &[(MMUEXT_NEW_USER_BASEPTR, pt, 0)]), 0);
    assert_eq!(w.dom.user_l4, Some(pt));
    // Pinned by the builder, the base pointer, the user base pointer.
    assert_eq!(w.table.page(pt).unwrap().type_count, 3);
    assert_eq!(mmuext(&mut w, &[(99, 0, 0)]), err(XEN_ENOSYS));
}

fn reservation(w: &mut World, op: u32, list: &[u64], order: u32) -> i64 {
    put_u64s(w, BUF + 0x100, list);
    let mut r = [0u8; 32];
    r[0..8].copy_from_slice(&(BUF + 0x100).to_le_bytes());
    r[8..16].copy_from_slice(&(list.len() as u64).to_le_bytes());
    r[16..20].copy_from_slice(&order.to_le_bytes());
    r[24..26].copy_from_slice(&DOMID_SELF.to_le_bytes());
    w.poke(BUF, &r);
    w.call(__HYPERVISOR_memory_op, &[op as u64, BUF])
}

#[test]
fn reservations_stay_within_the_domain_limits() {
    let mut w = World::new(false);
    w.poke(BUF, &DOMID_SELF.to_le_bytes());
    assert_eq!(
        w.call(
            __HYPERVISOR_memory_op,
            &[XENMEM_current_reservation as u64, BUF]
        ),
        1536
    );
    assert_eq!(
        w.call(
            __HYPERVISOR_memory_op,
            &[XENMEM_maximum_reservation as u64, BUF]
        ),
        1536
    );
    assert_eq!(
        reservation(&mut w, XENMEM_increase_reservation, &[0], 0),
        0,
        "at max"
    );
    let gone = spare(&w, 2);
    assert_eq!(
        reservation(&mut w, XENMEM_decrease_reservation, &[gone, gone], 0),
        1
    );
    assert_eq!(w.table.page(gone).unwrap().owner, Owner::Free);
    assert_eq!(w.dom.tot_pages, 1535);
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[2000, 2001], 0),
        1
    );
    let got = get_u64(&mut w, BUF + 0x100);
    assert_eq!(w.table.page(got).unwrap().owner, Owner::Domain(0));
    assert_eq!(w.dom.tot_pages, 1536);
    assert_eq!(
        reservation(&mut w, XENMEM_populate_physmap, &[0], 10),
        0,
        "order > 9"
    );
    let shared = w.dom.shared_info;
    assert_eq!(
        reservation(&mut w, XENMEM_decrease_reservation, &[shared], 0),
        0
    );
    // Huge requests: done count, never an overflow.
    assert_eq!(
        reservation(&mut w, XENMEM_decrease_reservation, &[u64::MAX], 0),
        0
    );
    let cmd = XENMEM_increase_reservation as u64 | (5 << 6);
    assert_eq!(
        w.call(__HYPERVISOR_memory_op, &[cmd, BUF]),
        5,
        "start past the end"
    );
    // Teardown-free frames: the populated one is the domain's.
    assert_eq!(w.table.owned_by(0) as u64, 1536 + 1);
}

#[test]
fn memory_map_and_m2p_mapping() {
    let mut w = World::new(true);
    put_u64s(&mut w, BUF, &[4, BUF + 0x40]);
    assert_eq!(
        w.call(__HYPERVISOR_memory_op, &[XENMEM_memory_map as u64, BUF]),
        0
    );
    assert_eq!(w.peek(BUF, 4), 1u32.to_le_bytes());
    assert_eq!(get_u64(&mut w, BUF + 0x40), 0);
    assert_eq!(get_u64(&mut w, BUF + 0x48), 1536 << 12);
    assert_eq!(w.peek(BUF + 0x50, 4), 1u32.to_le_bytes());
    assert_eq!(
        w.call(
            __HYPERVISOR_memory_op,
            &[XENMEM_machphys_mapping as u64, BUF]
        ),
        0
    );
    assert_eq!(get_u64(&mut w, BUF), MACH2PHYS_VIRT_START);
    assert_eq!(get_u64(&mut w, BUF + 16), 0x19ff);
    let max = w.call(__HYPERVISOR_memory_op, &[XENMEM_maximum_ram_page as u64, 0]);
    assert_eq!(max, 0x1a00);
    // machphys_mfn_list: {u32 max_extents; pad; u64 extent_start; u32 nr_extents}.
    let first = w.m2p.frames()[0];
    for max_extents in [0u64, 1, 8] {
        put_u64s(&mut w, BUF, &[max_extents, BUF + 0x80, !0, !0]);
        assert_eq!(
            w.call(
                __HYPERVISOR_memory_op,
                &[XENMEM_machphys_mfn_list as u64, BUF]
            ),
            0
        );
        // 0x1a00 machine frames need 13 M2P frames: one chunk.
        let n = max_extents.min(1);
        assert_eq!(w.peek(BUF + 16, 4), (n as u32).to_le_bytes());
        if n == 1 {
            assert_eq!(get_u64(&mut w, BUF + 0x80), first);
        }
    }
    put_u64s(&mut w, BUF, &[1, HYPERVISOR_VIRT_START]);
    assert_eq!(
        w.call(
            __HYPERVISOR_memory_op,
            &[XENMEM_machphys_mfn_list as u64, BUF]
        ),
        err(XEN_EFAULT)
    );
    let bad = HYPERVISOR_VIRT_START;
    assert_eq!(
        w.call(__HYPERVISOR_memory_op, &[XENMEM_memory_map as u64, bad]),
        err(XEN_EFAULT)
    );
    assert_eq!(w.call(__HYPERVISOR_memory_op, &[63, BUF]), err(XEN_ENOSYS));
}

#[test]
fn gdt_frames_are_descriptor_pages() {
    let mut w = World::new(false);
    let g = spare(&w, 3);
    put_u64s(&mut w, BUF, &[g]);
    assert_eq!(w.call(__HYPERVISOR_set_gdt, &[BUF, 7169]), err(XEN_EINVAL));
    let k = w.p2m[0];
    put_u64s(&mut w, BUF, &[k]);
    assert_eq!(
        w.call(__HYPERVISOR_set_gdt, &[BUF, 16]),
        err(XEN_EINVAL),
        "mapped writable"
    );
    put_u64s(&mut w, BUF, &[g]);
    assert_eq!(w.call(__HYPERVISOR_set_gdt, &[BUF, 16]), 0);
    assert_eq!(w.table.page(g).unwrap().ty, PageType::SegDesc);
    assert_eq!(w.dom.gdt_frames, vec![g]);
    let code0 = 0x00af_9a00_0000_ffffu64;
    assert_eq!(
        w.call(__HYPERVISOR_update_descriptor, &[(g << 12) + 8, code0]),
        0
    );
    assert_eq!((read_u64(w.m.frame(g).unwrap(), 1) >> 45) & 3, 3);
    assert_eq!(
        w.call(__HYPERVISOR_update_descriptor, &[(g << 12) + 4, code0]),
        err(XEN_EINVAL)
    );
    let gate = 0x0000_8e00_0010_0000u64;
    assert_eq!(
        w.call(__HYPERVISOR_update_descriptor, &[g << 12, gate]),
        err(XEN_EINVAL)
    );
    let theirs = w.m2p.frames()[0];
    assert_eq!(
        w.call(__HYPERVISOR_update_descriptor, &[theirs << 12, code0]),
        err(XEN_EINVAL)
    );
}

/// `XENMEM_exchange` of `ins` (extents of order `io`) for `nr_out` extents of order
/// `oo`, resuming after `done` extents: RAX, `nr_exchanged` and the out list.
fn exchange(
    w: &mut World,
    ins: &[u64],
    io: u32,
    nr_out: u64,
    oo: u32,
    done: u64,
) -> (i64, u64, Vec<u64>) {
    let (in_list, out_list) = (BUF + 0x100, BUF + 0x400);
    put_u64s(w, in_list, ins);
    put_u64s(w, out_list, &vec![0; nr_out as usize]);
    let mut x = [0u8; 72];
    let mut half = |at: usize, list: u64, n: u64, order: u32| {
        x[at..at + 8].copy_from_slice(&list.to_le_bytes());
        x[at + 8..at + 16].copy_from_slice(&n.to_le_bytes());
        x[at + 16..at + 20].copy_from_slice(&order.to_le_bytes());
        x[at + 24..at + 26].copy_from_slice(&DOMID_SELF.to_le_bytes());
    };
    half(0, in_list, ins.len() as u64, io);
    half(32, out_list, nr_out, oo);
    x[64..72].copy_from_slice(&done.to_le_bytes());
    w.poke(BUF, &x);
    let rax = w.call(__HYPERVISOR_memory_op, &[XENMEM_exchange as u64, BUF]);
    let out = (0..nr_out).map(|i| get_u64(w, out_list + 8 * i)).collect();
    (rax, get_u64(w, BUF + 64), out)
}

#[test]
fn exchange_gives_machine_contiguous_frames_in_place_of_unmapped_ones() {
    let mut w = World::new(false);
    let old: Vec<Mfn> = (10..14).map(|k| spare(&w, k)).collect();
    let pfns: Vec<u64> = old.iter().map(|&m| w.m2p.get(&w.m, m)).collect();
    let pages = w.dom.tot_pages;
    let (rax, done, out) = exchange(&mut w, &old, 0, 1, 2, 0);
    assert_eq!((rax, done), (0, 4));
    let base = out[0];
    assert_eq!(base % 4, 0, "an extent of order 2 is aligned to its size");
    for j in 0..4 {
        let p = w.table.page(base + j).unwrap();
        assert_eq!(p.owner, Owner::Domain(0));
        assert_eq!(
            w.m2p.get(&w.m, base + j),
            pfns[j as usize],
            "takes the old pfn"
        );
        assert_eq!(w.table.page(old[j as usize]).unwrap().owner, Owner::Free);
    }
    assert_eq!(w.dom.tot_pages, pages, "as many pages as before");

    // And back to single frames (the larger order is the chunk).
    let (rax, done, singles) = exchange(&mut w, &[base], 2, 4, 0, 0);
    assert_eq!((rax, done), (0, 1));
    for (j, &m) in singles.iter().enumerate() {
        assert_eq!(w.m2p.get(&w.m, m), pfns[j]);
    }
}

#[test]
fn exchange_refusals_change_nothing() {
    let mut w = World::new(false);
    let free: Vec<Mfn> = (20..24).map(|k| spare(&w, k)).collect();
    // A frame of the initial mapping is in use (mapped): it cannot be given away.
    let mapped = w.p2m[0];
    let (rax, done, _) = exchange(&mut w, &[free[0], mapped], 0, 1, 1, 0);
    assert_eq!((rax, done), (err(XEN_EINVAL), 0));
    assert_eq!(w.table.page(free[0]).unwrap().owner, Owner::Domain(0));
    assert_eq!(w.table.page(mapped).unwrap().owner, Owner::Domain(0));
    // Not the same number of pages on both sides.
    assert_eq!(exchange(&mut w, &free[..3], 0, 1, 2, 0).0, err(XEN_EINVAL));
    // Orders beyond a domU's.
    assert_eq!(exchange(&mut w, &free, 0, 0, 10, 0).0, err(XEN_EPERM));
    // Resumed off a chunk boundary, or past the end.
    assert_eq!(exchange(&mut w, &free, 0, 1, 2, 1).0, err(XEN_EINVAL));
    assert_eq!(exchange(&mut w, &free, 0, 1, 2, 5).0, err(XEN_EINVAL));
    // The shared_info page is not the domain's to give.
    let shared = w.dom.shared_info;
    assert_eq!(exchange(&mut w, &[shared], 0, 1, 0, 0).0, err(XEN_EINVAL));
    for &m in &free {
        assert_eq!(w.table.page(m).unwrap().owner, Owner::Domain(0));
    }
}

#[test]
fn an_exchange_whose_out_list_faults_gives_nothing_away() {
    let mut w = World::new(false);
    let old: Vec<Mfn> = (30..32).map(|k| spare(&w, k)).collect();
    let free = w.frames.free_frames();
    put_u64s(&mut w, BUF + 0x100, &old);
    // The out list at an address nothing maps.
    let mut x = [0u8; 72];
    x[0..8].copy_from_slice(&(BUF + 0x100).to_le_bytes());
    x[8..16].copy_from_slice(&2u64.to_le_bytes());
    x[24..26].copy_from_slice(&DOMID_SELF.to_le_bytes());
    x[32..40].copy_from_slice(&0x7000_0000_0000u64.to_le_bytes());
    x[40..48].copy_from_slice(&1u64.to_le_bytes());
    x[48..52].copy_from_slice(&1u32.to_le_bytes());
    x[56..58].copy_from_slice(&DOMID_SELF.to_le_bytes());
    w.poke(BUF, &x);
    let rax = w.call(__HYPERVISOR_memory_op, &[XENMEM_exchange as u64, BUF]);
    assert_eq!(rax, err(XEN_EFAULT));
    for &m in &old {
        assert_eq!(w.table.page(m).unwrap().owner, Owner::Domain(0));
    }
    assert_eq!(w.frames.free_frames(), free, "the new extent went back");
}
