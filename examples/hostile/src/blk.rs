//! Attacks on dom0's blkback, each from a front end of our own that does the xenbus
//! handshake by hand (one ring page, `ring-ref`, `event-channel`, `protocol`,
//! `Initialised`) and then breaks `io/blkif.h` one way: blkback must disconnect the vbd
//! (state `Closing`, an `error` node saying why, every grant of ours unmapped), and
//! nobody else may notice.
//!
//! - `blk-sector-range`: a read of the sector after the disk's last.
//! - `blk-too-many-segments`: a read claiming 12 segments (blkif.h allows 11).
//! - `blk-first-gt-last`: a segment whose first sector is after its last.
//! - `blk-gref-not-granted`: a segment naming a grant we never made.
//! - `blk-readonly-grant-read`: a read into a page granted read-only.
//! - `blk-ring-corrupt`: `req_prod` a thousand requests ahead of the back end.
//! - `blk-flood`: 33 requests pushed on a ring of 32 slots.
//! - `blk-indirect-bad`: an indirect read whose indirect page holds a segment whose
//!   first sector is after its last.
//! - `blk-close-mid-request`: a valid request queued, then `Closing` at once, the ring
//!   page and the data page revoked as soon as dom0 lets go of them.
//!
//! Each prints `hostile: NAME: back end Closing, error: ...` (or what it saw instead),
//! then whether its grants are free again (`grants released`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ::xenbus::State;
use libos::hypercall;
use libos::platform::OwnedPage;
use libos::{executor, grant, println};

use crate::store::{read, wait_for, write, xs};
use pv_core::blkif::RawRequest;
use pv_core::page::SharedPage;
use pv_core::platform::SharePage;
use pv_core::ring::{FrontRing, FrontState};
use xen_sys::{
    blkif_request, blkif_request_indirect, blkif_request_segment, blkif_response,
    BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_INDIRECT, BLKIF_OP_READ,
};

/// A vbd connected by hand: its ring, port, granted ring page, back-end directory.
struct Vbd {
    fe: String,
    be: String,
    sectors: u64,
    ring: OwnedPage,
    ring_ref: u32,
    port: u32,
    me: u16,
    grants: Vec<u32>,
    state: FrontState,
    /// The data and indirect pages granted, kept until the end: dom0 reads them after
    /// the request went out.
    pages: Vec<OwnedPage>,
}

impl Vbd {
    fn page(&self) -> SharedPage<'_> {
        self.ring.page()
    }
}

fn connect(me: u16) -> Vbd {
    let ids = executor::block_on(::xenbus::device::front_devices(xs(), "vbd")).unwrap_or_default();
    let id = *ids.first().expect("hostile: a vbd to attack");
    let fe = format!("device/vbd/{id}");
    let be = read(&format!("{fe}/backend")).expect("hostile: the vbd's back end");
    wait_for(&be, State::InitWait);
    let sectors = read(&format!("{be}/sectors"))
        .and_then(|s| s.parse().ok())
        .expect("hostile: the disk's size");
    let ring = OwnedPage::new().expect("a page");
    let state = {
        let pages = [ring.page()];
        FrontRing::<RawRequest, blkif_response>::init(&pages).state()
    };
    let ring_ref = grant::grant(0, ring.mfn(), false).expect("a grant entry");
    let port = hypercall::evtchn_alloc_unbound(xen_sys::DOMID_SELF, 0).expect("a port");
    write(&format!("{fe}/ring-ref"), &format!("{ring_ref}"));
    write(&format!("{fe}/event-channel"), &format!("{port}"));
    write(&format!("{fe}/protocol"), "x86_64-abi");
    write(&format!("{fe}/state"), "3");
    let s = wait_for(&be, State::Connected);
    if s != Some(State::Connected) {
        panic!("hostile: the back end did not connect: {s:?}");
    }
    write(&format!("{fe}/state"), "4");
    Vbd {
        fe,
        be,
        sectors,
        ring,
        ring_ref,
        port,
        me,
        grants: alloc::vec![ring_ref],
        state,
        pages: Vec::new(),
    }
}

/// A data page granted to dom0 (kept by `v`): its index in `v.pages` and the grant.
fn data_page(v: &mut Vbd, readonly: bool) -> (usize, u32) {
    let page = OwnedPage::new().expect("a page");
    let gref = grant::grant(0, page.mfn(), readonly).expect("a grant entry");
    v.grants.push(gref);
    v.pages.push(page);
    (v.pages.len() - 1, gref)
}

fn seg(gref: u32, first: u8, last: u8) -> blkif_request_segment {
    blkif_request_segment {
        gref,
        first_sect: first,
        last_sect: last,
    }
}

