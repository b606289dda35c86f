//! The shared request/response rings of `xen/include/public/io/ring.h`, on one page or
//! on `2^ring-page-order` pages, generic over the request and response structs.
//!
//! The layout is `DEFINE_RING_TYPES`': four indices (`req_prod`, `req_event`,
//! `rsp_prod`, `rsp_event`) at the start of the first page, 64 bytes of header in all,
//! then the entries, each the size of the request/response union, their number the
//! largest power of two that fits (`__RING_SIZE`). Indices are free-running 32-bit
//! counters; an entry is at `index & (size - 1)`.
//!
//! The notification rules are ring.h's: a producer pushes its private producer index
//! and notifies only if the consumer asked for an event in between
//! (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`); a consumer that runs dry sets its event
//! index one past what it consumed and looks once more
//! (`RING_FINAL_CHECK_FOR_RESPONSES`/`_REQUESTS`), so no notification is lost.
//!
//! The peer is hostile. Each of its indices is read once and checked before use (and
//! entries up to it are consumed before it is read again): a back end refuses a `req_prod` more than one ring ahead of the responses it
//! produced (`RING_REQUEST_PROD_OVERFLOW`), a front end a `rsp_prod` beyond the
//! requests it made; either is a [`ProtocolError`], and the ring stays broken (every
//! later call returns the same error, whatever the peer writes next): the driver
//! disconnects the device. Entries are copied out of the
//! shared pages before they are decoded, so the peer cannot change a request while it
//! is being checked.

use core::marker::PhantomData;
use core::mem::{align_of, offset_of, size_of};
use core::sync::atomic::{fence, Ordering};

use xen_sys::blkif_sring;

use crate::abi::{FromGuest, ToGuest};
use crate::page::{SharedPage, PAGE_SIZE};

/// A ring index (`RING_IDX`).
pub type RingIdx = u32;

/// Where the indices are in the first page (any `*_sring` of the bindings has them
/// at the same offsets; the block ring's are used).
const REQ_PROD: usize = offset_of!(blkif_sring, req_prod);
const REQ_EVENT: usize = offset_of!(blkif_sring, req_event);
const RSP_PROD: usize = offset_of!(blkif_sring, rsp_prod);
const RSP_EVENT: usize = offset_of!(blkif_sring, rsp_event);
/// The entries start after the header (64 bytes).
const ENTRIES: usize = offset_of!(blkif_sring, ring);

/// Most pages of one ring: Linux's `XENBUS_MAX_RING_GRANT_ORDER` is 4.
pub const MAX_RING_PAGES: usize = 16;

/// The peer broke the ring protocol: the ring must not be used again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The front end's `req_prod` is more than a ring ahead of our responses, or
    /// behind the requests we already consumed.
    RequestOverflow {
        req_prod: RingIdx,
        rsp_prod: RingIdx,
    },
    /// The back end's `rsp_prod` claims responses to requests never made.
    ResponseOverflow {
        rsp_prod: RingIdx,
        req_prod: RingIdx,
    },
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProtocolError::RequestOverflow { req_prod, rsp_prod } => write!(
                f,
                "req_prod {req_prod} is impossible: more than a ring ahead of rsp_prod \
                 {rsp_prod}, or behind the requests consumed"
            ),
            ProtocolError::ResponseOverflow { rsp_prod, req_prod } => write!(
                f,
                "rsp_prod {rsp_prod} is beyond the requests made ({req_prod})"
            ),
        }
    }
}

/// Why a request could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingFull;

/// Bytes of one entry: the size of the C union of request and response.
pub const fn entry_size<Req, Rsp>() -> usize {
    let size = if size_of::<Req>() > size_of::<Rsp>() {
        size_of::<Req>()
    } else {
        size_of::<Rsp>()
    };
    let align = if align_of::<Req>() > align_of::<Rsp>() {
        align_of::<Req>()
    } else {
        align_of::<Rsp>()
    };
    size.next_multiple_of(align)
}

/// Entries of a ring of `pages` pages with entries of `entry` bytes (`__RING_SIZE`:
/// the largest power of two that fits).
pub const fn ring_size(pages: usize, entry: usize) -> u32 {
    let fit = (pages * PAGE_SIZE - ENTRIES) / entry;
    if fit == 0 {
        0
    } else {
        1 << fit.ilog2()
    }
}

/// The shared pages of one ring, in ring order.
#[derive(Clone, Copy, Debug)]
struct Area<'a> {
    pages: &'a [SharedPage<'a>],
}

