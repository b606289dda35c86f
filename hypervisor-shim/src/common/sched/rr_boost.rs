//! Round robin with boost: every ready domain gets the CPU in turn for at most a fixed
//! slice, a domain that blocks or yields gives up the rest of its slice, and one that
//! spins is preempted by the timer interrupt when its slice ends. Equal slices in a
//! fixed order are fair between CPU-bound domains. A domain woken by an event or a
//! timer is boosted (Xen credit's BOOST): it takes the CPU at once, so a domain that
//! mostly waits answers quickly even beside one that never stops.

use xen_sys::domid_t;

use super::Policy;
use crate::domain::Domains;

/// The default slice.
pub const SLICE_NS: u64 = 10_000_000;

#[derive(Clone, Copy, Debug)]
pub struct RoundRobinBoost {
    pub slice_ns: u64,
}

impl Default for RoundRobinBoost {
    fn default() -> Self {
        RoundRobinBoost { slice_ns: SLICE_NS }
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
        let next = if boosted.is_some() {
            boosted
        } else if current_may_continue {
            Some(cur)
        } else {
            domains.next_after(cur, |d| d.ready())
        };
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
}
