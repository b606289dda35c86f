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

use super::device::{BlockDevice, IoOp};

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

/// One ring of a vbd (Linux's `xen_blkif_ring`): its pages, indices, event channel and
/// persistent grants. A vbd has one, or one per queue (`multi-queue-num-queues`).
struct Queue<P: ForeignMemory> {
    ring: Vec<P::Mapping>,
    state: BackState,
    port: Port,
    /// Persistent grants (`feature-persistent`): the front end's data pages, mapped
    /// writable once and kept until the vbd disconnects, at most `keep` of them.
    kept: BTreeMap<GrantRef, P::Mapping>,
    /// Requests answered on this queue.
    served: u64,
}

/// One connected vbd.
pub struct BlkBack<P: ForeignMemory + EventChannel, D: BlockDevice> {
    domid: DomId,
    queues: Vec<Queue<P>>,
    disk: D,
    info: Disk,
    keep: usize,
    counters: Counters,
}

/// The most queues a vbd has (`multi-queue-max-queues`).
pub const MAX_QUEUES: usize = 4;

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
        info: Disk,
    ) -> Result<Self, PlatformError> {
        Self::connect_queues(p, domid, &[(ring_refs, remote_port)], disk, info)
    }

    /// [`BlkBack::connect`] for a vbd of several queues, each with its ring pages and
    /// event channel (`queue-N/ring-ref*`, `queue-N/event-channel`).
    pub fn connect_queues(
        p: &P,
        domid: DomId,
        queues: &[(&[GrantRef], Port)],
        disk: D,
        mut info: Disk,
    ) -> Result<Self, PlatformError> {
        if queues.is_empty() || queues.len() > MAX_QUEUES {
            return Err(PlatformError::Invalid);
        }
        let mut done: Vec<Queue<P>> = Vec::with_capacity(queues.len());
        for &(refs, port) in queues {
            match Queue::connect(p, domid, refs, port) {
                Ok(q) => done.push(q),
                Err(e) => {
                    for q in done {
                        q.disconnect(p);
                    }
                    return Err(e);
                }
            }
        }
        info.sectors = disk.sectors();
        Ok(BlkBack {
            domid,
            queues: done,
            disk,
            info,
            keep: 0,
            counters: Counters::default(),
        })
    }

    /// Keeps up to `max` of the front end's data pages mapped between requests, per
    /// queue (both ends wrote `feature-persistent`; Linux's blkback keeps up to 1056
    /// per ring). A page granted read-only is mapped per request, as without
    /// persistence.
    pub fn keep_grants(&mut self, max: usize) {
        self.keep = max;
    }

    /// Data pages mapped persistently now.
    pub fn kept_grants(&self) -> usize {
        self.queues.iter().map(|q| q.kept.len()).sum()
    }

    /// How many queues (rings) the vbd has.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Requests answered on each queue.
    pub fn served_per_queue(&self) -> Vec<u64> {
        self.queues.iter().map(|q| q.served).collect()
    }

    /// Our end of each queue's event channel.
    pub fn ports(&self) -> Vec<Port> {
        self.queues.iter().map(|q| q.port).collect()
    }

    /// What was negotiated: ring pages, persistent grants (the most kept), and the
    /// features offered (`info`), for logs and the features scenario.
    pub fn negotiated(&self) -> (usize, usize, Disk) {
        (self.queues[0].ring.len(), self.keep, self.info)
    }

    /// What this vbd served so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The front end's domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Our end of the (first queue's) event channel.
    pub fn port(&self) -> Port {
        self.queues[0].port
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
        let mut served = 0;
        for q in &mut self.queues {
            let n = q.service(
                p,
                self.domid,
                &self.info,
                &mut self.disk,
                self.keep,
                &mut self.counters,
            )?;
            q.served += u64::from(n);
            served += n;
        }
        Ok(served)
    }

    /// Unmaps the rings and closes the event channels; the device is handed back.
    pub fn disconnect(self, p: &P) -> D {
        for q in self.queues {
            q.disconnect(p);
        }
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

impl<P: ForeignMemory + EventChannel> Queue<P> {
    /// Maps one ring and binds its event channel; nothing stays on failure.
    fn connect(
        p: &P,
        domid: DomId,
        ring_refs: &[GrantRef],
        remote_port: Port,
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
        Ok(Queue {
            ring,
            state,
            port,
            kept: BTreeMap::new(),
            served: 0,
        })
    }

    fn disconnect(self, p: &P) {
        for m in self.ring.into_iter().chain(self.kept.into_values()) {
            let _ = p.unmap(m);
        }
        p.close(self.port);
    }

    /// Serves every request on this queue's ring (see [`BlkBack::service`]).
    fn service<D: BlockDevice>(
        &mut self,
        p: &P,
        domid: DomId,
        info: &Disk,
        disk: &mut D,
        keep: usize,
        counters: &mut Counters,
    ) -> Result<u32, Disconnect> {
        let pages: Vec<SharedPage<'_>> = self.ring.iter().map(|m| m.page()).collect();
        let mut ring = BackRing::<RawRequest, blkif_response>::resume(&pages, self.state);
        let mut out = Answers {
            served: 0,
            notify: false,
            counters,
        };
        // Reads and writes taken from the ring, not yet run on the device.
        let mut batch = Batch::default();
        let mut kept = Kept {
            map: &mut self.kept,
            max: keep,
        };
        let result = loop {
            let answers = match ring.get_request() {
                Err(e) => Err(Disconnect::Ring(e)),
                Ok(Some(raw)) => {
                    let (id, op) = (raw.id(), raw.operation());
                    match prepare(p, domid, info, &mut kept, &raw) {
                        Err(d) => Err(d),
                        Ok(Prepared::Answered(status)) => Ok(alloc::vec![(id, op, status)]),
                        Ok(Prepared::Io(pending, io)) => {
                            batch.pending.push(pending);
                            batch.ops.push(io);
                            if batch.ops.len() >= MAX_BATCH {
                                batch.run(p, domid, disk, &mut kept)
                            } else {
                                Ok(Vec::new())
                            }
                        }
                        // Everything before it completes first.
                        Ok(Prepared::Ordered(req)) => {
                            batch.run(p, domid, disk, &mut kept).and_then(|mut v| {
                                v.push((id, op, ordered(p, domid, disk, &mut kept, req)?));
                                Ok(v)
                            })
                        }
                    }
                }
                Ok(None) => match batch.run(p, domid, disk, &mut kept) {
                    Err(d) => Err(d),
                    Ok(v) if !v.is_empty() => Ok(v),
                    // Nothing left: push, and look once more before stopping.
                    Ok(_) => {
                        out.notify |= ring.push_responses();
                        match ring.final_check_for_requests() {
                            Ok(true) => Ok(Vec::new()),
                            Ok(false) => break Ok(out.served),
                            Err(e) => Err(Disconnect::Ring(e)),
                        }
                    }
                },
            };
            match answers {
                Ok(v) => {
                    for a in v {
                        out.answer(&mut ring, a);
                    }
                }
                Err(d) => break Err(d),
            }
        };
        let notify = out.notify;
        self.state = ring.state();
        if notify {
            p.notify(self.port);
        }
        result
    }
}

/// Answers put on the ring by one [`BlkBack::service`].
struct Answers<'a> {
    served: u32,
    notify: bool,
    counters: &'a mut Counters,
}

