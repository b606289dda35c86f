//! attack: a hostile guest. The command line names one attack (or `all`: every
//! attack that the hypervisor answers with an error code rather than by crashing us,
//! in order). Each attack tries one thing the PV ABI forbids, prints what it got:
//!
//! ```text
//! attack NAME: result -22 EINVAL        (or: result 0, result fault #PF ...)
//! ```
//!
//! then proves the domain is still alive and its rights intact with a legitimate
//! call of the same kind (`attack NAME: legitimate call ok`). The expected results are
//! Xen 4.17's, recorded in one table in `xtask/src/attacks.rs`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use core::ptr::{read_volatile, write_volatile};

use libos::hypercall::{self, mmuext_mfn, mmuext_one, XenError};
use libos::memory::{self, Frame};
use libos::paging::{self, pte, ENTRIES, PAGE_SIZE};
use libos::{println, start_info, traps};
use xen_sys::*;

/// One attack: its name (the command line word), whether the hypervisor's answer is
/// to crash the domain (so `all` skips it), and what it does.
struct Attack {
    name: &'static str,
    fatal: bool,
    run: fn(&Ctx),
}

/// The running attack, for its output lines.
struct Ctx {
    name: &'static str,
}

impl Ctx {
    /// Prints the raw hypercall result.
    fn result(&self, r: i64) {
        if r < 0 {
            println!("attack {}: result {}", self.name, XenError(-r));
        } else {
            println!("attack {}: result {r}", self.name);
        }
    }
    fn result_of<T>(&self, r: Result<T, XenError>) {
        self.result(r.map_or_else(|e| -e.0, |_| 0));
    }
    fn fault(&self, f: traps::Fault) {
        println!("attack {}: result {f}", self.name);
    }
    /// The legitimate call that must succeed.
    fn legit<T>(&self, r: Result<T, XenError>) {
        match r {
            Ok(_) => println!("attack {}: legitimate call ok", self.name),
            Err(e) => {
                println!("attack {}: legitimate call FAILED: {e}", self.name);
                hypercall::shutdown(SHUTDOWN_crash)
            }
        }
    }
}

