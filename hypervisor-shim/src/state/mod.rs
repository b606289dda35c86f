//! Per-domain state: plain data with its own invariants, none of it knowing
//! [`Domain`](crate::domain::Domain) (Xen's `struct vcpu`, `struct evtchn`,
//! `struct grant_table`, a unit's scheduling state).

pub mod evtchn;
pub mod grant_table;
pub mod sched;
pub mod vcpu;
