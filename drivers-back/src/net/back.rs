//! One connected vif (Linux's `struct xenvif` with its queues): the front end's tx
//! and rx rings mapped, their event channels bound, packets copied out of the front
//! end's tx grants and into the rx buffers it posted, with `GNTTABOP_copy`, batched
//! (Linux's `xen-netback/netback.c` and `rx.c`; `feature-rx-copy` is the only rx mode).
//!
//! Every tx slot is checked by [`pv_core::netif::parse_tx`] before anything is copied:
//! a packet netback would drop is answered `NETIF_RSP_ERROR` and the vif goes on; a
//! front end that breaks the protocol (impossible ring indices on either ring, the
//! malformed slots netback calls fatal) is disconnected ([`Disconnect`]). A grant that
//! cannot be copied drops that packet only (`NETIF_RSP_ERROR` on the tx ring, an error
//! status on the rx ring), as Linux's netback does.
//!
//! Received packets fill the rx buffers in ring order, one response per request
//! consumed, so a response's ring index is its request's (Linux's netfront finds a
//! buffer by that index, including the one behind a GSO extra-info slot).

use alloc::vec::Vec;

use pv_core::netif::{self, ExtraInfo, PacketMeta, RxFlags, TxError, TxFatal, TxPacket};
use pv_core::page::PAGE_SIZE;
use pv_core::platform::{
    Copy, DomId, EventChannel, ForeignMemory, GrantCopy, GrantRef, PlatformError, Port, SharePage,
};
use pv_core::ring::{BackRing, BackState, ProtocolError};
use xen_sys::{
    netif_rx_request, netif_rx_response, netif_tx_request, netif_tx_response, NETIF_RSP_ERROR,
    NETIF_RSP_NULL, NETIF_RSP_OKAY,
};

use super::Frame;

type TxRing<'a> = BackRing<'a, netif_tx_request, netif_tx_response>;
type RxRing<'a> = BackRing<'a, netif_rx_request, netif_rx_response>;

/// Packets taken from a tx ring per [`NetBack::transmit`] call and queue (Linux's NAPI
/// budget): the other vifs get their turn.
pub const TX_BUDGET: usize = 64;

/// The most queues a vif has (`multi-queue-max-queues`).
pub const MAX_QUEUES: usize = 4;

/// Why a vif was disconnected: the front end broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// Impossible indices on the tx ring.
    TxRing(ProtocolError),
    /// Impossible indices on the rx ring.
    RxRing(ProtocolError),
    /// A transmitted packet netback takes as malicious.
    Tx(TxFatal),
}

impl core::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Disconnect::TxRing(e) => write!(f, "tx ring: {e}"),
            Disconnect::RxRing(e) => write!(f, "rx ring: {e}"),
            Disconnect::Tx(e) => write!(f, "tx: {e}"),
        }
    }
}

/// What was negotiated with the front end (its `feature-*` and `request-*` nodes,
/// against what we offered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `feature-rx-notify`: the front end notifies when it posts rx buffers.
    pub rx_notify: bool,
    /// `feature-sg`: it takes packets over several rx buffers.
    pub sg: bool,
    /// `feature-gso-tcpv4`/`-tcpv6` (with `feature-sg`): it takes GSO packets.
    pub gso_tcpv4: bool,
    pub gso_tcpv6: bool,
    /// Not `feature-no-csum-offload`: it takes IPv4 packets with a blank checksum.
    pub csum: bool,
    /// `feature-ipv6-csum-offload`: IPv6 ones too.
    pub ipv6_csum: bool,
    /// `feature-split-event-channels`: one event channel per ring.
    pub split: bool,
}

/// What a vif moved, for logs, `/stats` and the scenarios.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets the front end transmitted and we took (to the bridge).
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Transmitted packets dropped (malformed, or a grant we could not copy).
    pub tx_dropped: u64,
    pub tx_bad_grant: u64,
    /// GSO packets among those taken.
    pub tx_gso: u64,
    /// Packets delivered into the front end's rx buffers.
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Packets not delivered: too large for a front end without `feature-sg`, or a
    /// buffer we could not copy into.
    pub rx_dropped: u64,
    /// Multicast-control requests answered.
    pub mcast: u64,
    /// Why the last grant copy failed, for logs.
    pub last_copy_error: Option<PlatformError>,
}

