//! One connected vbd (Linux's `xen_blkif` with one ring): the front end's ring pages
//! mapped, its event channel bound, and its requests served from a [`BlockDevice`].
//!
//! Every request is checked by [`pv_core::blkif::parse`] before anything is done. What
//! the front end may legitimately ask and the disk refuses is answered: an operation
//! not offered gets `BLKIF_RSP_EOPNOTSUPP`, a write to a read-only vbd or a failed
//! device operation `BLKIF_RSP_ERROR`. A front end that breaks the protocol (impossible
//! ring indices, malformed requests, a grant it did not give us or gave read-only for
//! a read) is disconnected ([`Disconnect`]): the caller takes the vbd to `Closing` with
//! an `error` node, and nothing of it stays mapped. Other vbds never notice.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use pv_core::blkif::{
    self, Direction, Disk, RawRequest, Refusal, Request, Segment, Segments, SECTOR_SHIFT,
};
use pv_core::page::SharedPage;
use pv_core::platform::{
    DomId, EventChannel, ForeignMemory, GrantRef, PlatformError, Port, SharePage,
};
use pv_core::ring::{BackRing, BackState, ProtocolError, MAX_RING_PAGES};
use xen_sys::{blkif_response, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY};

use super::device::BlockDevice;

/// Requests answered before the responses are pushed, so that the front end can
/// reuse slots while a long batch is served.
const PUSH_EVERY: u32 = 32;

/// Why a vbd was disconnected: the front end broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// Impossible ring indices.
    Ring(ProtocolError),
    /// A malformed request (of request `id`).
    Request { id: u64, why: Refusal },
    /// A grant it names could not be mapped as the request needs it.
    Grant {
        id: u64,
        gref: GrantRef,
        why: PlatformError,
    },
}

impl core::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Disconnect::Ring(e) => write!(f, "ring: {e}"),
            Disconnect::Request { id, why } => write!(f, "request {id:#x}: {why:?}"),
            Disconnect::Grant { id, gref, why } => {
                write!(f, "request {id:#x}: grant {gref} not mappable: {why:?}")
            }
        }
    }
}

/// What a vbd served (for logs and the features scenario).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests answered, of any kind.
    pub requests: u64,
    /// Reads and writes through an indirect page.
    pub indirect: u64,
    pub flushes: u64,
    pub barriers: u64,
    pub discards: u64,
    /// Answered with something other than `BLKIF_RSP_OKAY`.
    pub failed: u64,
}

/// One connected vbd.
pub struct BlkBack<P: ForeignMemory + EventChannel, D: BlockDevice> {
    domid: DomId,
    ring: Vec<P::Mapping>,
    state: BackState,
    port: Port,
    disk: D,
    info: Disk,
    /// Persistent grants (`feature-persistent`): the front end's data pages, mapped
    /// writable once and kept until the vbd disconnects, at most `keep` of them.
    kept: BTreeMap<GrantRef, P::Mapping>,
    keep: usize,
    counters: Counters,
}

impl<P: ForeignMemory + EventChannel, D: BlockDevice> BlkBack<P, D> {
    /// Connects to domain `domid`'s vbd: maps its ring pages (`ring-ref` or
    /// `ring-ref0..N`, `2^ring-page-order` of them) read-write, binds to its
    /// `event-channel`, and serves `disk` with the features in `info` (its size is
    /// the disk's). On any error nothing stays mapped or bound.
    pub fn connect(
        p: &P,
        domid: DomId,
        ring_refs: &[GrantRef],
        remote_port: Port,
        disk: D,
        mut info: Disk,
    ) -> Result<Self, PlatformError> {
        if ring_refs.is_empty()
            || ring_refs.len() > MAX_RING_PAGES
            || !ring_refs.len().is_power_of_two()
        {
            return Err(PlatformError::Invalid);
        }
        let mut ring = Vec::with_capacity(ring_refs.len());
        let undo = |p: &P, ring: Vec<P::Mapping>| {
            for m in ring {
                let _ = p.unmap(m);
            }
        };
        for &gref in ring_refs {
            match p.map(domid, gref, false) {
                Ok(m) => ring.push(m),
                Err(e) => {
                    undo(p, ring);
                    return Err(e);
                }
            }
        }
        let state = {
            let pages: Vec<SharedPage<'_>> = ring.iter().map(|m| m.page()).collect();
            BackRing::<RawRequest, blkif_response>::attach(&pages).map(|r| r.state())
        };
        let Ok(state) = state else {
            undo(p, ring);
            return Err(PlatformError::Invalid);
        };
        let port = match p.bind_interdomain(domid, remote_port) {
            Ok(port) => port,
            Err(e) => {
                undo(p, ring);
                return Err(e);
            }
        };
        info.sectors = disk.sectors();
        Ok(BlkBack {
            domid,
            ring,
            state,
            port,
            disk,
            info,
            kept: BTreeMap::new(),
            keep: 0,
            counters: Counters::default(),
        })
    }

