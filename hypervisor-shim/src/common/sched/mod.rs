//! Scheduling policy behind a small trait (Xen's `struct scheduler` of
//! xen/common/sched/private.h, with `credit.c`, `null.c`, ... as its policies). The
//! mechanism (timers, runstate, context switch, idling) is the hypervisor's; a policy
//! only says which domain runs next.

pub mod rr_boost;

use xen_sys::domid_t;

use crate::domain::Domains;

pub use rr_boost::RoundRobinBoost;

/// A scheduling policy.
pub trait Policy {
    /// The domain to run now, among the ready ones ([`Domain::ready`](crate::domain::Domain::ready)),
    /// or `None` if none is. `current` ran last; `current_may_continue`: it is ready,
    /// did not yield and its slice is not over.
    fn pick(
        &mut self,
        domains: &mut Domains,
        current: domid_t,
        current_may_continue: bool,
    ) -> Option<domid_t>;

    /// The longest a domain runs while another one is ready (ns).
    fn slice_ns(&self) -> u64;
}
