//! The platform traits split drivers are generic over: event channels
//! (`xen/include/public/event_channel.h`), grant tables and foreign mappings
//! (`xen/include/public/grant_table.h`). Kept small so that any PV guest can implement
//! them: libos does for a real guest, [`crate::mem_platform`] does for host tests.
//!
//! Front ends own pages and grant them ([`GrantTable`]); back ends map what was granted
//! to them ([`ForeignMemory`]); both signal each other over event channels
//! ([`EventChannel`]).

use crate::page::SharedPage;

/// A domain id (`domid_t`).
pub type DomId = u16;
/// An event channel port (`evtchn_port_t`).
pub type Port = u32;
/// A grant reference (`grant_ref_t`).
pub type GrantRef = u32;

/// Why a platform operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformError {
    /// Out of ports, grant entries or memory.
    NoSpace,
    /// The resource is in use (a grant still mapped by the peer).
    Busy,
    /// Not allowed (a grant naming another domain, a read-only grant mapped writable).
    Denied,
    /// No such port, grant or domain, or a port in the wrong state.
    Invalid,
    /// Any other failure, with the hypervisor's error code.
    Failed(i64),
}

/// Event channels of this domain.
pub trait EventChannel {
    /// A new port that `remote` may bind to (`EVTCHNOP_alloc_unbound`).
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, PlatformError>;
    /// Connects a new local port to `remote`'s unbound `remote_port`
    /// (`EVTCHNOP_bind_interdomain`).
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, PlatformError>;
    /// Signals the peer of `port` (`EVTCHNOP_send`).
    fn notify(&self, port: Port);
    /// Closes `port` (`EVTCHNOP_close`).
    fn close(&self, port: Port);
    /// Blocks until an event arrives on `port` (or returns at once if one arrived since
    /// the last wait).
    fn wait(&self, port: Port);
    /// Runs `f` where this domain's event handlers cannot interrupt it (a guest masks
    /// its upcall): a driver locks what its event handler also locks only inside.
    fn masked<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// A page this domain owns and can share (front ends).
pub trait SharePage {
    /// The page's contents.
    fn page(&self) -> SharedPage<'_>;
}

/// Grant table of this domain: front ends grant their pages.
pub trait GrantTable {
    /// A page this domain owns.
    type Page: SharePage;
    /// A fresh zeroed page.
    fn alloc_page(&self) -> Result<Self::Page, PlatformError>;
    /// Grants `to` access to `page`.
    fn grant(
        &self,
        to: DomId,
        page: &Self::Page,
        readonly: bool,
    ) -> Result<GrantRef, PlatformError>;
    /// Revokes; Err(Busy) while the peer still has it mapped (the page must then not be
    /// reused).
    fn end_grant(&self, gref: GrantRef) -> Result<(), PlatformError>;
}

/// Foreign mappings: back ends map what front ends granted them.
pub trait ForeignMemory {
    /// A mapped foreign page; unmapped by [`ForeignMemory::unmap`].
    type Mapping: SharePage;
    /// Maps grant `gref` of domain `from` (`GNTTABOP_map_grant_ref`).
    fn map(
        &self,
        from: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<Self::Mapping, PlatformError>;
    /// Unmaps (`GNTTABOP_unmap_grant_ref`).
    fn unmap(&self, m: Self::Mapping) -> Result<(), PlatformError>;
}

/// A shared reference to an event channel implementation is one too, so a driver can
/// take `&Platform` and the caller keeps the platform.
impl<T: EventChannel + ?Sized> EventChannel for &T {
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, PlatformError> {
        (**self).alloc_unbound(remote)
    }
    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, PlatformError> {
        (**self).bind_interdomain(remote, remote_port)
    }
    fn notify(&self, port: Port) {
        (**self).notify(port)
    }
    fn close(&self, port: Port) {
        (**self).close(port)
    }
    fn wait(&self, port: Port) {
        (**self).wait(port)
    }
    fn masked<R>(&self, f: impl FnOnce() -> R) -> R {
        (**self).masked(f)
    }
}

/// A page view is itself shareable: the primary console's page, which the guest got
/// from `start_info`, is passed as a plain [`SharedPage`].
impl SharePage for SharedPage<'_> {
    fn page(&self) -> SharedPage<'_> {
        *self
    }
}

/// As for event channels: a driver can take `&Platform` for its grants too.
impl<T: GrantTable + ?Sized> GrantTable for &T {
    type Page = T::Page;
    fn alloc_page(&self) -> Result<Self::Page, PlatformError> {
        (**self).alloc_page()
    }
    fn grant(
        &self,
        to: DomId,
        page: &Self::Page,
        readonly: bool,
    ) -> Result<GrantRef, PlatformError> {
        (**self).grant(to, page, readonly)
    }
    fn end_grant(&self, gref: GrantRef) -> Result<(), PlatformError> {
        (**self).end_grant(gref)
    }
}

/// One `GNTTABOP_copy`: bytes between a buffer of ours and part of a page another
/// domain granted us. The granted range must lie in its page (`offset + len <= 4096`);
/// our buffer may be anywhere (an implementation splits it at its page boundaries).
pub enum Copy<'a> {
    /// From `dom`'s grant `gref` at `offset` into `to` (its whole length).
    FromGrant {
        dom: DomId,
        gref: GrantRef,
        offset: u16,
        to: &'a mut [u8],
    },
    /// `from` into `dom`'s grant `gref` (granted writable) at `offset`.
    ToGrant {
        from: &'a [u8],
        dom: DomId,
        gref: GrantRef,
        offset: u16,
    },
}

impl Copy<'_> {
    /// Bytes copied.
    pub fn len(&self) -> usize {
        match self {
            Copy::FromGrant { to, .. } => to.len(),
            Copy::ToGrant { from, .. } => from.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The granted side's range lies in its page.
    pub fn in_page(&self) -> bool {
        let offset = match self {
            Copy::FromGrant { offset, .. } | Copy::ToGrant { offset, .. } => *offset,
        };
        offset as usize + self.len() <= crate::page::PAGE_SIZE
    }
}

/// Grant copies (back ends: netback copies packets out of and into front ends' pages
/// without mapping them, `GNTTABOP_copy`).
pub trait GrantCopy {
    /// Performs `ops` (in one hypercall where it can); `status[i]` is the outcome of
    /// `ops[i]` (an op that fails changes nothing of its destination but may have
    /// copied part of it).
    ///
    /// # Panics
    /// If `status` is shorter than `ops`.
    fn copy(&self, ops: &mut [Copy<'_>], status: &mut [Result<(), PlatformError>]);
}

impl<T: GrantCopy + ?Sized> GrantCopy for &T {
    fn copy(&self, ops: &mut [Copy<'_>], status: &mut [Result<(), PlatformError>]) {
        (**self).copy(ops, status)
    }
}

/// A page of ours whose bytes we may use directly, while no grant of it is live (so
/// no peer can write it meanwhile): front ends lend their buffers to a network stack
/// without copying them.
pub trait LocalPage: SharePage {
    /// Runs `f` on the page's 4096 bytes.
    fn with_bytes<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R;
}
