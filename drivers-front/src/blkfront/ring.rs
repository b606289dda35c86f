//! blkfront's data path (`xen/include/public/io/blkif.h`; Linux's `xen-blkfront.c`,
//! Mini-OS's `blkfront.c`): one vbd's ring, the requests in flight and the pages their
//! data travels in. The xenbus handshake that publishes the ring and reads the back
//! end's offer is the caller's (it gets [`Blkfront::ring_refs`] and
//! [`Blkfront::port`], and hands back an [`Offer`]).
//!
//! Data goes through a pool of pages granted to the back end once and reused (what
//! `feature-persistent` names: a back end may keep them mapped): a write copies the
//! caller's bytes in before the request is made, a read copies them out once the
//! answer came. The caller's buffers are thus never granted, and the back end sees
//! only pages that belong to requests.
//!
//! The back end is not trusted either: a response whose id names no request in flight,
//! or whose operation is not the request's, is a protocol error (as are impossible ring
//! indices); the vbd is then unusable and every later call fails.
//!
//! Tested against blkback in `drivers-back/tests/blk_front_back.rs`.

use alloc::vec::Vec;

use pv_core::abi::ToGuest;
use pv_core::blkif::{RawRequest, SECTOR_SHIFT, SEGMENTS_PER_INDIRECT_PAGE};
use pv_core::page::{SharedPage, PAGE_SIZE};
use pv_core::platform::{
    DomId, EventChannel, GrantRef, GrantTable, PlatformError, Port, SharePage,
};
use pv_core::ring::{FrontRing, FrontState, ProtocolError, MAX_RING_PAGES};
use xen_sys::{
    blkif_request, blkif_request_discard, blkif_request_indirect, blkif_request_segment,
    blkif_response, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_OKAY,
};

/// Sectors in one page.
const PAGE_SECTORS: u64 = (PAGE_SIZE >> SECTOR_SHIFT) as u64;

/// What the back end offers, read from its directory once it is `Connected`: the
/// same facts blkback checks requests against.
pub use pv_core::blkif::Disk as Offer;

/// An operation on the vbd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// Reads `sectors` sectors at `sector` (taken out with [`Blkfront::take`]).
    Read { sector: u64, sectors: u64 },
    /// Writes `data` (a whole number of sectors) at `sector`.
    Write { sector: u64, data: &'a [u8] },
    /// Makes every write answered before it durable (`BLKIF_OP_FLUSH_DISKCACHE`, or a
    /// barrier when only that is offered, as Linux's blkfront falls back).
    Flush,
    /// Discards `sectors` sectors at `sector`.
    Discard { sector: u64, sectors: u64 },
}

/// Why an operation was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No free ring slot or data pages now: wait for answers and try again.
    Busy,
    /// Outside the disk, not whole sectors, larger than one request can carry, or
    /// empty.
    Invalid,
    /// A write to a read-only vbd.
    ReadOnly,
    /// The back end does not offer it.
    NotSupported,
    /// The vbd broke (see [`Blkfront::broken`]).
    Broken,
}

/// Why the vbd is unusable: the back end broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    Ring(ProtocolError),
    /// A response for no request in flight.
    UnknownId(u64),
    /// A response whose operation is not its request's.
    WrongOperation {
        id: u64,
        operation: u8,
    },
}

/// How an operation ended: `BLKIF_RSP_OKAY`, or the error status the back end gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Okay,
    NotSupported,
    Error(i16),
}

/// A started operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u16);

struct InFlight {
    /// The ring's operation byte, and the operation it carries (the same but for
    /// `BLKIF_OP_INDIRECT`): a back end may answer with either (Linux's blkback
    /// answers an indirect request with the inner one).
    operation: u8,
    inner: u8,
    /// Pool pages of the data, in order, and the indirect pages.
    pages: Vec<u16>,
    indirect: Vec<u16>,
    status: Option<Status>,
    /// Its caller gave up: freed when the answer comes.
    abandoned: bool,
}