/// One queue's rings, as the front end wrote them in `queue-N/` (or at the top).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRefs {
    pub tx_ref: GrantRef,
    pub rx_ref: GrantRef,
    /// `event-channel`, or `event-channel-tx` with split channels.
    pub tx_port: Port,
    /// `event-channel-rx` with split channels; the same port otherwise.
    pub rx_port: Port,
}

struct Queue<P: ForeignMemory> {
    tx_page: P::Mapping,
    rx_page: P::Mapping,
    tx: BackState,
    rx: BackState,
    tx_port: Port,
    /// The same as `tx_port` without split event channels.
    rx_port: Port,
    /// A packet taken for this queue that waits for the front end to post buffers.
    stalled: Option<Frame>,
}

/// One connected vif.
pub struct NetBack<P: ForeignMemory + EventChannel + GrantCopy> {
    domid: DomId,
    queues: Vec<Queue<P>>,
    features: Features,
    counters: Counters,
}

impl<P: ForeignMemory + EventChannel + GrantCopy> NetBack<P> {
    /// Maps each queue's tx and rx ring of domain `domid` and binds its event
    /// channel(s). On any error nothing stays mapped or bound.
    pub fn connect(
        p: &P,
        domid: DomId,
        queues: &[QueueRefs],
        features: Features,
    ) -> Result<Self, PlatformError> {
        if queues.is_empty() || queues.len() > MAX_QUEUES {
            return Err(PlatformError::Invalid);
        }
        let mut done: Vec<Queue<P>> = Vec::with_capacity(queues.len());
        for q in queues {
            match Queue::connect(p, domid, q, features.split) {
                Ok(q) => done.push(q),
                Err(e) => {
                    for q in done {
                        q.disconnect(p);
                    }
                    return Err(e);
                }
            }
        }
        Ok(NetBack {
            domid,
            queues: done,
            features,
            counters: Counters::default(),
        })
    }

    pub fn domid(&self) -> DomId {
        self.domid
    }

