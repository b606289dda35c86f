//! consfront: the guest side of the PV console, `xen/include/public/io/console.h`.
//!
//! The guest writes its output into the `out` ring of a `xencons_interface` page and
//! reads input from the `in` ring; the console back end in dom0 (xenconsoled in Xen,
//! `drivers-back`'s console here) drains `out` and fills `in`. Each side notifies the
//! other over one event channel after it produced or consumed bytes, as Linux's
//! `drivers/tty/hvc/hvc_xen.c` and Mini-OS's `console/xencons_ring.c` do.
//!
//! The primary console's page and port come from `start_info` (`console.domU.mfn`,
//! `console.domU.evtchn`); the toolstack has already granted the page to the back end
//! (`GNTTAB_RESERVED_CONSOLE`), so the guest only wraps them in a [`Consfront`].
//! [`SecondaryRing`] allocates and grants the page and port of an additional console
//! device; announcing them in xenstore (`ring-ref`, `port`) is the caller's job.
//!
//! The back end is not trusted: if it leaves the ring indices impossible, operations
//! return [`Corrupt`] and the console should be given up.

use pv_core::byte_ring::{ByteRing, Corrupt};
use pv_core::page::SharedPage;
use pv_core::platform::{
    DomId, EventChannel, GrantRef, GrantTable, PlatformError, Port, SharePage,
};

/// A console front end over a `xencons_interface` page and its event channel.
pub struct Consfront<'a, E: EventChannel> {
    page: SharedPage<'a>,
    port: Port,
    evtchn: E,
}

impl<'a, E: EventChannel> Consfront<'a, E> {
    /// A front end on `page` (a `xencons_interface`) signalling the back end on `port`.
    pub fn new(page: SharedPage<'a>, port: Port, evtchn: E) -> Self {
        Self { page, port, evtchn }
    }

    /// The event channel port to the back end.
    pub fn port(&self) -> Port {
        self.port
    }

    /// Writes as much of `data` as the out ring has room for, without blocking, and
    /// notifies the back end if anything was written. Returns the bytes written.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Corrupt> {
        let n = ByteRing::CONSOLE_OUT.write(&self.page, data)?;
        if n > 0 {
            self.evtchn.notify(self.port);
        }
        Ok(n)
    }

    /// Writes all of `data`, waiting on the event channel while the out ring is full
    /// (the back end notifies after draining it).
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), Corrupt> {
        while !data.is_empty() {
            let n = self.write(data)?;
            data = &data[n..];
            if n == 0 {
                // Any event (drained output, new input) is a reason to look again; an
                // event that arrived since the last wait makes this return at once.
                self.evtchn.wait(self.port);
            }
        }
        Ok(())
    }

    /// Reads input typed for this domain into `buf`, without blocking; notifies the back
    /// end after consuming, so that it can refill the in ring. Returns the bytes read.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Corrupt> {
        let n = ByteRing::CONSOLE_IN.read(&self.page, buf)?;
        if n > 0 {
            self.evtchn.notify(self.port);
        }
        Ok(n)
    }
}

/// The resources of a secondary console device: a page of its own granted to the back
/// end, and an event channel port left unbound for it.
pub struct SecondaryRing<P: SharePage> {
    page: P,
    gref: GrantRef,
    port: Port,
}

impl<P: SharePage> SecondaryRing<P> {
    /// Allocates a zeroed page, grants it read-write to `backend` and allocates a port
    /// for `backend` to bind. On failure, what was already set up is released.
    pub fn alloc<G, E>(gnttab: &G, evtchn: &E, backend: DomId) -> Result<Self, PlatformError>
    where
        G: GrantTable<Page = P>,
        E: EventChannel,
    {
        let page = gnttab.alloc_page()?;
        let gref = gnttab.grant(backend, &page, false)?;
        match evtchn.alloc_unbound(backend) {
            Ok(port) => Ok(Self { page, gref, port }),
            Err(e) => {
                // Not mapped by anyone yet, so revoking cannot be Busy.
                let _ = gnttab.end_grant(gref);
                Err(e)
            }
        }
    }

    /// The grant reference to publish as `ring-ref`.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// The port to publish as `port`.
    pub fn port(&self) -> Port {
        self.port
    }

