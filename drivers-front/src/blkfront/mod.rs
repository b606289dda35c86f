//! blkfront (`io/blkif.h`): [`ring`] is one vbd's data path, [`handshake`] the xenbus
//! negotiation that connects it to its back end, [`disk`] the async block device
//! tasks use.

pub mod disk;
pub mod handshake;
pub mod ring;

pub use disk::{Disk, IoError};
pub use handshake::{connect, connect_queues, Error};
pub use ring::{Blkfront, Broken, Offer, Op, Refused, Status, Ticket};
