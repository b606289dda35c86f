//! Block requests from a hostile front end (`pv_core::blkif`) through the shared ring
//! (`pv_core::ring`) that carries them.
//!
//! Input: a disk (u16 sectors, a flags byte: read-only, flush, barrier, discard,
//! indirect), then a program on one ring page: each byte `op % 3` and its arguments:
//! 0 the front end writes bytes anywhere in the page (u16 offset, u8 length, bytes),
//! 1 it sets `req_prod` (u32), 2 the back end takes what requests it can and answers
//! each.
//!
//! Properties: nothing panics; the back end never takes more than a ring of requests
//! ahead of its answers, and refuses the whole ring once its indices are impossible; a
//! request it accepts is inside the disk, with segments inside their pages, no write
//! to a read-only disk, and only offered operations. An indirect request's segments
//! are checked with [`pv_core::blkif::indirect_segments`] over a page of the input.

use core::mem::offset_of;
use core::sync::atomic::AtomicU32;

use pv_core::blkif::{self, Direction, Disk, RawRequest, Request, Segment, Segments};
use pv_core::page::{SharedPage, PAGE_SIZE, PAGE_WORDS};
use pv_core::ring::BackRing;
use xen_sys::{blkif_response, blkif_sring};

use crate::Bytes;

fn segments_ok(disk: &Disk, sector: u64, segs: &[Segment]) {
    let mut sectors = 0;
    for s in segs {
        assert!(s.first_sect <= s.last_sect && s.last_sect < blkif::SECTORS_PER_PAGE);
        sectors += s.sectors();
    }
    assert!(
        sector + sectors <= disk.sectors,
        "{sector} + {sectors} beyond the disk"
    );
}

fn accepted(disk: &Disk, req: &Request, indirect: SharedPage<'_>) {
    match req {
        Request::ReadWrite {
            dir,
            sector,
            segments,
            ..
        } => {
            assert!(!(disk.readonly && *dir == Direction::Write));
            match segments {
                Segments::Direct(s) => {
                    assert!((1..=11).contains(&s.len()));
                    segments_ok(disk, *sector, s);
                }
                Segments::Indirect { pages, count } => {
                    assert!(*count >= 1 && *count <= disk.max_indirect_segments);
                    assert!(!pages.is_empty() && pages.len() <= 8);
                    // The segments, as if every indirect page were the input's.
                    let views = vec![indirect; pages.len()];
                    if let Ok(s) = blkif::indirect_segments(&views, *count, *sector, disk) {
                        assert_eq!(s.len(), *count as usize);
                        segments_ok(disk, *sector, &s);
                    }
                }
            }
        }
        Request::Barrier {
            sector, segments, ..
        } => {
            assert!(disk.barrier && !disk.readonly);
            segments_ok(disk, *sector, segments);
        }
        Request::Flush { .. } => assert!(disk.flush),
        Request::Discard {
            sector, nr_sectors, ..
        } => {
            assert!(disk.discard && !disk.readonly);
            assert!(sector + nr_sectors <= disk.sectors);
        }
    }
}

pub fn check(data: &[u8]) {
    let mut input = Bytes::new(data);
    let flags = {
        let sectors = input.u16() as u64;
        (sectors, input.u8())
    };
    let disk = Disk {
        sectors: flags.0,
        readonly: flags.1 & 1 != 0,
        flush: flags.1 & 2 != 0,
        barrier: flags.1 & 4 != 0,
        discard: flags.1 & 8 != 0,
        max_indirect_segments: if flags.1 & 16 != 0 { 256 } else { 0 },
    };
    let words: Box<[AtomicU32; PAGE_WORDS]> = Box::new(std::array::from_fn(|_| AtomicU32::new(0)));
    let indirect_words: Box<[AtomicU32; PAGE_WORDS]> =
        Box::new(std::array::from_fn(|_| AtomicU32::new(0)));
    let page = SharedPage::new(&words);
    let indirect = SharedPage::new(&indirect_words);
    indirect.write(0, input.take(PAGE_SIZE.min(256)));
    let pages = [page];
    // A fresh ring, as the front end initialised it.
    let Ok(mut back) = BackRing::<RawRequest, blkif_response>::attach(&pages) else {
        panic!("a zeroed ring is possible");
    };
    let mut broken = false;
    while !input.is_empty() {
        match input.u8() % 3 {
            0 => {
                let off = input.u16() as usize % PAGE_SIZE;
                let len = input.u8() as usize;
                let bytes = input.take(len.min(PAGE_SIZE - off));
                page.write(off, bytes);
            }
            1 => page.store_u32(offset_of!(blkif_sring, req_prod), input.u32()),
            _ => {
                let mut taken = 0;
                loop {
                    match back.get_request() {
                        Ok(Some(raw)) => {
                            assert!(!broken, "a request after a protocol error");
                            taken += 1;
                            assert!(taken <= back.size(), "more than a ring of requests");
                            let status = match blkif::parse(&raw, &disk) {
                                Ok(req) => {
                                    accepted(&disk, &req, indirect);
                                    0
                                }
                                Err(refusal) => refusal.status(),
                            };
                            back.put_response(&blkif::response(raw.id(), raw.operation(), status));
                        }
                        Ok(None) => break,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
                back.push_responses();
            }
        }
    }
}
