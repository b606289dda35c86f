//! blkback: the block back end in dom0 (`xen/include/public/io/blkif.h`; Linux's
//! `drivers/block/xen-blkback`), generic over the platform traits and over the
//! [`BlockDevice`] it serves from.
//!
//! - [`device`]: what a vbd is backed by (a real disk through dom0's driver, or memory
//!   in host tests).
//! - [`back`]: one connected vbd: its mapped ring, the requests it serves, and the
//!   disconnection of a front end that breaks the protocol.
//! - [`handshake`]: the xenbus negotiation that offers a vbd and connects it, and the
//!   disconnection of a front end that misbehaves.
//! - [`nodes`]: the xenstore nodes a toolstack writes to create a vbd.

pub mod back;
pub mod device;
pub mod handshake;
pub mod nodes;

pub use back::{BlkBack, Counters, Disconnect, MAX_QUEUES};
pub use device::{BlockDevice, IoError, IoOp, MemDisk};
