//! Host tests of grant tables between domains (`grant_table.rs`,
//! `hypercall/grant_table.rs`), of the rings the builder grants to domain 0, and of
//! `HVMOP_get_param`. Each drives the [`Hypervisor`] through hypercalls, with the
//! fixtures of `many_domains_tests` (dom0, domUs 1 and 2).

use alloc::vec;
use alloc::vec::Vec;
use core::mem::{offset_of, size_of};

use xen_sys::*;

use crate::hypervisor::many_domains_tests::{call, e, empty, poke, test_elf, three, SCRATCH};
use crate::hypervisor::{DomainSpec, Hypervisor, Next};
use crate::machine::{read_u64, GuestMemory, Machine, Mfn};
use crate::mm::{Owner, PageType};
use crate::paging::{self, Pte};
use crate::state::evtchn::Binding;
use crate::testing::TestMachine;
use xen_sys::domid_t;

const BASE: u64 = 0xffff_ffff_8000_0000;
/// A page of every test domain's bss: what domUs grant, and where mappers map.
const GRANTED_VA: u64 = BASE + 0x4000;
const MAP_VA: u64 = BASE + 0x6000;
/// Where a domain puts an operation's second buffer (a frame list).
const LIST: u64 = SCRATCH + 0x800;

fn peek(h: &mut Hypervisor<TestMachine>, d: domid_t, va: u64, n: usize) -> Vec<u8> {
    let l4 = h.domains[d].l4;
    let mut v = vec![0; n];
    GuestMemory {
        machine: &mut h.machine,
        l4,
    }
    .read(va, &mut v)
    .unwrap();
    v
}

fn mfn_of(h: &mut Hypervisor<TestMachine>, d: domid_t, va: u64) -> Mfn {
    let l4 = h.domains[d].l4;
    GuestMemory {
        machine: &mut h.machine,
        l4,
    }
    .translate(va, false)
    .unwrap()
}

/// The L1 table mapping `va` in domain `d`'s tables, and the PTE.
fn l1_and_pte(h: &Hypervisor<TestMachine>, d: domid_t, va: u64) -> (Mfn, u64) {
    let mut t = h.domains[d].l4;
    for level in (2..=4).rev() {
        t = Pte(read_u64(
            h.machine.frame(t).unwrap(),
            paging::index(va, level),
        ))
        .mfn();
    }
    (
        t,
        read_u64(h.machine.frame(t).unwrap(), paging::index(va, 1)),
    )
}

fn st(code: i32) -> i16 {
    code as i16
}

/// A grant_table_op by `d` on `count` structures at SCRATCH; returns the result and
/// the structures as written back.
fn gnttab(
    h: &mut Hypervisor<TestMachine>,
    d: domid_t,
    cmd: u32,
    ops: &[u8],
    count: u32,
) -> (i64, Vec<u8>) {
    poke(h, d, SCRATCH, ops);
    let rc = call(
        h,
        d,
        __HYPERVISOR_grant_table_op,
        &[cmd as u64, SCRATCH, count as u64],
    )
    .0;
    (rc, peek(h, d, SCRATCH, ops.len()))
}

