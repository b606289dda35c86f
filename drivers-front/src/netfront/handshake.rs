//! The front end's side of the vif handshake (`io/netif.h`'s node list; Linux's
//! `xen-netfront.c`: `talk_to_netback`, `setup_netfront`, `xennet_connect`,
//! `netback_changed`):
//!
//! 1. find the back end (`device/vif/<id>/backend`) and wait for `InitWait`; read
//!    what it offers: `feature-rx-copy` (required), `feature-sg`,
//!    `feature-gso-tcpv4`/`-tcpv6`, `feature-ipv6-csum-offload`,
//!    `feature-split-event-channels`;
//! 2. make the rings (one pair per queue, up to `multi-queue-max-queues`), post the rx
//!    buffers, and publish in one transaction `tx-ring-ref`, `rx-ring-ref`,
//!    `event-channel` (or `event-channel-tx` and `event-channel-rx`), under `queue-N/`
//!    with `multi-queue-num-queues` for several, `request-rx-copy`, `feature-rx-notify`, and what we take:
//!    `feature-sg`, `feature-gso-tcpv4`/`-tcpv6`, `feature-ipv6-csum-offload` or
//!    `feature-no-csum-offload`; then go `Connected` at once, as Linux's netfront
//!    does (Linux's netback connects only when it sees `Connected`);
//! 3. wait for the back end to be `Connected` too.
//!
//! Our MAC is the toolstack's `device/vif/<id>/mac`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use pv_core::netif;
use pv_core::platform::{EventChannel, GrantTable, LocalPage};
use xenbus::device::{self, other_end, read_flag, switch_state};
use xenbus::state::{self, Action};
use xenbus::{State, Store, XsError, NO_TX};

use super::ring::{Features, Netfront};

pub use xenbus::device::Error;

/// What this front end asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Packets over several slots, and GSO (which needs them).
    pub sg: bool,
    pub gso: bool,
    /// Blank checksums, both ways (IPv4 and IPv6).
    pub csum: bool,
    /// One event channel per ring, if the back end offers it.
    pub split: bool,
    pub tx_buffers: usize,
    pub rx_buffers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sg: true,
            gso: true,
            csum: true,
            split: true,
            tx_buffers: 64,
            rx_buffers: 64,
        }
    }
}

/// Connects vif `id` (`device/vif/<id>`): the data path and our MAC.
pub async fn connect<S: Store, P: GrantTable + EventChannel + Clone>(
    store: &S,
    p: P,
    id: u32,
    cfg: Config,
) -> Result<(Netfront<P>, [u8; 6]), Error>
where
    P::Page: LocalPage,
{
    let (mut fronts, mac) = connect_queues(store, p, id, cfg, 1).await?;
    Ok((fronts.remove(0), mac))
}

/// Connects vif `id` with up to `queues` queues (as many as the back end's
/// `multi-queue-max-queues` allows): a tx and an rx ring and event channel(s) each,
/// published under `queue-N/` with `multi-queue-num-queues` when there are several
/// (Linux's `xennet_create_queues` and `write_queue_xenstore_keys`).
pub async fn connect_queues<S: Store, P: GrantTable + EventChannel + Clone>(
    store: &S,
    p: P,
    id: u32,
    cfg: Config,
    queues: usize,
) -> Result<(Vec<Netfront<P>>, [u8; 6]), Error>
where
    P::Page: LocalPage,
{
    let dir = device::front_dir("vif", id);
    let mac = store
        .read(NO_TX, &format!("{dir}/mac"))
        .await
        .ok()
        .and_then(|m| {
            core::str::from_utf8(&m)
                .ok()
                .and_then(|m| netif::parse_mac(m.trim()))
        })
        .ok_or_else(|| Error::BadNode(String::from("mac")))?;
    let back = other_end(store, &dir, "backend").await?;
    let mut watch = store.watch(&format!("{}/state", back.dir)).await?;
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
    let offered = |n: &'static str| {
        let path = format!("{}/{n}", back.dir);
        async move { read_flag(store, NO_TX, &path).await }
    };
    if !offered("feature-rx-copy").await? {
        return Err(Error::BadNode(String::from("feature-rx-copy")));
    }
    let sg = cfg.sg && offered("feature-sg").await?;
    let features = Features {
        sg,
        gso_tcpv4: sg && cfg.gso && offered("feature-gso-tcpv4").await?,
        gso_tcpv6: sg && cfg.gso && offered("feature-gso-tcpv6").await?,
        csum: cfg.csum,
        ipv6_csum: cfg.csum && offered("feature-ipv6-csum-offload").await?,
        split: cfg.split && offered("feature-split-event-channels").await?,
    };
    let max_queues: usize = xenbus::device::read_number(
        store,
        NO_TX,
        &format!("{}/multi-queue-max-queues", back.dir),
    )
    .await
    .map_err(|_| Error::BadNode(String::from("multi-queue-max-queues")))?
    .unwrap_or(1);
    let n = queues.min(max_queues).max(1);
    let mut fronts: Vec<Netfront<P>> = Vec::with_capacity(n);
    for _ in 0..n {
        match Netfront::new(
            p.clone(),
            back.domid,
            features.split,
            cfg.tx_buffers,
            cfg.rx_buffers,
        ) {
            Ok(mut f) => {
                f.start(features);
                fronts.push(f);
            }
            Err(e) => {
                for f in fronts {
                    f.close();
                }
                return Err(e.into());
            }
        }
    }
    let r = async {
        publish(store, &dir, &fronts, &cfg).await?;
        switch_state(store, &dir, State::Connected).await?;
        // We are Connected in the store; towards the back end we wait as a front end
        // whose rings are published does.
        let (step, peer) = device::next_step(
            store,
            &mut watch,
            &back.dir,
            State::Initialised,
            state::front_end,
        )
        .await?;
        if step.action != Action::Start {
            return Err(Error::Closed(peer));
        }
        Ok(())
    };
    match r.await {
        Ok(()) => Ok((fronts, mac)),
        Err(e) => {
            let _ = switch_state(store, &dir, State::Closed).await;
            for f in fronts {
                f.close();
            }
            Err(e)
        }
    }
}

