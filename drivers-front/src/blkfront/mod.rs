//! blkfront (`io/blkif.h`): [`ring`] is one vbd's data path, [`handshake`] the xenbus
//! negotiation that connects it to its back end.

pub mod handshake;
pub mod ring;

pub use handshake::{connect, Error};
pub use ring::{Blkfront, Broken, Offer, Op, Refused, Status, Ticket};
