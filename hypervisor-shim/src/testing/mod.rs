//! Host-test fixtures: this crate's own tests use them, and other crates' tests,
//! fuzzers and benches too, through the `test-utils` feature. None of the library's
//! code uses them (`layering_tests.rs` checks it).
//!
//! - [`machine`]: [`TestMachine`], machine memory as a vector of frames.
//! - [`world`]: one domain over it, hypercalls issued straight to the dispatcher.
//! - [`traps`]: that domain set up to take exceptions.
//! - [`hypervisor`]: several domains through the hypervisor's entry point.
//! - [`cpuid`]: a made-up host for CPUID policies.

pub mod cpuid;
pub mod hypervisor;
pub mod machine;
pub mod traps;
pub mod world;

pub use machine::TestMachine;
