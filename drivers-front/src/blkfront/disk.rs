//! The block device a guest's tasks use: async read, write, flush and discard at byte
//! offsets, over one connected [`Blkfront`], with a bounded queue depth.
//!
//! Any number of tasks may use the disk at once; at most `depth` operations are on
//! the ring together, the others wait their turn. An operation larger than one
//! request carries is split into requests made one after another. Offsets and
//! lengths need not be whole sectors: a read of a part of a sector reads the sector,
//! a write of a part of one reads, merges and writes it back (not atomic against a
//! concurrent write to the same sector).
//!
//! Wake-ups: the owner binds the vbd's event channel to a handler that calls
//! [`Disk::wake_all`]; the waker table is locked only under the platform's
//! [`EventChannel::masked`], so that handler never waits for a lock its CPU holds.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use pv_core::blkif::SECTOR_SHIFT;
use pv_core::platform::{EventChannel, GrantTable};
use spin::Mutex;

use super::ring::{Blkfront, Broken, Op, Refused, Status, Ticket};

const SECTOR: u64 = 1 << SECTOR_SHIFT;

fn aligned(bytes: u64) -> bool {
    bytes.is_multiple_of(SECTOR)
}

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// Not started: outside the disk, read-only, not offered.
    Refused(Refused),
    /// The back end answered with an error status.
    Status(Status),
    /// The vbd broke.
    Broken(Broken),
}

/// An async block device.
pub struct Disk<P: GrantTable + EventChannel + Clone> {
    /// The platform, apart from the ring: the event handler's wake-up must not wait
    /// for the ring's lock.
    p: P,
    /// One ring per queue (`multi-queue-num-queues`); a request goes to the queue with
    /// the fewest in flight.
    fronts: Vec<Mutex<Blkfront<P>>>,
    waiters: Mutex<BTreeMap<u64, Waker>>,
    next_waiter: AtomicU64,
    depth: usize,
    /// Where the next choice of a queue starts.
    next_queue: AtomicU64,
}

impl<P: GrantTable + EventChannel + Clone> Disk<P> {
    /// The disk over a connected `front`, with at most `depth` operations in flight.
    pub fn new(front: Blkfront<P>, depth: usize) -> Self {
        Self::with_queues(alloc::vec![front], depth)
    }

    /// The disk over the connected queues of one vbd (at least one), with at most
    /// `depth` operations in flight in all.
    pub fn with_queues(fronts: Vec<Blkfront<P>>, depth: usize) -> Self {
        assert!(!fronts.is_empty(), "a disk has a queue");
        Disk {
            p: fronts[0].platform().clone(),
            fronts: fronts.into_iter().map(Mutex::new).collect(),
            waiters: Mutex::new(BTreeMap::new()),
            next_waiter: AtomicU64::new(1),
            depth: depth.max(1),
            next_queue: AtomicU64::new(0),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.fronts[0].lock().offer().sectors << SECTOR_SHIFT
    }

    pub fn readonly(&self) -> bool {
        self.fronts[0].lock().offer().readonly
    }

    /// Wakes every waiting operation: call it when the vbd's event channel fires.
    pub fn wake_all(&self) {
        self.p.masked(|| {
            for w in self.waiters.lock().values() {
                w.wake_by_ref();
            }
        });
    }

    /// Runs `f` on the ring as it is now (for the owner: statistics, closing).
    pub fn with_front<R>(&self, f: impl FnOnce(&mut Blkfront<P>) -> R) -> R {
        f(&mut self.fronts[0].lock())
    }

    fn register(&self, id: u64, waker: &Waker) {
        self.p.masked(|| {
            self.waiters.lock().insert(id, waker.clone());
        })
    }

    fn unregister(&self, id: u64) {
        self.p.masked(|| {
            self.waiters.lock().remove(&id);
        })
    }

    /// One request: waits for room, submits, waits for the answer, takes it (a read's
    /// data into `buf`).
    async fn one(&self, op: Op<'_>, buf: &mut [u8]) -> Result<(), IoError> {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let _guard = Unregister { disk: self, id };
        let mut ticket = Abandon {
            disk: self,
            ticket: None,
        };
        // A submitted request is published at once (a back end that looks finds it),
        // and the back end is told on this future's next poll, which the executor
        // makes after the other ready tasks had their turn: one event then tells of
        // every request they submitted meanwhile (Linux's blkfront kicks once per
        // batch of its queue, not per request).
        let mut told = true;
        let status = poll_fn(|cx: &mut Context<'_>| {
            let q = match ticket.ticket {
                Some((q, _)) => q,
                None => self.least_busy(),
            };
            let mut front = self.fronts[q].lock();
            let t = match ticket.ticket.map(|(_, t)| t) {
                Some(t) => {
                    if !told {
                        told = true;
                        front.notify();
                    }
                    t
                }
                None => {
                    // Answers that came free slots (an abandoned request's too).
                    if let Err(b) = front.poll() {
                        return Poll::Ready(Err(IoError::Broken(b)));
                    }
                    if self.in_flight_except(q) + front.in_flight() >= self.depth {
                        self.register(id, cx.waker());
                        return Poll::Pending;
                    }
                    match front.submit(op) {
                        Ok(t) => {
                            front.publish();
                            told = false;
                            ticket.ticket = Some((q, t));
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        Err(Refused::Busy) => {
                            self.register(id, cx.waker());
                            return Poll::Pending;
                        }
                        Err(Refused::Broken) => {
                            let b = front.broken().expect("broken");
                            return Poll::Ready(Err(IoError::Broken(b)));
                        }
                        Err(r) => return Poll::Ready(Err(IoError::Refused(r))),
                    }
                }
            };
            // Register before looking, so that an answer arriving in between wakes us.
            self.register(id, cx.waker());
            if let Err(b) = front.poll() {
                return Poll::Ready(Err(IoError::Broken(b)));
            }
            match front.take(t, buf) {
                Some(s) => {
                    ticket.ticket = None;
                    Poll::Ready(Ok(s))
                }
                None => Poll::Pending,
            }
        })
        .await;
        drop(ticket);
        // A slot and pages came free: whoever waits for room may go.
        self.wake_all();
        match status? {
            Status::Okay => Ok(()),
            s => Err(IoError::Status(s)),
        }
    }

    /// The queue with the fewest operations in flight; among equals, the next in turn
    /// (so that one request after another still uses every queue).
    fn least_busy(&self) -> usize {
        let n = self.fronts.len();
        let start = self.next_queue.fetch_add(1, Ordering::Relaxed) as usize;
        (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&q| self.fronts[q].lock().in_flight())
            .unwrap_or(0)
    }

    /// Operations in flight on every queue but `q` (whose lock the caller holds).
    fn in_flight_except(&self, q: usize) -> usize {
        (0..self.fronts.len())
            .filter(|&i| i != q)
            .map(|i| self.fronts[i].lock().in_flight())
            .sum()
    }

    /// How many queues the disk has.
    pub fn queues(&self) -> usize {
        self.fronts.len()
    }

    /// Runs `f` on queue `q`'s ring.
    pub fn with_queue<R>(&self, q: usize, f: impl FnOnce(&mut Blkfront<P>) -> R) -> R {
        f(&mut self.fronts[q].lock())
    }

    fn max_bytes(&self) -> usize {
        (self.fronts[0].lock().max_sectors() << SECTOR_SHIFT) as usize
    }

    /// Reads `buf.len()` bytes at byte `offset`.
    pub async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(IoError::Refused(Refused::Invalid))?;
        if !aligned(offset) || !aligned(end) {
            // Read the whole sectors around it, and keep the part asked for.
            let first = offset / SECTOR * SECTOR;
            let last = end.div_ceil(SECTOR) * SECTOR;
            let mut tmp = vec![0u8; (last - first) as usize];
            self.read_aligned(first, &mut tmp).await?;
            let at = (offset - first) as usize;
            buf.copy_from_slice(&tmp[at..at + buf.len()]);
            return Ok(());
        }
        self.read_aligned(offset, buf).await
    }

