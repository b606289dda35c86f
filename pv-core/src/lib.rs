//! The shared core of the split drivers: what front ends (drivers-front, and the
//! libOS) and back ends (drivers-back, xenstored) both need, and nothing that depends
//! on libos.
//!
//! - [`abi`]: the bindgen structs of `xen_sys` as typed values (decode/encode in the
//!   ABI's layout), for the shim's hypercalls and the drivers' rings.
//! - [`page`]: a 4 KiB page shared with a possibly hostile peer, accessed only atomically.
//! - [`blkif`]: block requests as a back end receives them, decoded and checked.
//! - [`netif`]: network packets on the rings of `io/netif.h`, and the back end's checks
//!   of what a front end transmits.
//! - [`byte_ring`]: the two-index byte rings of `io/console.h` and `io/xs_wire.h`.
//! - [`ring`]: the request/response rings of `io/ring.h` (one or several pages), with
//!   its notification rules and checks of the peer's indices.
//! - [`xs_wire`]: xenstore messages (`io/xs_wire.h`): header view, framing, error names.
//! - `offload` (feature `net`): the checksum and segmentation offloads of `io/netif.h`
//!   and their software fallbacks, over smoltcp's wire formats.
//! - [`microvm`]: where QEMU's microvm machine puts its virtio-mmio devices and lines.
//! - [`platform`]: the small traits (event channels, grants, foreign mappings) that drivers
//!   take; libos implements them for a real PV guest.
//! - `mem_platform` (feature `std`; always in this crate's own tests): an in-memory
//!   implementation for host tests, with front and back ends running in two threads.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod abi;
pub mod blkif;
pub mod byte_ring;
#[cfg(any(feature = "std", test))]
pub mod mem_platform;
pub mod microvm;
pub mod netif;
#[cfg(feature = "net")]
pub mod offload;
pub mod p2m_lists;
pub mod page;
pub mod platform;
pub mod pvclock;
pub mod ring;
pub mod xs_wire;