fn i16_at(b: &[u8], o: usize) -> i16 {
    i16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn set(b: &mut [u8], o: usize, v: &[u8]) {
    b[o..o + v.len()].copy_from_slice(v);
}

/// `d` grants `to` its frame `mfn` as `gref`, with `flags` (`GTF_*`), as its kernel
/// would write the entry.
fn grant(
    h: &mut Hypervisor<TestMachine>,
    d: domid_t,
    gref: u32,
    to: domid_t,
    mfn: Mfn,
    flags: u32,
) {
    let dom = &h.domains[d];
    dom.grant
        .write_entry(&mut h.machine, gref, flags as u16, to, mfn as u32)
        .unwrap();
}

fn entry_flags(h: &Hypervisor<TestMachine>, d: domid_t, gref: u32) -> u32 {
    h.domains[d].grant.read_entry(&h.machine, gref).unwrap().0 as u32
}

/// A map_grant_ref by `d`: status, handle, dev_bus_addr.
fn map(
    h: &mut Hypervisor<TestMachine>,
    d: domid_t,
    rd: domid_t,
    gref: u32,
    flags: u32,
    host: u64,
) -> (i16, u32, u64) {
    let mut op = [0u8; size_of::<gnttab_map_grant_ref>()];
    set(
        &mut op,
        offset_of!(gnttab_map_grant_ref, host_addr),
        &host.to_le_bytes(),
    );
    set(
        &mut op,
        offset_of!(gnttab_map_grant_ref, flags),
        &flags.to_le_bytes(),
    );
    set(
        &mut op,
        offset_of!(gnttab_map_grant_ref, ref_),
        &gref.to_le_bytes(),
    );
    set(
        &mut op,
        offset_of!(gnttab_map_grant_ref, dom),
        &rd.to_le_bytes(),
    );
    let (rc, b) = gnttab(h, d, GNTTABOP_map_grant_ref, &op, 1);
    assert_eq!(rc, 0);
    (
        i16_at(&b, offset_of!(gnttab_map_grant_ref, status)),
        u32_at(&b, offset_of!(gnttab_map_grant_ref, handle)),
        u64_at(&b, offset_of!(gnttab_map_grant_ref, dev_bus_addr)),
    )
}

fn unmap(h: &mut Hypervisor<TestMachine>, d: domid_t, handle: u32, host: u64, bus: u64) -> i16 {
    let mut op = [0u8; size_of::<gnttab_unmap_grant_ref>()];
    set(
        &mut op,
        offset_of!(gnttab_unmap_grant_ref, host_addr),
        &host.to_le_bytes(),
    );
    set(
        &mut op,
        offset_of!(gnttab_unmap_grant_ref, dev_bus_addr),
        &bus.to_le_bytes(),
    );
    set(
        &mut op,
        offset_of!(gnttab_unmap_grant_ref, handle),
        &handle.to_le_bytes(),
    );
    let (rc, b) = gnttab(h, d, GNTTABOP_unmap_grant_ref, &op, 1);
    assert_eq!(rc, 0);
    i16_at(&b, offset_of!(gnttab_unmap_grant_ref, status))
}

/// `(refs, type_count, type)` of a frame.
fn counts(h: &Hypervisor<TestMachine>, mfn: Mfn) -> (u32, u32, PageType) {
    let p = h.frame_table.page(mfn).unwrap();
    (p.refs, p.type_count, p.ty)
}

/// Domain `d` takes a page fault with no handler (and is torn down).
fn crash(h: &mut Hypervisor<TestMachine>, d: domid_t) {
    h.current = d;
    let mut f = h.domains[d].regs;
    f.vector = 14;
    h.save_entry_frame(&f);
    h.handle(0xdead, &mut |_| {});
    assert!(h.domains[d].dead);
}

#[test]
fn setup_table_query_size_and_versions() {
    let mut h = three();
    let setup = |h: &mut Hypervisor<TestMachine>, d: domid_t, target: u16, nr: u32| {
        let mut op = [0u8; size_of::<gnttab_setup_table>()];
        set(
            &mut op,
            offset_of!(gnttab_setup_table, dom),
            &target.to_le_bytes(),
        );
        set(
            &mut op,
            offset_of!(gnttab_setup_table, nr_frames),
            &nr.to_le_bytes(),
        );
        set(
            &mut op,
            offset_of!(gnttab_setup_table, frame_list),
            &LIST.to_le_bytes(),
        );
        let (rc, b) = gnttab(h, d, GNTTABOP_setup_table, &op, 1);
        assert_eq!(rc, 0);
        i16_at(&b, offset_of!(gnttab_setup_table, status))
    };
    // Every domain has frame 0 from its builder; setup_table grows and lists MFNs.
    assert_eq!(setup(&mut h, 1, DOMID_SELF, 1), 0);
    let frame0 = u64_at(&peek(&mut h, 1, LIST, 8), 0);
    assert_eq!(frame0, h.domains[1].grant.frames()[0]);
    assert_eq!(h.frame_table.page(frame0).unwrap().owner, Owner::Domain(1));
    assert_eq!(setup(&mut h, 1, 1, 3), 0);
    let list = peek(&mut h, 1, LIST, 24);
    assert_eq!(
        (0..3).map(|i| u64_at(&list, i * 8)).collect::<Vec<_>>(),
        h.domains[1].grant.frames()
    );
    assert_eq!(setup(&mut h, 1, DOMID_SELF, 33), st(GNTST_general_error));
    assert_eq!(setup(&mut h, 2, 1, 1), st(GNTST_permission_denied));
    assert_eq!(setup(&mut h, 1, 9, 1), st(GNTST_bad_domain));
    assert_eq!(setup(&mut h, 0, 2, 2), 0, "the control domain may");
    let op = [0u8; size_of::<gnttab_setup_table>()];
    assert_eq!(
        gnttab(&mut h, 1, GNTTABOP_setup_table, &op, 2).0,
        e(XEN_EINVAL)
    );

    let query = |h: &mut Hypervisor<TestMachine>, d: domid_t, target: u16| {
        let mut op = [0u8; size_of::<gnttab_query_size>()];
        set(
            &mut op,
            offset_of!(gnttab_query_size, dom),
            &target.to_le_bytes(),
        );
        let (rc, b) = gnttab(h, d, GNTTABOP_query_size, &op, 1);
        assert_eq!(rc, 0);
        (
            i16_at(&b, offset_of!(gnttab_query_size, status)),
            u32_at(&b, offset_of!(gnttab_query_size, nr_frames)),
            u32_at(&b, offset_of!(gnttab_query_size, max_nr_frames)),
        )
    };
    assert_eq!(query(&mut h, 1, DOMID_SELF), (0, 3, 32));
    assert_eq!(query(&mut h, 0, 2), (0, 2, 32));
    assert_eq!(query(&mut h, 2, 1).0, st(GNTST_permission_denied));
    assert_eq!(query(&mut h, 2, 7).0, st(GNTST_bad_domain));

    // set_version: 1 works, 2 is -ENOSYS (v2 disabled), anything else -EINVAL; the
    // version in use is written back.
    for (v, want) in [(1u32, 0), (2, e(XEN_ENOSYS)), (3, e(XEN_EINVAL))] {
        let (rc, b) = gnttab(&mut h, 1, GNTTABOP_set_version, &v.to_le_bytes(), 1);
        assert_eq!((rc, u32_at(&b, 0)), (want, 1), "set_version {v}");
    }
    let mut gv = [0u8; size_of::<gnttab_get_version>()];
    set(&mut gv, 0, &1u16.to_le_bytes());
    let (rc, b) = gnttab(&mut h, 0, GNTTABOP_get_version, &gv, 1);
    assert_eq!(
        (rc, u32_at(&b, offset_of!(gnttab_get_version, version))),
        (0, 1)
    );
    assert_eq!(
        gnttab(&mut h, 2, GNTTABOP_get_version, &gv, 1).0,
        e(XEN_EPERM)
    );
    // A v1 table has no status frames.
    let status_frames = |h: &mut Hypervisor<TestMachine>, nr: u32| {
        let mut op = [0u8; size_of::<gnttab_get_status_frames>()];
        set(
            &mut op,
            offset_of!(gnttab_get_status_frames, nr_frames),
            &nr.to_le_bytes(),
        );
        set(
            &mut op,
            offset_of!(gnttab_get_status_frames, dom),
            &DOMID_SELF.to_le_bytes(),
        );
        let (rc, b) = gnttab(h, 1, GNTTABOP_get_status_frames, &op, 1);
        assert_eq!(rc, 0);
        i16_at(&b, offset_of!(gnttab_get_status_frames, status))
    };
    assert_eq!(status_frames(&mut h, 1), st(GNTST_general_error));
    assert_eq!(status_frames(&mut h, 0), 0);
    assert_eq!(
        gnttab(&mut h, 1, GNTTABOP_transfer, &[0; 8], 1).0,
        e(XEN_ENOSYS)
    );
    assert_eq!(
        gnttab(&mut h, 1, GNTTABOP_map_grant_ref, &[0; 8], u32::MAX).0,
        e(XEN_EINVAL)
    );
}

#[test]
fn dom0_maps_a_domus_console_page_read_write_into_its_own_l1() {
    let mut h = three();
    let console = h.domains[1].rings.unwrap().console_pfn;
    let console_va = BASE + console * 4096;
    poke(&mut h, 1, console_va, b"console ring");
    let mfn = mfn_of(&mut h, 1, console_va);
    let before = counts(&h, mfn);
    let (l1, own_pte) = l1_and_pte(&h, 0, MAP_VA);
    let own = Pte(own_pte).mfn();
    let own_refs = counts(&h, own).0;

    let (s, handle, bus) = map(
        &mut h,
        0,
        1,
        GNTTAB_RESERVED_CONSOLE,
        GNTMAP_host_map,
        MAP_VA,
    );
    assert_eq!(s, 0);
    assert_eq!(bus, mfn << 12);
    let pte = Pte(l1_and_pte(&h, 0, MAP_VA).1);
    assert!(pte.present() && pte.writable() && pte.user());
    assert_eq!(pte.mfn(), mfn);
    assert_eq!(pte.0 & paging::NX, paging::NX);
    assert_eq!(&peek(&mut h, 0, MAP_VA, 12), b"console ring");
    // One general and one writable type reference more; the replaced PTE's went.
    assert_eq!(
        counts(&h, mfn),
        (before.0 + 1, before.1 + 1, PageType::Writable)
    );
    assert_eq!(counts(&h, own).0, own_refs - 1);
    assert_eq!(
        entry_flags(&h, 1, 0),
        GTF_permit_access | GTF_reading | GTF_writing
    );
    assert_eq!(
        h.domains[1].grant.active(0).unwrap().pin,
        crate::state::grant_table::PIN_HSTW
    );

    // A wrong address does not unmap; the right one does.
    assert_eq!(
        unmap(&mut h, 0, handle, MAP_VA + 4096, 0),
        st(GNTST_general_error)
    );
    assert_eq!(unmap(&mut h, 0, handle, MAP_VA, 0), 0);
    assert_eq!(
        read_u64(h.machine.frame(l1).unwrap(), paging::index(MAP_VA, 1)),
        0
    );
    assert_eq!(counts(&h, mfn), before);
    assert_eq!(entry_flags(&h, 1, 0), GTF_permit_access);
    assert_eq!(
        unmap(&mut h, 0, handle, MAP_VA, 0),
        st(GNTST_bad_handle),
        "twice"
    );
    assert_eq!(unmap(&mut h, 0, 77, MAP_VA, 0), st(GNTST_bad_handle));
}

#[test]
fn read_only_and_pte_address_mappings() {
    let mut h = three();
    let mfn = mfn_of(&mut h, 1, GRANTED_VA);
    grant(&mut h, 1, 8, 2, mfn, GTF_permit_access | GTF_readonly);
    let before = counts(&h, mfn);
    // Read-only grants cannot be mapped writable: nothing changes.
    let (s, ..) = map(&mut h, 2, 1, 8, GNTMAP_host_map, MAP_VA);
    assert_eq!(s, st(GNTST_general_error));
    assert_eq!(entry_flags(&h, 1, 8), GTF_permit_access | GTF_readonly);
    assert_eq!(counts(&h, mfn), before);
    // Read-only, into the PTE named by machine address.
    let (l1, _) = l1_and_pte(&h, 2, MAP_VA);
    let pte_addr = (l1 << 12) + paging::index(MAP_VA, 1) as u64 * 8;
    let flags = GNTMAP_host_map | GNTMAP_readonly | GNTMAP_contains_pte;
    let (s, handle, _) = map(&mut h, 2, 1, 8, flags, pte_addr);
    assert_eq!(s, 0);
    let pte = Pte(l1_and_pte(&h, 2, MAP_VA).1);
    assert!(pte.present() && !pte.writable() && pte.mfn() == mfn);
    assert_eq!(counts(&h, mfn), (before.0 + 1, before.1, before.2));
    assert_eq!(
        entry_flags(&h, 1, 8),
        GTF_permit_access | GTF_readonly | GTF_reading
    );
    // A misaligned PTE address, or one in a frame that is not the mapper's L1, fails.
    let (s, ..) = map(&mut h, 2, 1, 8, flags, pte_addr + 1);
    assert_eq!(s, st(GNTST_general_error));
    let (s, ..) = map(&mut h, 2, 1, 8, flags, mfn << 12);
    assert_eq!(s, st(GNTST_general_error));
    assert_eq!(
        counts(&h, mfn),
        (before.0 + 1, before.1, before.2),
        "failures undone"
    );
    assert_eq!(unmap(&mut h, 2, handle, pte_addr, 0), 0);
    assert_eq!(counts(&h, mfn), before);
    assert_eq!(entry_flags(&h, 1, 8), GTF_permit_access | GTF_readonly);
}

#[test]
fn a_grant_serves_only_the_domain_it_names() {
    let mut h = three();
    let mfn = mfn_of(&mut h, 1, GRANTED_VA);
    grant(&mut h, 1, 8, 0, mfn, GTF_permit_access);
    grant(&mut h, 1, 9, 2, mfn, GTF_invalid);
    let before = counts(&h, mfn);
    let host = GNTMAP_host_map;
    assert_eq!(
        map(&mut h, 2, 1, 8, host, MAP_VA).0,
        st(GNTST_general_error)
    );
    assert_eq!(
        map(&mut h, 2, 1, 9, host, MAP_VA).0,
        st(GNTST_general_error),
        "not permit_access"
    );
    assert_eq!(
        map(&mut h, 2, 1, 512, host, MAP_VA).0,
        st(GNTST_bad_gntref),
        "beyond the table"
    );
    assert_eq!(
        map(&mut h, 2, 1, 8, 0, MAP_VA).0,
        st(GNTST_bad_gntref),
        "no map flags"
    );
    assert_eq!(map(&mut h, 2, 5, 8, host, MAP_VA).0, st(GNTST_bad_domain));
    assert_eq!(
        map(&mut h, 2, DOMID_SELF, 8, host, MAP_VA).0,
        st(GNTST_bad_domain)
    );
    // No L1 at the address: the pin is undone.
    assert_eq!(
        map(&mut h, 0, 1, 8, host, 0x1000).0,
        st(GNTST_general_error)
    );
    assert_eq!(entry_flags(&h, 1, 8), GTF_permit_access);
    assert_eq!(h.domains[1].grant.active(8).unwrap().pin, 0);
    assert_eq!(counts(&h, mfn), before);
    // While dom0 has it pinned, domain 2 still cannot use it.
    assert_eq!(map(&mut h, 0, 1, 8, host, MAP_VA).0, 0);
    grant(
        &mut h,
        1,
        8,
        2,
        mfn,
        GTF_permit_access | GTF_reading | GTF_writing,
    );
    assert_eq!(
        map(&mut h, 2, 1, 8, host, MAP_VA).0,
        st(GNTST_general_error)
    );
    // And the frame cannot become a page table while writable-mapped.
    assert_eq!(
        h.frame_table
            .get_page_type(&mut h.machine, mfn, PageType::L1),
        Err(XEN_EINVAL)
    );
}

#[test]
fn granting_a_frame_the_granter_does_not_own_fails() {
    let mut h = three();
    let not_mine = mfn_of(&mut h, 2, GRANTED_VA);
    grant(&mut h, 1, 8, 0, not_mine, GTF_permit_access);
    let before = counts(&h, not_mine);
    assert_eq!(
        map(&mut h, 0, 1, 8, GNTMAP_host_map, MAP_VA).0,
        st(GNTST_bad_page)
    );
    assert_eq!(
        entry_flags(&h, 1, 8),
        GTF_permit_access,
        "status bits cleared"
    );
    assert_eq!(counts(&h, not_mine), before);
    // Not even into a shim frame or beyond memory.
    grant(&mut h, 1, 9, 0, 0, GTF_permit_access);
    assert_eq!(
        map(&mut h, 0, 1, 9, GNTMAP_host_map, MAP_VA).0,
        st(GNTST_bad_page)
    );
    // Copy through it fails the same way.
    let (s, _) = copy(
        &mut h,
        0,
        (8, 1, 0, true),
        (SCRATCH_FRAME, DOMID_SELF, 0, false),
        8,
    );
    assert_eq!(s, st(GNTST_bad_page));
}

/// Marks a copy side as "the caller's scratch frame" (resolved in `copy`).
const SCRATCH_FRAME: u64 = u64::MAX;

/// A gnttab_copy by `d` of `len` bytes; each side `(ref or gmfn, domid, offset, is_gref)`.
fn copy(
    h: &mut Hypervisor<TestMachine>,
    d: domid_t,
    src: (u64, u16, u16, bool),
    dst: (u64, u16, u16, bool),
    len: u16,
) -> (i16, Vec<u8>) {
    let scratch = mfn_of(h, d, SCRATCH + 0x1000);
    let mut op = [0u8; size_of::<gnttab_copy>()];
    let mut flags = 0u16;
    for (side, (p, dom, off, gref), bit) in [
        (offset_of!(gnttab_copy, source), src, GNTCOPY_source_gref),
        (offset_of!(gnttab_copy, dest), dst, GNTCOPY_dest_gref),
    ] {
        let p = if p == SCRATCH_FRAME { scratch } else { p };
        set(&mut op, side, &p.to_le_bytes());
        set(
            &mut op,
            side + offset_of!(gnttab_copy_gnttab_copy_ptr, domid),
            &dom.to_le_bytes(),
        );
        set(
            &mut op,
            side + offset_of!(gnttab_copy_gnttab_copy_ptr, offset),
            &off.to_le_bytes(),
        );
        if gref {
            flags |= bit as u16;
        }
    }
    set(&mut op, offset_of!(gnttab_copy, len), &len.to_le_bytes());
    set(
        &mut op,
        offset_of!(gnttab_copy, flags),
        &flags.to_le_bytes(),
    );
    let (rc, b) = gnttab(h, d, GNTTABOP_copy, &op, 1);
    assert_eq!(rc, 0);
    (i16_at(&b, offset_of!(gnttab_copy, status)), b)
}

#[test]
fn copy_both_directions_and_bad_arguments() {
    let mut h = three();
    let mfn = mfn_of(&mut h, 1, GRANTED_VA);
    grant(&mut h, 1, 8, 0, mfn, GTF_permit_access);
    grant(&mut h, 1, 9, 0, mfn, GTF_permit_access | GTF_readonly);
    poke(&mut h, 1, GRANTED_VA + 100, b"from the domU");
    let before = counts(&h, mfn);
    // gref -> local frame.
    let (s, _) = copy(
        &mut h,
        0,
        (8, 1, 100, true),
        (SCRATCH_FRAME, DOMID_SELF, 16, false),
        13,
    );
    assert_eq!(s, 0);
    assert_eq!(
        &peek(&mut h, 0, SCRATCH + 0x1000 + 16, 13),
        b"from the domU"
    );
    // local frame -> gref.
    poke(&mut h, 0, SCRATCH + 0x1000 + 200, b"from dom0");
    let (s, _) = copy(
        &mut h,
        0,
        (SCRATCH_FRAME, DOMID_SELF, 200, false),
        (8, 1, 0, true),
        9,
    );
    assert_eq!(s, 0);
    assert_eq!(&peek(&mut h, 1, GRANTED_VA, 9), b"from dom0");
    // Nothing left pinned or referenced.
    assert_eq!(entry_flags(&h, 1, 8), GTF_permit_access);
    assert_eq!(counts(&h, mfn), before);
    // gref -> gref (both the domU's).
    let (s, _) = copy(&mut h, 0, (9, 1, 0, true), (8, 1, 2000, true), 9);
    assert_eq!(s, 0);
    assert_eq!(&peek(&mut h, 1, GRANTED_VA + 2000, 9), b"from dom0");
    // A read-only grant is not a destination; a range past the page is bad_copy_arg.
    let (s, _) = copy(
        &mut h,
        0,
        (SCRATCH_FRAME, DOMID_SELF, 0, false),
        (9, 1, 0, true),
        4,
    );
    assert_eq!(s, st(GNTST_general_error));
    let (s, _) = copy(
        &mut h,
        0,
        (8, 1, 4000, true),
        (SCRATCH_FRAME, DOMID_SELF, 0, false),
        200,
    );
    assert_eq!(s, st(GNTST_bad_copy_arg));
    // Frames only of DOMID_SELF; only the named domain uses a grant; no such domain.
    let (s, _) = copy(
        &mut h,
        0,
        (mfn, 1, 0, false),
        (SCRATCH_FRAME, DOMID_SELF, 0, false),
        4,
    );
    assert_eq!(s, st(GNTST_permission_denied));
    let (s, _) = copy(
        &mut h,
        2,
        (8, 1, 0, true),
        (SCRATCH_FRAME, DOMID_SELF, 0, false),
        4,
    );
    assert_eq!(s, st(GNTST_general_error));
    let (s, _) = copy(
        &mut h,
        0,
        (8, 6, 0, true),
        (SCRATCH_FRAME, DOMID_SELF, 0, false),
        4,
    );
    assert_eq!(s, st(GNTST_bad_domain));
    let (s, _) = copy(&mut h, 0, (8, 1, 0, true), (mfn, DOMID_SELF, 0, false), 4);
    assert_eq!(
        s,
        st(GNTST_bad_page),
        "another's frame as if it were the caller's"
    );
    assert_eq!(entry_flags(&h, 1, 8), GTF_permit_access);
    assert_eq!(counts(&h, mfn), before);
}

#[test]
fn a_page_freed_by_its_granter_while_mapped_lives_until_the_unmap() {
    let mut h = three();
    let mfn = mfn_of(&mut h, 1, GRANTED_VA);
    grant(&mut h, 1, 8, 0, mfn, GTF_permit_access);
    let (s, handle, _) = map(&mut h, 0, 1, 8, GNTMAP_host_map, MAP_VA);
    assert_eq!(s, 0);
    // The domU drops its own mapping of the page, then frees it.
    assert_eq!(
        call(
            &mut h,
            1,
            __HYPERVISOR_update_va_mapping,
            &[GRANTED_VA, 0, 0]
        )
        .0,
        0
    );
    let mut r = [0u8; size_of::<xen_memory_reservation>()];
    set(
        &mut r,
        offset_of!(xen_memory_reservation, extent_start),
        &(SCRATCH + 0x100).to_le_bytes(),
    );
    set(
        &mut r,
        offset_of!(xen_memory_reservation, nr_extents),
        &1u64.to_le_bytes(),
    );
    set(
        &mut r,
        offset_of!(xen_memory_reservation, domid),
        &DOMID_SELF.to_le_bytes(),
    );
    poke(&mut h, 1, SCRATCH + 0x100, &mfn.to_le_bytes());
    poke(&mut h, 1, SCRATCH, &r);
    let free = h.frames.free_frames();
    let done = call(
        &mut h,
        1,
        __HYPERVISOR_memory_op,
        &[XENMEM_decrease_reservation as u64, SCRATCH],
    )
    .0;
    assert_eq!(done, 1);
    assert_eq!(h.frames.free_frames(), free, "not freed while mapped");
    assert!(!h.frames.free_list().any(|f| f == mfn));
    assert_eq!(
        &peek(&mut h, 0, MAP_VA, 4),
        &[0; 4],
        "still the page dom0 maps"
    );
    assert_eq!(unmap(&mut h, 0, handle, MAP_VA, 0), 0);
    assert_eq!(h.frames.free_frames(), free + 1);
    assert_eq!(h.frame_table.page(mfn).unwrap().owner, Owner::Free);
}

#[test]
fn a_dying_mapper_releases_its_pins() {
    let mut h = three();
    let mfn = mfn_of(&mut h, 1, GRANTED_VA);
    grant(&mut h, 1, 8, 2, mfn, GTF_permit_access);
    grant(&mut h, 1, 9, 2, mfn, GTF_permit_access);
    let before = counts(&h, mfn);
    assert_eq!(map(&mut h, 2, 1, 8, GNTMAP_host_map, MAP_VA).0, 0);
    let (s, _, _) = map(&mut h, 2, 1, 9, GNTMAP_device_map | GNTMAP_readonly, 0);
    assert_eq!(s, 0);
    assert_eq!(counts(&h, mfn).0, before.0 + 2);
    crash(&mut h, 2);
    assert_eq!(entry_flags(&h, 1, 8), GTF_permit_access);
    assert_eq!(entry_flags(&h, 1, 9), GTF_permit_access);
    assert_eq!(h.domains[1].grant.active(8).unwrap().pin, 0);
    assert_eq!(h.domains[1].grant.active(9).unwrap().pin, 0);
    assert_eq!(
        counts(&h, mfn),
        before,
        "the PTE's and the device mapping's references went"
    );
}

#[test]
fn a_dying_granters_frame_outlives_it_until_the_mapper_unmaps() {
    let mut h = three();
    let mfn = mfn_of(&mut h, 1, GRANTED_VA);
    grant(&mut h, 1, 8, 2, mfn, GTF_permit_access);
    poke(&mut h, 1, GRANTED_VA, b"last words");
    let (s, handle, _) = map(&mut h, 2, 1, 8, GNTMAP_host_map, MAP_VA);
    assert_eq!(s, 0);
    crash(&mut h, 1);
    assert_eq!(h.frame_table.page(mfn).unwrap().owner, Owner::Domain(1));
    assert_eq!(
        &peek(&mut h, 2, MAP_VA, 10),
        b"last words",
        "not scrubbed under the mapper"
    );
    assert_eq!(
        h.frame_table.owned_by(1),
        1,
        "only the mapped frame is left"
    );
    // The dead granter's grants cannot be used any more.
    assert_eq!(
        map(&mut h, 2, 1, 8, GNTMAP_host_map, MAP_VA + 4096).0,
        st(GNTST_bad_domain)
    );
    let free = h.frames.free_frames();
    assert_eq!(unmap(&mut h, 2, handle, MAP_VA, 0), 0);
    assert_eq!(h.frames.free_frames(), free + 1);
    assert_eq!(h.frame_table.owned_by(1), 0);
}

#[test]
fn clearing_a_grant_pte_behind_the_grant_tables_back() {
    let mut h = three();
    let mfn = mfn_of(&mut h, 1, GRANTED_VA);
    grant(&mut h, 1, 8, 2, mfn, GTF_permit_access);
    let before = counts(&h, mfn);
    let (s, handle, _) = map(&mut h, 2, 1, 8, GNTMAP_host_map, MAP_VA);
    assert_eq!(s, 0);
    // A release build of Xen: the PTE's references go like any PTE's...
    assert_eq!(
        call(&mut h, 2, __HYPERVISOR_update_va_mapping, &[MAP_VA, 0, 0]).0,
        0
    );
    assert_eq!(counts(&h, mfn), (before.0, before.1, PageType::Writable));
    // ... the grant stays in use, and its handle no longer matches a PTE.
    assert_eq!(
        entry_flags(&h, 1, 8),
        GTF_permit_access | GTF_reading | GTF_writing
    );
    assert_eq!(unmap(&mut h, 2, handle, MAP_VA, 0), st(GNTST_general_error));
    // Nor can the mapper re-create the mapping through mmu_update.
    let pte = Pte::new(mfn, paging::PRESENT | paging::WRITABLE | paging::USER).0;
    assert_ne!(
        call(&mut h, 2, __HYPERVISOR_update_va_mapping, &[MAP_VA, pte, 0]).0,
        0
    );
    // Its death releases the pin.
    crash(&mut h, 2);
    assert_eq!(entry_flags(&h, 1, 8), GTF_permit_access);
    assert_eq!(counts(&h, mfn), before);
}

#[test]
fn add_to_physmap_grows_the_table_and_sets_the_m2p() {
    let mut h = three();
    let xatp = |h: &mut Hypervisor<TestMachine>,
                d: domid_t,
                domid: u16,
                space: u32,
                idx: u64,
                gpfn: u64| {
        let mut b = [0u8; size_of::<xen_add_to_physmap>()];
        set(
            &mut b,
            offset_of!(xen_add_to_physmap, domid),
            &domid.to_le_bytes(),
        );
        set(
            &mut b,
            offset_of!(xen_add_to_physmap, space),
            &space.to_le_bytes(),
        );
        set(
            &mut b,
            offset_of!(xen_add_to_physmap, idx),
            &idx.to_le_bytes(),
        );
        set(
            &mut b,
            offset_of!(xen_add_to_physmap, gpfn),
            &gpfn.to_le_bytes(),
        );
        poke(h, d, SCRATCH, &b);
        call(
            h,
            d,
            __HYPERVISOR_memory_op,
            &[XENMEM_add_to_physmap as u64, SCRATCH],
        )
        .0
    };
    let m2p = |h: &mut Hypervisor<TestMachine>, mfn: Mfn| {
        u64_at(&peek(h, 0, MACH2PHYS_VIRT_START + mfn * 8, 8), 0)
    };
    assert_eq!(
        xatp(&mut h, 1, DOMID_SELF, XENMAPSPACE_grant_table, 1, 0x5000),
        0
    );
    assert_eq!(h.domains[1].grant.frames().len(), 2);
    let f1 = h.domains[1].grant.frames()[1];
    assert_eq!(m2p(&mut h, f1), 0x5000);
    assert_eq!(h.frame_table.page(f1).unwrap().owner, Owner::Domain(1));
    assert_eq!(
        xatp(&mut h, 1, DOMID_SELF, XENMAPSPACE_grant_table, 32, 0x5001),
        e(XEN_EINVAL)
    );
    let status = XENMAPIDX_grant_table_status as u64;
    assert_eq!(
        xatp(
            &mut h,
            1,
            DOMID_SELF,
            XENMAPSPACE_grant_table,
            status,
            0x5001
        ),
        e(XEN_EINVAL)
    );
    assert_eq!(
        xatp(&mut h, 2, 1, XENMAPSPACE_grant_table, 0, 0x5001),
        e(XEN_EPERM)
    );
    assert_eq!(
        xatp(&mut h, 2, 9, XENMAPSPACE_grant_table, 0, 0x5001),
        e(XEN_ESRCH)
    );
    assert_eq!(xatp(&mut h, 0, 1, XENMAPSPACE_grant_table, 0, 0x6000), 0);
    let f0 = h.domains[1].grant.frames()[0];
    assert_eq!(m2p(&mut h, f0), 0x6000);
    assert_eq!(
        xatp(&mut h, 1, DOMID_SELF, XENMAPSPACE_gmfn_foreign, 0, 1),
        e(XEN_ENOSYS)
    );
    assert_eq!(
        xatp(&mut h, 1, DOMID_SELF, XENMAPSPACE_gmfn, 0, 1),
        e(XEN_ENOSYS)
    );
}

#[test]
fn the_builder_grants_each_domus_rings_to_dom0() {
    let mut h = three();
    let rings = h.domains[1].rings.unwrap();
    let store = mfn_of(&mut h, 1, BASE + rings.store_pfn * 4096);
    let console = mfn_of(&mut h, 1, BASE + rings.console_pfn * 4096);
    assert_eq!(rings.console_pfn, rings.store_pfn + 1);
    let g = &h.domains[1].grant;
    assert_eq!(
        g.read_entry(&h.machine, GNTTAB_RESERVED_CONSOLE),
        Some((GTF_permit_access as u16, 0, console as u32))
    );
    assert_eq!(
        g.read_entry(&h.machine, GNTTAB_RESERVED_XENSTORE),
        Some((GTF_permit_access as u16, 0, store as u32))
    );
    // start_info names the same pages; without back-ends, no channels and no pause.
    let si = h.domains[1].regs.rsi;
    let word =
        |h: &mut Hypervisor<TestMachine>, off: usize| u64_at(&peek(h, 1, si + off as u64, 8), 0);
    assert_eq!(word(&mut h, offset_of!(start_info, store_mfn)), store);
    assert_eq!(word(&mut h, offset_of!(start_info, store_evtchn)) as u32, 0);
    assert_eq!((rings.store_evtchn, rings.console_evtchn), (0, 0));
    assert!(h.domains[1].ready());
    assert!(h.domains[0].rings.is_none(), "dom0 has no rings");
}

/// dom0 with the back-ends and one domU.
fn with_backends() -> Hypervisor<TestMachine> {
    let mut h = empty(8192);
    let elf = test_elf(0x8000);
    for (domid, privileged) in [(0, true), (1, false)] {
        h.create_domain(&DomainSpec {
            domid,
            name: "",
            image: &elf,
            nr_pages: 1100,
            cmdline: "",
            privileged,
            backends_in_dom0: true,
        })
        .unwrap();
    }
    assert!(matches!(h.start(), Next::Resume { .. }));
    h
}

#[test]
fn with_backends_in_dom0_a_domu_gets_ring_channels_and_waits_paused() {
    let mut h = with_backends();
    let rings = h.domains[1].rings.unwrap();
    assert_eq!(
        (rings.store_evtchn, rings.console_evtchn),
        (1, 2),
        "store first"
    );
    for port in [1, 2] {
        assert_eq!(
            h.domains[1].evtchn.get(port).unwrap().binding,
            Binding::Unbound { remote: 0 }
        );
    }
    let si = h.domains[1].regs.rsi;
    let store_evtchn = u32_at(
        &peek(
            &mut h,
            1,
            si + offset_of!(start_info, store_evtchn) as u64,
            4,
        ),
        0,
    );
    let console_at = offset_of!(start_info, console)
        + offset_of!(start_info__bindgen_ty_1__bindgen_ty_1, evtchn);
    let console_evtchn = u32_at(&peek(&mut h, 1, si + console_at as u64, 4), 0);
    assert_eq!((store_evtchn, console_evtchn), (1, 2));
    assert!(!h.domains[1].ready(), "paused until dom0 introduces it");
    assert_eq!(h.domains[1].sched.pause_count, 1);
    // dom0 binds the store channel and unpauses the domain.
    let mut op = [0u8; 12];
    op[0..2].copy_from_slice(&1u16.to_le_bytes());
    op[4..8].copy_from_slice(&1u32.to_le_bytes());
    poke(&mut h, 0, SCRATCH, &op);
    let r = call(
        &mut h,
        0,
        __HYPERVISOR_event_channel_op,
        &[EVTCHNOP_bind_interdomain as u64, SCRATCH],
    );
    assert_eq!(r.0, 0);
    let mut d = [0u8; size_of::<xen_sys::tools::xen_domctl>()];
    d[0..4].copy_from_slice(&xen_sys::tools::XEN_DOMCTL_unpausedomain.to_le_bytes());
    d[4..8].copy_from_slice(&xen_sys::tools::XEN_DOMCTL_INTERFACE_VERSION.to_le_bytes());
    d[8..10].copy_from_slice(&1u16.to_le_bytes());
    poke(&mut h, 0, SCRATCH, &d);
    assert_eq!(call(&mut h, 0, __HYPERVISOR_domctl, &[SCRATCH]).0, 0);
    assert!(h.domains[1].ready());
}

#[test]
fn hvm_get_param_tells_dom0_where_a_domus_rings_are() {
    let mut h = with_backends();
    let get = |h: &mut Hypervisor<TestMachine>, d: domid_t, domid: u16, index: u32| {
        let mut b = [0u8; size_of::<xen_hvm_param>()];
        set(
            &mut b,
            offset_of!(xen_hvm_param, domid),
            &domid.to_le_bytes(),
        );
        set(
            &mut b,
            offset_of!(xen_hvm_param, index),
            &index.to_le_bytes(),
        );
        poke(h, d, SCRATCH, &b);
        let rc = call(
            h,
            d,
            __HYPERVISOR_hvm_op,
            &[HVMOP_get_param as u64, SCRATCH],
        )
        .0;
        (
            rc,
            u64_at(
                &peek(h, d, SCRATCH, b.len()),
                offset_of!(xen_hvm_param, value),
            ),
        )
    };
    let rings = h.domains[1].rings.unwrap();
    assert_eq!(get(&mut h, 0, 1, HVM_PARAM_STORE_PFN), (0, rings.store_pfn));
    assert_eq!(
        get(&mut h, 0, 1, HVM_PARAM_CONSOLE_PFN),
        (0, rings.console_pfn)
    );
    assert_eq!(get(&mut h, 0, 1, HVM_PARAM_STORE_EVTCHN), (0, 1));
    assert_eq!(get(&mut h, 0, 1, HVM_PARAM_CONSOLE_EVTCHN), (0, 2));
    // The PFN is the domU's own: its P2M maps it to the store page.
    let store = mfn_of(&mut h, 1, BASE + rings.store_pfn * 4096);
    let si = h.domains[1].regs.rsi;
    let store_mfn = u64_at(
        &peek(&mut h, 1, si + offset_of!(start_info, store_mfn) as u64, 8),
        0,
    );
    assert_eq!(store, store_mfn);
    assert_eq!(
        get(&mut h, 1, DOMID_SELF, HVM_PARAM_STORE_PFN),
        (0, rings.store_pfn)
    );
    assert_eq!(get(&mut h, 1, 0, HVM_PARAM_STORE_PFN).0, e(XEN_EPERM));
    assert_eq!(get(&mut h, 0, 7, HVM_PARAM_STORE_PFN).0, e(XEN_ESRCH));
    assert_eq!(get(&mut h, 0, 1, HVM_PARAM_CALLBACK_IRQ).0, e(XEN_EINVAL));
    assert_eq!(get(&mut h, 0, 1, HVM_NR_PARAMS).0, e(XEN_EINVAL));
    assert_eq!(
        call(
            &mut h,
            0,
            __HYPERVISOR_hvm_op,
            &[HVMOP_set_param as u64, SCRATCH]
        )
        .0,
        e(XEN_ENOSYS)
    );
}

#[test]
fn batches_are_preempted_and_reissued() {
    let mut h = three();
    let mfn = mfn_of(&mut h, 1, GRANTED_VA);
    grant(&mut h, 1, 8, 0, mfn, GTF_permit_access);
    // 200 unmaps of unknown handles: the first 128 run, then the call is re-issued.
    let n = 200u32;
    let op = vec![0u8; n as usize * size_of::<gnttab_unmap_grant_ref>()];
    let mut ops = op.clone();
    for i in 0..n as usize {
        let at =
            i * size_of::<gnttab_unmap_grant_ref>() + offset_of!(gnttab_unmap_grant_ref, handle);
        set(&mut ops, at, &(1000 + i as u32).to_le_bytes());
    }
    let rip = h.domains[0].regs.rip;
    let (rc, b) = gnttab(&mut h, 0, GNTTABOP_unmap_grant_ref, &ops, n);
    assert_eq!(rc, __HYPERVISOR_grant_table_op as i64, "continuation");
    assert_eq!(h.domains[0].regs.rip, rip - 2);
    let size = size_of::<gnttab_unmap_grant_ref>() as u64;
    assert_eq!(h.domains[0].regs.rsi, SCRATCH + 128 * size);
    assert_eq!(h.domains[0].regs.rdx, (n - 128) as u64);
    let status = |i: usize| {
        i16_at(
            &b,
            i * size as usize + offset_of!(gnttab_unmap_grant_ref, status),
        )
    };
    assert_eq!(status(127), st(GNTST_bad_handle));
    assert_eq!(status(128), 0, "not yet done");
}
