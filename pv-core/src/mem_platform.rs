//! An in-memory platform for host tests (DESIGN.md, "Testing"): front and back ends run
//! in two threads against one shared world, with pages as shared atomic arrays, event
//! channels as pending flags under a condition variable, and a grant table as a map.
//!
//! The rules are those of the shim and of Xen (`xen/common/event_channel.c`,
//! `xen/common/grant_table.c`), so a driver that passes here relies on nothing a real
//! hypervisor would refuse:
//! - a port allocated unbound for domain R can be bound only by R; binding marks the new
//!   local port pending (as `evtchn_bind_interdomain` does, so no event is lost); closing
//!   one end leaves the other unbound, waiting for the closer;
//! - only the domain a grant names can map it; a read-only grant cannot be mapped
//!   writable; a domain can grant only pages it owns; `end_grant` is `Busy` while the
//!   grant is mapped. References a guest allocates start after the reserved ones
//!   (`GNTTAB_NR_RESERVED_ENTRIES`); the reserved console and xenstore entries are
//!   filled by the toolstack, here [`MemDomain::grant_at`].
//!
//! A read-only mapping is refused or granted by these rules, but its [`SharedPage`] can
//! still be written: the in-memory world has no page tables to enforce it.

use crate::page::{SharedPage, PAGE_WORDS};
use crate::platform::{
    Copy, DomId, EventChannel, ForeignMemory, GrantCopy, GrantRef, GrantTable, LocalPage,
    PlatformError, Port, SharePage,
};
use core::sync::atomic::AtomicU32;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Frame = [AtomicU32; PAGE_WORDS];

/// The shared world: every domain's event channels and grant table.
#[derive(Default)]
pub struct MemWorld {
    state: Mutex<State>,
    /// Signalled on every event sent and every port closed.
    events: Condvar,
}

#[derive(Default)]
struct State {
    ports: BTreeMap<(DomId, Port), Channel>,
    next_port: BTreeMap<DomId, Port>,
    grants: BTreeMap<(DomId, GrantRef), Grant>,
    next_gref: BTreeMap<DomId, GrantRef>,
}

struct Channel {
    peer: Peer,
    pending: bool,
}

#[derive(Clone, Copy)]
enum Peer {
    /// Waiting for this domain to bind.
    Unbound(DomId),
    Bound(DomId, Port),
}

struct Grant {
    grantee: DomId,
    frame: Arc<Frame>,
    readonly: bool,
    maps: u32,
}

impl MemWorld {
    /// An empty world.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A handle acting as domain `id`.
    pub fn domain(self: &Arc<Self>, id: DomId) -> MemDomain {
        MemDomain {
            world: Arc::clone(self),
            id,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test thread that panicked while holding the lock already failed the test;
        // the others go on with the state as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One domain's view of the world. Cheap to clone; clones act as the same domain.
#[derive(Clone)]
pub struct MemDomain {
    world: Arc<MemWorld>,
    id: DomId,
}

/// A page owned by the domain that allocated it.
pub struct MemPage {
    owner: DomId,
    frame: Arc<Frame>,
}

/// Another domain's page, mapped.
pub struct MemMapping {
    from: DomId,
    gref: GrantRef,
    frame: Arc<Frame>,
}

impl SharePage for MemPage {
    fn page(&self) -> SharedPage<'_> {
        SharedPage::new(&self.frame)
    }
}

impl SharePage for MemMapping {
    fn page(&self) -> SharedPage<'_> {
        SharedPage::new(&self.frame)
    }
}

impl MemDomain {
    /// This domain's id.
    pub fn id(&self) -> DomId {
        self.id
    }

    /// Fills grant entry `gref` of this domain, as the toolstack does for the reserved
    /// entries (`GNTTAB_RESERVED_CONSOLE`, `GNTTAB_RESERVED_XENSTORE`). `Busy` if the
    /// entry is in use.
    pub fn grant_at(
        &self,
        gref: GrantRef,
        to: DomId,
        page: &MemPage,
        readonly: bool,
    ) -> Result<(), PlatformError> {
        if page.owner != self.id {
            return Err(PlatformError::Denied);
        }
        let mut st = self.world.lock();
        if st.grants.contains_key(&(self.id, gref)) {
            return Err(PlatformError::Busy);
        }
        st.grants.insert(
            (self.id, gref),
            Grant {
                grantee: to,
                frame: Arc::clone(&page.frame),
                readonly,
                maps: 0,
            },
        );
        Ok(())
    }