    /// A front end on this ring.
    pub fn front<E: EventChannel>(&self, evtchn: E) -> Consfront<'_, E> {
        Consfront::new(self.page.page(), self.port, evtchn)
    }

    /// Closes the port and revokes the grant. If the back end still has the page mapped
    /// (`Busy`), the ring is handed back: the page must not be reused yet.
    pub fn free<G, E>(self, gnttab: &G, evtchn: &E) -> Result<(), (Self, PlatformError)>
    where
        G: GrantTable<Page = P>,
        E: EventChannel,
    {
        match gnttab.end_grant(self.gref) {
            Ok(()) => {
                evtchn.close(self.port);
                Ok(())
            }
            Err(e) => Err((self, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use pv_core::mem_platform::{MemDomain, MemWorld};
    use pv_core::platform::ForeignMemory;
    use std::time::Duration;

    /// A domU with its console page granted to dom0 and a port dom0 has bound.
    fn primary(
        w: &std::sync::Arc<MemWorld>,
    ) -> (
        MemDomain,
        pv_core::mem_platform::MemPage,
        Port,
        MemDomain,
        Port,
    ) {
        let (dom0, domu) = (w.domain(0), w.domain(1));
        let page = domu.alloc_page().unwrap();
        let port = domu.alloc_unbound(0).unwrap();
        let back_port = dom0.bind_interdomain(1, port).unwrap();
        assert!(dom0.wait_timeout(back_port, Duration::ZERO));
        (domu, page, port, dom0, back_port)
    }

    #[test]
    fn write_fills_out_ring_and_notifies() {
        let w = MemWorld::new();
        let (domu, page, port, dom0, back_port) = primary(&w);
        let mut front = Consfront::new(page.page(), port, &domu);
        assert_eq!(front.write(b"hello\n"), Ok(6));
        assert!(
            dom0.wait_timeout(back_port, Duration::ZERO),
            "back end notified"
        );
        let mut buf = [0u8; 16];
        assert_eq!(ByteRing::CONSOLE_OUT.read(&page.page(), &mut buf), Ok(6));
        assert_eq!(&buf[..6], b"hello\n");
        // Full ring: non-blocking write takes what fits and no more.
        let big = [b'x'; 3000];
        assert_eq!(front.write(&big), Ok(ByteRing::CONSOLE_OUT.size()));
        assert_eq!(front.write(b"y"), Ok(0));
        assert!(dom0.wait_timeout(back_port, Duration::ZERO));
        assert!(
            !dom0.wait_timeout(back_port, Duration::ZERO),
            "no notify for nothing"
        );
    }

    #[test]
    fn read_consumes_in_ring_and_notifies() {
        let w = MemWorld::new();
        let (domu, page, port, dom0, back_port) = primary(&w);
        let mut front = Consfront::new(page.page(), port, &domu);
        let mut buf = [0u8; 4];
        assert_eq!(front.read(&mut buf), Ok(0));
        assert!(!dom0.wait_timeout(back_port, Duration::ZERO));
        ByteRing::CONSOLE_IN.write(&page.page(), b"typed").unwrap();
        assert_eq!(front.read(&mut buf), Ok(4));
        assert_eq!(&buf, b"type");
        assert!(dom0.wait_timeout(back_port, Duration::ZERO));
        assert_eq!(front.read(&mut buf), Ok(1));
        assert_eq!(buf[0], b'd');
    }

    #[test]
    fn corrupt_indices_are_reported() {
        let w = MemWorld::new();
        let (domu, page, port, _dom0, _bp) = primary(&w);
        let mut front = Consfront::new(page.page(), port, &domu);
        // A hostile back end claims it consumed more than was produced.
        page.page().store_u32(
            core::mem::offset_of!(xen_sys::xencons_interface, out_cons),
            5000,
        );
        assert_eq!(front.write(b"x"), Err(Corrupt));
        assert_eq!(front.write_all(b"x"), Err(Corrupt));
        page.page().store_u32(
            core::mem::offset_of!(xen_sys::xencons_interface, in_prod),
            1025,
        );
        assert_eq!(front.read(&mut [0u8; 8]), Err(Corrupt));
    }

    #[test]
    fn write_all_waits_for_the_back_end() {
        let w = MemWorld::new();
        let (domu, page, port, dom0, back_port) = primary(&w);
        let back_page = page.page();
        let data: std::vec::Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut got = std::vec::Vec::new();
                let mut buf = [0u8; 300];
                while got.len() < expect.len() {
                    let n = ByteRing::CONSOLE_OUT.read(&back_page, &mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                    if n > 0 {
                        dom0.notify(back_port);
                    } else {
                        dom0.wait_timeout(back_port, Duration::from_millis(10));
                    }
                }
                assert_eq!(got, expect);
            });
            let mut front = Consfront::new(page.page(), port, &domu);
            front.write_all(&data).unwrap();
        });
    }

    #[test]
    fn secondary_ring_is_granted_to_the_back_end() {
        let w = MemWorld::new();
        let (dom0, domu) = (w.domain(0), w.domain(3));
        let ring = SecondaryRing::alloc(&domu, &domu, 0).unwrap();
        let m = dom0.map(3, ring.gref(), false).unwrap();
        let back_port = dom0.bind_interdomain(3, ring.port()).unwrap();
        ring.front(&domu).write(b"second").unwrap();
        assert!(dom0.wait_timeout(back_port, Duration::ZERO));
        let mut buf = [0u8; 6];
        ByteRing::CONSOLE_OUT.read(&m.page(), &mut buf).unwrap();
        assert_eq!(&buf, b"second");
        // Still mapped: the ring is handed back, not freed.
        let (ring, e) = ring.free(&domu, &domu).err().unwrap();
        assert_eq!(e, PlatformError::Busy);
        dom0.unmap(m).unwrap();
        assert!(ring.free(&domu, &domu).is_ok());
    }
}
