use super::*;
use core::sync::atomic::AtomicU32;
use std::boxed::Box;
use std::vec::Vec;
use xen_sys::{blkif_request, blkif_response, netif_tx_request, netif_tx_response};

use crate::page::PAGE_WORDS;

type Front<'a> = FrontRing<'a, blkif_request, blkif_response>;
type Back<'a> = BackRing<'a, blkif_request, blkif_response>;

fn pages(n: usize) -> Vec<Box<[AtomicU32; PAGE_WORDS]>> {
    (0..n)
        .map(|_| Box::new(core::array::from_fn(|_| AtomicU32::new(0xdead_beef))))
        .collect()
}

fn views(p: &[Box<[AtomicU32; PAGE_WORDS]>]) -> Vec<SharedPage<'_>> {
    p.iter().map(|w| SharedPage::new(w)).collect()
}

fn req(id: u64) -> blkif_request {
    blkif_request {
        operation: 1,
        nr_segments: 11,
        id,
        sector_number: id * 8,
        seg: core::array::from_fn(|i| xen_sys::blkif_request_segment {
            gref: id as u32 + i as u32,
            first_sect: 0,
            last_sect: 7,
        }),
        ..Default::default()
    }
}

fn rsp(id: u64) -> blkif_response {
    blkif_response {
        id,
        operation: 1,
        status: 0,
    }
}

#[test]
fn sizes_are_ring_h_s() {
    assert_eq!(entry_size::<blkif_request, blkif_response>(), 112);
    assert_eq!(ring_size(1, 112), 32);
    assert_eq!(ring_size(4, 112), 128);
    assert_eq!(entry_size::<netif_tx_request, netif_tx_response>(), 12);
    assert_eq!(ring_size(1, 12), 256);
    assert_eq!(ENTRIES, 64);
}

#[test]
fn requests_and_responses_go_round_in_order() {
    let p = pages(1);
    let v = views(&p);
    let mut f = Front::init(&v);
    let mut b = Back::attach(&v).unwrap();
    assert_eq!((f.size(), b.size(), f.free_requests()), (32, 32, 32));
    for round in 0..5u64 {
        for i in 0..20 {
            f.put_request(&req(round * 100 + i)).unwrap();
        }
        f.push_requests();
        assert_eq!(b.unconsumed_requests(), Ok(20));
        for i in 0..20 {
            let r = b.get_request().unwrap().unwrap();
            assert_eq!(
                (r.id, r.sector_number),
                (round * 100 + i, (round * 100 + i) * 8)
            );
            assert_eq!(r.seg[10].gref, (round * 100 + i) as u32 + 10);
            b.put_response(&rsp(r.id));
        }
        assert!(matches!(b.get_request(), Ok(None)));
        b.push_responses();
        for i in 0..20 {
            assert_eq!(f.get_response().unwrap().unwrap().id, round * 100 + i);
        }
        assert!(matches!(f.get_response(), Ok(None)));
        assert_eq!(f.free_requests(), 32);
    }
}

#[test]
fn a_full_ring_takes_no_more() {
    let p = pages(1);
    let v = views(&p);
    let mut f = Front::init(&v);
    for i in 0..32 {
        f.put_request(&req(i)).unwrap();
    }
    assert_eq!(f.put_request(&req(99)), Err(RingFull));
    assert_eq!(f.in_flight(), 32);
}

#[test]
fn notifications_only_when_the_peer_asked() {
    let p = pages(1);
    let v = views(&p);
    let mut f = Front::init(&v);
    let mut b = Back::attach(&v).unwrap();
    f.put_request(&req(1)).unwrap();
    // A fresh ring wants an event at the first request.
    assert!(f.push_requests());
    f.put_request(&req(2)).unwrap();
    // The back end has not asked again: no second event.
    assert!(!f.push_requests());
    assert_eq!(b.get_request().unwrap().unwrap().id, 1);
    assert_eq!(b.get_request().unwrap().unwrap().id, 2);
    // Dry: it asks for the next one, and sees none came meanwhile.
    assert_eq!(b.final_check_for_requests(), Ok(false));
    f.put_request(&req(3)).unwrap();
    assert!(f.push_requests());
    // With requests pending the final check says so, without sleeping.
    assert_eq!(b.final_check_for_requests(), Ok(true));

    for id in 1..=3 {
        if id == 3 {
            b.get_request().unwrap().unwrap();
        }
        b.put_response(&rsp(id));
    }
    // The front end asked for an event at its first response (rsp_event = 1).
    assert!(b.push_responses());
    assert_eq!(f.get_response().unwrap().unwrap().id, 1);
    assert_eq!(f.final_check_for_responses(), Ok(true));
    f.get_response().unwrap();
    f.get_response().unwrap();
    assert_eq!(f.final_check_for_responses(), Ok(false));
}

