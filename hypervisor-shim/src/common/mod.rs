//! Mechanisms across domains (Xen's `xen/common/`): event delivery and closing, grant
//! map/unmap/copy and release, domain lifecycle, scheduling policy, context switch.

pub mod domain;
pub mod event_channel;
pub mod grant_table;
pub mod sched;
pub mod schedule;
