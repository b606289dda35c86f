//! Shared core of the split drivers: wire formats, rings, platform traits.
//!
//! Used by both sides of every split driver: the front-ends in `drivers-front` (and the
//! libOS) and the back-ends and xenstored in `drivers-back`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod xs_wire;
