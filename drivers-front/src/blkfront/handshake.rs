//! The front end's side of the vbd handshake (`io/blkif.h`'s node list; Linux's
//! `talk_to_blkback` and `blkfront_connect`):
//!
//! 1. find the back end (`device/vbd/<id>/backend`, `backend-id`) and wait for it to
//!    reach `InitWait` (it has written its features);
//! 2. make the rings, as many pages as both ends allow (`max-ring-page-order`), one
//!    per queue (up to the back end's `multi-queue-max-queues`), and publish
//!    `ring-ref` (or `ring-page-order` and `ring-ref<N>`) and `event-channel` (under
//!    `queue-<N>/` with `multi-queue-num-queues` for several), `protocol` and
//!    `feature-persistent` in one transaction, then go `Initialised`;
//! 3. wait for `Connected`, read what it offers (`sectors`, `info`, `sector-size`,
//!    `feature-flush-cache`, `feature-barrier`, `feature-discard`,
//!    `feature-max-indirect-segments`), and go `Connected`.
//!
//! A back end that closes, vanishes or writes nonsense meanwhile fails the connect;
//! nothing stays granted.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use pv_core::platform::{EventChannel, GrantTable};
use xen_sys::VDISK_READONLY;
use xenbus::device::{self, other_end, read_flag, read_number, switch_state};
use xenbus::state::{self, Action};
use xenbus::{State, Store, XsError, NO_TX};

use super::ring::{Blkfront, Offer};

/// The most ring pages we ask for (`ring-page-order` 2: 4 pages, 128 slots), as
/// Linux's default `max_ring_page_order`.
pub const RING_ORDER: u32 = 2;

/// Why a vbd did not connect (shared by both ends' handshakes).
pub use xenbus::device::Error;

/// Connects vbd `id` (`device/vbd/<id>`), with a data pool of `pool_pages` pages.
pub async fn connect<S: Store, P: GrantTable + EventChannel + Clone>(
    store: &S,
    p: P,
    id: u32,
    pool_pages: usize,
) -> Result<Blkfront<P>, Error> {
    let mut fronts = connect_queues(store, p, id, pool_pages, 1).await?;
    Ok(fronts.remove(0))
}

/// Connects vbd `id` with up to `queues` queues (as many as the back end's
/// `multi-queue-max-queues` allows; one ring, event channel and pool of `pool_pages`
/// each).
pub async fn connect_queues<S: Store, P: GrantTable + EventChannel + Clone>(
    store: &S,
    p: P,
    id: u32,
    pool_pages: usize,
    queues: usize,
) -> Result<Vec<Blkfront<P>>, Error> {
    let dir = device::front_dir("vbd", id);
    let back = other_end(store, &dir, "backend").await?;
    let back_state = format!("{}/state", back.dir);
    let mut watch = store.watch(&back_state).await?;
    // The back end's moves as the xenbus state machine reads them.
    let (step, peer) = device::next_step(
        store,
        &mut watch,
        &back.dir,
        State::Initialising,
        state::front_end,
    )
    .await?;
    if step.action != Action::Connect {
        return Err(Error::Closed(peer));
    }
    let node = |n: &str| format!("{}/{n}", back.dir);
    let theirs: u32 = read_number(store, NO_TX, &node("max-ring-page-order"))
        .await
        .map_err(|_| Error::BadNode(String::from("max-ring-page-order")))?
        .unwrap_or(0);
    let order = theirs.min(RING_ORDER);
    let max_queues: usize = read_number(store, NO_TX, &node("multi-queue-max-queues"))
        .await
        .map_err(|_| Error::BadNode(String::from("multi-queue-max-queues")))?
        .unwrap_or(1);
    let n = queues.min(max_queues).max(1);
    let mut fronts = Vec::with_capacity(n);
    for _ in 0..n {
        match Blkfront::new(p.clone(), back.domid, 1 << order, pool_pages) {
            Ok(f) => fronts.push(f),
            Err(e) => {
                for f in fronts {
                    f.close();
                }
                return Err(e.into());
            }
        }
    }
    if let Err(e) = publish(store, &dir, &fronts, order).await {
        for f in fronts {
            f.close();
        }
        return Err(e);
    }
    finish(store, &mut watch, &dir, &back.dir, fronts).await
}