    pub fn features(&self) -> Features {
        self.features
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Our ends of every event channel (one or two a queue).
    pub fn ports(&self) -> Vec<Port> {
        let mut v = Vec::new();
        for q in &self.queues {
            v.push(q.tx_port);
            if q.rx_port != q.tx_port {
                v.push(q.rx_port);
            }
        }
        v
    }

    /// Takes up to [`TX_BUDGET`] packets from each queue's tx ring, hands each to
    /// `out`, and answers them. Returns whether a ring still has packets (call again
    /// after the other vifs had their turn), or why the front end must be disconnected
    /// (then call [`NetBack::disconnect`]).
    pub fn transmit(&mut self, p: &P, out: &mut impl FnMut(Frame)) -> Result<bool, Disconnect> {
        let mut more = false;
        for q in &mut self.queues {
            more |= q.transmit(p, self.domid, &mut self.counters, out)?;
        }
        Ok(more)
    }

    /// Delivers packets from `next` into the front end's rx buffers until it has no
    /// more or the buffers run out (the packet then waits in the vif, at most one per
    /// queue, until the front end posts more). Returns whether a packet waits.
    pub fn receive(
        &mut self,
        p: &P,
        next: &mut impl FnMut() -> Option<Frame>,
    ) -> Result<bool, Disconnect> {
        let nq = self.queues.len();
        // The rx rings' indices are checked whether or not a packet is waiting: a
        // front end that posts impossible buffers is disconnected at once.
        for q in &mut self.queues {
            let page = [q.rx_page.page()];
            let mut ring = RxRing::resume(&page, q.rx);
            let r = ring.unconsumed_requests();
            q.rx = ring.state();
            r.map_err(Disconnect::RxRing)?;
        }
        // Stalled packets first, in their queues.
        for q in &mut self.queues {
            if let Some(f) = q.stalled.take() {
                q.deliver(p, self.domid, &self.features, &mut self.counters, f)?;
            }
        }
        while let Some(f) = next() {
            let qi = if nq == 1 { 0 } else { flow_hash(&f.data) % nq };
            let q = &mut self.queues[qi];
            if q.stalled.is_some() {
                // That queue is full: keep the packet for it (its order is kept too).
                let _ = q.stalled.replace(f);
                break;
            }
            q.deliver(p, self.domid, &self.features, &mut self.counters, f)?;
            if q.stalled.is_some() {
                break;
            }
        }
        Ok(self.queues.iter().any(|q| q.stalled.is_some()))
    }

    /// Unmaps the rings and closes the event channels.
    pub fn disconnect(self, p: &P) {
        for q in self.queues {
            q.disconnect(p);
        }
    }
}

/// A queue for a packet: the same for every packet of a flow (addresses and ports of
/// IPv4/IPv6), so a TCP connection's order is kept.
fn flow_hash(frame: &[u8]) -> usize {
    let ethertype = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (ip, proto_at, ihl) = match ethertype {
        Some(0x0800) if frame.len() >= 34 => (&frame[26..34], 23, ((frame[14] & 0xf) as usize) * 4),
        Some(0x86dd) if frame.len() >= 54 => (&frame[22..54], 20, 40),
        _ => return 0,
    };
    let mut h: u32 = 0x811c_9dc5;
    let mut mix = |b: &[u8]| {
        for &x in b {
            h = (h ^ x as u32).wrapping_mul(0x0100_0193);
        }
    };
    // Addresses in either order hash alike.
    let (a, b) = ip.split_at(ip.len() / 2);
    if a <= b {
        mix(a);
        mix(b);
    } else {
        mix(b);
        mix(a);
    }
    let ports = 14 + ihl;
    if matches!(frame.get(proto_at), Some(6 | 17)) && frame.len() >= ports + 4 {
        let (s, d) = (&frame[ports..ports + 2], &frame[ports + 2..ports + 4]);
        if s <= d {
            mix(s);
            mix(d);
        } else {
            mix(d);
            mix(s);
        }
    }
    h as usize
}

impl<P: ForeignMemory + EventChannel + GrantCopy> Queue<P> {
    fn connect(p: &P, domid: DomId, refs: &QueueRefs, split: bool) -> Result<Self, PlatformError> {
        let tx_page = p.map(domid, refs.tx_ref, false)?;
        let rx_page = match p.map(domid, refs.rx_ref, false) {
            Ok(m) => m,
            Err(e) => {
                let _ = p.unmap(tx_page);
                return Err(e);
            }
        };
        let undo = |p: &P, a, b| {
            let _ = p.unmap(a);
            let _ = p.unmap(b);
        };
        let states = {
            let (t, r) = ([tx_page.page()], [rx_page.page()]);
            TxRing::attach(&t).and_then(|t| Ok((t.state(), RxRing::attach(&r)?.state())))
        };
        let Ok((tx, rx)) = states else {
            undo(p, tx_page, rx_page);
            return Err(PlatformError::Invalid);
        };
        let tx_port = match p.bind_interdomain(domid, refs.tx_port) {
            Ok(port) => port,
            Err(e) => {
                undo(p, tx_page, rx_page);
                return Err(e);
            }
        };
        let rx_port = if split && refs.rx_port != refs.tx_port {
            match p.bind_interdomain(domid, refs.rx_port) {
                Ok(port) => port,
                Err(e) => {
                    p.close(tx_port);
                    undo(p, tx_page, rx_page);
                    return Err(e);
                }
            }
        } else {
            tx_port
        };
        Ok(Queue {
            tx_page,
            rx_page,
            tx,
            rx,
            tx_port,
            rx_port,
            stalled: None,
        })
    }

    fn disconnect(self, p: &P) {
        let _ = p.unmap(self.tx_page);
        let _ = p.unmap(self.rx_page);
        p.close(self.tx_port);
        if self.rx_port != self.tx_port {
            p.close(self.rx_port);
        }
    }