    /// Keeps up to `max` of the front end's data pages mapped between requests (both
    /// ends wrote `feature-persistent`; Linux's blkback keeps up to 1056 per ring). A
    /// page granted read-only is mapped per request, as without persistence.
    pub fn keep_grants(&mut self, max: usize) {
        self.keep = max;
    }

    /// Data pages mapped persistently now.
    pub fn kept_grants(&self) -> usize {
        self.kept.len()
    }

    /// What was negotiated: ring pages, persistent grants (the most kept), and the
    /// features offered (`info`), for logs and the features scenario.
    pub fn negotiated(&self) -> (usize, usize, Disk) {
        (self.ring.len(), self.keep, self.info)
    }

    /// What this vbd served so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The front end's domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Our end of the event channel.
    pub fn port(&self) -> Port {
        self.port
    }

    /// The device served.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// Serves every request on the ring (`do_block_io_op`: until the final check finds
    /// none), answers them, and notifies the front end if it asked. Returns how many
    /// were answered, or why the front end must be disconnected (then call
    /// [`BlkBack::disconnect`]).
    pub fn service(&mut self, p: &P) -> Result<u32, Disconnect> {
        let pages: Vec<SharedPage<'_>> = self.ring.iter().map(|m| m.page()).collect();
        let mut ring = BackRing::<RawRequest, blkif_response>::resume(&pages, self.state);
        let mut served = 0;
        let mut notify = false;
        let result = loop {
            match ring.get_request() {
                Err(e) => break Err(Disconnect::Ring(e)),
                Ok(Some(raw)) => {
                    let mut kept = Kept {
                        map: &mut self.kept,
                        max: self.keep,
                    };
                    let status =
                        match serve(p, self.domid, &mut self.disk, &self.info, &mut kept, &raw) {
                            Ok(status) => status,
                            Err(d) => break Err(d),
                        };
                    ring.put_response(&blkif::response(raw.id(), raw.operation(), status));
                    self.counters.count(raw.operation(), status);
                    served += 1;
                    if served % PUSH_EVERY == 0 {
                        notify |= ring.push_responses();
                    }
                }
                Ok(None) => {
                    notify |= ring.push_responses();
                    match ring.final_check_for_requests() {
                        Ok(true) => continue,
                        Ok(false) => break Ok(served),
                        Err(e) => break Err(Disconnect::Ring(e)),
                    }
                }
            }
        };
        self.state = ring.state();
        if notify {
            p.notify(self.port);
        }
        result
    }

    /// Unmaps the ring and closes the event channel; the device is handed back.
    pub fn disconnect(self, p: &P) -> D {
        for m in self.ring.into_iter().chain(self.kept.into_values()) {
            let _ = p.unmap(m);
        }
        p.close(self.port);
        self.disk
    }
}

/// The persistent mappings of one vbd, as a request's service sees them.
struct Kept<'a, M> {
    map: &'a mut BTreeMap<GrantRef, M>,
    max: usize,
}

impl<M: SharePage> Kept<'_, M> {
    /// The kept mapping of `gref`, mapping (writable) and keeping it if there is
    /// room; `None`: map it for this request only.
    fn get<P: ForeignMemory<Mapping = M>>(
        &mut self,
        p: &P,
        domid: DomId,
        gref: GrantRef,
    ) -> Option<&M> {
        if !self.map.contains_key(&gref) {
            if self.map.len() >= self.max {
                return None;
            }
            let m = p.map(domid, gref, false).ok()?;
            self.map.insert(gref, m);
        }
        self.map.get(&gref)
    }
}

impl Counters {
    fn count(&mut self, op: u8, status: i16) {
        self.requests += 1;
        match u32::from(op) {
            xen_sys::BLKIF_OP_INDIRECT => self.indirect += 1,
            xen_sys::BLKIF_OP_FLUSH_DISKCACHE => self.flushes += 1,
            xen_sys::BLKIF_OP_WRITE_BARRIER => self.barriers += 1,
            xen_sys::BLKIF_OP_DISCARD => self.discards += 1,
            _ => {}
        }
        if status != BLKIF_RSP_OKAY as i16 {
            self.failed += 1;
        }
    }
}

