//! Back-end split drivers and services that run in dom0 (netback, blkback, the console
//! back-end, xenstored), generic over the platform traits of `pv_core::platform`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blk;
pub mod console;
pub mod net;
pub mod xenstore;
