//! The store as drivers see it: a small async trait, so that a driver runs over a
//! guest's ring ([`Client`](crate::Client) over a
//! [`RingTransport`](crate::transport::RingTransport)), over dom0's own xenstored, or
//! over a host test's store alike.
//!
//! Paths are absolute (`/local/domain/1/device/vbd/51712/state`) or relative to the
//! caller's home (`device/vbd/51712/state`), as xenstored resolves them.

use alloc::string::String;
use alloc::vec::Vec;
use pv_core::xs_wire::XsError;

/// A transaction id; 0 is "no transaction".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tx(pub u32);

/// Outside any transaction.
pub const NO_TX: Tx = Tx(0);

/// A registered watch.
pub trait Watch {
    /// The next path that fired: the watched node or one below it, possibly merged
    /// with earlier firings of the same path (`Err(EIO)`: the connection closed). As
    /// in xenstore, the first event comes at once, for the watched path itself.
    async fn next(&mut self) -> Result<String, XsError>;
    /// Removes the watch from the store.
    async fn unwatch(self) -> Result<(), XsError>;
}

/// The xenstore operations (`io/xs_wire.h`) a driver uses.
pub trait Store {
    type Watch<'a>: Watch
    where
        Self: 'a;

    async fn read(&self, tx: Tx, path: &str) -> Result<Vec<u8>, XsError>;
    async fn write(&self, tx: Tx, path: &str, value: &[u8]) -> Result<(), XsError>;
    async fn mkdir(&self, tx: Tx, path: &str) -> Result<(), XsError>;
    async fn rm(&self, tx: Tx, path: &str) -> Result<(), XsError>;
    /// The names of the node's children.
    async fn directory(&self, tx: Tx, path: &str) -> Result<Vec<String>, XsError>;
    /// The node's permissions as the wire writes them (`"n0"`, `"r1"`, ...).
    async fn get_perms(&self, tx: Tx, path: &str) -> Result<Vec<String>, XsError>;
    /// Sets them: the first entry names the owner and everybody's access, the others
    /// one domain's each (`"n0"`: owner 0, nobody else; `"r1"`: domain 1 reads).
    async fn set_perms(&self, tx: Tx, path: &str, perms: &[&str]) -> Result<(), XsError>;
    /// A domain's home (`/local/domain/<domid>`).
    async fn get_domain_path(&self, domid: u16) -> Result<String, XsError>;
    async fn transaction_start(&self) -> Result<Tx, XsError>;
    /// Commits (`Err(EAGAIN)`: something it read or wrote changed meanwhile, nothing
    /// was written; start again) or throws the transaction away.
    async fn transaction_end(&self, tx: Tx, commit: bool) -> Result<(), XsError>;
    /// Watches `path` and everything below it.
    async fn watch(&self, path: &str) -> Result<Self::Watch<'_>, XsError>;

    /// [`Store::read`] as text (`EINVAL` if it is not UTF-8).
    async fn read_string(&self, tx: Tx, path: &str) -> Result<String, XsError> {
        String::from_utf8(self.read(tx, path).await?).map_err(|_| XsError::EINVAL)
    }

    /// [`Store::write`] of text.
    async fn write_str(&self, tx: Tx, path: &str, value: &str) -> Result<(), XsError> {
        self.write(tx, path, value.as_bytes()).await
    }
}