    /// See [`NetBack::transmit`]: one batch of up to [`TX_BUDGET`] packets, their
    /// data copied with one grant-copy call.
    fn transmit(
        &mut self,
        p: &P,
        domid: DomId,
        c: &mut Counters,
        out: &mut impl FnMut(Frame),
    ) -> Result<bool, Disconnect> {
        let page = [self.tx_page.page()];
        let mut ring = TxRing::resume(&page, self.tx);
        let mut packets: Vec<TxPacket> = Vec::new();
        let mut answers: Vec<(u16, i16)> = Vec::new();
        let mut more = false;
        let result = loop {
            if packets.len() >= TX_BUDGET {
                more = true;
                break Ok(());
            }
            let pushed = match ring.unconsumed_requests() {
                Ok(n) => n as usize,
                Err(e) => break Err(Disconnect::TxRing(e)),
            };
            if pushed == 0 {
                match ring.final_check_for_requests() {
                    Ok(true) => continue,
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(Disconnect::TxRing(e)),
                }
            }
            // The parser reads the packet's slots in order and no further, each one
            // consumed as it is read.
            let parsed = netif::parse_tx(pushed, |_| {
                ring.get_request().ok().flatten().unwrap_or_default()
            });
            match parsed {
                Ok(pkt) if pkt.mcast.is_some() => {
                    c.mcast += 1;
                    // Not offered (`feature-multicast-control`): the bridge floods
                    // multicast anyway, so joining is a success with nothing to do.
                    answers.push((pkt.frags[0].id, NETIF_RSP_OKAY as i16));
                    answers.extend((0..pkt.extras).map(|_| (0, NETIF_RSP_NULL as i16)));
                }
                Ok(pkt) => packets.push(pkt),
                Err(TxError::Drop { ids, extras, .. }) => {
                    c.tx_dropped += 1;
                    let mut first = true;
                    for id in ids {
                        answers.push((id, NETIF_RSP_ERROR as i16));
                        if first {
                            answers.extend((0..extras).map(|_| (0, NETIF_RSP_NULL as i16)));
                            first = false;
                        }
                    }
                }
                Err(TxError::Fatal(e)) => break Err(Disconnect::Tx(e)),
            }
        };
        if let Err(d) = result {
            self.tx = ring.state();
            return Err(d);
        }
        // Copy every packet's data at once.
        let mut bufs: Vec<Vec<u8>> = packets
            .iter()
            .map(|pkt| alloc::vec![0u8; pkt.len])
            .collect();
        let mut ops: Vec<Copy<'_>> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (i, (pkt, buf)) in packets.iter().zip(bufs.iter_mut()).enumerate() {
            let mut rest: &mut [u8] = buf;
            for f in &pkt.frags {
                let (here, tail) = rest.split_at_mut(f.size as usize);
                rest = tail;
                if !here.is_empty() {
                    ops.push(Copy::FromGrant {
                        dom: domid,
                        gref: f.gref,
                        offset: f.offset,
                        to: here,
                    });
                    owner.push(i);
                }
            }
        }
        let mut status = alloc::vec![Ok(()); ops.len()];
        p.copy(&mut ops, &mut status);
        drop(ops);
        let mut failed = alloc::vec![false; packets.len()];
        for (s, &i) in status.iter().zip(&owner) {
            if let Err(e) = s {
                failed[i] = true;
                c.last_copy_error = Some(*e);
            }
        }
        for ((pkt, data), bad) in packets.into_iter().zip(bufs).zip(failed) {
            let st = if bad {
                c.tx_dropped += 1;
                c.tx_bad_grant += 1;
                NETIF_RSP_ERROR as i16
            } else {
                NETIF_RSP_OKAY as i16
            };
            for (k, f) in pkt.frags.iter().enumerate() {
                answers.push((f.id, st));
                if k == 0 {
                    answers.extend((0..pkt.extras).map(|_| (0, NETIF_RSP_NULL as i16)));
                }
            }
            if !bad {
                c.tx_packets += 1;
                c.tx_bytes += data.len() as u64;
                c.tx_gso += u64::from(pkt.meta.gso.is_some());
                out(Frame {
                    data,
                    meta: pkt.meta,
                });
            }
        }
        for (id, status) in answers {
            ring.put_response(&netif_tx_response { id, status });
        }
        let notify = ring.push_responses();
        self.tx = ring.state();
        if notify {
            p.notify(self.tx_port);
        }
        Ok(more)
    }

