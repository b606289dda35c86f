//! The back end's side of the vif handshake (`io/netif.h`'s node list; Linux's
//! `xen-netback/xenbus.c`: `netback_probe`, `frontend_changed`, `connect`,
//! `connect_data_rings`, `read_xenbus_vif_flags`):
//!
//! 1. write what we offer into `backend/vif/<front>/<id>`: `feature-sg`,
//!    `feature-gso-tcpv4`, `feature-gso-tcpv6`, `feature-ipv6-csum-offload`,
//!    `feature-rx-copy` (and `feature-rx-flip` 0), `feature-split-event-channels`,
//!    `multi-queue-max-queues`; go `InitWait`;
//! 2. wait for the front end to be `Connected` (Linux's netfront goes there straight
//!    from `Initialising` once its rings are written; `Initialised` is taken too);
//! 3. read, per queue (`queue-N/` when it wrote `multi-queue-num-queues` above 1),
//!    `tx-ring-ref`, `rx-ring-ref`, and `event-channel` or `event-channel-tx` with
//!    `event-channel-rx`; and its flags: `request-rx-copy` (required: we only copy),
//!    `feature-rx-notify`, `feature-sg`, `feature-gso-tcpv4`/`-tcpv6`,
//!    `feature-no-csum-offload`, `feature-ipv6-csum-offload`; map the rings, go
//!    `Connected`.
//!
//! Everything read from the front end's directory is checked: a missing or malformed
//! node, too many queues, no `request-rx-copy` fail the connect with an `error` node and
//! state `Closing`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use pv_core::platform::{EventChannel, ForeignMemory, GrantCopy};
use xenbus::device::{self, other_end, read_flag, read_number, switch_state};
use xenbus::state::{self, Action};
use xenbus::{State, Store, XsError, NO_TX};

use super::back::{Features, NetBack, QueueRefs, MAX_QUEUES};

pub use xenbus::device::Error;

/// Offers vif `id` of domain `front` and connects it once the front end is ready.
/// On failure the vif is left `Closing` with an `error` node saying why.
pub async fn connect<S: Store, P: ForeignMemory + EventChannel + GrantCopy>(
    store: &S,
    p: &P,
    front: u16,
    id: u32,
) -> Result<NetBack<P>, Error> {
    let dir = device::back_dir("vif", front, id);
    let r = handshake(store, p, front, &dir).await;
    if let Err(e) = &r {
        let _ = store
            .write_str(NO_TX, &format!("{dir}/error"), &format!("{e:?}"))
            .await;
        let _ = switch_state(store, &dir, State::Closing).await;
    }
    r
}

async fn handshake<S: Store, P: ForeignMemory + EventChannel + GrantCopy>(
    store: &S,
    p: &P,
    front: u16,
    dir: &str,
) -> Result<NetBack<P>, Error> {
    let fe = other_end(store, dir, "frontend").await?;
    if fe.domid != front {
        return Err(Error::BadNode(String::from("frontend-id")));
    }
    offer(store, dir).await?;
    switch_state(store, dir, State::InitWait).await?;
    let mut watch = store.watch(&format!("{}/state", fe.dir)).await?;
    let (step, peer) =
        device::next_step(store, &mut watch, &fe.dir, State::InitWait, state::back_end).await?;
    if step.action != Action::Connect {
        return Err(Error::Closed(peer));
    }
    let f = |n: &str| format!("{}/{n}", fe.dir);
    let bad = |n: &str| Error::BadNode(String::from(n));
    if !flag(store, &fe.dir, "request-rx-copy").await? {
        // Page flipping is gone from every back end worth the name.
        return Err(bad("request-rx-copy"));
    }
    let nr_queues: usize = read_number(store, NO_TX, &f("multi-queue-num-queues"))
        .await
        .map_err(|_| bad("multi-queue-num-queues"))?
        .unwrap_or(1);
    if nr_queues == 0 || nr_queues > MAX_QUEUES {
        return Err(bad("multi-queue-num-queues"));
    }
    let sg = flag(store, &fe.dir, "feature-sg").await?;
    let features = Features {
        rx_notify: flag(store, &fe.dir, "feature-rx-notify").await?,
        sg,
        // GSO packets take several buffers: only with scatter-gather.
        gso_tcpv4: sg && flag(store, &fe.dir, "feature-gso-tcpv4").await?,
        gso_tcpv6: sg && flag(store, &fe.dir, "feature-gso-tcpv6").await?,
        csum: !flag(store, &fe.dir, "feature-no-csum-offload").await?,
        ipv6_csum: flag(store, &fe.dir, "feature-ipv6-csum-offload").await?,
        split: false,
    };
    let mut queues = Vec::with_capacity(nr_queues);
    let mut split = false;
    for q in 0..nr_queues {
        let dir = if nr_queues == 1 {
            fe.dir.clone()
        } else {
            format!("{}/queue-{q}", fe.dir)
        };
        let (refs, s) = read_queue(store, &dir).await?;
        split |= s;
        queues.push(refs);
    }
    let features = Features { split, ..features };
    let back = NetBack::connect(p, front, &queues, features).map_err(Error::Platform)?;
    if let Err(e) = switch_state(store, dir, State::Connected).await {
        back.disconnect(p);
        return Err(e.into());
    }
    Ok(back)
}

