//! pagetables: builds a page-table hierarchy of its own and runs on it, through the PV
//! MMU (`xen.h`: `mmuext_op` with `MMUEXT_PIN_L4_TABLE`, `MMUEXT_NEW_BASEPTR`,
//! `MMUEXT_UNPIN_TABLE`; `update_va_mapping`).
//!
//! 1. New L4/L3/L2/L1 tables from libos's spare frames: the kernel's region (image,
//!    stack, heap, all memory) through a new L3 and L2, with a new L1 for the first
//!    2 MiB (image and stack) and the existing L1s shared for the rest, except one
//!    2 MiB chunk that is left out on purpose; and a test page at a new address
//!    (`TEST_VA`, in an L4 slot of its own) mapping a heap frame.
//! 2. Pin the L4 (Xen validates the whole tree), switch to it, check that the test
//!    page shows the heap frame's contents and that the left-out chunk faults.
//! 3. Switch back: the test address faults again, the chunk reads.
//! 4. Unpin and tear down: the table frames lose their page-table type, proven by
//!    mapping each one writable again.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use core::ptr::read_volatile;

use libos::hypercall::{self, mmuext_mfn, mmuext_one};
use libos::memory::{self, Frame};
use libos::paging::{self, pte, ENTRIES, PAGE_SIZE};
use libos::{println, start_info, traps};
use xen_sys::{
    SHUTDOWN_crash, MMUEXT_NEW_BASEPTR, MMUEXT_PIN_L4_TABLE, MMUEXT_UNPIN_TABLE, UVMF_INVLPG,
};

/// The test page's new address: L4 slot 2, far from anything else we map.
const TEST_VA: u64 = 0x0000_0100_0000_0000;
const MAGIC: u64 = 0x7061_6765_7461_626c; // "pagetabl"

fn fail(what: &str) -> ! {
    println!("pagetables: FAILED: {what}");
    hypercall::shutdown(SHUTDOWN_crash)
}

fn ok<T, E: core::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| {
        println!("pagetables: FAILED: {what}: {e}");
        hypercall::shutdown(SHUTDOWN_crash)
    })
}

fn frame() -> Frame {
    memory::alloc_frame().unwrap_or_else(|| fail("no spare frame"))
}

/// Fills the table in `f` (zeroed first) through the scratch mapping.
fn fill(f: Frame, set: impl FnOnce(&mut [u64; ENTRIES])) {
    ok(
        memory::with_frame(f.mfn, |t| {
            t.fill(0);
            set(t)
        }),
        "writing a new table",
    )
}

/// The table an entry points to.
fn child(entry: u64) -> u64 {
    (entry & pte::ADDR_MASK) / PAGE_SIZE
}

/// Reads `va` (a u64); `Err` with the fault if it is not mapped.
fn probe(va: u64) -> Result<u64, traps::Fault> {
    let mut v = 0;
    // SAFETY: a read that may fault on purpose; `catch` turns the fault into a value.
    traps::catch(|| v = unsafe { read_volatile(va as *const u64) })?;
    Ok(v)
}

/// The P2M frame lists libos published in shared_info, walked as the toolstack's save
/// does: every pseudo-physical frame's entry is found, and is its MFN.
fn p2m_lists() {
    let n = start_info::get().nr_pages();
    for pfn in 0..n {
        let found = libos::p2m_lists::lookup(pfn);
        if found != Some(paging::pfn_to_mfn(pfn)) {
            fail(&alloc::format!(
                "P2M frame lists: pfn {pfn:#x} found as {found:?}, its mfn is {:#x}",
                paging::pfn_to_mfn(pfn)
            ));
        }
    }
    if libos::p2m_lists::lookup(n).is_some() {
        fail("P2M frame lists: an entry past max_pfn");
    }
    println!("pagetables: P2M frame lists in shared_info: all {n} frames found through them");
}