/// Step 2: the rings' nodes in one transaction (retried while it conflicts), then
/// `Initialised`. One queue's keys go at the top; several queues' under `queue-N/`,
/// with `multi-queue-num-queues` (Linux's `talk_to_blkback`).
async fn publish<S: Store, P: GrantTable + EventChannel>(
    store: &S,
    dir: &str,
    fronts: &[Blkfront<P>],
    order: u32,
) -> Result<(), Error> {
    loop {
        let tx = store.transaction_start().await?;
        let w = async {
            let put = |path: String, v: String| async move { store.write_str(tx, &path, &v).await };
            if order > 0 {
                put(format!("{dir}/ring-page-order"), format!("{order}")).await?;
            }
            if fronts.len() > 1 {
                put(
                    format!("{dir}/multi-queue-num-queues"),
                    format!("{}", fronts.len()),
                )
                .await?;
            }
            for (q, front) in fronts.iter().enumerate() {
                let qdir = if fronts.len() == 1 {
                    String::from(dir)
                } else {
                    format!("{dir}/queue-{q}")
                };
                if order == 0 {
                    put(
                        format!("{qdir}/ring-ref"),
                        format!("{}", front.ring_refs()[0]),
                    )
                    .await?;
                } else {
                    for (i, r) in front.ring_refs().iter().enumerate() {
                        put(format!("{qdir}/ring-ref{i}"), format!("{r}")).await?;
                    }
                }
                put(format!("{qdir}/event-channel"), format!("{}", front.port())).await?;
            }
            put(format!("{dir}/protocol"), String::from("x86_64-abi")).await?;
            put(format!("{dir}/feature-persistent"), String::from("1")).await
        };
        match w.await {
            Ok(()) => {}
            Err(e) => {
                let _ = store.transaction_end(tx, false).await;
                return Err(e.into());
            }
        }
        match store.transaction_end(tx, true).await {
            Ok(()) => break,
            Err(XsError::EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    switch_state(store, dir, State::Initialised).await?;
    Ok(())
}

/// Step 3: wait for `Connected`, read the offer, go `Connected`.
async fn finish<S: Store, W: xenbus::Watch, P: GrantTable + EventChannel>(
    store: &S,
    watch: &mut W,
    dir: &str,
    back: &str,
    mut fronts: Vec<Blkfront<P>>,
) -> Result<Vec<Blkfront<P>>, Error> {
    let r = async {
        let (step, peer) =
            device::next_step(store, watch, back, State::Initialised, state::front_end).await?;
        if step.action != Action::Start {
            return Err(Error::Closed(peer));
        }
        let offer = read_offer(store, back).await?;
        for f in &mut fronts {
            f.connected(offer);
        }
        switch_state(store, dir, State::Connected).await?;
        Ok(())
    };
    match r.await {
        Ok(()) => Ok(fronts),
        Err(e) => {
            let _ = switch_state(store, dir, State::Closed).await;
            for f in fronts {
                f.close();
            }
            Err(e)
        }
    }
}

/// What a `Connected` back end offers.
pub async fn read_offer<S: Store>(store: &S, back: &str) -> Result<Offer, Error> {
    let node = |n: &str| format!("{back}/{n}");
    fn bad(n: &'static str) -> impl Fn(XsError) -> Error {
        move |_| Error::BadNode(String::from(n))
    }
    let sectors: u64 = read_number(store, NO_TX, &node("sectors"))
        .await
        .map_err(bad("sectors"))?
        .ok_or_else(|| Error::BadNode(String::from("sectors")))?;
    let info: u32 = read_number(store, NO_TX, &node("info"))
        .await
        .map_err(bad("info"))?
        .unwrap_or(0);
    // We address the disk in 512-byte sectors; a larger logical sector is refused.
    let sector_size: u32 = read_number(store, NO_TX, &node("sector-size"))
        .await
        .map_err(bad("sector-size"))?
        .unwrap_or(512);
    if sector_size != 512 {
        return Err(Error::BadNode(format!("sector-size {sector_size}")));
    }
    let max_indirect: u32 = read_number(store, NO_TX, &node("feature-max-indirect-segments"))
        .await
        .unwrap_or(None)
        .unwrap_or(0);
    let mode_ro = store
        .read(NO_TX, &node("mode"))
        .await
        .is_ok_and(|m| m.as_slice() == b"r");
    Ok(Offer {
        sectors,
        readonly: info & VDISK_READONLY != 0 || mode_ro,
        flush: read_flag(store, NO_TX, &node("feature-flush-cache")).await?,
        barrier: read_flag(store, NO_TX, &node("feature-barrier")).await?,
        discard: read_flag(store, NO_TX, &node("feature-discard")).await?,
        max_indirect_segments: max_indirect.min(pv_core::blkif::MAX_INDIRECT_SEGMENTS),
    })
}

/// Closes vbd `id` in order (Linux's `blkfront_remove` and `blkfront_closing`): goes
/// `Closing`, waits for the back end to let go of the ring (it goes `Closing` or
/// `Closed` after unmapping), then revokes every grant and goes `Closed`.
pub async fn close<S: Store, P: GrantTable + EventChannel>(
    store: &S,
    id: u32,
    front: Blkfront<P>,
) -> Result<(), Error> {
    close_queues(store, id, alloc::vec![front]).await
}

/// [`close`] for a vbd of several queues.
pub async fn close_queues<S: Store, P: GrantTable + EventChannel>(
    store: &S,
    id: u32,
    fronts: Vec<Blkfront<P>>,
) -> Result<(), Error> {
    let dir = device::front_dir("vbd", id);
    device::front_close(store, &dir, || {
        for f in fronts {
            f.close();
        }
    })
    .await
}