    async fn read_aligned(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let max = self.max_bytes();
        let mut done = 0;
        for chunk in buf.chunks_mut(max) {
            let sector = (offset + done) >> SECTOR_SHIFT;
            let sectors = (chunk.len() as u64) >> SECTOR_SHIFT;
            self.one(Op::Read { sector, sectors }, chunk).await?;
            done += chunk.len() as u64;
        }
        Ok(())
    }

    /// Writes `data` at byte `offset`; durable only after a [`Disk::flush`] that
    /// starts after this returns.
    pub async fn write(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(IoError::Refused(Refused::Invalid))?;
        if !aligned(offset) || !aligned(end) {
            let first = offset / SECTOR * SECTOR;
            let last = end.div_ceil(SECTOR) * SECTOR;
            let mut tmp = vec![0u8; (last - first) as usize];
            // Only the first and the last sector hold bytes we keep.
            self.read_aligned(first, &mut tmp[..SECTOR as usize])
                .await?;
            let tail = tmp.len() - SECTOR as usize;
            self.read_aligned(last - SECTOR, &mut tmp[tail..]).await?;
            let at = (offset - first) as usize;
            tmp[at..at + data.len()].copy_from_slice(data);
            return self.write_aligned(first, &tmp).await;
        }
        self.write_aligned(offset, data).await
    }

    async fn write_aligned(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let max = self.max_bytes();
        let mut done = 0;
        for chunk in data.chunks(max) {
            let sector = (offset + done) >> SECTOR_SHIFT;
            self.one(
                Op::Write {
                    sector,
                    data: chunk,
                },
                &mut [],
            )
            .await?;
            done += chunk.len() as u64;
        }
        Ok(())
    }

    /// Makes every write that completed before this call durable.
    pub async fn flush(&self) -> Result<(), IoError> {
        self.one(Op::Flush, &mut []).await
    }

    /// Discards whole sectors (`offset` and `len` in bytes, multiples of 512).
    pub async fn discard(&self, offset: u64, len: u64) -> Result<(), IoError> {
        if !aligned(offset) || !aligned(len) {
            return Err(IoError::Refused(Refused::Invalid));
        }
        let op = Op::Discard {
            sector: offset >> SECTOR_SHIFT,
            sectors: len >> SECTOR_SHIFT,
        };
        self.one(op, &mut []).await
    }
}

/// Gives up a started request whose future is dropped before it was taken (a caller
/// that timed out): its slot and pages come free when the answer comes.
struct Abandon<'a, P: GrantTable + EventChannel + Clone> {
    disk: &'a Disk<P>,
    /// The queue and the request on it.
    ticket: Option<(usize, Ticket)>,
}

impl<P: GrantTable + EventChannel + Clone> Drop for Abandon<'_, P> {
    fn drop(&mut self) {
        if let Some((q, t)) = self.ticket.take() {
            let mut front = self.disk.fronts[q].lock();
            // A request given up before its event went still goes out, or its slot
            // would never come back.
            front.notify();
            front.abandon(t);
        }
    }
}

/// Forgets an operation's waker however its future ends (done or dropped).
struct Unregister<'a, P: GrantTable + EventChannel + Clone> {
    disk: &'a Disk<P>,
    id: u64,
}

impl<P: GrantTable + EventChannel + Clone> Drop for Unregister<'_, P> {
    fn drop(&mut self) {
        self.disk.unregister(self.id);
    }
}