fn main() {
    let si = start_info::get();
    let boot_l4 = paging::boot_l4_mfn();
    let base = paging::virt_base();
    println!(
        "pagetables: boot L4 at mfn {boot_l4:#x}, {} spare frames",
        memory::free_frames()
    );
    p2m_lists();

    // The test page: a heap frame with a known value.
    let mut test_page = Box::new(Page([0; ENTRIES]));
    test_page.0[0] = MAGIC;
    let test_va_old = &test_page.0 as *const _ as u64;
    let test_mfn = paging::virt_to_mfn(test_va_old);

    // The chunk left out: the last 2 MiB of memory.
    let hole_va = paging::pfn_to_virt(si.nr_pages() - 1) & !((1 << 21) - 1);

    // Current tables of the kernel region.
    let (_, l4e) = paging::walk(boot_l4, base, 4).unwrap_or_else(|| fail("walk L4"));
    let old_l3 = child(l4e);
    let (_, l3e) = paging::walk(boot_l4, base, 3).unwrap_or_else(|| fail("walk L3"));
    let old_l2 = child(l3e);
    let (_, l2e) = paging::walk(boot_l4, base, 2).unwrap_or_else(|| fail("walk L2"));
    let old_l1 = child(l2e);

    let [l4, l3k, l2k, l1k, l3t, l2t, l1t] = [(); 7].map(|()| frame());
    let frames = [l4, l3k, l2k, l1k, l3t, l2t, l1t];

    fill(l1t, |t| {
        t[paging::table_index(TEST_VA, 1)] = (test_mfn * PAGE_SIZE) | pte::DATA_RW
    });
    fill(l2t, |t| {
        t[paging::table_index(TEST_VA, 2)] = (l1t.mfn * PAGE_SIZE) | pte::TABLE
    });
    fill(l3t, |t| {
        t[paging::table_index(TEST_VA, 3)] = (l2t.mfn * PAGE_SIZE) | pte::TABLE
    });
    // Copies of the kernel region's tables: read the old ones first (through the
    // linear region), then write the copies.
    let mut copy = [0u64; ENTRIES];
    for (i, e) in copy.iter_mut().enumerate() {
        *e = paging::read_entry(old_l1, i);
    }
    fill(l1k, |t| t.copy_from_slice(&copy));
    for (i, e) in copy.iter_mut().enumerate() {
        *e = paging::read_entry(old_l2, i);
    }
    copy[paging::table_index(base, 2)] = (l1k.mfn * PAGE_SIZE) | pte::TABLE;
    copy[paging::table_index(hole_va, 2)] = 0;
    fill(l2k, |t| t.copy_from_slice(&copy));
    for (i, e) in copy.iter_mut().enumerate() {
        *e = paging::read_entry(old_l3, i);
    }
    copy[paging::table_index(base, 3)] = (l2k.mfn * PAGE_SIZE) | pte::TABLE;
    fill(l3k, |t| t.copy_from_slice(&copy));
    // The L4: the boot L4's guest slots (not Xen's 256-271, which Xen fills in when
    // it validates an L4), our kernel L3 and the test L3.
    for (i, e) in copy.iter_mut().enumerate() {
        *e = if (256..272).contains(&i) {
            0
        } else {
            paging::read_entry(boot_l4, i)
        };
    }
    copy[paging::table_index(base, 4)] = (l3k.mfn * PAGE_SIZE) | pte::TABLE;
    copy[paging::table_index(TEST_VA, 4)] = (l3t.mfn * PAGE_SIZE) | pte::TABLE;
    fill(l4, |t| t.copy_from_slice(&copy));
    println!("pagetables: built L4 {:#x} with 7 new tables", l4.mfn);

    ok(
        mmuext_one(mmuext_mfn(MMUEXT_PIN_L4_TABLE, l4.mfn)),
        "pin L4",
    );
    println!("pagetables: pinned");
    if probe(TEST_VA).is_ok() {
        fail("the test address is mapped before the switch");
    }
    ok(
        mmuext_one(mmuext_mfn(MMUEXT_NEW_BASEPTR, l4.mfn)),
        "switch to the new L4",
    );
    println!("pagetables: running on the new tables");
    match probe(TEST_VA) {
        Ok(MAGIC) => println!("pagetables: test page at {TEST_VA:#x} reads {MAGIC:#x}"),
        Ok(v) => fail(&alloc::format!("test page reads {v:#x}")),
        Err(f) => fail(&alloc::format!("test page: {f}")),
    }
    // Writes through the new mapping reach the heap frame.
    // SAFETY: TEST_VA maps `test_page`'s frame writable in the current tables.
    unsafe { core::ptr::write_volatile((TEST_VA + 8) as *mut u64, !MAGIC) };
    match probe(hole_va) {
        Err(f) if f.vector == 14 && f.cr2 == hole_va => {
            println!("pagetables: left-out chunk {hole_va:#x} faults: {f}")
        }
        other => fail(&alloc::format!("left-out chunk: {other:?}")),
    }

    ok(
        mmuext_one(mmuext_mfn(MMUEXT_NEW_BASEPTR, boot_l4)),
        "switch back",
    );
    match probe(TEST_VA) {
        Err(f) if f.vector == 14 => {
            println!("pagetables: back on the boot tables: test address faults: {f}")
        }
        other => fail(&alloc::format!(
            "test address after switching back: {other:?}"
        )),
    }
    if probe(hole_va).is_err() {
        fail("left-out chunk still faults on the boot tables");
    }
    // SAFETY: plain read of our own heap page (volatile: written through TEST_VA).
    if unsafe { read_volatile(&test_page.0[1]) } != !MAGIC {
        fail("the write through the test mapping did not reach the heap frame");
    }
    println!("pagetables: the write through the test page reached the heap frame");

    ok(mmuext_one(mmuext_mfn(MMUEXT_UNPIN_TABLE, l4.mfn)), "unpin");
    for f in frames {
        // No longer page tables: each maps writable again, then back to read-only
        // for the pool.
        ok(
            hypercall::update_va_mapping(f.va(), (f.mfn * PAGE_SIZE) | pte::DATA_RW, UVMF_INVLPG),
            "mapping a torn-down table frame writable",
        );
        // SAFETY: the frame is now mapped writable at its linear address.
        unsafe { core::ptr::write_volatile(f.va() as *mut u64, 0) };
        ok(
            hypercall::update_va_mapping(f.va(), (f.mfn * PAGE_SIZE) | pte::DATA_RO, UVMF_INVLPG),
            "mapping it read-only again",
        );
        memory::free_frame(f);
    }
    println!("pagetables: unpinned; the 7 table frames map writable again");
    println!("pagetables: success");
}

#[repr(align(4096))]
struct Page([u64; ENTRIES]);

libos::main!(main);
