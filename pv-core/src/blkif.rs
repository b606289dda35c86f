//! Block requests as a back end receives them (`xen/include/public/io/blkif.h`, and
//! Linux's `xen-blkback` for what is accepted): one ring slot decoded by its
//! `operation` into a [`Request`], every field a hostile front end controls checked
//! against the disk before anything is done.
//!
//! Sectors are 512 bytes in the protocol whatever the disk's `sector-size`
//! (`sector_number`, `first_sect`, `last_sect`); a segment is a part of one granted
//! page, so `first_sect <= last_sect <= 7`. A read or write carries 1 to 11 segments
//! in the slot, or, as `BLKIF_OP_INDIRECT`, up to the back end's
//! `feature-max-indirect-segments` in granted indirect pages (512 segments a page, at
//! most 8 pages); a flush and a barrier may carry none; a discard names a range.

use alloc::vec::Vec;
use core::mem::size_of;

use xen_sys::{
    blkif_request, blkif_request_discard, blkif_request_indirect, blkif_request_segment,
    blkif_response, BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT,
    BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER,
};

use crate::abi::{FromGuest, ToGuest};
use crate::page::{SharedPage, PAGE_SIZE};

/// Protocol sectors are 512 bytes.
pub const SECTOR_SHIFT: u32 = 9;
/// Sectors in one page (a segment's `last_sect` is at most this minus one).
pub const SECTORS_PER_PAGE: u8 = (PAGE_SIZE >> SECTOR_SHIFT) as u8;
/// Segments in one indirect page.
pub const SEGMENTS_PER_INDIRECT_PAGE: usize = PAGE_SIZE / size_of::<blkif_request_segment>();
/// The largest `feature-max-indirect-segments` the format allows (8 full pages).
pub const MAX_INDIRECT_SEGMENTS: u32 =
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST * SEGMENTS_PER_INDIRECT_PAGE as u32;

/// A ring slot as the front end wrote it: the request union, to be decoded by its
/// operation (the slot is as large as the largest request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRequest(pub [u8; size_of::<blkif_request>()]);

impl FromGuest for RawRequest {
    fn decode(b: &[u8]) -> Self {
        RawRequest(FromGuest::decode(b))
    }
}

impl ToGuest for RawRequest {
    fn encode(&self, b: &mut [u8]) {
        self.0.encode(b)
    }
}

impl RawRequest {
    /// The slot holding `req` (a front end's view; for tests and front ends).
    pub fn of<T: ToGuest>(req: &T) -> Self {
        let mut b = [0; size_of::<blkif_request>()];
        req.encode(&mut b);
        RawRequest(b)
    }

    fn as_<T: FromGuest>(&self) -> T {
        T::decode(&self.0)
    }

    /// The request id, which every answer carries back, valid or not.
    pub fn id(&self) -> u64 {
        // `id` is at the same offset in every request layout of blkif.h.
        self.as_::<blkif_request>().id
    }

    /// The operation byte, as the front end wrote it.
    pub fn operation(&self) -> u8 {
        self.0[0]
    }
}

/// A checked part of one granted page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
}

impl Segment {
    /// 512-byte sectors it covers.
    pub fn sectors(&self) -> u64 {
        (self.last_sect - self.first_sect) as u64 + 1
    }
}

/// Reads and writes, and the write a barrier is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// Where a read or write's segments are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segments {
    /// In the slot, checked.
    Direct(Vec<Segment>),
    /// In `pages` indirect pages granted by the front end: `count` segments, checked
    /// once the pages are mapped ([`indirect_segments`]).
    Indirect { pages: Vec<u32>, count: u32 },
}

