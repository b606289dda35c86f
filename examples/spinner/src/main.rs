//! spinner: a CPU-bound domain that never blocks or yields. It counts forever and prints a
//! heartbeat every `every=N` iterations (default 20 000 000), so the hypervisor must
//! preempt it for anyone else to run; a toolstack can pause, unpause and destroy it.
//!
//! With `give-back=KIB` it first gives back to the hypervisor all but KIB of its free
//! heap (libos's balloon).
//!
//! With `probe` on its command line it first tries the toolstack hypercalls (domctl
//! getdomaininfo, pausedomain and destroydomain on domain 0, sysctl getdomaininfolist)
//! and reports what they answered: an unprivileged domain must get -EPERM for each.
#![no_std]
#![no_main]

use libos::hypercall::{self, XenError};
use libos::{println, start_info};

const EPERM: i64 = xen_sys::XEN_EPERM as i64;

fn main() {
    let cmdline = start_info::get().cmdline();
    let every = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("every="))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(20_000_000);
    if cmdline.split_whitespace().any(|w| w == "probe") {
        probe();
    }
    if let Some(reserve) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("give-back="))
        .and_then(|n| n.parse::<u64>().ok())
    {
        give_back(reserve);
    }
    println!("spinner: spinning, a heartbeat every {every} iterations");
    let mut n: u64 = 0;
    let mut beats: u64 = 0;
    loop {
        n = core::hint::black_box(n + 1);
        if n.is_multiple_of(every) {
            beats += 1;
            println!("spinner: heartbeat {beats}");
        }
    }
}

/// Gives back all but `reserve` KiB of free heap (libos's balloon), and says what the
/// hypervisor counts then.
fn give_back(reserve: u64) {
    let before = libos::balloon::current_kib();
    let now = libos::balloon::give_back_unused(reserve);
    let held = hypercall::memory_query(xen_sys::XENMEM_current_reservation).unwrap_or(0);
    if held * 4 != now || now >= before {
        panic!("spinner: FAILED: give-back: {before} -> {now} KiB, but the hypervisor counts {held} pages");
    }
    println!(
        "spinner: gave back {} KiB of {before} KiB, keeping {reserve} KiB of heap free; the hypervisor counts {held} pages ({} KiB)",
        before - now,
        held * 4
    );
}

/// The toolstack hypercalls from an unprivileged domain: each must be refused.
fn probe() {
    let results: [(&str, Result<(), XenError>); 4] = [
        (
            "domctl getdomaininfo",
            hypercall::getdomaininfo(0).map(|_| ()),
        ),
        ("domctl pausedomain", hypercall::pause_domain(0)),
        ("domctl destroydomain", hypercall::destroy_domain(0)),
        (
            "sysctl getdomaininfolist",
            hypercall::list_domains().map(|_| ()),
        ),
    ];
    let mut refused = 0;
    for (what, r) in &results {
        match r {
            Err(e) => println!("spinner: probe: {what} on d0: {e}"),
            Ok(()) => println!("spinner: probe: {what} on d0: ALLOWED"),
        }
        if matches!(r, Err(XenError(EPERM))) {
            refused += 1;
        }
    }
    if refused == results.len() {
        println!("spinner: probe: every toolstack call refused with -EPERM");
    } else {
        println!(
            "spinner: probe: FAILED: {refused} of {} refused",
            results.len()
        );
    }
}

libos::main!(main);
