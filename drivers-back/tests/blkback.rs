//! blkback over the in-memory platform, against a front end written here with
//! pv-core's ring: data round trips, the features, and each way a hostile front end
//! gets its vbd disconnected while nothing of it stays mapped.

mod common;
use common::ALL_FEATURES as INFO;

use std::sync::Arc;

use drivers_back::blk::{BlkBack, Disconnect, MemDisk};
use pv_core::blkif::{Disk, RawRequest, Refusal};
use pv_core::mem_platform::{MemDomain, MemPage, MemWorld};
use pv_core::page::SharedPage;
use pv_core::platform::{EventChannel, GrantRef, GrantTable, SharePage};
use pv_core::ring::FrontRing;
use xen_sys::*;

const SECTORS: u64 = 4096;

/// A front end in domain 1: ring pages and data pages granted to dom0.
struct Front {
    dom: MemDomain,
    ring: Vec<MemPage>,
    ring_refs: Vec<GrantRef>,
    port: u32,
    data: Vec<(MemPage, GrantRef)>,
}

impl Front {
    fn new(w: &Arc<MemWorld>, ring_pages: usize, data_pages: usize, readonly: bool) -> Front {
        let dom = w.domain(1);
        let ring: Vec<MemPage> = (0..ring_pages).map(|_| dom.alloc_page().unwrap()).collect();
        let ring_refs = ring
            .iter()
            .map(|p| dom.grant(0, p, false).unwrap())
            .collect();
        let port = dom.alloc_unbound(0).unwrap();
        let data = (0..data_pages)
            .map(|_| {
                let p = dom.alloc_page().unwrap();
                let g = dom.grant(0, &p, readonly).unwrap();
                (p, g)
            })
            .collect();
        Front {
            dom,
            ring,
            ring_refs,
            port,
            data,
        }
    }

    fn pages(&self) -> Vec<SharedPage<'_>> {
        self.ring.iter().map(|p| p.page()).collect()
    }
}

fn seg(gref: GrantRef, first: u8, last: u8) -> blkif_request_segment {
    blkif_request_segment {
        gref,
        first_sect: first,
        last_sect: last,
    }
}

fn rw(op: u32, id: u64, sector: u64, segs: &[blkif_request_segment]) -> RawRequest {
    let mut req = blkif_request {
        operation: op as u8,
        nr_segments: segs.len() as u8,
        id,
        sector_number: sector,
        ..Default::default()
    };
    req.seg[..segs.len()].copy_from_slice(segs);
    RawRequest::of(&req)
}

type Ring<'a> = FrontRing<'a, RawRequest, blkif_response>;

fn connect(dom0: &MemDomain, f: &Front, info: Disk) -> BlkBack<MemDomain, MemDisk> {
    BlkBack::connect(dom0, 1, &f.ring_refs, f.port, MemDisk::new(SECTORS), info).unwrap()
}

/// Sends `reqs`, lets the back end serve them, and returns the statuses by id order.
fn exchange(
    ring: &mut Ring,
    back: &mut BlkBack<MemDomain, MemDisk>,
    dom0: &MemDomain,
    reqs: &[RawRequest],
) -> Result<Vec<(u64, i16)>, Disconnect> {
    for r in reqs {
        ring.put_request(r).unwrap();
    }
    ring.push_requests();
    back.service(dom0)?;
    let mut out = Vec::new();
    while let Some(rsp) = ring.get_response().unwrap() {
        out.push((rsp.id, rsp.status));
    }
    Ok(out)
}

fn nothing_mapped(f: &Front) {
    for g in f.ring_refs.iter().chain(f.data.iter().map(|(_, g)| g)) {
        assert_eq!(f.dom.map_count(*g), Some(0), "grant {g} still mapped");
    }
}

#[test]
fn writes_then_reads_come_back_and_flush_makes_them_durable() {
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let f = Front::new(&w, 1, 3, false);
    let pages = f.pages();
    let mut ring = Ring::init(&pages);
    let mut back = connect(&dom0, &f, INFO);
    // Page 0 holds the pattern to write.
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    f.data[0].0.page().write(0, &pattern);
    let (g0, g1, g2) = (f.data[0].1, f.data[1].1, f.data[2].1);
    let st = exchange(
        &mut ring,
        &mut back,
        &dom0,
        &[
            rw(BLKIF_OP_WRITE, 1, 100, &[seg(g0, 0, 7)]),
            rw(BLKIF_OP_FLUSH_DISKCACHE, 2, 0, &[]),
        ],
    )
    .unwrap();
    assert_eq!(st, [(1, 0), (2, 0)]);
    assert_eq!(
        &back.disk().durable[100 * 512..100 * 512 + 4096],
        &pattern[..]
    );
    // Read it back in two pieces: sectors 100-101 into page 1 at sector 6, then 102-107.
    let st = exchange(
        &mut ring,
        &mut back,
        &dom0,
        &[rw(BLKIF_OP_READ, 3, 100, &[seg(g1, 6, 7), seg(g2, 0, 5)])],
    )
    .unwrap();
    assert_eq!(st, [(3, 0)]);
    let mut b = vec![0u8; 1024];
    f.data[1].0.page().read(6 * 512, &mut b);
    assert_eq!(b, pattern[..1024]);
    let mut b = vec![0u8; 3072];
    f.data[2].0.page().read(0, &mut b);
    assert_eq!(b, pattern[1024..]);
    nothing_mapped_but_ring(&f);
    let disk = back.disconnect(&dom0);
    assert_eq!(disk.flushes, 1);
    nothing_mapped(&f);
}

