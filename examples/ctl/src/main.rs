//! ctl: a dom0 appliance that controls another domain through the toolstack hypercalls
//! (domctl, sysctl). It lists the domains, pauses a domU and checks that it gets no CPU
//! time while paused, unpauses it and checks that it runs again, destroys it, checks
//! that it is gone from the list, and powers off. Any failed check crashes the domain
//! with a `ctl: FAILED` line.
//!
//! The domU is `target=N` from the command line, else the first domain other than
//! ctl's own. Its partner in the `dom0-ctl` scenario is `examples/spinner`, which never
//! blocks, so it has CPU time to lose while paused.
//!
//! Alone (no other domain, e.g. as dom0 of upstream Xen), or with `alone` on its
//! command line, it checks what the toolstack calls answer about itself instead:
//! it is listed and running, there is no domain above it, and it may not pause,
//! unpause or destroy itself (-EINVAL), as Xen 4.17 answers.
//!
//! Waiting is by the CPU time the hypervisor reports: ctl yields the CPU in a loop
//! until its own (or the target's) `cpu_time` has grown by the wanted amount.
#![no_std]
#![no_main]

use libos::hypercall::{self, DomainInfo, XenError};
use libos::{println, start_info};
use xen_sys::DOMID_SELF;

const MS: u64 = 1_000_000;
const ESRCH: i64 = xen_sys::XEN_ESRCH as i64;
const EINVAL: i64 = xen_sys::XEN_EINVAL as i64;
/// How long the paused domain is watched (ctl's own CPU time: with the target
/// paused, ctl is the only domain running, so this is wall time too).
const PAUSED_FOR: u64 = 50 * MS;
/// How much CPU time the target must get once unpaused.
const RUNS_FOR: u64 = 20 * MS;
/// CPU time the target gets before it is paused (two time slices of the shim).
const WARM_UP: u64 = 20 * MS;
/// Yields before ctl gives up waiting for the target to run.
const MAX_YIELDS: u32 = 100_000;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            panic!("ctl: FAILED: {}", format_args!($($msg)+));
        }
    };
}

fn main() {
    let me = own_id();
    let domains = list("domains at start");
    let cmdline = start_info::get().cmdline();
    let target = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("target="))
        .and_then(|n| n.parse::<u16>().ok())
        .or_else(|| domains.iter().map(|d| d.domid).find(|&id| id != me));
    let target = match target {
        Some(t) if !cmdline.split_whitespace().any(|w| w == "alone") => t,
        _ => return alone(me),
    };
    println!("ctl: controlling d{target} from d{me}");

    // Let it run a little first, so it has CPU time to keep (or lose).
    let started = wait_for_target(target, WARM_UP);
    println!("ctl: d{target} has run {} ms", ms(started));

    hypercall::pause_domain(target).expect("ctl: FAILED: pausedomain");
    let before = info(target);
    ensure!(before.paused, "d{target} not reported paused");
    list("domains with the domU paused");
    let mine = info(me).cpu_time;
    while info(me).cpu_time < mine + PAUSED_FOR {
        hypercall::sched_yield();
    }
    let after = info(target);
    ensure!(
        after.cpu_time == before.cpu_time,
        "paused d{target} ran: cpu time {} -> {} ns",
        before.cpu_time,
        after.cpu_time
    );
    println!(
        "ctl: paused d{target}: cpu time stayed at {} ms for {} ms",
        ms(before.cpu_time),
        PAUSED_FOR / MS
    );

    hypercall::unpause_domain(target).expect("ctl: FAILED: unpausedomain");
    ensure!(!info(target).paused, "d{target} still reported paused");
    let ran = wait_for_target(target, after.cpu_time + RUNS_FOR);
    println!(
        "ctl: unpaused d{target}: cpu time advanced by {} ms",
        ms(ran - after.cpu_time)
    );

    hypercall::destroy_domain(target).expect("ctl: FAILED: destroydomain");
    let left = list("domains after destroying the domU");
    ensure!(
        left.iter().all(|d| d.domid != target),
        "d{target} still listed after destroydomain"
    );
    ensure!(
        hypercall::domain_info(target)
            .expect("ctl: FAILED: getdomaininfo")
            .is_none(),
        "getdomaininfo still finds d{target}"
    );
    println!("ctl: destroyed d{target}: gone from the list");
    println!("ctl: OK");
}

/// The checks ctl can make on itself.
fn alone(me: u16) {
    println!("ctl: alone: checking the calls on d{me} itself");
    let i = info(me);
    ensure!(
        i.running && !i.paused && !i.dying && i.shutdown_reason.is_none(),
        "own state {}",
        i.state()
    );
    println!("ctl: alone: d{me} is {}", i.state());
    let above = hypercall::getdomaininfo(me + 1);
    ensure!(
        above == Err(XenError(ESRCH)),
        "getdomaininfo above the last domain: {above:?}"
    );
    let reserved = hypercall::getdomaininfo(DOMID_SELF);
    ensure!(
        reserved == Err(XenError(EINVAL)),
        "getdomaininfo DOMID_SELF: {reserved:?}"
    );
    println!("ctl: alone: getdomaininfo above d{me}: -ESRCH, of DOMID_SELF: -EINVAL");
    for (what, r) in [
        ("pause", hypercall::pause_domain(me)),
        ("unpause", hypercall::unpause_domain(me)),
        ("destroy", hypercall::destroy_domain(me)),
    ] {
        ensure!(r == Err(XenError(EINVAL)), "{what} itself: {r:?}");
    }
    println!("ctl: alone: pause, unpause, destroy of itself: -EINVAL");
    println!("ctl: OK");
}

/// ctl's own domain id: the domain the hypervisor reports running (ctl, making the
/// call, is the one on the CPU).
fn own_id() -> u16 {
    let all = hypercall::list_domains().expect("ctl: FAILED: getdomaininfolist");
    let running: alloc::vec::Vec<_> = all.iter().filter(|d| d.running).collect();
    ensure!(
        running.len() == 1,
        "{} domains report running",
        running.len()
    );
    running[0].domid
}

fn info(id: u16) -> DomainInfo {
    match hypercall::domain_info(id) {
        Ok(Some(i)) => i,
        Ok(None) => panic!("ctl: FAILED: d{id} is gone"),
        Err(e) => panic!("ctl: FAILED: getdomaininfo d{id}: {e}"),
    }
}

/// Yields until the target's CPU time reaches `ns`; returns it.
fn wait_for_target(target: u16, ns: u64) -> u64 {
    for _ in 0..MAX_YIELDS {
        let t = info(target).cpu_time;
        if t >= ns {
            return t;
        }
        hypercall::sched_yield();
    }
    panic!(
        "ctl: FAILED: d{target} did not reach {} ms of cpu time",
        ms(ns)
    );
}

/// Prints the domain table (as `xl list` does) and returns it.
fn list(title: &str) -> alloc::vec::Vec<DomainInfo> {
    let all = hypercall::list_domains().expect("ctl: FAILED: getdomaininfolist");
    println!("ctl: {title}:");
    println!(
        "ctl:   {:>5}  {:<6}  {:>9}  {:>9}",
        "id", "state", "mem(KiB)", "cpu(ms)"
    );
    for d in &all {
        println!(
            "ctl:   {:>5}  {:<6}  {:>9}  {:>9}",
            d.domid,
            d.state(),
            d.mem_kib(),
            ms(d.cpu_time)
        );
    }
    all
}

fn ms(ns: u64) -> u64 {
    ns / MS
}

extern crate alloc;
libos::main!(main);
