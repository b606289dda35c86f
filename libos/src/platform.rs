//! The platform traits of `pv_core::platform` for a PV guest (Xen or hypervisor-shim),
//! so that the front-end drivers of `drivers-front` (and the back-ends of dom0) run
//! on libos: event channels through `event_channel_op`, pages granted through our own
//! grant table ([`crate::grant`]), other domains' grants mapped into the window of
//! [`crate::vmap`].

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::AtomicU32;

use pv_core::page::{SharedPage, PAGE_WORDS};
use pv_core::platform::{
    DomId, EventChannel, ForeignMemory, GrantRef, GrantTable, PlatformError, Port, SharePage,
};
use xen_sys::DOMID_SELF;

use crate::events;
use crate::grant;
use crate::hypercall::{self, GrantError, XenError};
use crate::paging::{self, PAGE_SIZE};
use crate::vmap;

/// The guest's platform: a unit value, every operation a hypercall.
#[derive(Clone, Copy, Debug, Default)]
pub struct Xen;

/// The page mapped at `va` as a [`SharedPage`].
///
/// # Safety
/// `va` must be page-aligned and mapped (writable if anything will write) for `'a`.
pub unsafe fn page_at<'a>(va: u64) -> SharedPage<'a> {
    // SAFETY: per the contract, a mapped, aligned 4 KiB page for 'a; `SharedPage` only
    // accesses it atomically.
    SharedPage::new(unsafe { &*(va as *const [AtomicU32; PAGE_WORDS]) })
}

fn xen_err(e: XenError) -> PlatformError {
    match e.0 as u32 {
        xen_sys::XEN_ENOSPC | xen_sys::XEN_ENOMEM => PlatformError::NoSpace,
        xen_sys::XEN_EPERM | xen_sys::XEN_EACCES => PlatformError::Denied,
        xen_sys::XEN_EINVAL | xen_sys::XEN_ESRCH => PlatformError::Invalid,
        xen_sys::XEN_EBUSY => PlatformError::Busy,
        _ => PlatformError::Failed(-e.0),
    }
}

fn grant_err(e: GrantError) -> PlatformError {
    match e {
        GrantError::Hypercall(e) => xen_err(e),
        GrantError::Status(s) => match i32::from(s.0) {
            xen_sys::GNTST_permission_denied => PlatformError::Denied,
            xen_sys::GNTST_no_space | xen_sys::GNTST_no_device_space => PlatformError::NoSpace,
            xen_sys::GNTST_bad_domain | xen_sys::GNTST_bad_gntref | xen_sys::GNTST_bad_handle => {
                PlatformError::Invalid
            }
            _ => PlatformError::Failed(i64::from(s.0)),
        },
    }
}

impl EventChannel for Xen {
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, PlatformError> {
        hypercall::evtchn_alloc_unbound(DOMID_SELF, remote).map_err(xen_err)
    }
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, PlatformError> {
        hypercall::evtchn_bind_interdomain(remote, remote_port).map_err(xen_err)
    }
    fn notify(&self, port: Port) {
        let _ = hypercall::evtchn_send(port);
    }
    fn close(&self, port: Port) {
        let _ = hypercall::evtchn_close(port);
    }
    /// Polls the port (`SCHEDOP_poll`): works with event delivery masked too, as in a
    /// panic or inside an upcall.
    fn wait(&self, port: Port) {
        loop {
            if events::take_latched(port) {
                return;
            }
            if events::is_pending(port) {
                events::clear_pending(port);
                return;
            }
            let _ = hypercall::sched_poll(&[port], 0);
        }
    }
    fn masked<R>(&self, f: impl FnOnce() -> R) -> R {
        events::masked(f)
    }
}

/// A zeroed page of our heap that we can grant.
pub struct OwnedPage(NonNull<[AtomicU32; PAGE_WORDS]>);

const PAGE_LAYOUT: Layout = match Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize) {
    Ok(l) => l,
    Err(_) => panic!("a page is a valid layout"),
};

impl OwnedPage {
    pub fn new() -> Result<OwnedPage, PlatformError> {
        // SAFETY: a non-zero-sized layout.
        let p = unsafe { alloc_zeroed(PAGE_LAYOUT) };
        NonNull::new(p as *mut [AtomicU32; PAGE_WORDS])
            .map(OwnedPage)
            .ok_or(PlatformError::NoSpace)
    }
    /// Its machine frame (the heap lies in the linear region).
    pub fn mfn(&self) -> u64 {
        paging::virt_to_mfn(self.0.as_ptr() as u64)
    }
}

// SAFETY: the page is this value's alone (allocated in `new`, freed in `drop`) and only
// ever accessed through atomics, so moving its owner to another context is sound: a
// driver's state may be shared with the event handler that wakes it.
unsafe impl Send for OwnedPage {}

impl Drop for OwnedPage {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.0.as_ptr() as *mut u8, PAGE_LAYOUT) }
    }
}

impl SharePage for OwnedPage {
    fn page(&self) -> SharedPage<'_> {
        // SAFETY: our own page, alive as long as `self`.
        SharedPage::new(unsafe { self.0.as_ref() })
    }
}

impl GrantTable for Xen {
    type Page = OwnedPage;
    fn alloc_page(&self) -> Result<OwnedPage, PlatformError> {
        OwnedPage::new()
    }
    fn grant(
        &self,
        to: DomId,
        page: &OwnedPage,
        readonly: bool,
    ) -> Result<GrantRef, PlatformError> {
        grant::grant(to, page.mfn(), readonly).map_err(|e| match e {
            grant::Error::Full => PlatformError::NoSpace,
            _ => PlatformError::Failed(0),
        })
    }
    fn end_grant(&self, gref: GrantRef) -> Result<(), PlatformError> {
        grant::end_grant(gref).map_err(|e| match e {
            grant::Error::InUse => PlatformError::Busy,
            _ => PlatformError::Invalid,
        })
    }
}

/// Another domain's page, mapped through a grant into the window.
pub struct MappedGrant {
    va: u64,
    handle: u32,
}

impl MappedGrant {
    pub fn va(&self) -> u64 {
        self.va
    }
}

impl SharePage for MappedGrant {
    fn page(&self) -> SharedPage<'_> {
        // SAFETY: mapped at `va` until `unmap` consumes `self`.
        unsafe { page_at(self.va) }
    }
}

impl ForeignMemory for Xen {
    type Mapping = MappedGrant;
    fn map(
        &self,
        from: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<MappedGrant, PlatformError> {
        let va = vmap::alloc().map_err(xen_err)?;
        match hypercall::map_grant_ref(va, from, gref, readonly) {
            Ok(m) => Ok(MappedGrant {
                va,
                handle: m.handle,
            }),
            Err(e) => {
                vmap::free(va);
                Err(grant_err(e))
            }
        }
    }
    fn unmap(&self, m: MappedGrant) -> Result<(), PlatformError> {
        hypercall::unmap_grant_ref(m.va, m.handle).map_err(grant_err)?;
        vmap::free(m.va);
        Ok(())
    }
}