fn nothing_mapped_but_ring(f: &Front) {
    for (_, g) in &f.data {
        assert_eq!(f.dom.map_count(*g), Some(0), "data grant {g} still mapped");
    }
}

#[test]
fn barrier_discard_indirect_and_a_multi_page_ring() {
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let f = Front::new(&w, 4, 65, false);
    let pages = f.pages();
    let mut ring = Ring::init(&pages);
    assert_eq!(ring.size(), 128);
    let mut back = connect(&dom0, &f, INFO);
    // An indirect write of 64 full pages from sector 0, its segments in page 64.
    let segs: Vec<_> = (0..64).map(|i| seg(f.data[i].1, 0, 7)).collect();
    for (i, (p, _)) in f.data[..64].iter().enumerate() {
        p.page().write(0, &[i as u8 + 1; 4096]);
    }
    let ind = f.data[64].0.page();
    for (i, s) in segs.iter().enumerate() {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&s.gref.to_le_bytes());
        b[4] = s.first_sect;
        b[5] = s.last_sect;
        ind.write(i * 8, &b);
    }
    let indirect = RawRequest::of(&blkif_request_indirect {
        operation: BLKIF_OP_INDIRECT as u8,
        indirect_op: BLKIF_OP_WRITE as u8,
        nr_segments: 64,
        id: 10,
        sector_number: 0,
        indirect_grefs: [f.data[64].1, 0, 0, 0, 0, 0, 0, 0],
        ..Default::default()
    });
    let barrier = rw(BLKIF_OP_WRITE_BARRIER, 11, 1000, &[seg(f.data[0].1, 0, 0)]);
    let discard = RawRequest::of(&blkif_request_discard {
        operation: BLKIF_OP_DISCARD as u8,
        id: 12,
        sector_number: 8,
        nr_sectors: 8,
        ..Default::default()
    });
    let st = exchange(&mut ring, &mut back, &dom0, &[indirect, barrier, discard]).unwrap();
    assert_eq!(st, [(10, 0), (11, 0), (12, 0)]);
    let d = back.disk();
    assert!(d.data[..8 * 512].iter().all(|&b| b == 1));
    assert!(
        d.data[8 * 512..16 * 512].iter().all(|&b| b == 0),
        "discarded"
    );
    assert!(d.data[63 * 4096..64 * 4096].iter().all(|&b| b == 64));
    assert_eq!(d.discards, [(8 * 512, 8 * 512)]);
    assert_eq!(d.flushes, 2, "a barrier flushes before and after");
    assert!(d.durable[1000 * 512..1001 * 512].iter().all(|&b| b == 1));
    nothing_mapped_but_ring(&f);
    back.disconnect(&dom0);
    nothing_mapped(&f);
}

#[test]
fn a_readonly_vbd_and_missing_features_answer_errors_and_stay_connected() {
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let f = Front::new(&w, 1, 1, false);
    let pages = f.pages();
    let mut ring = Ring::init(&pages);
    let info = Disk {
        readonly: true,
        flush: false,
        discard: false,
        barrier: false,
        max_indirect_segments: 0,
        ..INFO
    };
    let mut back = connect(&dom0, &f, info);
    let g = f.data[0].1;
    let st = exchange(
        &mut ring,
        &mut back,
        &dom0,
        &[
            rw(BLKIF_OP_WRITE, 1, 0, &[seg(g, 0, 7)]),
            rw(BLKIF_OP_FLUSH_DISKCACHE, 2, 0, &[]),
            rw(BLKIF_OP_READ, 3, 0, &[seg(g, 0, 7)]),
        ],
    )
    .unwrap();
    assert_eq!(st, [(1, -1), (2, -2), (3, 0)]);
    back.disconnect(&dom0);
    nothing_mapped(&f);
}

/// A misbehaviour: its name, the request that commits it, and the disconnect it must cause.
type HostileCase = (
    &'static str,
    Box<dyn Fn(&Front) -> RawRequest>,
    fn(&Disconnect) -> bool,
);

