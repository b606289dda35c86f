//! bench: measures hypercall costs from inside a guest, for `cargo xtask bench`.
//! Each measurement is a loop timed with `rdtsc` and printed as one line
//! `bench NAME: N ops, T ticks` that xtask parses; under QEMU's `-icount` the TSC counts
//! guest instructions, so the figure is deterministic. The command line names the
//! measurements to run (default: all).
#![no_std]
#![no_main]

use libos::hypercall::{hypercall, mmu_update, update_va_mapping};
use libos::paging::{self, pte};
use libos::{println, start_info};
use xen_sys::*;

const ROUNDS: u64 = 10_000;

fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter (not disabled by CR4.TSD for PV).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Times `ROUNDS` runs of `op` and prints the result line.
fn measure(name: &str, mut op: impl FnMut()) {
    op(); // warm up: first-touch costs are not the hypercall's
    let start = rdtsc();
    for _ in 0..ROUNDS {
        op();
    }
    let ticks = rdtsc() - start;
    println!("bench {name}: {ROUNDS} ops, {ticks} ticks");
}

/// The cheapest real hypercall: `xen_version(XENVER_version, NULL)`.
fn null_hypercall() {
    // SAFETY: no pointer arguments.
    unsafe { hypercall(__HYPERVISOR_xen_version, XENVER_version as u64, 0, 0, 0, 0) };
}

/// A page of our own whose mapping the MMU benchmarks rewrite.
#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut PAGE: Page = Page([0; 4096]);

/// The L1 entry mapping [`PAGE`]: its machine address and the entry (read-write).
fn page_entry() -> (u64, u64) {
    let va = core::ptr::addr_of!(PAGE) as u64;
    paging::walk(paging::boot_l4_mfn(), va, 1).expect("our own image is mapped")
}

/// Each call changes the entry, alternating read-write and read-only: the hypervisor
/// validates the new entry and releases the old one every time.
fn alternate(entry: u64) -> impl FnMut() -> u64 {
    let mut rw = false;
    move || {
        rw = !rw;
        if rw {
            entry | pte::RW
        } else {
            entry & !pte::RW
        }
    }
}

fn main() {
    let cmdline = start_info::get().cmdline();
    let wanted = |name: &str| cmdline.is_empty() || cmdline.split_whitespace().any(|w| w == name);
    if wanted("null-hypercall") {
        measure("null-hypercall", null_hypercall);
    }
    if wanted("mmu-update") {
        let (maddr, entry) = page_entry();
        let mut next = alternate(entry);
        measure("mmu-update", || {
            let req = xen_sys::mmu_update {
                ptr: maddr | MMU_NORMAL_PT_UPDATE as u64,
                val: next(),
            };
            mmu_update(&[req]).expect("mmu_update of our own page");
        });
    }
    if wanted("update-va-mapping") {
        let va = core::ptr::addr_of!(PAGE) as u64;
        let mut next = alternate(page_entry().1);
        measure("update-va-mapping", || {
            update_va_mapping(va, next(), UVMF_INVLPG | UVMF_LOCAL)
                .expect("update_va_mapping of our own page")
        });
    }
    println!("bench: done");
}

libos::main!(main);
