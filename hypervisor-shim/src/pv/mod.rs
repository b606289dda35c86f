//! x86 PV (Xen's `xen/arch/x86/pv/`): bounce frames and exception injection, the
//! return-to-guest checks, privileged-instruction emulation, MSR and CPUID policy, and
//! the domain builder.

pub mod bounce;
pub mod build;
pub mod cpuid;
pub mod emulate;
pub mod grant_table;
pub mod msr;
pub mod traps;
