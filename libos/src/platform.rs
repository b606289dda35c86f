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
    Copy, DomId, EventChannel, ForeignMemory, GrantCopy, GrantRef, GrantTable, LocalPage,
    PlatformError, Port, SharePage,
};
use xen_sys::{
    gnttab_copy, gnttab_copy_gnttab_copy_ptr, gnttab_copy_gnttab_copy_ptr__bindgen_ty_1,
    GNTCOPY_dest_gref, GNTCOPY_source_gref, GNTST_okay, DOMID_SELF,
};

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

impl LocalPage for OwnedPage {
    fn with_bytes<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: our own heap page, alive as long as `self`, borrowed mutably here and
        // so by nothing else of ours; the trait's contract is that no grant of it is
        // live, so no other domain writes it meanwhile.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(self.0.as_ptr() as *mut u8, PAGE_SIZE as usize)
        };
        f(bytes)
    }
}

/// Machine frame and offset of one of our bytes (the linear region by the P2M, other
/// mappings by walking the page tables).
fn local_maddr(va: u64) -> Option<u64> {
    let base = paging::virt_base();
    if va >= base && (va - base) / PAGE_SIZE < crate::start_info::get().nr_pages() {
        Some(paging::virt_to_mfn(va) * PAGE_SIZE + va % PAGE_SIZE)
    } else {
        crate::device::virt_to_maddr(va)
    }
}

/// Copies per hypercall.
const COPY_BATCH: usize = 32;

impl GrantCopy for Xen {
    /// One `gnttab_copy` per part of our buffer in one of our pages, up to
    /// [`COPY_BATCH`] a hypercall.
    fn copy(&self, ops: &mut [Copy<'_>], status: &mut [Result<(), PlatformError>]) {
        assert!(status.len() >= ops.len());
        let mut batch: [gnttab_copy; COPY_BATCH] = [gnttab_copy::default(); COPY_BATCH];
        let mut owner = [0usize; COPY_BATCH];
        let mut n = 0;
        let flush = |batch: &mut [gnttab_copy], owner: &[usize], status: &mut [_]| {
            let r = hypercall::copy(batch);
            for (op, &i) in batch.iter().zip(owner) {
                let s: &mut Result<(), PlatformError> = &mut status[i];
                if s.is_ok() {
                    *s = match r {
                        Err(e) => Err(xen_err(e)),
                        Ok(()) if op.status as i32 == GNTST_okay as i32 => Ok(()),
                        Ok(()) => Err(grant_err(GrantError::Status(hypercall::GrantStatus(
                            op.status,
                        )))),
                    };
                }
            }
        };
        for (i, op) in ops.iter_mut().enumerate() {
            status[i] = Ok(());
            if !op.in_page() {
                status[i] = Err(PlatformError::Invalid);
                continue;
            }
            let (local, dom, gref, offset, from_grant) = match op {
                Copy::FromGrant {
                    dom,
                    gref,
                    offset,
                    to,
                } => (to.as_ptr() as u64, *dom, *gref, *offset, true),
                Copy::ToGrant {
                    from,
                    dom,
                    gref,
                    offset,
                } => (from.as_ptr() as u64, *dom, *gref, *offset, false),
            };
            let len = op.len() as u64;
            let mut done = 0;
            while done < len {
                let va = local + done;
                let chunk = (PAGE_SIZE - va % PAGE_SIZE).min(len - done);
                let Some(maddr) = local_maddr(va) else {
                    status[i] = Err(PlatformError::Invalid);
                    break;
                };
                let mine = gnttab_copy_gnttab_copy_ptr {
                    u: gnttab_copy_gnttab_copy_ptr__bindgen_ty_1 {
                        gmfn: maddr / PAGE_SIZE,
                    },
                    domid: DOMID_SELF,
                    offset: (maddr % PAGE_SIZE) as u16,
                };
                let theirs = gnttab_copy_gnttab_copy_ptr {
                    u: gnttab_copy_gnttab_copy_ptr__bindgen_ty_1 { ref_: gref },
                    domid: dom,
                    offset: offset + done as u16,
                };
                batch[n] = if from_grant {
                    gnttab_copy {
                        source: theirs,
                        dest: mine,
                        len: chunk as u16,
                        flags: GNTCOPY_source_gref as u16,
                        status: 0,
                    }
                } else {
                    gnttab_copy {
                        source: mine,
                        dest: theirs,
                        len: chunk as u16,
                        flags: GNTCOPY_dest_gref as u16,
                        status: 0,
                    }
                };
                owner[n] = i;
                n += 1;
                if n == COPY_BATCH {
                    flush(&mut batch[..n], &owner[..n], status);
                    n = 0;
                }
                done += chunk;
            }
        }
        if n > 0 {
            flush(&mut batch[..n], &owner[..n], status);
        }
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
