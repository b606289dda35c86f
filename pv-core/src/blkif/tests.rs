use super::*;
use core::sync::atomic::AtomicU32;
use std::boxed::Box;
use std::vec;

use crate::page::PAGE_WORDS;

const DISK: Disk = Disk {
    sectors: 2048,
    readonly: false,
    flush: true,
    barrier: true,
    discard: true,
    max_indirect_segments: 256,
};

fn seg(gref: u32, first: u8, last: u8) -> blkif_request_segment {
    blkif_request_segment {
        gref,
        first_sect: first,
        last_sect: last,
    }
}

fn rw(op: u32, sector: u64, segs: &[blkif_request_segment]) -> RawRequest {
    let mut req = blkif_request {
        operation: op as u8,
        nr_segments: segs.len() as u8,
        id: 0x1234_5678_9abc,
        sector_number: sector,
        ..Default::default()
    };
    req.seg[..segs.len()].copy_from_slice(segs);
    RawRequest::of(&req)
}

#[test]
fn reads_and_writes_decode_with_their_segments() {
    let raw = rw(BLKIF_OP_WRITE, 100, &[seg(7, 0, 7), seg(8, 2, 3)]);
    assert_eq!((raw.id(), raw.operation()), (0x1234_5678_9abc, 1));
    let Request::ReadWrite {
        id,
        dir,
        sector,
        segments: Segments::Direct(s),
    } = parse(&raw, &DISK).unwrap()
    else {
        panic!()
    };
    assert_eq!((id, dir, sector), (0x1234_5678_9abc, Direction::Write, 100));
    assert_eq!(s.len(), 2);
    assert_eq!((s[1].gref, s[1].sectors()), (8, 2));
    // The last sectors of the disk, and not one more.
    assert!(parse(&rw(BLKIF_OP_READ, 2040, &[seg(1, 0, 7)]), &DISK).is_ok());
    assert_eq!(
        parse(&rw(BLKIF_OP_READ, 2041, &[seg(1, 0, 7)]), &DISK),
        Err(Refusal::OutOfRange {
            sector: 2041,
            sectors: 8
        })
    );
    assert!(parse(&rw(BLKIF_OP_READ, u64::MAX, &[seg(1, 0, 0)]), &DISK).is_err());
}

#[test]
fn bad_segments_and_counts_are_refused() {
    assert_eq!(
        parse(&rw(BLKIF_OP_READ, 0, &[seg(1, 0, 1), seg(2, 5, 4)]), &DISK),
        Err(Refusal::Segment {
            index: 1,
            first: 5,
            last: 4
        })
    );
    assert_eq!(
        parse(&rw(BLKIF_OP_READ, 0, &[seg(1, 0, 8)]), &DISK),
        Err(Refusal::Segment {
            index: 0,
            first: 0,
            last: 8
        })
    );
    assert_eq!(
        parse(&rw(BLKIF_OP_WRITE, 0, &[]), &DISK),
        Err(Refusal::SegmentCount(0))
    );
    let mut too_many = rw(BLKIF_OP_READ, 0, &[seg(1, 0, 0)]);
    too_many.0[1] = 12;
    assert_eq!(parse(&too_many, &DISK), Err(Refusal::SegmentCount(12)));
    for op in [4u8, 7, 0xff] {
        let mut raw = rw(0, 0, &[seg(1, 0, 0)]);
        raw.0[0] = op;
        assert_eq!(parse(&raw, &DISK), Err(Refusal::UnknownOperation(op)));
    }
}

#[test]
fn a_readonly_disk_refuses_every_write() {
    let ro = Disk {
        readonly: true,
        ..DISK
    };
    assert!(parse(&rw(BLKIF_OP_READ, 0, &[seg(1, 0, 7)]), &ro).is_ok());
    for op in [BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER] {
        assert_eq!(
            parse(&rw(op, 0, &[seg(1, 0, 7)]), &ro),
            Err(Refusal::ReadOnly)
        );
    }
    let discard = RawRequest::of(&blkif_request_discard {
        operation: BLKIF_OP_DISCARD as u8,
        nr_sectors: 8,
        ..Default::default()
    });
    assert_eq!(parse(&discard, &ro), Err(Refusal::ReadOnly));
    let write = RawRequest::of(&blkif_request_indirect {
        operation: BLKIF_OP_INDIRECT as u8,
        indirect_op: BLKIF_OP_WRITE as u8,
        nr_segments: 1,
        ..Default::default()
    });
    assert_eq!(parse(&write, &ro), Err(Refusal::ReadOnly));
    assert_eq!(Refusal::ReadOnly.status(), -1);
}