#[test]
fn entries_across_page_boundaries_on_a_multi_page_ring() {
    let p = pages(4);
    let v = views(&p);
    let mut f = Front::init(&v);
    let mut b = Back::attach(&v).unwrap();
    assert_eq!(f.size(), 128);
    // Twice round the ring: every slot, some of them straddling two pages.
    for i in 0..256u64 {
        f.put_request(&req(i)).unwrap();
        f.push_requests();
        let r = b.get_request().unwrap().unwrap();
        assert_eq!((r.id, r.seg[0].gref, r.seg[10].last_sect), (i, i as u32, 7));
        b.put_response(&rsp(i));
        b.push_responses();
        assert_eq!(f.get_response().unwrap().unwrap().id, i);
    }
}

#[test]
#[should_panic(expected = "a ring is 1, 2, 4")]
fn three_pages_are_not_a_ring() {
    let p = pages(3);
    let v = views(&p);
    let _ = Front::init(&v);
}

#[test]
fn a_hostile_front_end_s_indices_are_refused() {
    let p = pages(1);
    let v = views(&p);
    let mut f = Front::init(&v);
    let mut b = Back::attach(&v).unwrap();
    for i in 0..4 {
        f.put_request(&req(i)).unwrap();
    }
    f.push_requests();
    b.get_request().unwrap();
    // Requests up to the req_prod already checked are consumed without reading it
    // again (ring.h's `rp`): a change shows once they are done.
    v[0].store_u32(REQ_PROD, 33);
    for _ in 1..4 {
        assert!(b.get_request().unwrap().is_some());
    }
    // More than a ring ahead of the responses.
    assert!(matches!(
        b.get_request(),
        Err(ProtocolError::RequestOverflow {
            req_prod: 33,
            rsp_prod: 0
        })
    ));
    assert!(b.unconsumed_requests().is_err());
    assert!(b.final_check_for_requests().is_err());
    // Broken for good: an index that would be possible again changes nothing.
    v[0].store_u32(REQ_PROD, 4);
    assert!(b.get_request().is_err());
    // Behind what was consumed already, far behind (wrapped), and exactly a ring
    // ahead (possible), each on a fresh back end.
    for (req_prod, ok) in [(1, false), (u32::MAX, false), (32, true)] {
        v[0].store_u32(REQ_PROD, 4);
        let mut b = Back::attach(&v).unwrap();
        for _ in 0..4 {
            b.get_request().unwrap().unwrap();
        }
        v[0].store_u32(REQ_PROD, req_prod);
        assert_eq!(b.unconsumed_requests().is_ok(), ok, "req_prod {req_prod}");
        if ok {
            assert_eq!(b.unconsumed_requests(), Ok(28));
        }
    }
    // And a back end does not attach to an impossible ring.
    v[0].store_u32(REQ_PROD, 1000);
    assert!(Back::attach(&v).is_err());
}

#[test]
fn a_hostile_back_end_s_indices_are_refused() {
    let p = pages(1);
    let v = views(&p);
    let mut f = Front::init(&v);
    f.put_request(&req(1)).unwrap();
    f.push_requests();
    v[0].store_u32(RSP_PROD, 2);
    assert!(matches!(
        f.get_response(),
        Err(ProtocolError::ResponseOverflow {
            rsp_prod: 2,
            req_prod: 1
        })
    ));
    // Broken for good.
    v[0].store_u32(RSP_PROD, 1);
    assert!(f.final_check_for_responses().is_err());
    // On a fresh ring one response is possible (whatever the slot holds: here the
    // request itself).
    let mut f = Front::init(&v);
    f.put_request(&req(1)).unwrap();
    f.push_requests();
    v[0].store_u32(RSP_PROD, 1);
    assert_eq!(f.get_response().unwrap().map(|r| r.id), Some(0x0b01));
    assert!(matches!(f.get_response(), Ok(None)));
}

#[test]
fn two_threads_pass_many_requests() {
    const N: u64 = 100_000;
    let p = pages(1);
    let v = views(&p);
    let mut f = Front::init(&v);
    let mut b = Back::attach(&v).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut served = 0;
            while served < N {
                while let Some(r) = b.get_request().unwrap() {
                    assert_eq!(r.id, served);
                    b.put_response(&rsp(r.id));
                    served += 1;
                }
                b.push_responses();
                std::hint::spin_loop();
            }
        });
        let (mut sent, mut done) = (0, 0);
        while done < N {
            while sent < N && f.put_request(&req(sent)).is_ok() {
                sent += 1;
            }
            f.push_requests();
            while let Some(r) = f.get_response().unwrap() {
                assert_eq!(r.id, done);
                done += 1;
            }
            std::hint::spin_loop();
        }
    });
}