impl Answers<'_> {
    fn answer(&mut self, ring: &mut BackRing<'_, RawRequest, blkif_response>, a: (u64, u8, i16)) {
        let (id, op, status) = a;
        ring.put_response(&blkif::response(id, op, status));
        self.counters.count(op, status);
        self.served += 1;
        if self.served.is_multiple_of(PUSH_EVERY) {
            self.notify |= ring.push_responses();
        }
    }
}

/// Reads and writes run on the device together.
const MAX_BATCH: usize = 32;

/// A request taken from the ring, ready for the device.
enum Prepared {
    /// Answered already (refused, or not offered).
    Answered(i16),
    /// A read or write: its data gathered (a write's) into the operation.
    Io(Pending, IoOp),
    /// Flush, barrier or discard: runs once everything before it completed.
    Ordered(Request),
}

/// What a read or write needs once the device is done: whom to answer, and the
/// segments a read scatters into.
struct Pending {
    id: u64,
    op: u8,
    segs: Vec<Segment>,
}

#[derive(Default)]
struct Batch {
    pending: Vec<Pending>,
    ops: Vec<IoOp>,
}

impl Batch {
    /// Runs the batch on the device; the answers, in the order the requests came.
    fn run<P: ForeignMemory, D: BlockDevice>(
        &mut self,
        p: &P,
        domid: DomId,
        disk: &mut D,
        kept: &mut Kept<'_, P::Mapping>,
    ) -> Result<Vec<(u64, u8, i16)>, Disconnect> {
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        disk.run_batch(&mut self.ops);
        let (pending, ops) = (
            core::mem::take(&mut self.pending),
            core::mem::take(&mut self.ops),
        );
        let mut answers = Vec::with_capacity(ops.len());
        for (pend, op) in pending.into_iter().zip(ops) {
            let status = finish(p, domid, kept, &pend, op)?;
            answers.push((pend.id, pend.op, status));
        }
        Ok(answers)
    }
}