#[test]
fn flush_barrier_and_discard_need_their_features() {
    let flush = rw(BLKIF_OP_FLUSH_DISKCACHE, 0, &[]);
    assert_eq!(
        parse(&flush, &DISK),
        Ok(Request::Flush {
            id: 0x1234_5678_9abc
        })
    );
    let barrier = rw(BLKIF_OP_WRITE_BARRIER, 8, &[]);
    assert!(matches!(
        parse(&barrier, &DISK),
        Ok(Request::Barrier { sector: 8, .. })
    ));
    let discard = RawRequest::of(&blkif_request_discard {
        operation: BLKIF_OP_DISCARD as u8,
        flag: BLKIF_DISCARD_SECURE as u8,
        id: 9,
        sector_number: 16,
        nr_sectors: 2032,
        ..Default::default()
    });
    assert_eq!(
        parse(&discard, &DISK),
        Ok(Request::Discard {
            id: 9,
            sector: 16,
            nr_sectors: 2032,
            secure: true
        })
    );
    let bare = Disk {
        flush: false,
        barrier: false,
        discard: false,
        max_indirect_segments: 0,
        ..DISK
    };
    for raw in [flush, barrier, discard] {
        let op = raw.operation();
        assert_eq!(parse(&raw, &bare), Err(Refusal::NotSupported(op)));
        assert_eq!(Refusal::NotSupported(op).status(), -2);
    }
    let mut beyond = RawRequest::of(&blkif_request_discard {
        operation: BLKIF_OP_DISCARD as u8,
        sector_number: 2000,
        nr_sectors: 49,
        ..Default::default()
    });
    assert!(matches!(
        parse(&beyond, &DISK),
        Err(Refusal::OutOfRange { .. })
    ));
    beyond.0[0] = BLKIF_OP_INDIRECT as u8;
    assert_eq!(parse(&beyond, &bare), Err(Refusal::NotSupported(6)));
}

fn page_of(segs: &[blkif_request_segment]) -> Box<[AtomicU32; PAGE_WORDS]> {
    let p: Box<[AtomicU32; PAGE_WORDS]> = Box::new(core::array::from_fn(|_| AtomicU32::new(0)));
    let v = SharedPage::new(&p);
    for (i, s) in segs.iter().enumerate() {
        let mut b = [0u8; 8];
        s.encode(&mut b);
        v.write(i * 8, &b);
    }
    p
}

#[test]
fn indirect_requests_read_their_segments_from_the_pages() {
    let raw = RawRequest::of(&blkif_request_indirect {
        operation: BLKIF_OP_INDIRECT as u8,
        indirect_op: BLKIF_OP_READ as u8,
        nr_segments: 256,
        id: 3,
        sector_number: 0,
        indirect_grefs: [40, 41, 0, 0, 0, 0, 0, 0],
        ..Default::default()
    });
    let Ok(Request::ReadWrite {
        segments: Segments::Indirect { pages, count },
        dir: Direction::Read,
        ..
    }) = parse(&raw, &DISK)
    else {
        panic!()
    };
    assert_eq!((pages, count), (vec![40], 256));
    let segs: Vec<_> = (0..256).map(|i| seg(100 + i, 0, 7)).collect();
    let p = page_of(&segs);
    let view = [SharedPage::new(&p)];
    let got = indirect_segments(&view, 256, 0, &DISK).unwrap();
    assert_eq!((got.len(), got[255].gref), (256, 355));
    // 256 pages of 8 sectors: 2048, the whole disk; from sector 1, one too many.
    assert!(matches!(
        indirect_segments(&view, 256, 1, &DISK),
        Err(Refusal::OutOfRange { .. })
    ));
    // A bad entry in the page.
    let mut bad = segs.clone();
    bad[77] = seg(1, 6, 2);
    let p = page_of(&bad);
    assert_eq!(
        indirect_segments(&[SharedPage::new(&p)], 256, 0, &DISK),
        Err(Refusal::Segment {
            index: 77,
            first: 6,
            last: 2
        })
    );
    // More segments than the back end offers, none, or an inner operation that is not
    // a read or write.
    for (n, inner) in [
        (257u16, BLKIF_OP_READ),
        (0, BLKIF_OP_READ),
        (1, BLKIF_OP_FLUSH_DISKCACHE),
    ] {
        let raw = RawRequest::of(&blkif_request_indirect {
            operation: BLKIF_OP_INDIRECT as u8,
            indirect_op: inner as u8,
            nr_segments: n,
            ..Default::default()
        });
        assert!(parse(&raw, &DISK).is_err(), "{n} segments, op {inner}");
    }
    assert_eq!(MAX_INDIRECT_SEGMENTS, 4096);
}