/// One vbd's ring and pages.
pub struct Blkfront<P: GrantTable + EventChannel> {
    p: P,
    backend: DomId,
    port: Port,
    ring_pages: Vec<P::Page>,
    ring_refs: Vec<GrantRef>,
    ring: FrontState,
    offer: Offer,
    slots: Vec<Option<InFlight>>,
    free_slots: Vec<u16>,
    pool: Vec<(P::Page, GrantRef)>,
    free_pages: Vec<u16>,
    pool_max: usize,
    broken: Option<Broken>,
    /// Requests were published that the back end asked to hear of and was not told.
    owed_notify: bool,
    /// Requests submitted and events sent so far ([`Blkfront::stats`]).
    submitted: u64,
    events: u64,
}

impl<P: GrantTable + EventChannel> Blkfront<P> {
    /// A ring of `ring_pages` pages (a power of two up to 16: `ring-page-order`)
    /// granted to `backend`, an event channel left unbound for it, and a data pool of
    /// up to `pool_pages` pages (which bounds the bytes in flight). Nothing stays
    /// granted on error.
    pub fn new(
        p: P,
        backend: DomId,
        ring_pages: usize,
        pool_pages: usize,
    ) -> Result<Self, PlatformError> {
        if ring_pages == 0 || ring_pages > MAX_RING_PAGES || !ring_pages.is_power_of_two() {
            return Err(PlatformError::Invalid);
        }
        let mut pages = Vec::with_capacity(ring_pages);
        let mut refs = Vec::with_capacity(ring_pages);
        let mut fail = None;
        for _ in 0..ring_pages {
            match p.alloc_page().and_then(|pg| {
                let r = p.grant(backend, &pg, false)?;
                Ok((pg, r))
            }) {
                Ok((pg, r)) => {
                    pages.push(pg);
                    refs.push(r);
                }
                Err(e) => {
                    fail = Some(e);
                    break;
                }
            }
        }
        let port = match fail {
            None => p.alloc_unbound(backend),
            Some(e) => Err(e),
        };
        let port = match port {
            Ok(port) => port,
            Err(e) => {
                for (pg, r) in pages.into_iter().zip(refs) {
                    end(&p, pg, r);
                }
                return Err(e);
            }
        };
        let views: Vec<SharedPage<'_>> = pages.iter().map(|pg| pg.page()).collect();
        let ring = FrontRing::<RawRequest, blkif_response>::init(&views);
        let (size, state) = (ring.size(), ring.state());
        Ok(Blkfront {
            p,
            backend,
            port,
            ring_pages: pages,
            ring_refs: refs,
            ring: state,
            offer: Offer::default(),
            slots: (0..size).map(|_| None).collect(),
            free_slots: (0..size as u16).rev().collect(),
            pool: Vec::new(),
            free_pages: Vec::new(),
            pool_max: pool_pages.min(u16::MAX as usize),
            broken: None,
            owed_notify: false,
            submitted: 0,
            events: 0,
        })
    }

    /// The ring's grant references, to publish (`ring-ref`, or `ring-ref0..N`).
    pub fn ring_refs(&self) -> &[GrantRef] {
        &self.ring_refs
    }

    /// Our end of the event channel, to publish (`event-channel`).
    pub fn port(&self) -> Port {
        self.port
    }

    /// The platform the vbd runs on.
    pub fn platform(&self) -> &P {
        &self.p
    }

    pub fn backend(&self) -> DomId {
        self.backend
    }

    /// The back end is `Connected` and offers this.
    pub fn connected(&mut self, offer: Offer) {
        self.offer = offer;
    }

    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// Operations started and not yet taken.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// The most sectors one read or write can carry.
    pub fn max_sectors(&self) -> u64 {
        let direct = BLKIF_MAX_SEGMENTS_PER_REQUEST as usize;
        let mut segs = (self.offer.max_indirect_segments as usize)
            .max(direct)
            .min(self.pool_max);
        // An indirect request's segment pages come from the pool too: the data pages
        // and their indirect pages must fit in it together, or it could never start.
        while segs > direct && segs + segs.div_ceil(SEGMENTS_PER_INDIRECT_PAGE) > self.pool_max {
            segs -= 1;
        }
        segs as u64 * PAGE_SECTORS
    }

