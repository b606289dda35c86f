//! blkfront's async disk against blkback over the in-memory platform: many tasks at
//! once within the queue depth, byte offsets that are not whole sectors, operations
//! larger than one request, flush, and a back end that breaks the protocol.

mod common;
use common::ALL_FEATURES as INFO;

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::sync::Arc;
use std::task::Wake;

use drivers_back::blk::{BlkBack, MemDisk};
use drivers_front::blkfront::{Blkfront, Disk, IoError, Offer};
use pv_core::mem_platform::{MemDomain, MemWorld};

const SECTORS: u64 = 8192;

struct NoWake;
impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

type Task<'a> = Pin<Box<dyn Future<Output = Result<(), IoError>> + 'a>>;

/// Polls every task, lets the back end serve, until all are done; calls `watch`
/// after every round (to observe the ring). Returns the tasks' results in order.
fn run_all<'a>(
    back: &mut BlkBack<MemDomain, MemDisk>,
    dom0: &'a MemDomain,
    mut tasks: Vec<Task<'a>>,
    mut watch: impl FnMut(),
) -> Vec<Result<(), IoError>> {
    let waker = Arc::new(NoWake).into();
    let mut cx = Context::from_waker(&waker);
    let mut out: Vec<Option<Result<(), IoError>>> = tasks.iter().map(|_| None).collect();
    for _ in 0..10_000 {
        for (t, o) in tasks.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                if let Poll::Ready(r) = t.as_mut().poll(&mut cx) {
                    *o = Some(r);
                }
            }
        }
        watch();
        if out.iter().all(Option::is_some) {
            return out.into_iter().map(Option::unwrap).collect();
        }
        let _ = back.service(dom0);
    }
    panic!("tasks did not finish");
}

fn setup<'a>(
    dom0: &'a MemDomain,
    dom1: &'a MemDomain,
    depth: usize,
) -> (Disk<&'a MemDomain>, BlkBack<MemDomain, MemDisk>) {
    setup_pool(dom0, dom1, depth, 512)
}

fn setup_pool<'a>(
    dom0: &'a MemDomain,
    dom1: &'a MemDomain,
    depth: usize,
    pool: usize,
) -> (Disk<&'a MemDomain>, BlkBack<MemDomain, MemDisk>) {
    let mut front = Blkfront::new(dom1, 0, 1, pool).unwrap();
    let back = BlkBack::connect(
        dom0,
        1,
        front.ring_refs(),
        front.port(),
        MemDisk::new(SECTORS),
        INFO,
    )
    .unwrap();
    front.connected(Offer {
        sectors: SECTORS,
        ..INFO
    });
    (Disk::new(front, depth), back)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

#[test]
fn many_tasks_stay_within_the_queue_depth_and_their_data_lands() {
    let w = MemWorld::new();
    let (dom0, dom1) = (w.domain(0), w.domain(1));
    let (disk, mut back) = setup(&dom0, &dom1, 8);
    let datas: Vec<Vec<u8>> = (0..32).map(|i| pattern(4096, i)).collect();
    let tasks: Vec<Task> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| Box::pin(disk.write(i as u64 * 4096, d)) as Task)
        .collect();
    let mut most = 0;
    let r = run_all(&mut back, &dom0, tasks, || {
        most = most.max(disk.with_front(|f| f.in_flight()));
    });
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert_eq!(most, 8, "queue depth");
    let (mut a, mut b) = (vec![0; 4096], vec![0; 4096]);
    let tasks: Vec<Task> = vec![
        Box::pin(disk.read(5 * 4096, &mut a)),
        Box::pin(disk.read(31 * 4096, &mut b)),
    ];
    assert!(run_all(&mut back, &dom0, tasks, || {})
        .iter()
        .all(Result::is_ok));
    assert!(a == datas[5] && b == datas[31]);
}

