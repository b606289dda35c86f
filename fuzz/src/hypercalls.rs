//! Hypercall sequences: three domains (dom0 and two domUs) over the shim's test
//! machine make arbitrary hypercalls with arbitrary arguments and guest memory
//! contents, take faults, ticks and destruction, and the shim's isolation invariants
//! are checked after every step and at the end (every frame freed).
//!
//! The input format and the invariants are the shim's own
//! (`hypervisor_shim::testing::sequence` and `testing::invariants`), so that its host
//! tests run the same driver.

/// Runs the sequence `data` describes; panics on a broken invariant or a shim panic.
pub fn check(data: &[u8]) {
    hypervisor_shim::testing::sequence::run(data);
}