const ATTACKS: &[Attack] = &[
    Attack {
        name: "map-beyond-ram",
        fatal: false,
        run: map_beyond_ram,
    },
    Attack {
        name: "map-m2p-writable",
        fatal: false,
        run: map_m2p_writable,
    },
    Attack {
        name: "pt-writable-uvm",
        fatal: false,
        run: pt_writable_uvm,
    },
    Attack {
        name: "pt-writable-mmu",
        fatal: false,
        run: pt_writable_mmu,
    },
    Attack {
        name: "pt-direct-write",
        fatal: false,
        run: pt_direct_write,
    },
    Attack {
        name: "pin-self-writable",
        fatal: false,
        run: pin_self_writable,
    },
    Attack {
        name: "unpin-not-pinned",
        fatal: false,
        run: unpin_not_pinned,
    },
    Attack {
        name: "double-pin",
        fatal: false,
        run: double_pin,
    },
    Attack {
        name: "unpin-current-l4",
        fatal: false,
        run: unpin_current_l4,
    },
    Attack {
        name: "baseptr-non-l4",
        fatal: false,
        run: baseptr_non_l4,
    },
    Attack {
        name: "baseptr-foreign",
        fatal: false,
        run: baseptr_foreign,
    },
    Attack {
        name: "l4-hypervisor-slot",
        fatal: false,
        run: l4_xen_slot,
    },
    Attack {
        name: "pse-superpage",
        fatal: false,
        run: pse_superpage,
    },
    Attack {
        name: "linear-pt-writable",
        fatal: false,
        run: linear_pt_writable,
    },
    Attack {
        name: "mmu-overrun",
        fatal: false,
        run: mmu_overrun,
    },
    Attack {
        name: "mmu-unmapped-ptr",
        fatal: false,
        run: mmu_unmapped_ptr,
    },
    Attack {
        name: "mmu-hypervisor-ptr",
        fatal: false,
        run: mmu_xen_ptr,
    },
    Attack {
        name: "machphys-foreign",
        fatal: false,
        run: machphys_foreign,
    },
    Attack {
        name: "uvm-noncanonical",
        fatal: false,
        run: uvm_noncanonical,
    },
    Attack {
        name: "multicall-overrun",
        fatal: false,
        run: multicall_overrun,
    },
    Attack {
        name: "trap-noncanonical",
        fatal: false,
        run: trap_noncanonical,
    },
    Attack {
        name: "increase-huge",
        fatal: false,
        run: increase_huge,
    },
    Attack {
        name: "decrease-not-owned",
        fatal: false,
        run: decrease_not_owned,
    },
    Attack {
        name: "mmuext-unknown",
        fatal: false,
        run: mmuext_unknown,
    },
    Attack {
        name: "set-gdt-bad",
        fatal: false,
        run: set_gdt_bad,
    },
    Attack {
        name: "update-desc-ring0",
        fatal: false,
        run: update_desc_ring0,
    },
    Attack {
        name: "hypercall-unknown",
        fatal: false,
        run: hypercall_unknown,
    },
    Attack {
        name: "callback-unregister-event",
        fatal: false,
        run: callback_unregister_event,
    },
    Attack {
        name: "stack-switch-bad-ss",
        fatal: false,
        run: stack_switch_bad_ss,
    },
    Attack {
        name: "vm-assist-unknown",
        fatal: false,
        run: vm_assist_unknown,
    },
    Attack {
        name: "segbase-noncanonical",
        fatal: false,
        run: segbase_noncanonical,
    },
    Attack {
        name: "evtchn-bind-foreign",
        fatal: false,
        run: evtchn_bind_foreign,
    },
    Attack {
        name: "evtchn-send-closed",
        fatal: false,
        run: evtchn_send_closed,
    },
    Attack {
        name: "evtchn-bind-nodomain",
        fatal: false,
        run: evtchn_bind_nodomain,
    },
    Attack {
        name: "evtchn-unmask-range",
        fatal: false,
        run: evtchn_unmask_range,
    },
    Attack {
        name: "evtchn-virq-global-vcpu1",
        fatal: false,
        run: evtchn_virq_global_vcpu1,
    },
    Attack {
        name: "evtchn-exhaust",
        fatal: false,
        run: evtchn_exhaust,
    },
    Attack {
        name: "iret-bogus",
        fatal: true,
        run: iret_bogus,
    },
];

fn main() {
    let which = start_info::get()
        .cmdline()
        .split_whitespace()
        .next()
        .unwrap_or("all");
    if which == "all" {
        for a in ATTACKS.iter().filter(|a| !a.fatal) {
            (a.run)(&Ctx { name: a.name });
        }
        println!("attack: all non-fatal attacks done");
        return;
    }
    match ATTACKS.iter().find(|a| a.name == which) {
        Some(a) => (a.run)(&Ctx { name: a.name }),
        None => {
            println!("attack: unknown attack '{which}'; known:");
            for a in ATTACKS {
                println!("  {}", a.name);
            }
            hypercall::shutdown(SHUTDOWN_crash)
        }
    }
    if ATTACKS.iter().any(|a| a.name == which && a.fatal) {
        println!("attack {which}: still alive: the hypervisor did not crash us");
    }
}

// ---- helpers ----

/// A page of our heap, mapped writable: the victim of mapping attacks.
struct Victim {
    page: Box<Page>,
}

#[repr(align(4096))]
struct Page([u64; ENTRIES]);

impl Victim {
    fn new() -> Victim {
        Victim {
            page: Box::new(Page([0; ENTRIES])),
        }
    }
    fn va(&self) -> u64 {
        &self.page.0 as *const _ as u64
    }
    fn mfn(&self) -> u64 {
        paging::virt_to_mfn(self.va())
    }
    /// Its own, writable mapping (the legitimate `update_va_mapping`).
    fn restore(&self) -> Result<(), XenError> {
        hypercall::update_va_mapping(
            self.va(),
            (self.mfn() * PAGE_SIZE) | pte::DATA_RW,
            UVMF_INVLPG,
        )
    }
    /// Machine address of its L1 entry.
    fn l1e(&self) -> u64 {
        paging::walk(paging::boot_l4_mfn(), self.va(), 1)
            .expect("mapped")
            .0
    }
}

