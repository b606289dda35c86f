//! The shim's logic, independent of the hardware so that it is tested on the host:
//! ELF loading, domain building, frame allocation, hypercall handling.
//! The arch layer (boot, descriptor tables, entry stubs) lives in `src/arch/` of the
//! binary and calls into this crate.
//!
//! Layers, bottom up, as Xen's tree has them; a module imports only from its own layer
//! or below (`layering_tests.rs` checks it):
//!
//! 1. machine and types: [`machine`], [`abi`], [`paging`], [`trap`], [`time`], [`frames`],
//!    [`cmdline`], [`devices`], [`boot_info`], [`exit`], [`version`].
//! 2. [`mm`]: frame table, page types, descriptor checks, M2P (Xen's `arch/x86/mm.c`).
//! 3. [`state`]: per-domain state as plain data (vCPU, event-channel table, grant
//!    table, a vCPU's scheduling state), knowing nothing of `Domain`.
//! 4. [`domain`]: `Domain`, `Domains` and the lookups every hypercall uses.
//! 5. [`common`]: mechanisms across domains (Xen's `common/`): event delivery, grant
//!    map/copy/release, domain lifecycle, scheduling policy, context switch.
//! 6. [`pv`]: x86 PV (Xen's `arch/x86/pv/`): bounce frames and traps, emulation,
//!    MSR/CPUID policy, PV grant mappings, the domain builder.
//! 7. [`hypercall`]: decode, check, call below, encode; the dispatch table.
//! 8. [`hypervisor`]: the entry point the arch layer calls.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
// Xen's constants keep their C names (`SCHEDOP_yield`), also in match patterns.
#![allow(non_upper_case_globals)]

extern crate alloc;

// 1. Machine and types.
pub mod abi;
pub mod boot_info;
pub mod cmdline;
pub mod devices;
pub mod exit;
pub mod frames;
pub mod machine;
pub mod paging;
pub mod time;
pub mod trap;
pub mod version;
// 2.
pub mod mm;
// 3.
pub mod state;
// 4.
pub mod domain;
// 5.
pub mod common;
// 6.
pub mod pv;
// 7.
pub mod hypercall;
// 8.
pub mod hypervisor;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

#[cfg(test)]
mod layering_tests;
