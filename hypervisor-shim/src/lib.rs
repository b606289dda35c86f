//! The shim's logic, independent of the hardware so that it is tested on the host:
//! ELF loading, domain building, frame allocation, hypercall handling.
//! The arch layer (boot, descriptor tables, entry stubs) lives in `src/arch/` of the
//! binary and calls into this crate.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
// Xen's constants keep their C names (`SCHEDOP_yield`), also in match patterns.
#![allow(non_upper_case_globals)]

pub mod trap;

extern crate alloc;

pub mod boot_info;
pub mod bounce;
pub mod builder;
pub mod bundle;
pub mod cmdline;
pub mod cpuid;
pub mod domain;
pub mod domains;
#[cfg(test)]
mod domctl_tests;
pub mod elf;
pub mod emulate;
pub mod evtchn;
pub mod exception;
pub mod exit;
pub mod frames;
pub mod grant_table;
#[cfg(test)]
mod grant_tests;
pub mod hypercall;
pub mod hypervisor;
pub mod layout;
pub mod m2p;
pub mod machine;
#[cfg(test)]
mod many_domains_tests;
pub mod mm;
pub mod msr;
pub mod paging;
pub mod scheduler;
pub mod time;
pub mod vcpu;
