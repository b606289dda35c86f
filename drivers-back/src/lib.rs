//! Back-end split drivers and services that run in dom0 (netback, blkback, the console
//! back-end, xenstored).
//!
//! Nothing here yet: the back-ends arrive with the dom0 issues.
#![no_std]
#![forbid(unsafe_code)]