/// Two heap pages, the second unmapped while this lives: a buffer that ends at a
/// hole.
struct Cliff {
    pages: Box<[Page; 2]>,
}

impl Cliff {
    fn new() -> Cliff {
        let c = Cliff {
            pages: Box::new([Page([0; ENTRIES]), Page([0; ENTRIES])]),
        };
        hypercall::update_va_mapping(c.hole(), 0, UVMF_INVLPG).expect("unmap a heap page");
        c
    }
    /// The end of the mapped page.
    fn edge(&self) -> u64 {
        self.hole()
    }
    fn hole(&self) -> u64 {
        &self.pages[1] as *const _ as u64
    }
}

impl Drop for Cliff {
    fn drop(&mut self) {
        let mfn = paging::virt_to_mfn(self.hole());
        hypercall::update_va_mapping(self.hole(), (mfn * PAGE_SIZE) | pte::DATA_RW, UVMF_INVLPG)
            .expect("remap a heap page");
    }
}

/// A machine frame far beyond any RAM or MMIO (physical address 2^48).
const BEYOND_RAM_MFN: u64 = 1 << 36;

fn m2p_mfn() -> u64 {
    let mut out = [0; 1];
    hypercall::machphys_mfn_list(&mut out).expect("XENMEM_machphys_mfn_list");
    out[0]
}

/// A boot L1 table (the one mapping our image) and its linear address.
fn boot_l1() -> Frame {
    let (_, l2e) = paging::walk(paging::boot_l4_mfn(), paging::virt_base(), 2).expect("walk");
    Frame::from_pfn(paging::mfn_to_pfn((l2e & pte::ADDR_MASK) / PAGE_SIZE))
}

fn pool_frame() -> Frame {
    memory::alloc_frame().expect("a spare frame")
}

fn zeroed(f: Frame) {
    memory::with_frame(f.mfn, |t| t.fill(0)).expect("zero a frame");
}

fn pin(cmd: u32, f: Frame) -> Result<(), XenError> {
    mmuext_one(mmuext_mfn(cmd, f.mfn))
}

fn unpin(f: Frame) -> Result<(), XenError> {
    mmuext_one(mmuext_mfn(MMUEXT_UNPIN_TABLE, f.mfn))
}

fn one_update(ptr: u64, val: u64) -> Result<u64, XenError> {
    hypercall::mmu_update(&[mmu_update { ptr, val }]).map_err(|(e, _)| e)
}

/// A pointer/count `mmu_update` (for bad buffers).
fn mmu_raw(reqs: u64, count: u64) -> i64 {
    let mut done = 0u32;
    // SAFETY: the hypervisor reads `count` entries at `reqs`; a bad buffer is the
    // attack, and Xen must refuse it without touching anything else of ours.
    unsafe { hypercall::mmu_update_raw(reqs, count, &mut done as *mut u32 as u64, DOMID_SELF) }
}

// ---- the attacks ----

/// Map a machine frame beyond RAM (no domain owns it).
fn map_beyond_ram(c: &Ctx) {
    let v = Victim::new();
    c.result_of(hypercall::update_va_mapping(
        v.va(),
        (BEYOND_RAM_MFN * PAGE_SIZE) | pte::DATA_RW,
        UVMF_INVLPG,
    ));
    c.legit(v.restore());
}

/// Map a frame of Xen's M2P table writable.
fn map_m2p_writable(c: &Ctx) {
    let v = Victim::new();
    c.result_of(hypercall::update_va_mapping(
        v.va(),
        (m2p_mfn() * PAGE_SIZE) | pte::DATA_RW,
        UVMF_INVLPG,
    ));
    c.legit(v.restore());
}