    /// Delivers one packet: `Ok(true)` if the front end must be notified; the packet
    /// stays in `stalled` if the posted buffers do not hold it.
    fn deliver(
        &mut self,
        p: &P,
        domid: DomId,
        feat: &Features,
        c: &mut Counters,
        f: Frame,
    ) -> Result<bool, Disconnect> {
        let page = [self.rx_page.page()];
        let mut ring = RxRing::resume(&page, self.rx);
        let gso = f.meta.gso.filter(|g| match g.kind {
            netif::GsoKind::TcpV4 => feat.gso_tcpv4,
            netif::GsoKind::TcpV6 => feat.gso_tcpv6,
        });
        let data_slots = f.data.len().div_ceil(PAGE_SIZE).max(1);
        if data_slots > 1 && !feat.sg {
            c.rx_dropped += 1;
            return Ok(false);
        }
        let needed = data_slots + usize::from(gso.is_some());
        let have = match ring.unconsumed_requests() {
            Ok(n) => n as usize,
            Err(e) => {
                self.rx = ring.state();
                return Err(Disconnect::RxRing(e));
            }
        };
        if have < needed {
            // Ask for an event when the front end posts more, and look once more.
            let more = ring.final_check_for_requests();
            let have = ring.unconsumed_requests().unwrap_or(0) as usize;
            self.rx = ring.state();
            if let Err(e) = more {
                return Err(Disconnect::RxRing(e));
            }
            if have < needed {
                self.stalled = Some(f);
                return Ok(false);
            }
            return self.deliver(p, domid, feat, c, f);
        }
        let mut reqs: Vec<netif_rx_request> = Vec::with_capacity(needed);
        for _ in 0..needed {
            reqs.push(ring.get_request().ok().flatten().unwrap_or_default());
        }
        let data_reqs: Vec<netif_rx_request> = reqs
            .iter()
            .enumerate()
            .filter(|(i, _)| !(gso.is_some() && *i == 1))
            .map(|(_, r)| *r)
            .collect();
        let chunks: Vec<&[u8]> = if f.data.is_empty() {
            alloc::vec![&f.data[..]]
        } else {
            f.data.chunks(PAGE_SIZE).collect()
        };
        let mut ops: Vec<Copy<'_>> = chunks
            .iter()
            .zip(&data_reqs)
            .map(|(chunk, r)| Copy::ToGrant {
                from: chunk,
                dom: domid,
                gref: r.gref,
                offset: 0,
            })
            .collect();
        let mut status = alloc::vec![Ok(()); ops.len()];
        p.copy(&mut ops, &mut status);
        let ok = status.iter().all(|s| s.is_ok());
        // Blank checksums only to a front end that takes them (the bridge filled
        // them for the others).
        let meta = PacketMeta { gso, ..f.meta };
        let mut k = 0;
        for (i, r) in reqs.iter().enumerate() {
            if gso.is_some() && i == 1 {
                if let Some(g) = gso {
                    ring.put_response(&ExtraInfo::gso(g).as_rx_slot());
                }
                continue;
            }
            let last = k + 1 == chunks.len();
            let mut flags = if k == 0 {
                meta.rx_flags()
            } else {
                RxFlags::default()
            };
            flags = flags.with(RxFlags::MORE_DATA, !last);
            let status = if ok {
                chunks[k].len() as i16
            } else {
                NETIF_RSP_ERROR as i16
            };
            ring.put_response(&netif_rx_response {
                id: r.id,
                offset: 0,
                flags: flags.0,
                status,
            });
            k += 1;
        }
        if ok {
            c.rx_packets += 1;
            c.rx_bytes += f.data.len() as u64;
        } else {
            c.rx_dropped += 1;
        }
        let notify = ring.push_responses();
        self.rx = ring.state();
        if notify {
            p.notify(self.rx_port);
        }
        Ok(notify)
    }
}