#[test]
fn offsets_that_are_not_whole_sectors_and_large_operations() {
    let w = MemWorld::new();
    let (dom0, dom1) = (w.domain(0), w.domain(1));
    let (disk, mut back) = setup(&dom0, &dom1, 4);
    let mut model = vec![0u8; (SECTORS * 512) as usize];
    // 1.5 MiB: larger than one indirect request carries (1 MiB).
    let big = pattern(3 << 19, 7);
    let small = pattern(100, 9);
    model[4096..4096 + big.len()].copy_from_slice(&big);
    model[1000..1100].copy_from_slice(&small);
    let tasks: Vec<Task> = vec![Box::pin(disk.write(4096, &big))];
    assert!(run_all(&mut back, &dom0, tasks, || {})[0].is_ok());
    let tasks: Vec<Task> = vec![Box::pin(disk.write(1000, &small))];
    assert!(run_all(&mut back, &dom0, tasks, || {})[0].is_ok());
    assert!(back.disk().data == model);
    let mut got = vec![0u8; 3000];
    let tasks: Vec<Task> = vec![Box::pin(disk.read(700, &mut got))];
    assert!(run_all(&mut back, &dom0, tasks, || {})[0].is_ok());
    assert!(got[..] == model[700..3700]);
    let mut all = vec![0u8; big.len()];
    let tasks: Vec<Task> = vec![Box::pin(disk.read(4096, &mut all))];
    assert!(run_all(&mut back, &dom0, tasks, || {})[0].is_ok());
    assert!(all == big);
    // A flush makes all of it durable; past the end is refused.
    let tasks: Vec<Task> = vec![Box::pin(disk.flush())];
    assert!(run_all(&mut back, &dom0, tasks, || {})[0].is_ok());
    assert!(back.disk().durable == model);
    let mut one = [0u8; 512];
    let tasks: Vec<Task> = vec![Box::pin(disk.read(SECTORS * 512, &mut one))];
    assert!(matches!(
        run_all(&mut back, &dom0, tasks, || {})[0],
        Err(IoError::Refused(_))
    ));
}

#[test]
fn a_request_given_up_on_frees_its_slot_when_answered() {
    let w = MemWorld::new();
    let (dom0, dom1) = (w.domain(0), w.domain(1));
    let (disk, mut back) = setup(&dom0, &dom1, 1);
    let waker = Arc::new(NoWake).into();
    let mut cx = Context::from_waker(&waker);
    let mut buf = vec![0u8; 4096];
    {
        // Started, then dropped before its answer (a caller that timed out).
        let mut read = Box::pin(disk.read(0, &mut buf));
        assert!(read.as_mut().poll(&mut cx).is_pending());
        assert_eq!(disk.with_front(|f| f.in_flight()), 1);
    }
    // Still in flight: the back end may be writing its pages.
    assert_eq!(disk.with_front(|f| f.in_flight()), 1);
    back.service(&dom0).unwrap();
    let data = pattern(4096, 1);
    let tasks: Vec<Task> = vec![Box::pin(disk.write(0, &data))];
    assert!(run_all(&mut back, &dom0, tasks, || {})[0].is_ok());
    assert_eq!(disk.with_front(|f| f.in_flight()), 0);
    assert!(back.disk().data[..4096] == data[..]);
}

#[test]
fn a_pool_of_256_pages_still_carries_a_whole_mebibyte() {
    // libos's pool: 256 pages. A 256-segment request needs an indirect page too, so
    // requests stop at 255 pages and the 1 MiB write goes as two.
    let w = MemWorld::new();
    let (dom0, dom1) = (w.domain(0), w.domain(1));
    let (disk, mut back) = setup_pool(&dom0, &dom1, 1, 256);
    assert_eq!(disk.with_front(|f| f.max_sectors()), 255 * 8);
    let data = pattern(1 << 20, 3);
    let tasks: Vec<Task> = vec![Box::pin(disk.write(0, &data))];
    assert!(run_all(&mut back, &dom0, tasks, || {})[0].is_ok());
    assert!(back.disk().data[..data.len()] == data[..]);
    let c = back.counters();
    assert_eq!(
        (c.requests, c.indirect),
        (2, 1),
        "255 pages indirect, 1 direct"
    );
}