/// Make a live L1 table writable through update_va_mapping of its linear address.
fn pt_writable_uvm(c: &Ctx) {
    let l1 = boot_l1();
    c.result_of(hypercall::update_va_mapping(
        l1.va(),
        (l1.mfn * PAGE_SIZE) | pte::DATA_RW,
        UVMF_INVLPG,
    ));
    c.legit(hypercall::update_va_mapping(
        l1.va(),
        (l1.mfn * PAGE_SIZE) | pte::DATA_RO,
        UVMF_INVLPG,
    ));
}

/// Same through mmu_update on the entry that maps it.
fn pt_writable_mmu(c: &Ctx) {
    let l1 = boot_l1();
    let (maddr, _) = paging::walk(paging::boot_l4_mfn(), l1.va(), 1).expect("walk");
    c.result_of(one_update(maddr, (l1.mfn * PAGE_SIZE) | pte::DATA_RW));
    c.legit(one_update(maddr, (l1.mfn * PAGE_SIZE) | pte::DATA_RO));
}

/// Write a live L1 table directly through its read-only mapping: an entry (the
/// stack guard page's, empty) that would map a frame beyond RAM. Xen emulates such
/// writes to page tables, validating the new entry like an `mmu_update`.
fn pt_direct_write(c: &Ctx) {
    let guard = libos::start::stack_guard_va();
    let (maddr, entry) = paging::walk(paging::boot_l4_mfn(), guard, 1).expect("walk");
    assert_eq!(entry, 0, "the guard page is unmapped");
    let l1 = Frame::from_pfn(paging::mfn_to_pfn(maddr / PAGE_SIZE));
    let target = (l1.va() + maddr % PAGE_SIZE) as *mut u64;
    let bad = (BEYOND_RAM_MFN * PAGE_SIZE) | pte::DATA_RW;
    // SAFETY: a write to a read-only page table on purpose; `catch` turns the fault
    // into a value.
    match traps::catch(|| unsafe { write_volatile(target, bad) }) {
        Err(f) => c.fault(f),
        Ok(()) => c.result(0),
    }
    c.legit(one_update(maddr, 0));
}

/// Pin, as an L1, a frame whose contents map that same frame writable.
fn pin_self_writable(c: &Ctx) {
    let f = pool_frame();
    memory::with_frame(f.mfn, |t| {
        t.fill(0);
        t[0] = (f.mfn * PAGE_SIZE) | pte::DATA_RW;
    })
    .expect("fill");
    c.result_of(pin(MMUEXT_PIN_L1_TABLE, f));
    zeroed(f);
    c.legit(pin(MMUEXT_PIN_L1_TABLE, f).and_then(|()| unpin(f)));
    memory::free_frame(f);
}

/// Unpin a frame that is not pinned.
fn unpin_not_pinned(c: &Ctx) {
    let f = pool_frame();
    zeroed(f);
    c.result_of(unpin(f));
    c.legit(pin(MMUEXT_PIN_L1_TABLE, f).and_then(|()| unpin(f)));
    memory::free_frame(f);
}

/// Pin the same table twice.
fn double_pin(c: &Ctx) {
    let f = pool_frame();
    zeroed(f);
    pin(MMUEXT_PIN_L1_TABLE, f).expect("first pin");
    c.result_of(pin(MMUEXT_PIN_L1_TABLE, f));
    c.legit(unpin(f));
    memory::free_frame(f);
}

/// Unpin the L4 we run on, then try to map it writable.
fn unpin_current_l4(c: &Ctx) {
    let l4 = Frame::from_pfn(paging::virt_to_pfn(start_info::get().pt_base()));
    let unpinned = unpin(l4);
    println!(
        "attack {}: unpinning the current L4: {}",
        c.name,
        unpinned.map_or_else(|e| alloc::format!("{e}"), |()| "0".into())
    );
    c.result_of(hypercall::update_va_mapping(
        l4.va(),
        (l4.mfn * PAGE_SIZE) | pte::DATA_RW,
        UVMF_INVLPG,
    ));
    if unpinned.is_ok() {
        pin(MMUEXT_PIN_L4_TABLE, l4).expect("re-pin the L4");
    }
    c.legit(hypercall::update_va_mapping(
        l4.va(),
        (l4.mfn * PAGE_SIZE) | pte::DATA_RO,
        UVMF_INVLPG,
    ));
}