/// Each misbehaviour disconnects the vbd, and nothing of the front end stays mapped.
#[test]
fn hostile_front_ends_are_disconnected() {
    let cases: Vec<HostileCase> = vec![
        (
            "out-of-range sector",
            Box::new(|f| rw(BLKIF_OP_READ, 1, SECTORS - 4, &[seg(f.data[0].1, 0, 7)])),
            |d| {
                matches!(
                    d,
                    Disconnect::Request {
                        why: Refusal::OutOfRange { .. },
                        ..
                    }
                )
            },
        ),
        (
            "first_sect > last_sect",
            Box::new(|f| rw(BLKIF_OP_READ, 1, 0, &[seg(f.data[0].1, 5, 4)])),
            |d| {
                matches!(
                    d,
                    Disconnect::Request {
                        why: Refusal::Segment { .. },
                        ..
                    }
                )
            },
        ),
        (
            "too many segments",
            Box::new(|f| {
                let mut r = rw(BLKIF_OP_WRITE, 1, 0, &[seg(f.data[0].1, 0, 7)]);
                r.0[1] = 12;
                r
            }),
            |d| {
                matches!(
                    d,
                    Disconnect::Request {
                        why: Refusal::SegmentCount(12),
                        ..
                    }
                )
            },
        ),
        (
            "a grant not given to dom0",
            Box::new(|_| rw(BLKIF_OP_READ, 1, 0, &[seg(999, 0, 7)])),
            |d| matches!(d, Disconnect::Grant { gref: 999, .. }),
        ),
        (
            "an unknown operation",
            Box::new(|f| {
                let mut r = rw(BLKIF_OP_READ, 1, 0, &[seg(f.data[0].1, 0, 7)]);
                r.0[0] = 9;
                r
            }),
            |d| {
                matches!(
                    d,
                    Disconnect::Request {
                        why: Refusal::UnknownOperation(9),
                        ..
                    }
                )
            },
        ),
    ];
    for (what, req, expect) in cases {
        let w = MemWorld::new();
        let dom0 = w.domain(0);
        let f = Front::new(&w, 1, 1, false);
        let pages = f.pages();
        let mut ring = Ring::init(&pages);
        let mut back = connect(&dom0, &f, INFO);
        let d = exchange(&mut ring, &mut back, &dom0, &[req(&f)]).unwrap_err();
        assert!(expect(&d), "{what}: {d:?}");
        back.disconnect(&dom0);
        nothing_mapped(&f);
    }
}

#[test]
fn a_readonly_grant_for_a_read_and_corrupt_indices_disconnect() {
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let f = Front::new(&w, 1, 1, true);
    let pages = f.pages();
    let mut ring = Ring::init(&pages);
    let mut back = connect(&dom0, &f, INFO);
    // Writing from a read-only grant is fine; reading into it is not.
    let g = f.data[0].1;
    let st = exchange(
        &mut ring,
        &mut back,
        &dom0,
        &[rw(BLKIF_OP_WRITE, 1, 0, &[seg(g, 0, 7)])],
    );
    assert_eq!(st.unwrap(), [(1, 0)]);
    let d = exchange(
        &mut ring,
        &mut back,
        &dom0,
        &[rw(BLKIF_OP_READ, 2, 0, &[seg(g, 0, 7)])],
    );
    assert!(matches!(d, Err(Disconnect::Grant { .. })), "{d:?}");
    back.disconnect(&dom0);
    nothing_mapped(&f);

    // A flood: req_prod far beyond the ring.
    let f = Front::new(&w, 1, 1, false);
    let pages = f.pages();
    let _ring = Ring::init(&pages);
    let mut back = connect(&dom0, &f, INFO);
    pages[0].store_u32(0, 1000);
    assert!(matches!(back.service(&dom0), Err(Disconnect::Ring(_))));
    // And it stays broken.
    pages[0].store_u32(0, 0);
    assert!(matches!(back.service(&dom0), Err(Disconnect::Ring(_))));
    back.disconnect(&dom0);
    nothing_mapped(&f);
}

#[test]
fn connect_refuses_bad_rings_and_leaves_nothing_mapped() {
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let f = Front::new(&w, 3, 0, false);
    let disk = || MemDisk::new(SECTORS);
    // Three pages are not a ring; a grant that is not ours; a bad port.
    assert!(BlkBack::connect(&dom0, 1, &f.ring_refs, f.port, disk(), INFO).is_err());
    assert!(BlkBack::connect(&dom0, 1, &[f.ring_refs[0], 777], f.port, disk(), INFO).is_err());
    assert!(BlkBack::connect(&dom0, 1, &f.ring_refs[..1], 4242, disk(), INFO).is_err());
    nothing_mapped(&f);
    // The front end's event: one notification after the back end answers.
    let pages: Vec<SharedPage> = f.ring[..1].iter().map(|p| p.page()).collect();
    let mut ring = Ring::init(&pages);
    let mut back = BlkBack::connect(&dom0, 1, &f.ring_refs[..1], f.port, disk(), INFO).unwrap();
    ring.put_request(&rw(BLKIF_OP_FLUSH_DISKCACHE, 5, 0, &[]))
        .unwrap();
    ring.push_requests();
    assert_eq!(back.service(&dom0), Ok(1));
    assert!(f
        .dom
        .wait_timeout(f.port, std::time::Duration::from_secs(5)));
    back.disconnect(&dom0);
}
