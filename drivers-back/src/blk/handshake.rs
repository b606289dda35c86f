//! The back end's side of the vbd handshake (`io/blkif.h`'s node list; Linux's
//! `xen-blkback/xenbus.c`: `backend_probe`, `connect_ring`, `connect`):
//!
//! 1. write what we offer into `backend/vbd/<front>/<id>`: `sectors`, `info`,
//!    `sector-size`, `physical-sector-size`, `feature-flush-cache`,
//!    `feature-barrier`, `feature-discard` (with `discard-granularity`,
//!    `discard-alignment`), `feature-max-indirect-segments`, `max-ring-page-order`,
//!    `feature-persistent`, `multi-queue-max-queues`; go `InitWait`;
//! 2. wait for the front end (`frontend`, `frontend-id`) to be `Initialised`;
//! 3. read its `ring-ref` (or `ring-page-order` and `ring-ref<N>`), `event-channel`
//!    (each under `queue-<N>/` when it wrote `multi-queue-num-queues` above 1),
//!    `protocol` and `feature-persistent`, map the rings, go `Connected`.
//!
//! Everything read from the front end's directory is the front end's to write, and
//! checked: a missing or malformed node, an order above what we offered, a protocol
//! that is not ours fail the connect with an `error` node and state `Closing`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use pv_core::blkif::Disk;
use pv_core::platform::{EventChannel, ForeignMemory};
use pv_core::ring::MAX_RING_PAGES;
use xen_sys::VDISK_READONLY;
use xenbus::device::{self, other_end, read_number, switch_state};
use xenbus::state::{self, Action};
use xenbus::{State, Store, XsError, NO_TX};

use super::back::{BlkBack, MAX_QUEUES};
use super::device::BlockDevice;

/// The largest `ring-page-order` we accept (16 pages).
pub const MAX_RING_ORDER: u32 = MAX_RING_PAGES.trailing_zeros();

/// Data pages kept mapped for a front end that wrote `feature-persistent` (Linux's
/// blkback: `xen_blkif_max_pgrants`, 1056 per ring).
pub const MAX_PERSISTENT_GRANTS: usize = 1056;

/// Why a vbd did not connect (shared by both ends' handshakes).
pub use xenbus::device::Error;

/// Offers vbd `id` of domain `front` and connects it once the front end is ready.
/// On failure the vbd is left `Closing` with an `error` node saying why.
pub async fn connect<S: Store, P: ForeignMemory + EventChannel, D: BlockDevice>(
    store: &S,
    p: &P,
    front: u16,
    id: u32,
    disk: D,
    info: Disk,
) -> Result<BlkBack<P, D>, Error> {
    let dir = device::back_dir("vbd", front, id);
    let r = handshake(store, p, front, &dir, disk, info).await;
    if let Err(e) = &r {
        let _ = store
            .write_str(NO_TX, &format!("{dir}/error"), &format!("{e:?}"))
            .await;
        let _ = switch_state(store, &dir, State::Closing).await;
    }
    r
}

