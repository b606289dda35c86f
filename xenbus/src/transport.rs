//! What carries xenstore messages between a client and xenstored.
//!
//! A guest's transport is its store ring (`xenstore_domain_interface` in
//! `io/xs_wire.h`: two byte rings in the page `start_info.store_mfn` names, signalled
//! over `start_info.store_evtchn`): [`RingTransport`]. dom0, which runs xenstored in
//! its own address space, passes bytes to it directly (drivers-back's
//! `xenstore::Loopback`). The client neither knows nor cares which.

use pv_core::byte_ring::{ByteRing, Corrupt};
use pv_core::page::SharedPage;
use pv_core::platform::{EventChannel, Port};

/// The transport is unusable (the peer corrupted the ring, or the server went away):
/// the connection is closed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken(pub &'static str);

impl From<Corrupt> for Broken {
    fn from(_: Corrupt) -> Broken {
        Broken("ring indices are corrupt")
    }
}

/// Moves bytes both ways between a client and xenstored.
pub trait Transport {
    /// Sends as many of `bytes` as fit now (0 when none do).
    fn send(&self, bytes: &[u8]) -> Result<usize, Broken>;
    /// Receives up to `buf.len()` bytes that are there now (0 when none are).
    fn receive(&self, buf: &mut [u8]) -> Result<usize, Broken>;
    /// Tells the peer that bytes moved.
    fn notify(&self);
    /// Runs `f` where the event that wakes the client's tasks cannot interrupt it (a
    /// guest masks its event upcall): the client's waker table and connection are locked only inside,
    /// so a wake-up from an event handler never waits for a lock its own CPU holds.
    fn masked<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// A domain's store ring: requests out through `req`, replies and watch events in
/// through `rsp`, the peer signalled over `port`.
pub struct RingTransport<'a, E> {
    page: SharedPage<'a>,
    evtchn: E,
    port: Port,
}

impl<'a, E: EventChannel> RingTransport<'a, E> {
    pub fn new(page: SharedPage<'a>, evtchn: E, port: Port) -> Self {
        RingTransport { page, evtchn, port }
    }

    /// The event channel the store signals us on.
    pub fn port(&self) -> Port {
        self.port
    }
}

impl<E: EventChannel> Transport for RingTransport<'_, E> {
    fn send(&self, bytes: &[u8]) -> Result<usize, Broken> {
        Ok(ByteRing::STORE_REQ.write(&self.page, bytes)?)
    }
    fn receive(&self, buf: &mut [u8]) -> Result<usize, Broken> {
        Ok(ByteRing::STORE_RSP.read(&self.page, buf)?)
    }
    fn notify(&self) {
        self.evtchn.notify(self.port)
    }
    /// The store's event handler wakes from upcall context: mask it as the platform
    /// does.
    fn masked<R>(&self, f: impl FnOnce() -> R) -> R {
        self.evtchn.masked(f)
    }
}