impl Area<'_> {
    fn index(&self, off: usize) -> RingIdx {
        self.pages[0].load_u32(off)
    }

    fn set_index(&self, off: usize, v: RingIdx) {
        self.pages[0].store_u32(off, v)
    }

    /// Copies `buf.len()` bytes at byte `off` of the ring (across pages).
    fn read(&self, mut off: usize, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let (page, at) = (off / PAGE_SIZE, off % PAGE_SIZE);
            let n = (PAGE_SIZE - at).min(buf.len() - done);
            self.pages[page].read(at, &mut buf[done..done + n]);
            done += n;
            off += n;
        }
    }

    fn write(&self, mut off: usize, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let (page, at) = (off / PAGE_SIZE, off % PAGE_SIZE);
            let n = (PAGE_SIZE - at).min(data.len() - done);
            self.pages[page].write(at, &data[done..done + n]);
            done += n;
            off += n;
        }
    }
}

/// One side's view of a ring: the pages, the number of entries, and the entry codecs.
struct Ring<'a, Req, Rsp> {
    area: Area<'a>,
    size: RingIdx,
    _types: PhantomData<(Req, Rsp)>,
}

/// The largest entry the rings carry (blkif's request is 112 bytes).
const MAX_ENTRY: usize = 128;

impl<'a, Req: FromGuest + ToGuest, Rsp: FromGuest + ToGuest> Ring<'a, Req, Rsp> {
    const ENTRY: usize = entry_size::<Req, Rsp>();

    /// # Panics
    /// If `pages` is empty, longer than [`MAX_RING_PAGES`] or not a power of two long,
    /// or an entry does not fit (a bug in the driver, not the peer's doing).
    fn new(pages: &'a [SharedPage<'a>]) -> Self {
        const { assert!(Self::ENTRY <= MAX_ENTRY) };
        assert!(
            !pages.is_empty() && pages.len() <= MAX_RING_PAGES && pages.len().is_power_of_two(),
            "a ring is 1, 2, 4, ... {MAX_RING_PAGES} pages, not {}",
            pages.len()
        );
        Ring {
            area: Area { pages },
            size: ring_size(pages.len(), Self::ENTRY),
            _types: PhantomData,
        }
    }

    fn slot(&self, idx: RingIdx) -> usize {
        ENTRIES + (idx & (self.size - 1)) as usize * Self::ENTRY
    }

    fn get<T: FromGuest>(&self, idx: RingIdx) -> T {
        let mut buf = [0u8; MAX_ENTRY];
        let b = &mut buf[..size_of::<T>()];
        self.area.read(self.slot(idx), b);
        T::decode(b)
    }

    fn put<T: ToGuest>(&self, idx: RingIdx, v: &T) {
        let mut buf = [0u8; MAX_ENTRY];
        let b = &mut buf[..size_of::<T>()];
        v.encode(b);
        self.area.write(self.slot(idx), b);
    }
}

/// `prod` moved from `old` to `new` and the peer wants an event at `event`: notify if
/// `event` is in `(old, new]` (ring.h's `(new - event) < (new - old)`).
fn must_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// The front end of a ring: it makes requests and consumes responses.
pub struct FrontRing<'a, Req, Rsp> {
    ring: Ring<'a, Req, Rsp>,
    state: FrontState,
}

/// A front end's private indices, kept between uses of the ring by a driver that holds
/// the pages itself ([`FrontRing::state`], [`FrontRing::resume`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontState {
    req_prod_pvt: RingIdx,
    rsp_cons: RingIdx,
    /// The back end's `rsp_prod` as last read and checked: responses up to it are
    /// consumed without reading the shared index again (ring.h's `rp`).
    rsp_seen: RingIdx,
    /// The first protocol error, for good.
    broken: Option<ProtocolError>,
}