/// Switch to a "page table" that is a writable data frame.
fn baseptr_non_l4(c: &Ctx) {
    let v = Victim::new();
    c.result_of(mmuext_one(mmuext_mfn(MMUEXT_NEW_BASEPTR, v.mfn())));
    c.legit(mmuext_one(mmuext_mfn(
        MMUEXT_NEW_BASEPTR,
        paging::boot_l4_mfn(),
    )));
}

/// Switch to a frame we do not own.
fn baseptr_foreign(c: &Ctx) {
    c.result_of(mmuext_one(mmuext_mfn(MMUEXT_NEW_BASEPTR, m2p_mfn())));
    c.legit(mmuext_one(mmuext_mfn(
        MMUEXT_NEW_BASEPTR,
        paging::boot_l4_mfn(),
    )));
}

/// Write an L4 slot in the hypervisor's range (256: the M2P) with our own L3.
fn l4_xen_slot(c: &Ctx) {
    let l4 = paging::boot_l4_mfn();
    let ours = paging::table_index(paging::virt_base(), 4);
    let l3e = paging::read_entry(l4, ours);
    c.result_of(one_update(l4 * PAGE_SIZE + 256 * 8, l3e));
    c.legit(one_update(l4 * PAGE_SIZE + ours as u64 * 8, l3e));
}

/// A 2 MiB superpage (PSE) entry in an L2 table, mapping our own first 2 MiB.
fn pse_superpage(c: &Ctx) {
    let l4 = paging::boot_l4_mfn();
    // An unused L2 slot: the one after the last 2 MiB of memory, when it is empty.
    let end = paging::pfn_to_virt(start_info::get().nr_pages()).next_multiple_of(1 << 21);
    let (maddr, e) = paging::walk(l4, end, 2).expect("the last L2 covers it");
    assert_eq!(e & pte::PRESENT, 0, "slot after memory is free");
    let first = paging::pfn_to_mfn(0);
    c.result_of(one_update(
        maddr,
        (first * PAGE_SIZE) | pte::DATA_RW | pte::PSE,
    ));
    c.legit(one_update(maddr, 0));
}

/// A writable linear (self-referencing) L4 entry.
fn linear_pt_writable(c: &Ctx) {
    let l4 = paging::boot_l4_mfn();
    // Slot 300: a free guest slot.
    let maddr = l4 * PAGE_SIZE + 300 * 8;
    c.result_of(one_update(maddr, (l4 * PAGE_SIZE) | pte::TABLE));
    c.legit(one_update(maddr, 0));
}

/// mmu_update whose count runs past the buffer into an unmapped page.
fn mmu_overrun(c: &Ctx) {
    let v = Victim::new();
    let cliff = Cliff::new();
    let req = mmu_update {
        ptr: v.l1e(),
        val: (v.mfn() * PAGE_SIZE) | pte::DATA_RW,
    };
    let at = cliff.edge() - 16;
    // SAFETY: the last 16 bytes of the mapped page of the cliff.
    unsafe { write_volatile(at as *mut mmu_update, req) };
    c.result(mmu_raw(at, 2));
    c.legit(one_update(req.ptr, req.val));
}

/// mmu_update with a request pointer to an unmapped page.
fn mmu_unmapped_ptr(c: &Ctx) {
    let v = Victim::new();
    let cliff = Cliff::new();
    c.result(mmu_raw(cliff.hole(), 1));
    c.legit(one_update(v.l1e(), (v.mfn() * PAGE_SIZE) | pte::DATA_RW));
}

