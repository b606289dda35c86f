//! The `ring` rows of `cargo xtask bench`: requests through pv-core's `io/ring.h` ring
//! between two host threads (a front end and a back end spinning on their indices),
//! beside the same exchange through two plain SPSC rings (`rtrb`), the ceiling, in the
//! same run. Each figure is nanoseconds per request answered: lower is better, as in
//! every other row.

use std::sync::atomic::AtomicU32;
use std::time::Instant;

use pv_core::page::{SharedPage, PAGE_WORDS};
use pv_core::ring::{BackRing, FrontRing};
use xen_sys::{blkif_request, blkif_response};

/// Requests per run, and runs per figure.
const REQUESTS: u64 = 400_000;
const RUNS: usize = 5;

/// ns per request for `batch` requests in flight at a time over our ring (one page,
/// blkif's 112-byte entries).
pub fn ours(batch: u32) -> f64 {
    let page: Box<[AtomicU32; PAGE_WORDS]> = Box::new(std::array::from_fn(|_| AtomicU32::new(0)));
    let pages = [SharedPage::new(&page)];
    let mut front = FrontRing::<blkif_request, blkif_response>::init(&pages);
    let mut back = BackRing::<blkif_request, blkif_response>::attach(&pages)
        .expect("a fresh ring is possible");
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut served = 0;
            while served < REQUESTS {
                while let Some(r) = back.get_request().expect("our own front end") {
                    back.put_response(&blkif_response {
                        id: r.id,
                        operation: r.operation,
                        status: 0,
                    });
                    served += 1;
                }
                back.push_responses();
            }
        });
        let (mut sent, mut done) = (0, 0);
        while done < REQUESTS {
            if front.in_flight() == 0 {
                for _ in 0..batch.min((REQUESTS - sent) as u32) {
                    let req = blkif_request {
                        id: sent,
                        ..Default::default()
                    };
                    front.put_request(&req).expect("room for a batch");
                    sent += 1;
                }
                front.push_requests();
            }
            while front.get_response().expect("our own back end").is_some() {
                done += 1;
            }
        }
    });
    start.elapsed().as_nanos() as f64 / REQUESTS as f64
}

/// The same exchange through two `rtrb` rings of the same capacity (requests one way,
/// responses the other), carrying the same structs.
pub fn spsc(batch: u32) -> f64 {
    let (mut req_tx, mut req_rx) = rtrb::RingBuffer::<blkif_request>::new(32);
    let (mut rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<blkif_response>::new(32);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut served = 0;
            while served < REQUESTS {
                while let Ok(r) = req_rx.pop() {
                    let rsp = blkif_response {
                        id: r.id,
                        operation: r.operation,
                        status: 0,
                    };
                    while rsp_tx.push(rsp).is_err() {}
                    served += 1;
                }
            }
        });
        let (mut sent, mut done, mut in_flight) = (0, 0, 0);
        while done < REQUESTS {
            if in_flight == 0 {
                for _ in 0..batch.min((REQUESTS - sent) as u32) {
                    let req = blkif_request {
                        id: sent,
                        ..Default::default()
                    };
                    while req_tx.push(req).is_err() {}
                    sent += 1;
                    in_flight += 1;
                }
            }
            while rsp_rx.pop().is_ok() {
                done += 1;
                in_flight -= 1;
            }
        }
    });
    start.elapsed().as_nanos() as f64 / REQUESTS as f64
}

/// `RUNS` measurements of `f`.
pub fn runs(f: impl Fn() -> f64) -> Vec<f64> {
    (0..RUNS).map(|_| f()).collect()
}
