//! bench: measures hypercall costs from inside a guest, for `cargo xtask bench`.
//! Each measurement is a loop timed with `rdtsc` and printed as one line
//! `bench NAME: N ops, T ticks` that xtask parses; under QEMU's `-icount` the TSC counts
//! guest instructions, so the figure is deterministic. The command line names the
//! measurements to run (default: all).
#![no_std]
#![no_main]

use libos::hypercall::hypercall;
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

fn main() {
    let cmdline = start_info::get().cmdline();
    let wanted = |name: &str| cmdline.is_empty() || cmdline.split_whitespace().any(|w| w == name);
    if wanted("null-hypercall") {
        measure("null-hypercall", null_hypercall);
    }
    println!("bench: done");
}

libos::main!(main);