    /// How many mappings grant `gref` of this domain has, or None if there is no such
    /// grant.
    pub fn map_count(&self, gref: GrantRef) -> Option<u32> {
        self.world
            .lock()
            .grants
            .get(&(self.id, gref))
            .map(|g| g.maps)
    }

    /// Like [`EventChannel::wait`] but gives up after `timeout`. True if an event was
    /// consumed (or the port does not exist), false on timeout.
    pub fn wait_timeout(&self, port: Port, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.world.lock();
        loop {
            match st.ports.get_mut(&(self.id, port)) {
                None => return true,
                Some(ch) if ch.pending => {
                    ch.pending = false;
                    return true;
                }
                Some(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .world
                .events
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits up to `timeout` for an event on any port of this domain, as a back end
    /// serving many domains blocks on all its ports at once. Consumes the event of the
    /// lowest pending port and returns that port; None on timeout.
    pub fn wait_any(&self, timeout: Duration) -> Option<Port> {
        let deadline = Instant::now() + timeout;
        let mut st = self.world.lock();
        loop {
            let mine = st.ports.range_mut((self.id, 0)..=(self.id, Port::MAX));
            if let Some((&(_, port), ch)) = mine.into_iter().find(|(_, ch)| ch.pending) {
                ch.pending = false;
                return Some(port);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .world
                .events
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn new_port(&self, st: &mut State, peer: Peer, pending: bool) -> Port {
        let next = st.next_port.entry(self.id).or_insert(1);
        let port = *next;
        *next += 1;
        st.ports.insert((self.id, port), Channel { peer, pending });
        port
    }
}

impl EventChannel for MemDomain {
    fn alloc_unbound(&self, remote: DomId) -> Result<Port, PlatformError> {
        let mut st = self.world.lock();
        Ok(self.new_port(&mut st, Peer::Unbound(remote), false))
    }

    fn bind_interdomain(&self, remote: DomId, remote_port: Port) -> Result<Port, PlatformError> {
        let mut st = self.world.lock();
        match st.ports.get(&(remote, remote_port)) {
            Some(Channel {
                peer: Peer::Unbound(d),
                ..
            }) if *d == self.id => {}
            _ => return Err(PlatformError::Invalid),
        }
        let port = self.new_port(&mut st, Peer::Bound(remote, remote_port), true);
        if let Some(ch) = st.ports.get_mut(&(remote, remote_port)) {
            ch.peer = Peer::Bound(self.id, port);
        }
        drop(st);
        self.world.events.notify_all();
        Ok(port)
    }

    fn notify(&self, port: Port) {
        let mut st = self.world.lock();
        let Some(Channel {
            peer: Peer::Bound(rd, rp),
            ..
        }) = st.ports.get(&(self.id, port))
        else {
            return;
        };
        let key = (*rd, *rp);
        if let Some(ch) = st.ports.get_mut(&key) {
            ch.pending = true;
        }
        drop(st);
        self.world.events.notify_all();
    }

    fn close(&self, port: Port) {
        let mut st = self.world.lock();
        if let Some(Channel {
            peer: Peer::Bound(rd, rp),
            ..
        }) = st.ports.remove(&(self.id, port))
        {
            if let Some(ch) = st.ports.get_mut(&(rd, rp)) {
                ch.peer = Peer::Unbound(self.id);
            }
        }
        drop(st);
        self.world.events.notify_all();
    }

    fn wait(&self, port: Port) {
        let mut st = self.world.lock();
        loop {
            match st.ports.get_mut(&(self.id, port)) {
                // Nothing will ever arrive on a closed port: don't block forever.
                None => return,
                Some(ch) if ch.pending => {
                    ch.pending = false;
                    return;
                }
                Some(_) => {}
            }
            st = self
                .world
                .events
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl GrantTable for MemDomain {
    type Page = MemPage;

    fn alloc_page(&self) -> Result<MemPage, PlatformError> {
        Ok(MemPage {
            owner: self.id,
            frame: Arc::new(core::array::from_fn(|_| AtomicU32::new(0))),
        })
    }

    fn grant(&self, to: DomId, page: &MemPage, readonly: bool) -> Result<GrantRef, PlatformError> {
        if page.owner != self.id {
            return Err(PlatformError::Denied);
        }
        let gref = {
            let mut st = self.world.lock();
            let next = st
                .next_gref
                .entry(self.id)
                .or_insert(xen_sys::GNTTAB_NR_RESERVED_ENTRIES);
            let gref = *next;
            *next = next.checked_add(1).ok_or(PlatformError::NoSpace)?;
            gref
        };
        self.grant_at(gref, to, page, readonly)?;
        Ok(gref)
    }

    fn end_grant(&self, gref: GrantRef) -> Result<(), PlatformError> {
        let mut st = self.world.lock();
        match st.grants.get(&(self.id, gref)) {
            None => Err(PlatformError::Invalid),
            Some(g) if g.maps > 0 => Err(PlatformError::Busy),
            Some(_) => {
                st.grants.remove(&(self.id, gref));
                Ok(())
            }
        }
    }
}

impl ForeignMemory for MemDomain {
    type Mapping = MemMapping;

    fn map(
        &self,
        from: DomId,
        gref: GrantRef,
        readonly: bool,
    ) -> Result<MemMapping, PlatformError> {
        let mut st = self.world.lock();
        let g = st
            .grants
            .get_mut(&(from, gref))
            .ok_or(PlatformError::Invalid)?;
        if g.grantee != self.id || (g.readonly && !readonly) {
            return Err(PlatformError::Denied);
        }
        g.maps += 1;
        Ok(MemMapping {
            from,
            gref,
            frame: Arc::clone(&g.frame),
        })
    }

    fn unmap(&self, m: MemMapping) -> Result<(), PlatformError> {
        let mut st = self.world.lock();
        let g = st
            .grants
            .get_mut(&(m.from, m.gref))
            .ok_or(PlatformError::Invalid)?;
        // end_grant refuses while mapped, so a live mapping always has its grant.
        g.maps = g.maps.checked_sub(1).ok_or(PlatformError::Invalid)?;
        Ok(())
    }
}

/// The bytes of an owned page, through a copy (the in-memory world's pages are atomic
/// words); what `f` writes is stored back.
impl LocalPage for MemPage {
    fn with_bytes<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let mut b = [0u8; crate::page::PAGE_SIZE];
        let page = self.page();
        page.read(0, &mut b);
        let r = f(&mut b);
        page.write(0, &b);
        r
    }
}

impl GrantCopy for MemDomain {
    /// As `gnttab_copy`: only the domain a grant names may copy through it, never
    /// into a read-only grant, never beyond the granted page.
    fn copy(&self, ops: &mut [Copy<'_>], status: &mut [Result<(), PlatformError>]) {
        assert!(status.len() >= ops.len());
        let st = self.world.lock();
        for (op, status) in ops.iter_mut().zip(status.iter_mut()) {
            let (dom, gref, writes) = match op {
                Copy::FromGrant { dom, gref, .. } => (*dom, *gref, false),
                Copy::ToGrant { dom, gref, .. } => (*dom, *gref, true),
            };
            *status = match st.grants.get(&(dom, gref)) {
                _ if !op.in_page() => Err(PlatformError::Invalid),
                None => Err(PlatformError::Invalid),
                Some(g) if g.grantee != self.id || (writes && g.readonly) => {
                    Err(PlatformError::Denied)
                }
                Some(g) => {
                    let page = SharedPage::new(&g.frame);
                    match op {
                        Copy::FromGrant { offset, to, .. } => page.read(*offset as usize, to),
                        Copy::ToGrant { offset, from, .. } => page.write(*offset as usize, from),
                    }
                    Ok(())
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn only_the_named_grantee_maps() {
        let w = MemWorld::new();
        let (d1, d2, d3) = (w.domain(1), w.domain(2), w.domain(3));
        let page = d1.alloc_page().unwrap();
        let gref = d1.grant(2, &page, false).unwrap();
        assert!(gref >= xen_sys::GNTTAB_NR_RESERVED_ENTRIES);
        assert_eq!(d3.map(1, gref, false).err(), Some(PlatformError::Denied));
        assert_eq!(d3.map(1, gref, true).err(), Some(PlatformError::Denied));
        assert_eq!(
            d2.map(1, gref + 1, false).err(),
            Some(PlatformError::Invalid)
        );
        assert_eq!(d2.map(3, gref, false).err(), Some(PlatformError::Invalid));
        let m = d2.map(1, gref, false).unwrap();
        // The mapping is the granted page itself.
        page.page().store_u32(40, 0xfeed);
        assert_eq!(m.page().load_u32(40), 0xfeed);
        m.page().store_u32(44, 0xbeef);
        assert_eq!(page.page().load_u32(44), 0xbeef);
        d2.unmap(m).unwrap();
    }

    #[test]
    fn grant_copies_follow_the_grant() {
        let w = MemWorld::new();
        let (d1, d2, d3) = (w.domain(1), w.domain(2), w.domain(3));
        let (rw, ro) = (d1.alloc_page().unwrap(), d1.alloc_page().unwrap());
        let (g_rw, g_ro) = (
            d1.grant(2, &rw, false).unwrap(),
            d1.grant(2, &ro, true).unwrap(),
        );
        ro.page().write(100, b"hello");
        let mut got = [0u8; 5];
        let mut st = [Ok(()); 4];
        let data = *b"world";
        let mut ops = [
            Copy::FromGrant {
                dom: 1,
                gref: g_ro,
                offset: 100,
                to: &mut got,
            },
            Copy::ToGrant {
                from: &data,
                dom: 1,
                gref: g_rw,
                offset: 4091,
            },
            Copy::ToGrant {
                from: &data,
                dom: 1,
                gref: g_ro,
                offset: 0,
            },
            Copy::ToGrant {
                from: &data,
                dom: 1,
                gref: g_rw,
                offset: 4092,
            },
        ];
        d2.copy(&mut ops, &mut st);
        assert_eq!(
            st,
            [
                Ok(()),
                Ok(()),
                Err(PlatformError::Denied),
                Err(PlatformError::Invalid)
            ]
        );
        assert_eq!(&got, b"hello");
        let mut back = [0u8; 5];
        rw.page().read(4091, &mut back);
        assert_eq!(&back, b"world");
        // Not the grantee.
        let mut ops = [Copy::FromGrant {
            dom: 1,
            gref: g_rw,
            offset: 0,
            to: &mut got,
        }];
        d3.copy(&mut ops, &mut st);
        assert_eq!(st[0], Err(PlatformError::Denied));
    }

    #[test]
    fn local_page_bytes_are_the_page() {
        let w = MemWorld::new();
        let mut p = w.domain(1).alloc_page().unwrap();
        p.with_bytes(|b| b[4095] = 7);
        assert_eq!(p.page().load_u32(4092) >> 24, 7);
    }

    #[test]
    fn readonly_grant_cannot_be_mapped_writable() {
        let w = MemWorld::new();
        let (d1, d2) = (w.domain(1), w.domain(2));
        let page = d1.alloc_page().unwrap();
        let gref = d1.grant(2, &page, true).unwrap();
        assert_eq!(d2.map(1, gref, false).err(), Some(PlatformError::Denied));
        let m = d2.map(1, gref, true).unwrap();
        d2.unmap(m).unwrap();
    }

    #[test]
    fn end_grant_is_busy_while_mapped() {
        let w = MemWorld::new();
        let (d1, d2) = (w.domain(1), w.domain(2));
        let page = d1.alloc_page().unwrap();
        let gref = d1.grant(2, &page, false).unwrap();
        let m1 = d2.map(1, gref, false).unwrap();
        let m2 = d2.map(1, gref, true).unwrap();
        assert_eq!(d1.map_count(gref), Some(2));
        assert_eq!(d1.end_grant(gref), Err(PlatformError::Busy));
        d2.unmap(m1).unwrap();
        assert_eq!(d1.end_grant(gref), Err(PlatformError::Busy));
        d2.unmap(m2).unwrap();
        assert_eq!(d1.end_grant(gref), Ok(()));
        assert_eq!(d1.map_count(gref), None);
        assert_eq!(d1.end_grant(gref), Err(PlatformError::Invalid), "twice");
        assert_eq!(d2.map(1, gref, false).err(), Some(PlatformError::Invalid));
    }

    #[test]
    fn only_owned_pages_can_be_granted() {
        let w = MemWorld::new();
        let (d1, d2) = (w.domain(1), w.domain(2));
        let page = d1.alloc_page().unwrap();
        assert_eq!(d2.grant(3, &page, false), Err(PlatformError::Denied));
        assert_eq!(d2.grant_at(0, 3, &page, false), Err(PlatformError::Denied));
    }

    #[test]
    fn reserved_entry_filled_by_the_toolstack() {
        let w = MemWorld::new();
        let (dom0, domu) = (w.domain(0), w.domain(5));
        let page = domu.alloc_page().unwrap();
        let console = xen_sys::GNTTAB_RESERVED_CONSOLE;
        domu.grant_at(console, 0, &page, false).unwrap();
        assert_eq!(
            domu.grant_at(console, 0, &page, false),
            Err(PlatformError::Busy)
        );
        let m = dom0.map(5, console, false).unwrap();
        dom0.unmap(m).unwrap();
    }

    #[test]
    fn bind_only_by_the_named_remote() {
        let w = MemWorld::new();
        let (d1, d2, d3) = (w.domain(1), w.domain(2), w.domain(3));
        let p1 = d1.alloc_unbound(2).unwrap();
        assert_eq!(d3.bind_interdomain(1, p1), Err(PlatformError::Invalid));
        assert_eq!(d2.bind_interdomain(1, p1 + 7), Err(PlatformError::Invalid));
        let p2 = d2.bind_interdomain(1, p1).unwrap();
        // Already bound: a second bind is refused.
        assert_eq!(d2.bind_interdomain(1, p1), Err(PlatformError::Invalid));
        // The new local port starts pending, as in Xen.
        assert!(d2.wait_timeout(p2, Duration::ZERO));
        assert!(!d2.wait_timeout(p2, Duration::ZERO));
        // Closing one end leaves the other unbound for the closer again.
        d2.close(p2);
        let p2b = d2.bind_interdomain(1, p1).unwrap();
        assert!(p2b != p2);
    }

    #[test]
    fn events_cross_threads() {
        let w = MemWorld::new();
        let (d1, d2) = (w.domain(1), w.domain(2));
        let p1 = d1.alloc_unbound(2).unwrap();
        let p2 = d2.bind_interdomain(1, p1).unwrap();
        d2.wait(p2); // the pending bit bind set
        let t = thread::spawn(move || {
            for _ in 0..100 {
                d1.wait(p1);
                d1.notify(p1);
            }
        });
        for _ in 0..100 {
            d2.notify(p2);
            d2.wait(p2);
        }
        t.join().unwrap();
        assert!(!d2.wait_timeout(p2, Duration::from_millis(1)));
    }

    #[test]
    fn wait_any_takes_one_pending_port_of_this_domain() {
        let w = MemWorld::new();
        let (d1, d2) = (w.domain(1), w.domain(2));
        let a = d1.alloc_unbound(2).unwrap();
        let b = d1.alloc_unbound(2).unwrap();
        let a2 = d2.bind_interdomain(1, a).unwrap();
        let b2 = d2.bind_interdomain(1, b).unwrap();
        // d2's own ports are pending from the binds; d1's are not.
        assert_eq!(d1.wait_any(Duration::ZERO), None);
        assert_eq!(d2.wait_any(Duration::ZERO), Some(a2));
        assert_eq!(d2.wait_any(Duration::ZERO), Some(b2));
        assert_eq!(d2.wait_any(Duration::from_millis(1)), None);
        let t = thread::spawn(move || d1.notify(b));
        assert_eq!(d2.wait_any(Duration::from_secs(10)), Some(b2));
        t.join().unwrap();
    }

    #[test]
    fn notify_without_peer_is_ignored_and_wait_on_closed_port_returns() {
        let w = MemWorld::new();
        let d1 = w.domain(1);
        let p = d1.alloc_unbound(2).unwrap();
        d1.notify(p);
        d1.notify(999);
        assert!(!d1.wait_timeout(p, Duration::from_millis(1)));
        d1.close(p);
        d1.wait(p);
    }
}
