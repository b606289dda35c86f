//! xenstored: the store of `/local/domain/...` nodes that domains use to find each
//! other and their devices, served to each domain over its store ring.
//!
//! Implements the protocol of `xen/include/public/io/xs_wire.h` (messages framed by
//! [`pv_core::xs_wire`]), `docs/misc/xenstore.txt` and `docs/misc/xenstore-paths.markdown`,
//! with the semantics of C xenstored in Xen 4.17 (`tools/xenstore/xenstored_core.c`,
//! `xenstored_domain.c`, `xenstored_watch.c`, `xenstored_transaction.c`): relative
//! paths, permissions, watches, transactions with conflict detection, per-domain quotas.
//!
//! [`Xenstored`] is a library: dom0's glue maps each domain's `xenstore_domain_interface`,
//! feeds request bytes to [`Xenstored::receive`] and copies [`Xenstored::take_output`]
//! into the response ring; dom0's own code talks to it as a client over [`Loopback`]
//! (or calls the node operations in-process).

mod connection;
mod loopback;
mod node;
mod ops;
mod path;
mod perms;
mod quota;
mod server;
mod transaction;
mod tree;
mod view;
mod watch;

pub use loopback::Loopback;
pub use perms::{Access, Perm};
pub use pv_core::xs_wire::XsError;
pub use quota::Limits;
pub use server::{DomainRequest, Fatal, Xenstored};