/// mmu_update with a request pointer into the hypervisor's own range.
fn mmu_xen_ptr(c: &Ctx) {
    let v = Victim::new();
    c.result(mmu_raw(HYPERVISOR_VIRT_START + 0x100_0000_0000, 1));
    c.legit(one_update(v.l1e(), (v.mfn() * PAGE_SIZE) | pte::DATA_RW));
}

/// MMU_MACHPHYS_UPDATE of a frame we do not own (an M2P frame).
fn machphys_foreign(c: &Ctx) {
    let v = Victim::new();
    c.result_of(one_update(
        (m2p_mfn() * PAGE_SIZE) | u64::from(MMU_MACHPHYS_UPDATE),
        0,
    ));
    let pfn = paging::virt_to_pfn(v.va());
    c.legit(one_update(
        (v.mfn() * PAGE_SIZE) | u64::from(MMU_MACHPHYS_UPDATE),
        pfn,
    ));
}

/// update_va_mapping of a non-canonical address.
fn uvm_noncanonical(c: &Ctx) {
    let v = Victim::new();
    c.result_of(hypercall::update_va_mapping(
        0x0000_8000_0000_0000,
        (v.mfn() * PAGE_SIZE) | pte::DATA_RW,
        UVMF_INVLPG,
    ));
    c.legit(v.restore());
}

/// A multicall list that runs past its buffer into an unmapped page.
fn multicall_overrun(c: &Ctx) {
    let cliff = Cliff::new();
    let at = cliff.edge() - 64;
    let e = hypercall::multicall_entry(
        __HYPERVISOR_xen_version,
        [u64::from(XENVER_version), 0, 0, 0, 0, 0],
    );
    // SAFETY: the last 64 bytes of the mapped page of the cliff.
    unsafe { write_volatile(at as *mut multicall_entry, e) };
    // SAFETY: the second entry is in the hole: the attack.
    c.result(unsafe { hypercall::multicall_raw(at, 2) });
    let mut calls = [e];
    c.legit(hypercall::multicall(&mut calls).and_then(|()| {
        if calls[0].result >> 16 >= 3 {
            Ok(())
        } else {
            Err(XenError(XEN_EINVAL.into()))
        }
    }));
}

/// A trap handler at a non-canonical address.
fn trap_noncanonical(c: &Ctx) {
    let table = [
        trap_info {
            vector: 6,
            flags: 0,
            cs: FLAT_KERNEL_CS as u16,
            address: 0x0000_8000_0000_0000,
        },
        trap_info::default(),
    ];
    c.result_of(hypercall::set_trap_table(&table));
    c.legit(hypercall::set_trap_table(&traps::trap_table()));
}

/// increase_reservation of an absurd number of huge extents.
fn increase_huge(c: &Ctx) {
    let mut frames = [0 as xen_pfn_t; 1];
    let mut r = xen_memory_reservation {
        extent_start: __guest_handle_xen_pfn_t {
            p: frames.as_mut_ptr(),
        },
        nr_extents: 1 << 40,
        extent_order: 30,
        mem_flags: 0,
        domid: DOMID_SELF,
    };
    // SAFETY: `r` lives across the call; the absurd sizes are the attack.
    c.result(unsafe {
        hypercall::memory_op_raw(XENMEM_increase_reservation, &mut r as *mut _ as u64)
    });
    c.legit(hypercall::memory_query(XENMEM_current_reservation));
}

/// decrease_reservation of frames we do not have (pfns past our memory).
fn decrease_not_owned(c: &Ctx) {
    let nr = start_info::get().nr_pages();
    let mut frames = [nr + 0x1000, nr + 0x1001];
    c.result_of(hypercall::reservation(
        XENMEM_decrease_reservation,
        &mut frames,
        2,
        0,
    ));
    c.legit(hypercall::memory_query(XENMEM_maximum_reservation));
}

/// An mmuext_op command that does not exist.
fn mmuext_unknown(c: &Ctx) {
    c.result_of(mmuext_one(mmuext_mfn(99, 0)));
    c.legit(mmuext_one(mmuext_mfn(MMUEXT_TLB_FLUSH_LOCAL, 0)));
}

