//! dom0's own connection to the xenstored it runs: the `xenbus` crate's client over a
//! transport that hands request bytes straight to [`Xenstored::receive`] and takes
//! replies and watch events from [`Xenstored::take_output`], so that dom0's back ends
//! and toolstack use the same client, the same [`xenbus::Store`] trait and the same
//! wire semantics (permissions, transactions, watches) as any domU.
//!
//! dom0 is single-threaded: the store sits in a [`RefCell`], borrowed only inside
//! these calls. A request completes within the poll that sent it; a watch event that
//! another domain's request caused waits in xenstored's output for dom0 until the
//! client next pumps (dom0's loop calls [`xenbus::Client::wake_all`] when
//! [`Xenstored::pending_output`] for dom0 is non-zero).

use core::cell::RefCell;

use xenbus::transport::{Broken, Transport};

use super::Xenstored;

/// dom0's in-process transport.
pub struct Loopback<'a> {
    xs: &'a RefCell<Xenstored>,
}

impl<'a> Loopback<'a> {
    /// Connects dom0 to `xs`.
    pub fn new(xs: &'a RefCell<Xenstored>) -> Self {
        // dom0 is always a valid id: introducing it cannot fail.
        let _ = xs.borrow_mut().introduce(0);
        Loopback { xs }
    }

    pub fn store(&self) -> &'a RefCell<Xenstored> {
        self.xs
    }
}

impl Transport for Loopback<'_> {
    fn send(&self, bytes: &[u8]) -> Result<usize, Broken> {
        let mut xs = self
            .xs
            .try_borrow_mut()
            .map_err(|_| Broken("store in use"))?;
        xs.receive(0, bytes)
            .map(|()| bytes.len())
            .map_err(|_| Broken("xenstored refused dom0's request"))
    }
    fn receive(&self, buf: &mut [u8]) -> Result<usize, Broken> {
        let mut xs = self
            .xs
            .try_borrow_mut()
            .map_err(|_| Broken("store in use"))?;
        let out = xs.take_output(0, buf.len());
        buf[..out.len()].copy_from_slice(&out);
        Ok(out.len())
    }
    fn notify(&self) {}
}
