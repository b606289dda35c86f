//! This domain's connection to xenstore: the `xenbus` crate's [`Client`] over the
//! store ring that `start_info` names (`store_mfn`, `store_evtchn`), woken by the
//! store's event channel.
//!
//! Tasks reach it with [`store`] and use the [`Store`] trait's operations:
//! `xenbus::store()?.read(NO_TX, "domid").await`. The ring's indices come from the
//! store, trusted no more than needed: a corrupt ring or a malformed message closes
//! the connection, and every request then fails with `EIO`.

use pv_core::page::SharedPage;
use pv_core::platform::Port;
use spin::Once;
use xenbus::transport::RingTransport;

pub use xenbus::{Client, Store, Tx, XsError, NO_TX};

use crate::events;
use crate::platform::{self, Xen};

/// The store ring of a libos guest (events masked while the client's waker table is
/// locked: the store's event handler wakes from upcall context).
pub type GuestRing = RingTransport<'static, Xen>;

/// A watch of this domain's store.
pub type Watch = xenbus::client::Watching<'static, GuestRing>;

static CLIENT: Once<Option<Client<GuestRing>>> = Once::new();

/// Whether this domain has a store ring (`start_info.store_evtchn` set).
pub fn available() -> bool {
    crate::start_info::get().raw().store_evtchn != 0
}

fn wake(_port: Port) {
    if let Some(Some(c)) = CLIENT.get() {
        c.wake_all();
        crate::control::poll();
    }
}

/// The store client; `ENOSYS` when this domain has no store ring.
pub fn store() -> Result<&'static Client<GuestRing>, XsError> {
    CLIENT
        .call_once(|| {
            let si = crate::start_info::get().raw();
            if si.store_evtchn == 0 {
                return None;
            }
            let va = crate::paging::pfn_to_virt(crate::paging::mfn_to_pfn(si.store_mfn));
            // SAFETY: the store page is a page of our own memory, mapped in the linear
            // region for the domain's lifetime, and shared only through atomics.
            let page: SharedPage<'static> = unsafe { platform::page_at(va) };
            static HANDLER: fn(Port) = wake;
            events::bind(si.store_evtchn, &HANDLER);
            Some(Client::new(RingTransport::new(page, Xen, si.store_evtchn)))
        })
        .as_ref()
        .ok_or(XsError::ENOSYS)
}
