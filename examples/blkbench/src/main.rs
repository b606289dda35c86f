//! blkbench: block I/O from a domU through blkfront, the way fio's jobs measure it,
//! for `cargo xtask bench io`: on its first vbd (which it overwrites), 4 KiB random
//! reads and writes at queue depth 1 and 32 and 1 MiB sequential reads and writes,
//! each for a fixed number of operations, printing
//! `blkbench JOB: N ops, B bytes in T ns`.
//!
//! Queue depth 32 is 32 tasks on libos's executor, each with one request in flight
//! on the shared `Disk` (whose own bound is 32). Random offsets are 4 KiB-aligned
//! from a xorshift generator over the whole disk.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use core::sync::atomic::{AtomicU64, Ordering};

use libos::blk::{self, Disk};
use libos::{executor, println, time};

const K4: usize = 4096;
const M1: usize = 1 << 20;

/// Operations issued so far in the current job (shared by its tasks).
static ISSUED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// One worker: takes operations until `total` are issued.
async fn worker(
    disk: &'static Disk,
    write: bool,
    size: usize,
    random: bool,
    total: u64,
    seed: u64,
) {
    let mut buf = vec![0x5au8; size];
    let mut s = seed | 1;
    let slots = disk.size() / size as u64;
    loop {
        let n = ISSUED.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return;
        }
        let slot = if random {
            xorshift(&mut s) % slots
        } else {
            n % slots
        };
        let at = slot * size as u64;
        let r = if write {
            disk.write(at, &buf).await
        } else {
            disk.read(at, &mut buf).await
        };
        if r.is_err() {
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn job(
    disk: &'static Disk,
    name: &str,
    write: bool,
    size: usize,
    random: bool,
    depth: u64,
    total: u64,
) {
    ISSUED.store(0, Ordering::Relaxed);
    FAILED.store(0, Ordering::Relaxed);
    let start = time::now();
    for t in 0..depth {
        executor::spawn(worker(
            disk,
            write,
            size,
            random,
            total,
            0x9e37_79b9 * (t + 1),
        ));
    }
    while executor::tasks() > 0 {
        executor::yield_now().await;
    }
    if write {
        // Writes count once they are durable, as fio's end_fsync would have them.
        let _ = disk.flush().await;
    }
    let ns = time::now().saturating_duration_since(start).as_nanos();
    let (submitted, events) = disk.with_front(|f| f.stats());
    println!(
        "blkbench {name}: {total} ops, {} bytes in {ns} ns ({} failed; {submitted} requests and {events} events so far)",
        total * size as u64,
        FAILED.load(Ordering::Relaxed)
    );
}

async fn bench() {
    let ids = blk::devices().await.unwrap_or_default();
    let Some(&id) = ids.first() else {
        panic!("blkbench: no virtual disk");
    };
    let disk = blk::open(id)
        .await
        .unwrap_or_else(|e| panic!("blkbench: vbd {id}: {e:?}"));
    println!("blkbench: disk {id}, {} MiB", disk.size() >> 20);
    // Written first, so that reads read data (not holes QEMU answers without I/O).
    job(
        disk,
        "seqwrite-1m",
        true,
        M1,
        false,
        1,
        disk.size() / M1 as u64,
    )
    .await;
    job(disk, "seqread-1m", false, M1, false, 1, 64).await;
    job(disk, "randread-4k-qd1", false, K4, true, 1, 2000).await;
    job(disk, "randread-4k-qd32", false, K4, true, 32, 4000).await;
    job(disk, "randwrite-4k-qd1", true, K4, true, 1, 2000).await;
    job(disk, "randwrite-4k-qd32", true, K4, true, 32, 4000).await;
    println!("blkbench: done");
}

fn main() {
    executor::block_on(bench());
}

libos::main!(main);
