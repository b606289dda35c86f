//! Round robin with boost: every ready domain gets the CPU in turn for at most a fixed
//! slice, a domain that blocks or yields gives up the rest of its slice, and one that
//! spins is preempted by the timer interrupt when its slice ends. Equal slices in a
//! fixed order are fair between CPU-bound domains. A domain woken by an event or a
//! timer is boosted (Xen credit's BOOST): it takes the CPU at once, so a domain that
//! mostly waits answers quickly even beside one that never stops.
//!
//! Boosts are bounded: after [`MAX_BOOSTS`] boosted picks in a row, the next pick is
//! the ready domain that has waited longest for the CPU. Two domains that keep waking each other (a front end and its back
//! end) are boosted on every event; unbounded, they would keep a third ready domain off
//! the CPU for as long as they talk (Xen's credit scheduler bounds BOOST by credit).

use alloc::collections::BTreeMap;

use xen_sys::domid_t;

use super::Policy;
use crate::domain::Domains;

/// The default slice.
pub const SLICE_NS: u64 = 10_000_000;

/// Boosted picks in a row before a turn of the round robin.
pub const MAX_BOOSTS: u32 = 16;

#[derive(Clone, Debug)]
pub struct RoundRobinBoost {
    pub slice_ns: u64,
    /// Boosted picks since the last pick that was not one.
    boosts: u32,
    /// Picks so far, and the pick at which each domain last got the CPU.
    picks: u64,
    last_run: BTreeMap<domid_t, u64>,
}

impl Default for RoundRobinBoost {
    fn default() -> Self {
        RoundRobinBoost {
            slice_ns: SLICE_NS,
            boosts: 0,
            picks: 0,
            last_run: BTreeMap::new(),
        }
    }
}

impl Policy for RoundRobinBoost {
    fn pick(
        &mut self,
        domains: &mut Domains,
        cur: domid_t,
        current_may_continue: bool,
    ) -> Option<domid_t> {
        let boosted = domains.next_after(cur, |d| d.id != cur && d.ready() && d.sched.boosted);
        let starving = self.boosts >= MAX_BOOSTS;
        let next = if boosted.is_some() && !starving {
            self.boosts += 1;
            boosted
        } else if current_may_continue && !starving {
            Some(cur)
        } else if starving {
            // The ready domain that has waited longest (one that never ran first).
            self.boosts = 0;
            domains
                .iter()
                .filter(|d| d.ready())
                .min_by_key(|d| self.last_run.get(&d.id).copied().unwrap_or(0))
                .map(|d| d.id)
        } else {
            self.boosts = 0;
            domains.next_after(cur, |d| d.ready())
        };
        if let Some(n) = next {
            self.picks += 1;
            self.last_run.insert(n, self.picks);
        }
        if let Some(d) = next.and_then(|n| domains.get_mut(n)) {
            d.sched.boosted = false;
        }
        next
    }

    fn slice_ns(&self) -> u64 {
        self.slice_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Domain, Initial};
    use crate::trap::TrapFrame;
    use alloc::boxed::Box;
    use alloc::string::ToString;

    fn domains(n: u16) -> Domains {
        let mut ds = Domains::new();
        for id in 0..n {
            let init = Initial {
                l4: 1,
                shared_info: 2,
                regs: TrapFrame::default(),
                nr_pages: 1,
            };
            ds.insert(Box::new(Domain::new(id, "d".to_string(), id == 0, init)));
        }
        ds
    }

    #[test]
    fn turns_in_order_boost_first_and_none_when_nobody_is_ready() {
        let mut p = RoundRobinBoost::default();
        let mut ds = domains(3);
        assert_eq!(p.pick(&mut ds, 0, true), Some(0), "current keeps its slice");
        assert_eq!(p.pick(&mut ds, 0, false), Some(1), "then the next in turn");
        assert_eq!(p.pick(&mut ds, 2, false), Some(0), "wrapping around");
        ds[2].sched.boosted = true;
        assert_eq!(p.pick(&mut ds, 0, true), Some(2), "a woken domain first");
        assert!(!ds[2].sched.boosted, "once");
        assert_eq!(p.pick(&mut ds, 0, true), Some(0));
        ds[1].sched.blocked = true;
        assert_eq!(p.pick(&mut ds, 0, false), Some(2), "blocked: skipped");
        for id in 0..3 {
            ds[id].sched.pause_count = 1;
        }
        assert_eq!(p.pick(&mut ds, 0, false), None);
    }

    #[test]
    fn two_domains_waking_each_other_do_not_starve_a_third() {
        let mut p = RoundRobinBoost::default();
        let mut ds = domains(3);
        // 0 and 1 wake each other on every event; 2 is ready all along.
        let mut cur = 0;
        let mut ran2 = 0;
        for _ in 0..200 {
            let other = if cur == 0 { 1 } else { 0 };
            if cur != 2 {
                ds[other].sched.boosted = true;
            }
            cur = p.pick(&mut ds, cur, false).unwrap();
            ran2 += usize::from(cur == 2);
        }
        assert!(
            ran2 >= 200 / (MAX_BOOSTS as usize + 2),
            "domain 2 ran {ran2} times"
        );
    }
}