impl<'a, Req: FromGuest + ToGuest, Rsp: FromGuest + ToGuest> FrontRing<'a, Req, Rsp> {
    /// Initialises the shared header on `pages` (`SHARED_RING_INIT` and
    /// `FRONT_RING_INIT`): the front end owns a fresh ring before it grants it.
    pub fn init(pages: &'a [SharedPage<'a>]) -> Self {
        let ring = Ring::new(pages);
        let a = ring.area;
        a.set_index(REQ_PROD, 0);
        a.set_index(RSP_PROD, 0);
        a.set_index(REQ_EVENT, 1);
        a.set_index(RSP_EVENT, 1);
        for off in (RSP_EVENT + 4..ENTRIES).step_by(4) {
            a.set_index(off, 0);
        }
        FrontRing {
            ring,
            state: FrontState {
                req_prod_pvt: 0,
                rsp_cons: 0,
                rsp_seen: 0,
                broken: None,
            },
        }
    }

    /// The ring on `pages` (the same ones, in the same order) as it was left.
    pub fn resume(pages: &'a [SharedPage<'a>], state: FrontState) -> Self {
        FrontRing {
            ring: Ring::new(pages),
            state,
        }
    }

    /// The index the next request goes to.
    pub fn req_prod_pvt(&self) -> RingIdx {
        self.state.req_prod_pvt
    }

    /// The index of the next response to consume.
    pub fn rsp_cons(&self) -> RingIdx {
        self.state.rsp_cons
    }

    /// The private indices, to [`FrontRing::resume`] from.
    pub fn state(&self) -> FrontState {
        self.state
    }

    /// Entries in the ring (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.ring.size
    }

    /// Requests that can be queued now (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.ring.size - self.state.req_prod_pvt.wrapping_sub(self.state.rsp_cons)
    }

    /// Requests made and not yet answered (consumed).
    pub fn in_flight(&self) -> u32 {
        self.state.req_prod_pvt.wrapping_sub(self.state.rsp_cons)
    }

    /// Queues `req` (not yet visible to the back end: see
    /// [`FrontRing::push_requests`]).
    pub fn put_request(&mut self, req: &Req) -> Result<(), RingFull> {
        if self.free_requests() == 0 {
            return Err(RingFull);
        }
        self.ring.put(self.state.req_prod_pvt, req);
        self.state.req_prod_pvt = self.state.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the queued requests; true if the back end must be notified
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn push_requests(&mut self) -> bool {
        let a = self.ring.area;
        let old = a.index(REQ_PROD);
        let new = self.state.req_prod_pvt;
        // Release: the entries are written before the index says so.
        a.set_index(REQ_PROD, new);
        // The back end's req_event is read after our req_prod is visible (ring.h's
        // `xen_mb()`), or an event asked for in between could be missed.
        fence(Ordering::SeqCst);
        must_notify(old, new, a.index(REQ_EVENT))
    }

    /// The back end's `rsp_prod`, checked: it cannot answer requests never made.
    fn rsp_prod(&mut self) -> Result<RingIdx, ProtocolError> {
        if let Some(e) = self.state.broken {
            return Err(e);
        }
        let rsp_prod = self.ring.area.index(RSP_PROD);
        if rsp_prod.wrapping_sub(self.state.rsp_cons) > self.in_flight() {
            let e = ProtocolError::ResponseOverflow {
                rsp_prod,
                req_prod: self.state.req_prod_pvt,
            };
            self.state.broken = Some(e);
            return Err(e);
        }
        Ok(rsp_prod)
    }

    /// Responses ready to be consumed (`RING_HAS_UNCONSUMED_RESPONSES`).
    pub fn unconsumed_responses(&mut self) -> Result<u32, ProtocolError> {
        Ok(self.rsp_prod()?.wrapping_sub(self.state.rsp_cons))
    }

    /// The next response, if one is ready.
    pub fn get_response(&mut self) -> Result<Option<Rsp>, ProtocolError> {
        if self.state.rsp_seen == self.state.rsp_cons {
            self.state.rsp_seen = self.rsp_prod()?;
            if self.state.rsp_seen == self.state.rsp_cons {
                return Ok(None);
            }
        }
        let rsp = self.ring.get(self.state.rsp_cons);
        self.state.rsp_cons = self.state.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Asks for an event at the next response and checks once more
    /// (`RING_FINAL_CHECK_FOR_RESPONSES`): true if responses are ready, so that the
    /// caller may sleep only on false.
    pub fn final_check_for_responses(&mut self) -> Result<bool, ProtocolError> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        self.ring
            .area
            .set_index(RSP_EVENT, self.state.rsp_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_responses()? > 0)
    }
}

/// The back end of a ring: it consumes requests and makes responses.
pub struct BackRing<'a, Req, Rsp> {
    ring: Ring<'a, Req, Rsp>,
    state: BackState,
}

/// A back end's private indices, kept between uses of the ring by a driver that holds
/// the mapped pages itself ([`BackRing::state`], [`BackRing::resume`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackState {
    rsp_prod_pvt: RingIdx,
    req_cons: RingIdx,
    /// The front end's `req_prod` as last read and checked (ring.h's `rp`).
    req_seen: RingIdx,
    /// The first protocol error, for good.
    broken: Option<ProtocolError>,
}

