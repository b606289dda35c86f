//! netfront (`io/netif.h`): [`ring`] is one vif's data path, [`handshake`] the xenbus
//! negotiation that connects it to its back end, [`device`] (feature `smoltcp`) the
//! `smoltcp::phy::Device` a TCP/IP stack uses.

#[cfg(feature = "smoltcp")]
pub mod device;
pub mod handshake;
pub mod ring;

pub use handshake::{close, close_queues, connect, connect_queues, Config, Error};
pub use ring::{Broken, Features, Netfront, RxPacket, Stats, TxError};
