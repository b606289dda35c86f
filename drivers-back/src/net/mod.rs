//! dom0's side of the virtual network (`xen/include/public/io/netif.h`; Linux's
//! `drivers/net/xen-netback` and `net/bridge`), generic over the platform traits.
//!
//! - [`back`]: one connected vif: its mapped rings, packets copied out of and into the
//!   front end's grants, and the disconnection of a front end that breaks the protocol.
//! - [`handshake`]: the xenbus negotiation that offers a vif and connects it.
//! - [`nodes`]: the xenstore nodes a toolstack writes to create a vif.
//! - [`bridge`]: the L2 learning bridge between dom0's NIC and every vif, with
//!   netback's anti-spoofing and the offload fallbacks of `pv_core::offload`.

use alloc::vec::Vec;

use pv_core::netif::PacketMeta;

pub mod back;
pub mod bridge;
pub mod handshake;
pub mod nodes;

pub use back::{Counters, Disconnect, Features, NetBack, QueueRefs, MAX_QUEUES};

/// An Ethernet frame (no FCS) on its way through dom0, with what netif.h's flags say
/// about its checksum and segmentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    pub data: Vec<u8>,
    pub meta: PacketMeta,
}
