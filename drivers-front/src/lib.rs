//! Front-end split drivers (netfront, blkfront, consfront), generic over small platform
//! traits (`pv_core::platform`) so that any PV guest can use them, not only libos guests.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blkfront;
pub mod consfront;
pub mod netfront;
