//! The xenbus layer of PV drivers (Linux's `drivers/xen/xenbus/`): what a front or a
//! back end needs from xenstore, usable outside libos.
//!
//! - [`client`]: an async xenstore client (`io/xs_wire.h`) over any byte
//!   [`Transport`](transport::Transport): many tasks share one connection, replies find
//!   their request by id, watch events their watch by token (Linux's `xenbus_xs.c`).
//! - [`transport`]: the transports: a domain's store ring (`start_info.store_mfn`), or
//!   anything that carries xenstore messages (dom0 talks to its own xenstored in
//!   process).
//! - [`store`]: the small async [`Store`](store::Store) trait drivers are generic over
//!   (read, write, watch, transactions).
//! - [`state`]: the device protocol's state machine (`io/xenbus.h`), for both ends.
//! - [`device`]: where devices live in the store (`device/<type>/<id>`,
//!   `backend/<type>/<front-domid>/<id>`) and the node helpers both ends use to find
//!   each other, publish state and negotiate features (Linux's `xenbus_probe.c`).
//! - [`vdev`]: virtual block device names (`xvda`, `sda1`, `d0p1`) and the device
//!   numbers they stand for in the store (`docs/misc/vbd-interface.pandoc`).
#![no_std]
#![forbid(unsafe_code)]
// The Store trait's futures are not `Send`: our executors run one task at a time.
#![allow(async_fn_in_trait)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod client;
pub mod device;
pub mod state;
pub mod store;
pub mod transport;
pub mod vdev;

pub use client::Client;
pub use pv_core::xs_wire::XsError;
pub use state::State;
pub use store::{Store, Tx, Watch, NO_TX};