fn read_req(id: u64, sector: u64, segs: &[blkif_request_segment], claimed: u8) -> RawRequest {
    let mut seg = [seg(0, 0, 0); BLKIF_MAX_SEGMENTS_PER_REQUEST as usize];
    for (s, g) in seg.iter_mut().zip(segs) {
        *s = *g;
    }
    RawRequest::of(&blkif_request {
        operation: BLKIF_OP_READ as u8,
        nr_segments: claimed,
        handle: 0,
        id,
        sector_number: sector,
        seg,
    })
}

/// Queues `reqs` on the ring, pushes them (if `push`) and kicks dom0.
fn queue(v: &mut Vbd, reqs: &[RawRequest], push: bool) {
    let pages = [v.ring.page()];
    let mut ring = FrontRing::<RawRequest, blkif_response>::resume(&pages, v.state);
    for r in reqs {
        if ring.put_request(r).is_err() {
            break;
        }
    }
    if push {
        ring.push_requests();
        let _ = hypercall::evtchn_send(v.port);
    }
    v.state = ring.state();
}

fn send(v: &mut Vbd, reqs: &[RawRequest]) {
    queue(v, reqs, true);
}

/// Sets the shared `req_prod` by hand (ring.h: the first word of the shared ring).
fn set_req_prod(v: &Vbd, value: u32) {
    v.page().store_u32(0, value);
    let _ = hypercall::evtchn_send(v.port);
}

/// What the back end did, and whether our grants came free.
fn report(name: &str, v: &Vbd) {
    crate::store::report_closed(name, &v.be, &v.grants);
    write(&format!("{}/state", v.fe), "6");
    let _ = v.me;
}

pub fn attack(name: &str, me: u16) {
    let mut v = connect(me);
    println!(
        "hostile: {name}: connected to {} ({} sectors)",
        v.be, v.sectors
    );
    match name {
        "blk-sector-range" => {
            let (_p, g) = data_page(&mut v, false);
            let past_the_end = v.sectors;
            send(&mut v, &[read_req(1, past_the_end, &[seg(g, 0, 7)], 1)]);
        }
        "blk-too-many-segments" => {
            let (_p, g) = data_page(&mut v, false);
            send(&mut v, &[read_req(2, 0, &[seg(g, 0, 0)], 12)]);
        }
        "blk-first-gt-last" => {
            let (_p, g) = data_page(&mut v, false);
            send(&mut v, &[read_req(3, 0, &[seg(g, 5, 2)], 1)]);
        }
        "blk-gref-not-granted" => {
            let never = v.ring_ref + 900;
            send(&mut v, &[read_req(4, 0, &[seg(never, 0, 7)], 1)]);
        }
        "blk-readonly-grant-read" => {
            let (_p, g) = data_page(&mut v, true);
            send(&mut v, &[read_req(5, 0, &[seg(g, 0, 7)], 1)]);
        }
        "blk-ring-corrupt" => set_req_prod(&v, 1000),
        "blk-flood" => {
            let (_p, g) = data_page(&mut v, false);
            let reqs: Vec<RawRequest> = (0..32)
                .map(|i| read_req(i, 0, &[seg(g, 0, 0)], 1))
                .collect();
            queue(&mut v, &reqs, false);
            // All 32 slots filled, and one more than the ring holds announced at once.
            set_req_prod(&v, 33);
        }
        "blk-indirect-bad" => {
            let (_, g) = data_page(&mut v, false);
            let (ind, ig) = data_page(&mut v, true);
            let page = v.pages[ind].page();
            // Two segments: a good one, then one with first > last.
            for (i, s) in [seg(g, 0, 7), seg(g, 6, 1)].iter().enumerate() {
                let at = i * 8;
                page.store_u32(at, s.gref);
                page.store_u32(
                    at + 4,
                    u32::from(s.first_sect) | u32::from(s.last_sect) << 8,
                );
            }
            let mut indirect_grefs = [0u32; 8];
            indirect_grefs[0] = ig;
            let req = RawRequest::of(&blkif_request_indirect {
                operation: BLKIF_OP_INDIRECT as u8,
                indirect_op: BLKIF_OP_READ as u8,
                nr_segments: 2,
                id: 7,
                sector_number: 0,
                handle: 0,
                indirect_grefs,
            });
            send(&mut v, &[req]);
        }
        "blk-close-mid-request" => {
            let (_p, g) = data_page(&mut v, false);
            send(&mut v, &[read_req(8, 0, &[seg(g, 0, 7)], 1)]);
            write(&format!("{}/state", v.fe), "5");
        }
        _ => panic!("hostile: unknown attack {name:?}"),
    }
    report(name, &v);
}