fn status_of(r: Result<(), super::device::IoError>) -> i16 {
    if r.is_ok() {
        BLKIF_RSP_OKAY as i16
    } else {
        BLKIF_RSP_ERROR as i16
    }
}

/// Takes one request: checks it, maps what it names, gathers a write's data.
fn prepare<P: ForeignMemory>(
    p: &P,
    domid: DomId,
    info: &Disk,
    kept: &mut Kept<'_, P::Mapping>,
    raw: &RawRequest,
) -> Result<Prepared, Disconnect> {
    let (id, op) = (raw.id(), raw.operation());
    let req = match blkif::parse(raw, info) {
        Ok(req) => req,
        // Asked legitimately and refused: answered.
        Err(why @ (Refusal::NotSupported(_) | Refusal::ReadOnly)) => {
            return Ok(Prepared::Answered(why.status()))
        }
        Err(why) => return Err(Disconnect::Request { id, why }),
    };
    let (dir, sector, segs) = match req {
        Request::ReadWrite {
            dir,
            sector,
            segments: Segments::Direct(segs),
            ..
        } => (dir, sector, segs),
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
            (dir, sector, segs?)
        }
        other => return Ok(Prepared::Ordered(other)),
    };
    let io = gather(p, domid, kept, id, dir, sector, &segs)?;
    Ok(Prepared::Io(Pending { id, op, segs }, io))
}

/// The device operation of a read or write: a write's data gathered from its pages
/// (the segments are one contiguous range of the disk).
fn gather<P: ForeignMemory>(
    p: &P,
    domid: DomId,
    kept: &mut Kept<'_, P::Mapping>,
    id: u64,
    dir: Direction,
    sector: u64,
    segs: &[Segment],
) -> Result<IoOp, Disconnect> {
    let total: usize = segs.iter().map(seg_len).sum();
    let mut buf = alloc::vec![0u8; total];
    if dir == Direction::Write {
        let mut at = 0;
        for s in segs {
            let chunk = &mut buf[at..at + seg_len(s)];
            with_page(p, domid, kept, id, s, dir, |page| {
                page.read((s.first_sect as usize) << SECTOR_SHIFT, chunk)
            })?;
            at += seg_len(s);
        }
    }
    Ok(IoOp {
        write: dir == Direction::Write,
        offset: sector << SECTOR_SHIFT,
        buf,
        result: Ok(()),
    })
}

/// After the device: a read's data scattered into its pages; the request's status.
fn finish<P: ForeignMemory>(
    p: &P,
    domid: DomId,
    kept: &mut Kept<'_, P::Mapping>,
    pend: &Pending,
    op: IoOp,
) -> Result<i16, Disconnect> {
    if !op.write {
        let mut at = 0;
        for s in &pend.segs {
            let chunk = &op.buf[at..at + seg_len(s)];
            // Mapped even after a failed read: a grant the front end could not give
            // disconnects it either way.
            with_page(p, domid, kept, pend.id, s, Direction::Read, |page| {
                if op.result.is_ok() {
                    page.write((s.first_sect as usize) << SECTOR_SHIFT, chunk)
                }
            })?;
            at += seg_len(s);
        }
    }
    Ok(status_of(op.result))
}

fn seg_len(s: &Segment) -> usize {
    (s.sectors() as usize) << SECTOR_SHIFT
}

/// A flush, barrier or discard, run alone.
fn ordered<P: ForeignMemory, D: BlockDevice>(
    p: &P,
    domid: DomId,
    disk: &mut D,
    kept: &mut Kept<'_, P::Mapping>,
    req: Request,
) -> Result<i16, Disconnect> {
    match req {
        Request::Barrier {
            id,
            sector,
            segments,
        } => {
            // Linux's blkback: a cache flush before, the write, and FUA (a flush) after.
            if disk.flush().is_err() {
                return Ok(BLKIF_RSP_ERROR as i16);
            }
            if !segments.is_empty() {
                let mut ops = [gather(
                    p,
                    domid,
                    kept,
                    id,
                    Direction::Write,
                    sector,
                    &segments,
                )?];
                disk.run_batch(&mut ops);
                if ops[0].result.is_err() {
                    return Ok(BLKIF_RSP_ERROR as i16);
                }
            }
            Ok(status_of(disk.flush()))
        }
        Request::Flush { .. } => Ok(status_of(disk.flush())),
        Request::Discard {
            sector, nr_sectors, ..
        } => Ok(status_of(
            disk.discard(sector << SECTOR_SHIFT, nr_sectors << SECTOR_SHIFT),
        )),
        Request::ReadWrite { .. } => Ok(BLKIF_RSP_ERROR as i16),
    }
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