/// A request, decoded and checked against the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `BLKIF_OP_READ`/`WRITE`, or `INDIRECT` with one of them.
    ReadWrite {
        id: u64,
        dir: Direction,
        sector: u64,
        segments: Segments,
    },
    /// `BLKIF_OP_WRITE_BARRIER` (Linux's blkback: a write with a cache flush before and
    /// FUA after) with its segments, which may be none.
    Barrier {
        id: u64,
        sector: u64,
        segments: Vec<Segment>,
    },
    /// `BLKIF_OP_FLUSH_DISKCACHE`: everything completed so far is made durable.
    Flush { id: u64 },
    /// `BLKIF_OP_DISCARD` of `nr_sectors` from `sector`; `secure`: the data must be
    /// unreadable afterwards.
    Discard {
        id: u64,
        sector: u64,
        nr_sectors: u64,
        secure: bool,
    },
}

/// What the back end offers, against which requests are checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    pub readonly: bool,
    /// `feature-flush-cache`, `feature-barrier`, `feature-discard`.
    pub flush: bool,
    pub barrier: bool,
    pub discard: bool,
    /// `feature-max-indirect-segments` (0: no indirect requests).
    pub max_indirect_segments: u32,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An operation blkif.h does not define, or the indirect request's inner one.
    UnknownOperation(u8),
    /// An operation the back end did not offer (answered `BLKIF_RSP_EOPNOTSUPP`).
    NotSupported(u8),
    /// A write, barrier or discard on a read-only disk.
    ReadOnly,
    /// Too few or too many segments for the operation.
    SegmentCount(u32),
    /// Segment `index` has `first_sect > last_sect` or `last_sect` beyond the page.
    Segment { index: usize, first: u8, last: u8 },
    /// The range is not inside the disk.
    OutOfRange { sector: u64, sectors: u64 },
}

impl Refusal {
    /// The status the front end gets (`BLKIF_RSP_*`).
    pub fn status(self) -> i16 {
        match self {
            Refusal::NotSupported(_) => xen_sys::BLKIF_RSP_EOPNOTSUPP as i16,
            _ => xen_sys::BLKIF_RSP_ERROR as i16,
        }
    }
}

fn check_segment(index: usize, s: &blkif_request_segment) -> Result<Segment, Refusal> {
    if s.first_sect > s.last_sect || s.last_sect >= SECTORS_PER_PAGE {
        return Err(Refusal::Segment {
            index,
            first: s.first_sect,
            last: s.last_sect,
        });
    }
    Ok(Segment {
        gref: s.gref,
        first_sect: s.first_sect,
        last_sect: s.last_sect,
    })
}

fn check_range(disk: &Disk, sector: u64, sectors: u64) -> Result<(), Refusal> {
    match sector.checked_add(sectors) {
        Some(end) if end <= disk.sectors => Ok(()),
        _ => Err(Refusal::OutOfRange { sector, sectors }),
    }
}

fn direct(req: &blkif_request, allow_none: bool) -> Result<Vec<Segment>, Refusal> {
    let n = req.nr_segments as u32;
    if n > BLKIF_MAX_SEGMENTS_PER_REQUEST || (n == 0 && !allow_none) {
        return Err(Refusal::SegmentCount(n));
    }
    req.seg[..n as usize]
        .iter()
        .enumerate()
        .map(|(i, s)| check_segment(i, s))
        .collect()
}

fn total(segments: &[Segment]) -> u64 {
    segments.iter().map(Segment::sectors).sum()
}