impl<'a, Req: FromGuest + ToGuest, Rsp: FromGuest + ToGuest> BackRing<'a, Req, Rsp> {
    /// Attaches to a ring the front end initialised (`BACK_RING_INIT`), starting from
    /// its current indices (`BACK_RING_ATTACH`, for a ring that was in use: a back end
    /// that reconnects). A fresh ring has both at 0.
    pub fn attach(pages: &'a [SharedPage<'a>]) -> Result<Self, ProtocolError> {
        let ring = Ring::<Req, Rsp>::new(pages);
        let rsp_prod = ring.area.index(RSP_PROD);
        let mut back = BackRing {
            ring,
            state: BackState {
                rsp_prod_pvt: rsp_prod,
                req_cons: rsp_prod,
                req_seen: rsp_prod,
                broken: None,
            },
        };
        back.req_prod()?;
        Ok(back)
    }

    /// The ring on `pages` (the same ones, in the same order) as it was left.
    pub fn resume(pages: &'a [SharedPage<'a>], state: BackState) -> Self {
        BackRing {
            ring: Ring::new(pages),
            state,
        }
    }

    /// The private indices, to [`BackRing::resume`] from.
    pub fn state(&self) -> BackState {
        self.state
    }

    /// Requests consumed and not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.state.req_cons.wrapping_sub(self.state.rsp_prod_pvt)
    }

    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.ring.size
    }

    /// The front end's `req_prod`, checked: at most a ring ahead of our responses
    /// (`RING_REQUEST_PROD_OVERFLOW`), and not behind what we consumed.
    fn req_prod(&mut self) -> Result<RingIdx, ProtocolError> {
        if let Some(e) = self.state.broken {
            return Err(e);
        }
        let req_prod = self.ring.area.index(REQ_PROD);
        let ahead = req_prod.wrapping_sub(self.state.rsp_prod_pvt);
        if ahead > self.ring.size
            || ahead < self.state.req_cons.wrapping_sub(self.state.rsp_prod_pvt)
        {
            let e = ProtocolError::RequestOverflow {
                req_prod,
                rsp_prod: self.state.rsp_prod_pvt,
            };
            self.state.broken = Some(e);
            return Err(e);
        }
        Ok(req_prod)
    }

    /// Requests ready to be consumed (`RING_UNCONSUMED_REQUESTS`).
    pub fn unconsumed_requests(&mut self) -> Result<u32, ProtocolError> {
        Ok(self.req_prod()?.wrapping_sub(self.state.req_cons))
    }

    /// The next request, if one is ready. The entry is copied out of the ring first:
    /// what the caller checks is what it acts on.
    pub fn get_request(&mut self) -> Result<Option<Req>, ProtocolError> {
        if self.state.req_seen == self.state.req_cons {
            self.state.req_seen = self.req_prod()?;
            if self.state.req_seen == self.state.req_cons {
                return Ok(None);
            }
        }
        let req = self.ring.get(self.state.req_cons);
        self.state.req_cons = self.state.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Queues the response to a consumed request (not yet visible: see
    /// [`BackRing::push_responses`]). There is always room: each consumed request
    /// leaves one slot, so answering more than was consumed is the driver's bug.
    ///
    /// # Panics
    /// On a response to no consumed request.
    pub fn put_response(&mut self, rsp: &Rsp) {
        assert!(
            self.state.rsp_prod_pvt != self.state.req_cons,
            "a response to no request"
        );
        self.ring.put(self.state.rsp_prod_pvt, rsp);
        self.state.rsp_prod_pvt = self.state.rsp_prod_pvt.wrapping_add(1);
    }

    /// Publishes the queued responses; true if the front end must be notified
    /// (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn push_responses(&mut self) -> bool {
        let a = self.ring.area;
        let old = a.index(RSP_PROD);
        let new = self.state.rsp_prod_pvt;
        a.set_index(RSP_PROD, new);
        fence(Ordering::SeqCst);
        must_notify(old, new, a.index(RSP_EVENT))
    }

    /// Asks for an event at the next request and checks once more
    /// (`RING_FINAL_CHECK_FOR_REQUESTS`).
    pub fn final_check_for_requests(&mut self) -> Result<bool, ProtocolError> {
        if self.unconsumed_requests()? > 0 {
            return Ok(true);
        }
        self.ring
            .area
            .set_index(REQ_EVENT, self.state.req_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_requests()? > 0)
    }
}

#[cfg(test)]
mod tests;
