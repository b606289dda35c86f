//! Xen public ABI bindings (placeholder until generated).
#![no_std]