/// Step 2's nodes, in one transaction (retried while it conflicts): one queue's keys
/// at the top, several queues' under `queue-N/`.
async fn publish<S: Store, P: GrantTable + EventChannel>(
    store: &S,
    dir: &str,
    fronts: &[Netfront<P>],
    cfg: &Config,
) -> Result<(), Error>
where
    P::Page: LocalPage,
{
    let f = fronts[0].features();
    let flag = |b: bool| String::from(if b { "1" } else { "0" });
    let mut nodes = alloc::vec![
        (String::from("request-rx-copy"), String::from("1")),
        (String::from("feature-rx-notify"), String::from("1")),
        (String::from("feature-sg"), flag(f.sg)),
        (String::from("feature-gso-tcpv4"), flag(f.sg && cfg.gso)),
        (String::from("feature-gso-tcpv6"), flag(f.sg && cfg.gso)),
        (String::from("feature-ipv6-csum-offload"), flag(cfg.csum)),
        (String::from("feature-no-csum-offload"), flag(!cfg.csum)),
    ];
    if fronts.len() > 1 {
        nodes.push((
            String::from("multi-queue-num-queues"),
            format!("{}", fronts.len()),
        ));
    }
    for (q, front) in fronts.iter().enumerate() {
        let at = if fronts.len() == 1 {
            String::new()
        } else {
            format!("queue-{q}/")
        };
        let (tx_port, rx_port) = front.ports();
        nodes.push((format!("{at}tx-ring-ref"), format!("{}", front.tx_ref())));
        nodes.push((format!("{at}rx-ring-ref"), format!("{}", front.rx_ref())));
        if f.split {
            nodes.push((format!("{at}event-channel-tx"), format!("{tx_port}")));
            nodes.push((format!("{at}event-channel-rx"), format!("{rx_port}")));
        } else {
            nodes.push((format!("{at}event-channel"), format!("{tx_port}")));
        }
    }
    loop {
        let tx = store.transaction_start().await?;
        let mut failed = None;
        for (n, v) in &nodes {
            if let Err(e) = store.write_str(tx, &format!("{dir}/{n}"), v).await {
                failed = Some(e);
                break;
            }
        }
        if let Some(e) = failed {
            let _ = store.transaction_end(tx, false).await;
            return Err(e.into());
        }
        match store.transaction_end(tx, true).await {
            Ok(()) => return Ok(()),
            Err(XsError::EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Closes vif `id` in order: `Closing`, wait for the back end to let go (it goes
/// `Closing` or `Closed` after unmapping), revoke every grant, `Closed`.
pub async fn close<S: Store, P: GrantTable + EventChannel>(
    store: &S,
    id: u32,
    front: Netfront<P>,
) -> Result<(), Error>
where
    P::Page: LocalPage,
{
    close_queues(store, id, alloc::vec![front]).await
}

/// [`close`] for a vif of several queues.
pub async fn close_queues<S: Store, P: GrantTable + EventChannel>(
    store: &S,
    id: u32,
    fronts: Vec<Netfront<P>>,
) -> Result<(), Error>
where
    P::Page: LocalPage,
{
    let dir = device::front_dir("vif", id);
    device::front_close(store, &dir, || {
        for f in fronts {
            f.close();
        }
    })
    .await
}