/// One queue's rings and event channel(s) from the front end's `dir`; whether they
/// are split.
async fn read_queue<S: Store>(store: &S, dir: &str) -> Result<(QueueRefs, bool), Error> {
    let bad = |n: &str| Error::BadNode(String::from(n));
    let tx_ref = num(store, dir, "tx-ring-ref")
        .await?
        .ok_or_else(|| bad("tx-ring-ref"))?;
    let rx_ref = num(store, dir, "rx-ring-ref")
        .await?
        .ok_or_else(|| bad("rx-ring-ref"))?;
    match num(store, dir, "event-channel").await? {
        Some(port) => Ok((
            QueueRefs {
                tx_ref,
                rx_ref,
                tx_port: port,
                rx_port: port,
            },
            false,
        )),
        None => {
            let tx = num(store, dir, "event-channel-tx")
                .await?
                .ok_or_else(|| bad("event-channel"))?;
            let rx = num(store, dir, "event-channel-rx")
                .await?
                .ok_or_else(|| bad("event-channel-rx"))?;
            Ok((
                QueueRefs {
                    tx_ref,
                    rx_ref,
                    tx_port: tx,
                    rx_port: rx,
                },
                true,
            ))
        }
    }
}

/// A flag node of the front end (absent: 0); anything but 0 or 1 is an error.
async fn flag<S: Store>(store: &S, dir: &str, n: &str) -> Result<bool, Error> {
    read_flag(store, NO_TX, &format!("{dir}/{n}"))
        .await
        .map_err(|_| Error::BadNode(String::from(n)))
}

/// A number node of the front end (absent: `None`).
async fn num<S: Store>(store: &S, dir: &str, n: &str) -> Result<Option<u32>, Error> {
    read_number(store, NO_TX, &format!("{dir}/{n}"))
        .await
        .map_err(|_| Error::BadNode(String::from(n)))
}

/// Step 1: what every vif offers (Linux's netback writes the same, less the control
/// ring and multicast control, which we do not implement).
async fn offer<S: Store>(store: &S, dir: &str) -> Result<(), XsError> {
    let nodes = [
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
        ("feature-rx-copy", "1"),
        ("feature-rx-flip", "0"),
        ("feature-split-event-channels", "1"),
    ];
    for (n, v) in nodes {
        store.write_str(NO_TX, &format!("{dir}/{n}"), v).await?;
    }
    store
        .write_str(
            NO_TX,
            &format!("{dir}/multi-queue-max-queues"),
            &format!("{MAX_QUEUES}"),
        )
        .await?;
    Ok(())
}

/// Disconnects a vif whose front end broke the protocol (Linux's
/// `xenvif_fatal_tx_err` then `xenbus_dev_fatal`): rings unmapped, channels closed,
/// `error` saying why, state `Closing`.
pub async fn fail<S: Store, P: ForeignMemory + EventChannel + GrantCopy>(
    store: &S,
    p: &P,
    front: u16,
    id: u32,
    back: NetBack<P>,
    why: &super::Disconnect,
) {
    let dir = device::back_dir("vif", front, id);
    back.disconnect(p);
    let _ = store
        .write_str(NO_TX, &format!("{dir}/error"), &format!("{why}"))
        .await;
    let _ = switch_state(store, &dir, State::Closing).await;
}

/// Follows the front end of a connected vif until it closes
/// ([`xenbus::device::follow_close`]).
pub async fn follow_close<S: Store, P: ForeignMemory + EventChannel + GrantCopy>(
    store: &S,
    p: &P,
    front: u16,
    id: u32,
    back: NetBack<P>,
) -> Result<(), Error> {
    let dir = device::back_dir("vif", front, id);
    device::follow_close(store, &dir, || back.disconnect(p)).await
}