async fn handshake<S: Store, P: ForeignMemory + EventChannel, D: BlockDevice>(
    store: &S,
    p: &P,
    front: u16,
    dir: &str,
    disk: D,
    info: Disk,
) -> Result<BlkBack<P, D>, Error> {
    let fe = other_end(store, dir, "frontend").await?;
    if fe.domid != front {
        return Err(Error::BadNode(String::from("frontend-id")));
    }
    offer(store, dir, &disk, &info).await?;
    switch_state(store, dir, State::InitWait).await?;
    let mut watch = store.watch(&format!("{}/state", fe.dir)).await?;
    // The front end's moves as the xenbus state machine reads them.
    let (step, peer) =
        device::next_step(store, &mut watch, &fe.dir, State::InitWait, state::back_end).await?;
    if step.action != Action::Connect {
        return Err(Error::Closed(peer));
    }
    let f = |n: &str| format!("{}/{n}", fe.dir);
    let bad = |n: &str| Error::BadNode(String::from(n));
    let order: u32 = read_number(store, NO_TX, &f("ring-page-order"))
        .await
        .map_err(|_| bad("ring-page-order"))?
        .unwrap_or(0);
    if order > MAX_RING_ORDER {
        return Err(bad("ring-page-order"));
    }
    let nr_queues: usize = read_number(store, NO_TX, &f("multi-queue-num-queues"))
        .await
        .map_err(|_| bad("multi-queue-num-queues"))?
        .unwrap_or(1);
    if nr_queues == 0 || nr_queues > MAX_QUEUES {
        return Err(bad("multi-queue-num-queues"));
    }
    // One queue: its keys at the top; several: under `queue-N/` each.
    let mut queues = Vec::with_capacity(nr_queues);
    for q in 0..nr_queues {
        let dir = if nr_queues == 1 {
            fe.dir.clone()
        } else {
            format!("{}/queue-{q}", fe.dir)
        };
        queues.push(read_queue(store, &dir, order).await?);
    }
    match store.read(NO_TX, &f("protocol")).await {
        Ok(v) if v.as_slice() != b"x86_64-abi" => return Err(bad("protocol")),
        Ok(_) | Err(XsError::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let persistent = xenbus::device::read_flag(store, NO_TX, &f("feature-persistent")).await?;
    let rings: Vec<(&[u32], u32)> = queues.iter().map(|(r, port)| (&r[..], *port)).collect();
    let mut back =
        BlkBack::connect_queues(p, front, &rings, disk, info).map_err(Error::Platform)?;
    if persistent {
        back.keep_grants(MAX_PERSISTENT_GRANTS);
    }
    if let Err(e) = switch_state(store, dir, State::Connected).await {
        back.disconnect(p);
        return Err(e.into());
    }
    Ok(back)
}

/// One queue's ring references (`ring-ref`, or `ring-ref0..` for a ring of
/// `2^order` pages) and event channel, from the front end's `dir`.
async fn read_queue<S: Store>(store: &S, dir: &str, order: u32) -> Result<(Vec<u32>, u32), Error> {
    let f = |n: &str| format!("{dir}/{n}");
    let bad = |n: &str| Error::BadNode(String::from(n));
    let mut refs = Vec::new();
    if order == 0 {
        let r = read_number(store, NO_TX, &f("ring-ref")).await;
        refs.push(r.ok().flatten().ok_or_else(|| bad("ring-ref"))?);
    } else {
        for i in 0..1u32 << order {
            let n = format!("ring-ref{i}");
            let r = read_number(store, NO_TX, &f(&n)).await;
            refs.push(r.ok().flatten().ok_or_else(|| bad(&n))?);
        }
    }
    let port = read_number(store, NO_TX, &f("event-channel"))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| bad("event-channel"))?;
    Ok((refs, port))
}

/// Step 1: what this vbd offers.
async fn offer<S: Store, D: BlockDevice>(
    store: &S,
    dir: &str,
    disk: &D,
    info: &Disk,
) -> Result<(), XsError> {
    let flag = |b: bool| if b { "1" } else { "0" };
    let nodes = [
        ("sectors", format!("{}", disk.sectors())),
        (
            "info",
            format!("{}", if info.readonly { VDISK_READONLY } else { 0 }),
        ),
        ("mode", String::from(if info.readonly { "r" } else { "w" })),
        ("sector-size", String::from("512")),
        ("physical-sector-size", String::from("512")),
        ("feature-flush-cache", String::from(flag(info.flush))),
        ("feature-barrier", String::from(flag(info.barrier))),
        ("feature-discard", String::from(flag(info.discard))),
        ("discard-granularity", String::from("512")),
        ("discard-alignment", String::from("0")),
        (
            "feature-max-indirect-segments",
            format!("{}", info.max_indirect_segments),
        ),
        ("max-ring-page-order", format!("{MAX_RING_ORDER}")),
        ("multi-queue-max-queues", format!("{MAX_QUEUES}")),
        ("feature-persistent", String::from("1")),
    ];
    for (n, v) in nodes {
        store.write_str(NO_TX, &format!("{dir}/{n}"), &v).await?;
    }
    Ok(())
}

/// Disconnects a vbd whose front end broke the protocol (Linux's `xenbus_dev_fatal`):
/// every grant unmapped, the ring dropped, `error` saying why, state `Closing`. The
/// front end keeps its domain; the device comes back.
pub async fn fail<S: Store, P: ForeignMemory + EventChannel, D: BlockDevice>(
    store: &S,
    p: &P,
    front: u16,
    id: u32,
    back: BlkBack<P, D>,
    why: &super::Disconnect,
) -> D {
    let dir = device::back_dir("vbd", front, id);
    let disk = back.disconnect(p);
    let _ = store
        .write_str(NO_TX, &format!("{dir}/error"), &format!("{why}"))
        .await;
    let _ = switch_state(store, &dir, State::Closing).await;
    disk
}

/// Follows the front end of a connected vbd until it closes
/// ([`xenbus::device::follow_close`]) and hands the device back.
pub async fn follow_close<S: Store, P: ForeignMemory + EventChannel, D: BlockDevice>(
    store: &S,
    p: &P,
    front: u16,
    id: u32,
    back: BlkBack<P, D>,
) -> Result<D, Error> {
    let dir = device::back_dir("vbd", front, id);
    let mut disk = None;
    device::follow_close(store, &dir, || disk = Some(back.disconnect(p))).await?;
    // follow_close disconnects before it returns Ok.
    disk.ok_or(Error::Closed(None))
}