/// Serves one request: its status, or why the front end is disconnected.
fn serve<P: ForeignMemory, D: BlockDevice>(
    p: &P,
    domid: DomId,
    disk: &mut D,
    info: &Disk,
    kept: &mut Kept<'_, P::Mapping>,
    raw: &RawRequest,
) -> Result<i16, Disconnect> {
    let id = raw.id();
    let req = match blkif::parse(raw, info) {
        Ok(req) => req,
        // Asked legitimately and refused: answered.
        Err(why @ (Refusal::NotSupported(_) | Refusal::ReadOnly)) => return Ok(why.status()),
        Err(why) => return Err(Disconnect::Request { id, why }),
    };
    let io = |r: Result<(), super::device::IoError>| {
        if r.is_ok() {
            BLKIF_RSP_OKAY as i16
        } else {
            BLKIF_RSP_ERROR as i16
        }
    };
    match req {
        Request::ReadWrite {
            dir,
            sector,
            segments: Segments::Direct(segs),
            ..
        } => transfer(p, domid, disk, kept, id, dir, sector, &segs),
        Request::ReadWrite {
            dir,
            sector,
            segments: Segments::Indirect { pages, count },
            ..
        } => {
            let mut maps = Vec::with_capacity(pages.len());
            let mut bad = None;
            for &gref in &pages {
                match p.map(domid, gref, true) {
                    Ok(m) => maps.push(m),
                    Err(why) => {
                        bad = Some(Disconnect::Grant { id, gref, why });
                        break;
                    }
                }
            }
            let segs = match bad {
                Some(d) => Err(d),
                None => {
                    let views: Vec<SharedPage<'_>> = maps.iter().map(|m| m.page()).collect();
                    blkif::indirect_segments(&views, count, sector, info)
                        .map_err(|why| Disconnect::Request { id, why })
                }
            };
            for m in maps {
                let _ = p.unmap(m);
            }
            transfer(p, domid, disk, kept, id, dir, sector, &segs?)
        }
        Request::Barrier {
            sector, segments, ..
        } => {
            // Linux's blkback: a cache flush before, the write, and FUA (a flush) after.
            if disk.flush().is_err() {
                return Ok(BLKIF_RSP_ERROR as i16);
            }
            let status = transfer(
                p,
                domid,
                disk,
                kept,
                id,
                Direction::Write,
                sector,
                &segments,
            )?;
            if status != BLKIF_RSP_OKAY as i16 {
                return Ok(status);
            }
            Ok(io(disk.flush()))
        }
        Request::Flush { .. } => Ok(io(disk.flush())),
        Request::Discard {
            sector, nr_sectors, ..
        } => Ok(io(
            disk.discard(sector << SECTOR_SHIFT, nr_sectors << SECTOR_SHIFT)
        )),
    }
}

/// Moves the data of a read or write between the device and the granted pages: the
/// segments are one contiguous range of the disk, so the device sees one operation
/// (gathered from the pages before a write, scattered into them after a read).
#[allow(clippy::too_many_arguments)]
fn transfer<P: ForeignMemory, D: BlockDevice>(
    p: &P,
    domid: DomId,
    disk: &mut D,
    kept: &mut Kept<'_, P::Mapping>,
    id: u64,
    dir: Direction,
    sector: u64,
    segs: &[Segment],
) -> Result<i16, Disconnect> {
    let len = |s: &Segment| (s.sectors() as usize) << SECTOR_SHIFT;
    let total: usize = segs.iter().map(len).sum();
    let mut buf = alloc::vec![0u8; total];
    let offset = sector << SECTOR_SHIFT;
    let ok = match dir {
        Direction::Write => {
            let mut at = 0;
            for s in segs {
                let chunk = &mut buf[at..at + len(s)];
                with_page(p, domid, kept, id, s, dir, |page| {
                    page.read((s.first_sect as usize) << SECTOR_SHIFT, chunk)
                })?;
                at += len(s);
            }
            disk.write(offset, &buf).is_ok()
        }
        Direction::Read => {
            let ok = disk.read(offset, &mut buf).is_ok();
            let mut at = 0;
            for s in segs {
                let chunk = &buf[at..at + len(s)];
                // Mapped even after a failed read: a grant the front end could not give
                // disconnects it either way.
                with_page(p, domid, kept, id, s, dir, |page| {
                    if ok {
                        page.write((s.first_sect as usize) << SECTOR_SHIFT, chunk)
                    }
                })?;
                at += len(s);
            }
            ok
        }
    };
    Ok(if ok {
        BLKIF_RSP_OKAY as i16
    } else {
        BLKIF_RSP_ERROR as i16
    })
}

/// Runs `f` on segment `s`'s page: a persistently kept mapping, or one made for it
/// (writable for a read, which fills the page) and undone after.
fn with_page<P: ForeignMemory>(
    p: &P,
    domid: DomId,
    kept: &mut Kept<'_, P::Mapping>,
    id: u64,
    s: &Segment,
    dir: Direction,
    f: impl FnOnce(SharedPage<'_>),
) -> Result<(), Disconnect> {
    if let Some(m) = kept.get(p, domid, s.gref) {
        f(m.page());
        return Ok(());
    }
    let m = p
        .map(domid, s.gref, dir == Direction::Write)
        .map_err(|why| Disconnect::Grant {
            id,
            gref: s.gref,
            why,
        })?;
    f(m.page());
    let _ = p.unmap(m);
    Ok(())
}