/// set_gdt on a frame beyond RAM.
fn set_gdt_bad(c: &Ctx) {
    c.result_of(hypercall::set_gdt(&[BEYOND_RAM_MFN], 512));
    // A spare frame (zeroed, mapped read-only only) is a valid GDT frame. It keeps its
    // descriptor-table type while it is our GDT, so it is not given back to the pool.
    let f = pool_frame();
    zeroed(f);
    c.legit(hypercall::set_gdt(&[f.mfn], 512));
}

/// update_descriptor with a ring-0 code descriptor.
fn update_desc_ring0(c: &Ctx) {
    let v = Victim::new();
    let maddr = v.mfn() * PAGE_SIZE + 8;
    // Long-mode code, DPL 0, present (0x00af9a000000ffff). Xen does not refuse it:
    // it demotes the DPL to the guest kernel's ring 3, so we print what was stored.
    let r = hypercall::update_descriptor(maddr, 0x00af_9a00_0000_ffff);
    // SAFETY: our own heap page, written by the hypervisor.
    let stored = unsafe { read_volatile((v.va() + 8) as *const u64) };
    match r {
        Ok(()) => println!("attack {}: result 0 stored {stored:#018x}", c.name),
        Err(e) => c.result(-e.0),
    }
    // Flat data, DPL 3, present (0x00cff2000000ffff).
    c.legit(hypercall::update_descriptor(maddr, 0x00cf_f200_0000_ffff));
}

/// A hypercall number Xen does not have.
fn hypercall_unknown(c: &Ctx) {
    // SAFETY: no arguments; the number is the attack.
    c.result(unsafe { hypercall::hypercall(100, 0, 0, 0, 0, 0) });
    let (major, _) = hypercall::xen_version();
    c.legit(if major >= 3 {
        Ok(())
    } else {
        Err(XenError(XEN_EINVAL.into()))
    });
}

/// Unregister the event callback.
fn callback_unregister_event(c: &Ctx) {
    c.result_of(hypercall::callback_unregister(CALLBACKTYPE_event));
    c.legit(hypercall::callback_register(
        CALLBACKTYPE_failsafe,
        failsafe as *const () as u64,
        0,
    ));
}

/// The failsafe callback: a segment reload or iret failed in the hypervisor.
extern "C" fn failsafe() -> ! {
    println!("attack: failsafe callback");
    hypercall::shutdown(SHUTDOWN_crash)
}

/// stack_switch to a ring-0 stack selector.
fn stack_switch_bad_ss(c: &Ctx) {
    let rsp = &c as *const _ as u64;
    c.result_of(hypercall::stack_switch(0x10, rsp));
    c.legit(hypercall::stack_switch(u64::from(FLAT_KERNEL_SS), rsp));
}

/// vm_assist with an unknown type.
fn vm_assist_unknown(c: &Ctx) {
    c.result_of(hypercall::vm_assist(VMASST_CMD_enable, 31));
    c.legit(hypercall::vm_assist(
        VMASST_CMD_enable,
        VMASST_TYPE_runstate_update_flag,
    ));
}

/// set_segment_base with a non-canonical FS base.
fn segbase_noncanonical(c: &Ctx) {
    c.result_of(hypercall::set_segment_base(
        SEGBASE_FS,
        0x8000_0000_0000_0000,
    ));
    c.legit(hypercall::set_segment_base(SEGBASE_FS, 0));
}

/// HYPERVISOR_iret whose frame runs into an unmapped page: Xen cannot read it and
/// crashes the domain.
/// A domain id no domain has (below the special `DOMID_*` range).
const NO_SUCH_DOMAIN: domid_t = 0x7000;

