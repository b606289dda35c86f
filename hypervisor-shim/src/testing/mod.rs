//! Host-test fixtures: this crate's own tests use them, and other crates' tests,
//! fuzzers and benches too, through the `test-utils` feature. None of the library's
//! code uses them (`layering_tests.rs` checks it).
//!
//! - [`machine`]: [`TestMachine`], machine memory as a vector of frames.
//! - [`world`]: one domain over it, hypercalls issued straight to the dispatcher.
//! - [`traps`]: that domain set up to take exceptions.
//! - [`hypervisor`]: several domains through the hypervisor's entry point.
//! - [`cpuid`]: a made-up host for CPUID policies.
//! - [`invariants`]: the isolation invariants, checked over a whole hypervisor.
//! - [`sequence`]: arbitrary sequences of guest actions with the invariants checked
//!   after each (the hypercall fuzzer's driver).

pub mod cpuid;
pub mod hypervisor;
pub mod invariants;
pub mod machine;
pub mod sequence;
pub mod traps;
pub mod world;

pub use machine::TestMachine;
