//! `top=SECONDS` on dom0's command line: every SECONDS, one line with each domain's
//! share of the CPU over the interval (getdomaininfo's `cpu_time`, as xentop's
//! `CPU(%)`) and the idle rest, so a person or `cargo xtask bench` can see where a
//! workload's time goes. Time spent in the shim on a domain's behalf (its hypercalls,
//! its traps) counts as that domain's, as in Xen.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt::Write;
use core::time::Duration;

use libos::println;
use libos::time::Instant;

pub struct Top {
    every: Duration,
    next: Instant,
    /// The previous line's time and each domain's `cpu_time` then.
    last: (Instant, BTreeMap<u16, u64>),
}

impl Top {
    /// From dom0's command line; binds the timer it needs.
    pub fn from_cmdline(cmdline: &str) -> Option<Top> {
        let secs: u64 = cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("top="))?
            .parse()
            .ok()
            .filter(|&s| s > 0)?;
        if let Err(e) = libos::timer::init() {
            println!("dom0: top: no timer ({e}): off");
            return None;
        }
        let now = Instant::now();
        let every = Duration::from_secs(secs);
        Some(Top {
            every,
            next: now.checked_add(every)?,
            last: (now, times()),
        })
    }

    /// Prints the line if it is due; returns when the next one is (for dom0's timer).
    pub fn poll(&mut self) -> Instant {
        let now = Instant::now();
        if now >= self.next {
            let times = times();
            let wall = now.saturating_duration_since(self.last.0).as_nanos().max(1) as u64;
            println!("dom0: top: {}", line(wall, &self.last.1, &times));
            self.last = (now, times);
            self.next = now.checked_add(self.every).unwrap_or(now);
        }
        self.next
    }
}

/// Each domain's `cpu_time`.
fn times() -> BTreeMap<u16, u64> {
    libos::hypercall::list_domains()
        .unwrap_or_default()
        .iter()
        .map(|d| (d.domid, d.cpu_time))
        .collect()
}

/// `d0 12.5% d1 80.0% idle 7.5% (over 5000 ms)`: shares of `wall` nanoseconds.
fn line(wall: u64, before: &BTreeMap<u16, u64>, now: &BTreeMap<u16, u64>) -> String {
    let mut s = String::new();
    let mut busy = 0u64;
    for (&d, &t) in now {
        let ran = t.saturating_sub(before.get(&d).copied().unwrap_or(0));
        busy += ran;
        let _ = write!(s, "d{d} {:.1}% ", ran as f64 * 100.0 / wall as f64);
    }
    let idle = wall.saturating_sub(busy);
    let _ = write!(
        s,
        "idle {:.1}% (over {} ms)",
        idle as f64 * 100.0 / wall as f64,
        wall / 1_000_000
    );
    s
}