/// Binding to a port that was left unbound for another domain, not for us.
fn evtchn_bind_foreign(c: &Ctx) {
    let port =
        hypercall::evtchn_alloc_unbound(DOMID_SELF, NO_SUCH_DOMAIN - 1).expect("alloc_unbound");
    c.result_of(hypercall::evtchn_bind_interdomain(DOMID_SELF, port));
    let _ = hypercall::evtchn_close(port);
    let mine = hypercall::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF).expect("alloc_unbound");
    let bound = hypercall::evtchn_bind_interdomain(DOMID_SELF, mine);
    c.legit(bound);
    if let Ok(p) = bound {
        let _ = hypercall::evtchn_close(p);
    }
    let _ = hypercall::evtchn_close(mine);
}

/// Sending on a port that was closed.
fn evtchn_send_closed(c: &Ctx) {
    let port = hypercall::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF).expect("alloc_unbound");
    hypercall::evtchn_close(port).expect("close");
    c.result_of(hypercall::evtchn_send(port));
    let ipi = hypercall::evtchn_bind_ipi(0).expect("bind_ipi");
    events_masked_send(c, ipi);
}

/// The legitimate send: on a port of our own, with events masked (no handler here).
fn events_masked_send(c: &Ctx, port: hypercall::Port) {
    libos::events::mask(port);
    c.legit(hypercall::evtchn_send(port));
    libos::events::clear_pending(port);
    let _ = hypercall::evtchn_close(port);
}

/// Binding to a port of a domain that does not exist.
fn evtchn_bind_nodomain(c: &Ctx) {
    c.result_of(hypercall::evtchn_bind_interdomain(NO_SUCH_DOMAIN, 1));
    let ipi = hypercall::evtchn_bind_ipi(0).expect("bind_ipi");
    events_masked_send(c, ipi);
}

/// Unmasking a port far beyond the 2-level ABI's 4096.
fn evtchn_unmask_range(c: &Ctx) {
    c.result_of(hypercall::evtchn_unmask(1 << 20));
    let ipi = hypercall::evtchn_bind_ipi(0).expect("bind_ipi");
    libos::events::mask(ipi);
    c.legit(hypercall::evtchn_unmask(ipi).and_then(|()| hypercall::evtchn_close(ipi)));
}

/// Binding a global VIRQ (VIRQ_DOM_EXC) on vCPU 1.
fn evtchn_virq_global_vcpu1(c: &Ctx) {
    c.result_of(hypercall::evtchn_bind_virq(VIRQ_DOM_EXC, 1));
    let p = hypercall::evtchn_bind_virq(VIRQ_DOM_EXC, 0);
    c.legit(p);
    if let Ok(p) = p {
        let _ = hypercall::evtchn_close(p);
    }
}

/// Allocating ports until the hypervisor refuses: a per-domain limit must hold. The
/// ports are given back afterwards (with `EVTCHNOP_reset`).
fn evtchn_exhaust(c: &Ctx) {
    let mut n = 0u32;
    let err = loop {
        match hypercall::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        if n > 1 << 20 {
            println!("attack {}: no limit after {n} ports", c.name);
            hypercall::shutdown(SHUTDOWN_crash);
        }
    };
    c.result(-err.0);
    println!("attack {}: {n} ports allocated before the refusal", c.name);
    c.legit(
        hypercall::evtchn_reset(DOMID_SELF)
            .and_then(|()| hypercall::evtchn_alloc_unbound(DOMID_SELF, DOMID_SELF).map(|_| ())),
    );
    let _ = hypercall::evtchn_reset(DOMID_SELF);
}

fn iret_bogus(c: &Ctx) {
    let cliff = Cliff::new();
    // The stub pushes RCX, R11, RAX below RSP; the rest of the frame (flags, rip, cs,
    // rflags, rsp, ss) would be at and above RSP: in the hole.
    let frame_tail = cliff.edge();
    println!("attack {}: iret with its frame in an unmapped page", c.name);
    let entry = libos::hypercall::entry_address(__HYPERVISOR_iret);
    // SAFETY: not safe: the hypervisor's answer is to crash us, which is the point.
    unsafe {
        core::arch::asm!("mov rsp, {t}", "jmp {e}", t = in(reg) frame_tail, e = in(reg) entry, options(noreturn))
    }
}

libos::main!(main);