/// Decodes and checks `raw` against `disk`. A refusal is answered with
/// [`Refusal::status`] for `raw.id()` and `raw.operation()`.
pub fn parse(raw: &RawRequest, disk: &Disk) -> Result<Request, Refusal> {
    let op = raw.operation();
    let writes = matches!(
        op as u32,
        BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER | BLKIF_OP_DISCARD
    );
    if writes && disk.readonly {
        return Err(Refusal::ReadOnly);
    }
    match op as u32 {
        BLKIF_OP_READ | BLKIF_OP_WRITE => {
            let req: blkif_request = raw.as_();
            let segments = direct(&req, false)?;
            check_range(disk, req.sector_number, total(&segments))?;
            let dir = if op as u32 == BLKIF_OP_READ {
                Direction::Read
            } else {
                Direction::Write
            };
            Ok(Request::ReadWrite {
                id: req.id,
                dir,
                sector: req.sector_number,
                segments: Segments::Direct(segments),
            })
        }
        BLKIF_OP_WRITE_BARRIER if !disk.barrier => Err(Refusal::NotSupported(op)),
        BLKIF_OP_WRITE_BARRIER => {
            let req: blkif_request = raw.as_();
            let segments = direct(&req, true)?;
            check_range(disk, req.sector_number, total(&segments))?;
            Ok(Request::Barrier {
                id: req.id,
                sector: req.sector_number,
                segments,
            })
        }
        BLKIF_OP_FLUSH_DISKCACHE if !disk.flush => Err(Refusal::NotSupported(op)),
        BLKIF_OP_FLUSH_DISKCACHE => Ok(Request::Flush { id: raw.id() }),
        BLKIF_OP_DISCARD if !disk.discard => Err(Refusal::NotSupported(op)),
        BLKIF_OP_DISCARD => {
            let req: blkif_request_discard = raw.as_();
            check_range(disk, req.sector_number, req.nr_sectors)?;
            Ok(Request::Discard {
                id: req.id,
                sector: req.sector_number,
                nr_sectors: req.nr_sectors,
                secure: req.flag as u32 & BLKIF_DISCARD_SECURE != 0,
            })
        }
        BLKIF_OP_INDIRECT if disk.max_indirect_segments == 0 => Err(Refusal::NotSupported(op)),
        BLKIF_OP_INDIRECT => {
            let req: blkif_request_indirect = raw.as_();
            let dir = match req.indirect_op as u32 {
                BLKIF_OP_READ => Direction::Read,
                BLKIF_OP_WRITE if disk.readonly => return Err(Refusal::ReadOnly),
                BLKIF_OP_WRITE => Direction::Write,
                _ => return Err(Refusal::UnknownOperation(req.indirect_op)),
            };
            let count = req.nr_segments as u32;
            if count == 0 || count > disk.max_indirect_segments.min(MAX_INDIRECT_SEGMENTS) {
                return Err(Refusal::SegmentCount(count));
            }
            let nr_pages = (count as usize).div_ceil(SEGMENTS_PER_INDIRECT_PAGE);
            // The range is checked with the segments, once they are read.
            Ok(Request::ReadWrite {
                id: req.id,
                dir,
                sector: req.sector_number,
                segments: Segments::Indirect {
                    pages: req.indirect_grefs[..nr_pages].to_vec(),
                    count,
                },
            })
        }
        _ => Err(Refusal::UnknownOperation(op)),
    }
}

/// The `count` segments of an indirect request from its mapped indirect `pages`
/// (copied out once, then checked), and the range they cover from `sector`.
pub fn indirect_segments(
    pages: &[SharedPage<'_>],
    count: u32,
    sector: u64,
    disk: &Disk,
) -> Result<Vec<Segment>, Refusal> {
    let count = count as usize;
    if pages.len() != count.div_ceil(SEGMENTS_PER_INDIRECT_PAGE) {
        return Err(Refusal::SegmentCount(count as u32));
    }
    let size = size_of::<blkif_request_segment>();
    let mut segments = Vec::with_capacity(count);
    for i in 0..count {
        let page = pages[i / SEGMENTS_PER_INDIRECT_PAGE];
        let mut b = [0u8; size_of::<blkif_request_segment>()];
        page.read((i % SEGMENTS_PER_INDIRECT_PAGE) * size, &mut b);
        segments.push(check_segment(i, &blkif_request_segment::decode(&b))?);
    }
    check_range(disk, sector, total(&segments))?;
    Ok(segments)
}

/// The answer to request `id` with operation byte `operation`.
pub fn response(id: u64, operation: u8, status: i16) -> blkif_response {
    blkif_response {
        id,
        operation,
        status,
    }
}

#[cfg(test)]
mod tests;