    fn with_ring<R>(
        &mut self,
        f: impl FnOnce(&mut FrontRing<'_, RawRequest, blkif_response>) -> R,
    ) -> R {
        let views: Vec<SharedPage<'_>> = self.ring_pages.iter().map(|pg| pg.page()).collect();
        let mut ring = FrontRing::resume(&views, self.ring);
        let r = f(&mut ring);
        self.ring = ring.state();
        r
    }

    /// `n` pool pages, growing the pool up to its bound; none if not enough.
    fn take_pages(&mut self, n: usize) -> Result<Vec<u16>, Refused> {
        while self.free_pages.len() < n && self.pool.len() < self.pool_max {
            let pg = self.p.alloc_page().map_err(|_| Refused::Busy)?;
            let r = self
                .p
                .grant(self.backend, &pg, false)
                .map_err(|_| Refused::Busy)?;
            self.free_pages.push(self.pool.len() as u16);
            self.pool.push((pg, r));
        }
        if self.free_pages.len() < n {
            return Err(Refused::Busy);
        }
        Ok(self.free_pages.split_off(self.free_pages.len() - n))
    }

    /// Starts `op`: the request is on the ring, visible to the back end after
    /// [`Blkfront::kick`].
    pub fn submit(&mut self, op: Op<'_>) -> Result<Ticket, Refused> {
        if self.broken.is_some() {
            return Err(Refused::Broken);
        }
        let o = self.offer;
        let in_disk =
            |sector: u64, n: u64| n > 0 && sector.checked_add(n).is_some_and(|e| e <= o.sectors);
        // Check everything before taking a slot or pages.
        let (operation, pages_needed) = match op {
            Op::Read { sector, sectors } | Op::Discard { sector, sectors }
                if !in_disk(sector, sectors) =>
            {
                return Err(Refused::Invalid)
            }
            Op::Read { sectors, .. } if sectors > self.max_sectors() => {
                return Err(Refused::Invalid)
            }
            Op::Read { sectors, .. } => (BLKIF_OP_READ, sectors.div_ceil(PAGE_SECTORS)),
            Op::Write { sector, data } => {
                let n = (data.len() >> SECTOR_SHIFT) as u64;
                if data.len() % (1 << SECTOR_SHIFT) != 0
                    || !in_disk(sector, n)
                    || n > self.max_sectors()
                {
                    return Err(Refused::Invalid);
                }
                if o.readonly {
                    return Err(Refused::ReadOnly);
                }
                (BLKIF_OP_WRITE, n.div_ceil(PAGE_SECTORS))
            }
            Op::Flush if o.flush => (BLKIF_OP_FLUSH_DISKCACHE, 0),
            Op::Flush if o.barrier => (BLKIF_OP_WRITE_BARRIER, 0),
            Op::Discard { .. } if o.discard && !o.readonly => (BLKIF_OP_DISCARD, 0),
            Op::Discard { .. } if o.readonly => return Err(Refused::ReadOnly),
            Op::Flush | Op::Discard { .. } => return Err(Refused::NotSupported),
        };
        let pages_needed = pages_needed as usize;
        let indirect_needed = if pages_needed > BLKIF_MAX_SEGMENTS_PER_REQUEST as usize {
            pages_needed.div_ceil(SEGMENTS_PER_INDIRECT_PAGE)
        } else {
            0
        };
        debug_assert!(indirect_needed <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST as usize);
        if self.free_slots.is_empty() {
            return Err(Refused::Busy);
        }
        let pages = self.take_pages(pages_needed + indirect_needed)?;
        let (data_pages, indirect) = pages.split_at(pages_needed);
        let (data_pages, indirect) = (data_pages.to_vec(), indirect.to_vec());
        let slot = self.free_slots.pop().expect("checked above");
        let id = u64::from(slot);

        // The segments: whole pages but the last, which holds what is left.
        let total = match op {
            Op::Read { sectors, .. } => sectors,
            Op::Write { data, .. } => (data.len() >> SECTOR_SHIFT) as u64,
            _ => 0,
        };
        let segs: Vec<blkif_request_segment> = data_pages
            .iter()
            .enumerate()
            .map(|(i, &pg)| {
                let n = (total - i as u64 * PAGE_SECTORS).min(PAGE_SECTORS);
                blkif_request_segment {
                    gref: self.pool[pg as usize].1,
                    first_sect: 0,
                    last_sect: (n - 1) as u8,
                }
            })
            .collect();
        if let Op::Write { data, .. } = op {
            for (chunk, &pg) in data.chunks(PAGE_SIZE).zip(&data_pages) {
                self.pool[pg as usize].0.page().write(0, chunk);
            }
        }
        let raw = match op {
            Op::Discard { sector, sectors } => RawRequest::of(&blkif_request_discard {
                operation: BLKIF_OP_DISCARD as u8,
                id,
                sector_number: sector,
                nr_sectors: sectors,
                ..Default::default()
            }),
            Op::Read { sector, .. } | Op::Write { sector, .. } if !indirect.is_empty() => {
                // The segment list in the indirect pages, 512 entries a page.
                let mut entry = [0u8; core::mem::size_of::<blkif_request_segment>()];
                for (i, s) in segs.iter().enumerate() {
                    let pg = indirect[i / SEGMENTS_PER_INDIRECT_PAGE];
                    s.encode(&mut entry);
                    let at = (i % SEGMENTS_PER_INDIRECT_PAGE) * entry.len();
                    self.pool[pg as usize].0.page().write(at, &entry);
                }
                let mut req = blkif_request_indirect {
                    operation: BLKIF_OP_INDIRECT as u8,
                    indirect_op: operation as u8,
                    nr_segments: segs.len() as u16,
                    id,
                    sector_number: sector,
                    ..Default::default()
                };
                for (g, &pg) in req.indirect_grefs.iter_mut().zip(&indirect) {
                    *g = self.pool[pg as usize].1;
                }
                RawRequest::of(&req)
            }
            _ => {
                let sector = match op {
                    Op::Read { sector, .. } | Op::Write { sector, .. } => sector,
                    _ => 0,
                };
                let mut req = blkif_request {
                    operation: operation as u8,
                    nr_segments: segs.len() as u8,
                    id,
                    sector_number: sector,
                    ..Default::default()
                };
                req.seg[..segs.len()].copy_from_slice(&segs);
                RawRequest::of(&req)
            }
        };
        self.with_ring(|r| r.put_request(&raw))
            .expect("a free slot means a free ring entry");
        self.slots[slot as usize] = Some(InFlight {
            operation: raw.operation(),
            inner: operation as u8,
            pages: data_pages,
            indirect,
            status: None,
            abandoned: false,
        });
        self.submitted += 1;
        Ok(Ticket(slot))
    }

    /// Publishes the requests submitted since the last kick and notifies the back end
    /// if it asked to be.
    pub fn kick(&mut self) {
        self.publish();
        self.notify();
    }

    /// Publishes the requests submitted so far (a back end that looks sees them); the
    /// event it may have asked for waits for [`Blkfront::notify`], so that several
    /// publications cost one event.
    pub fn publish(&mut self) {
        if self.with_ring(|r| r.push_requests()) {
            self.owed_notify = true;
        }
    }

    /// Sends the event owed since the last [`Blkfront::publish`], if any.
    pub fn notify(&mut self) {
        if core::mem::take(&mut self.owed_notify) {
            self.events += 1;
            self.p.notify(self.port);
        }
    }

    /// Requests submitted and events sent to the back end so far: how well requests
    /// are batched.
    pub fn stats(&self) -> (u64, u64) {
        (self.submitted, self.events)
    }

    /// Consumes the back end's answers; returns how many completed an operation.
    /// After a protocol error the vbd is [`Broken`] for good.
    pub fn poll(&mut self) -> Result<u32, Broken> {
        if let Some(b) = self.broken {
            return Err(b);
        }
        // Every answer there is, in one look at the ring (the ring's view of its
        // pages is built once per poll, not per answer).
        let rsps = self.with_ring(|r| -> Result<Vec<blkif_response>, ProtocolError> {
            let mut out = Vec::new();
            loop {
                while let Some(rsp) = r.get_response()? {
                    out.push(rsp);
                }
                // Ask for an event at the next answer, and look once more.
                if !r.final_check_for_responses()? {
                    return Ok(out);
                }
            }
        });
        let rsps = match rsps {
            Err(e) => return Err(self.fail(Broken::Ring(e))),
            Ok(rsps) => rsps,
        };
        let mut done = 0;
        for rsp in rsps {
            let slot = usize::try_from(rsp.id)
                .ok()
                .and_then(|i| self.slots.get_mut(i));
            let Some(Some(f)) = slot else {
                return Err(self.fail(Broken::UnknownId(rsp.id)));
            };
            if f.status.is_some() {
                return Err(self.fail(Broken::UnknownId(rsp.id)));
            }
            if rsp.operation != f.operation && rsp.operation != f.inner {
                let b = Broken::WrongOperation {
                    id: rsp.id,
                    operation: rsp.operation,
                };
                return Err(self.fail(b));
            }
            f.status = Some(match i32::from(rsp.status) {
                s if s == BLKIF_RSP_OKAY as i32 => Status::Okay,
                s if s == BLKIF_RSP_EOPNOTSUPP => Status::NotSupported,
                _ => Status::Error(rsp.status),
            });
            if f.abandoned {
                self.release(rsp.id as u16);
            }
            done += 1;
        }
        Ok(done)
    }

    fn fail(&mut self, b: Broken) -> Broken {
        self.broken = Some(b);
        b
    }

    /// Whether `t` has its answer.
    pub fn is_done(&self, t: Ticket) -> bool {
        matches!(self.slots.get(t.0 as usize), Some(Some(f)) if f.status.is_some() && !f.abandoned)
    }

    /// Ends a completed operation: a read's data goes into `buf` (as many bytes as it
    /// read). `None` while it is in flight.
    pub fn take(&mut self, t: Ticket, buf: &mut [u8]) -> Option<Status> {
        let f = self.slots.get(t.0 as usize)?.as_ref()?;
        let status = f.status?;
        if f.inner == BLKIF_OP_READ as u8 {
            for (chunk, &pg) in buf.chunks_mut(PAGE_SIZE).zip(&f.pages) {
                self.pool[pg as usize].0.page().read(0, chunk);
            }
        }
        self.release(t.0);
        Some(status)
    }

    /// Gives up on `t` (its caller went away): its slot and pages are freed now if
    /// it has its answer, else when the answer comes. The back end may still be
    /// using the pages until then, so they are not reused before.
    pub fn abandon(&mut self, t: Ticket) {
        match self.slots.get_mut(t.0 as usize) {
            Some(Some(f)) if f.status.is_some() => self.release(t.0),
            Some(Some(f)) => f.abandoned = true,
            _ => {}
        }
    }

    fn release(&mut self, slot: u16) {
        if let Some(f) = self.slots[slot as usize].take() {
            self.free_pages.extend(f.pages.iter().chain(&f.indirect));
            self.free_slots.push(slot);
        }
    }

    /// Revokes every grant and closes the event channel. Call once the back end has
    /// let go of the ring (state `Closed`); a page it still maps is leaked, never
    /// reused.
    pub fn close(self) {
        for (pg, r) in self.ring_pages.into_iter().zip(self.ring_refs) {
            end(&self.p, pg, r);
        }
        for (pg, r) in self.pool {
            end(&self.p, pg, r);
        }
        self.p.close(self.port);
    }
}

/// Revokes a grant; a page the peer still maps is forgotten, so it is never reused.
fn end<P: GrantTable>(p: &P, page: P::Page, gref: GrantRef) {
    if p.end_grant(gref).is_err() {
        core::mem::forget(page);
    }
}
