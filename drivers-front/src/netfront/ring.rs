//! One vif's data path (Linux's `xen-netfront.c`: `xennet_start_xmit`,
//! `xennet_tx_buf_gc`, `xennet_poll`, `xennet_alloc_rx_buffers`): a tx and an rx ring
//! of one page each, an event channel (or one per ring), and our pages.
//!
//! Every buffer is one page of ours. To transmit, a packet is written into free pages
//! (lent to the caller's closure while no grant of them is live), each page granted
//! read-only to the back end for the time the request is on the ring and revoked when
//! its response comes. To receive, pages are granted writable and posted as rx
//! requests, request `id` = its ring index modulo the ring size (Linux's
//! `xennet_rxidx`), and revoked when their response comes, so the packet's bytes can
//! be lent to the network stack with no peer able to change them. Responses come
//! back in request order: response `i` answers the buffer posted at index `i`, the
//! one behind a GSO extra-info slot included (it carries no data and is posted again).
//!
//! The back end runs in another domain and is not trusted not to be buggy: a response
//! naming a buffer we did not post, data beyond its page, impossible ring indices
//! break the vif ([`Broken`]), never this domain.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use pv_core::netif::{self, ExtraInfo, PacketMeta, RxFlags};
use pv_core::page::PAGE_SIZE;
use pv_core::platform::{
    DomId, EventChannel, GrantRef, GrantTable, LocalPage, PlatformError, Port, SharePage,
};
use pv_core::ring::{FrontRing, FrontState, ProtocolError};
use xen_sys::{
    netif_rx_request, netif_rx_response, netif_tx_request, netif_tx_response, NETIF_RSP_NULL,
    NETIF_RSP_OKAY,
};

type TxRing<'a> = FrontRing<'a, netif_tx_request, netif_tx_response>;
type RxRing<'a> = FrontRing<'a, netif_rx_request, netif_rx_response>;

/// How the vif was broken by its back end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    TxRing(ProtocolError),
    RxRing(ProtocolError),
    /// A tx response for an id not in flight.
    TxId(u16),
    /// An rx response whose data lies outside its page.
    RxRange {
        offset: u16,
        len: u16,
    },
    /// An rx packet of more slots than we allow, or an extra-info chain that does not
    /// end.
    RxChain,
}

/// What we ask of the back end and it offers; set from the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Both: packets over several slots.
    pub sg: bool,
    /// The back end takes our GSO packets (`feature-gso-tcpv4` offered, and we use it).
    pub gso_tcpv4: bool,
    pub gso_tcpv6: bool,
    /// We send IPv4 packets with a blank checksum (and take them: no
    /// `feature-no-csum-offload`).
    pub csum: bool,
    /// IPv6 ones (`feature-ipv6-csum-offload`, both ends).
    pub ipv6_csum: bool,
    /// One event channel per ring.
    pub split: bool,
}

impl Default for Features {
    /// A front end that negotiates nothing: one slot per packet, checksums computed.
    fn default() -> Self {
        Features {
            sg: false,
            gso_tcpv4: false,
            gso_tcpv6: false,
            csum: false,
            ipv6_csum: false,
            split: false,
        }
    }
}

/// Packet counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Transmissions the back end answered with an error.
    pub tx_errors: u64,
    /// Packets written but not sent (no grant entry left).
    pub tx_dropped: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Received packets with an error status, dropped.
    pub rx_errors: u64,
    /// Notifications sent and events taken.
    pub notifies: u64,
}

/// Why a packet was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Every buffer or slot is in flight: try after the next event.
    Full,
    /// Larger than one page without `feature-sg`, or than the protocol's 64 KiB.
    TooLarge,
    Broken(Broken),
}

/// The most slots of a received packet we take (data and extra-info).
const MAX_RX_SLOTS: usize = netif::MAX_SLOTS + 2;

/// A received packet: its parts, each in one of our pages, no grant of them live.
pub struct RxPacket<Page> {
    pub parts: Vec<(Page, u16, u16)>,
    pub meta: PacketMeta,
}

impl<Page: SharePage> RxPacket<Page> {
    /// Its length.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.2 as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies it out whole.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = alloc::vec![0u8; self.len()];
        let mut at = 0;
        for (page, off, len) in &self.parts {
            page.page()
                .read(*off as usize, &mut v[at..at + *len as usize]);
            at += *len as usize;
        }
        v
    }
}

/// A transmitted page: its grant, and whether it is a packet's first slot (whose
/// answer says whether the packet went).
struct TxBuf<Page> {
    page: Page,
    gref: GrantRef,
    first: bool,
}

/// One vif's rings and buffers.
pub struct Netfront<P: GrantTable + EventChannel> {
    p: P,
    backend: DomId,
    tx_ring: P::Page,
    rx_ring: P::Page,
    tx_ref: GrantRef,
    rx_ref: GrantRef,
    tx: FrontState,
    rx: FrontState,
    tx_port: Port,
    rx_port: Port,
    features: Features,
    /// In flight on the tx ring, by request id.
    tx_bufs: Vec<Option<TxBuf<P::Page>>>,
    tx_ids: Vec<u16>,
    /// Pages for transmission, not granted.
    tx_pool: Vec<P::Page>,
    /// Posted on the rx ring, by ring index modulo its size.
    rx_bufs: Vec<Option<(P::Page, GrantRef)>>,
    /// Pages for reception, not granted.
    rx_pool: Vec<P::Page>,
    ready: VecDeque<RxPacket<P::Page>>,
    /// A packet whose slots are being gathered (responses may stop mid-packet).
    partial: Vec<(P::Page, u16, u16)>,
    partial_meta: PacketMeta,
    /// Slots of it so far; whether extra-info slots come next; whether its last data
    /// slot said more follow; whether one of its slots had an error status.
    partial_slots: usize,
    partial_extras: bool,
    partial_more: bool,
    partial_error: bool,
    broken: Option<Broken>,
    stats: Stats,
}

impl<P: GrantTable + EventChannel> Netfront<P>
where
    P::Page: LocalPage,
{
    /// Rings granted to `backend`, event channel(s) allocated, `tx_buffers` and
    /// `rx_buffers` pages allocated (the rx ones are posted at [`Netfront::start`]).
    pub fn new(
        p: P,
        backend: DomId,
        split: bool,
        tx_buffers: usize,
        rx_buffers: usize,
    ) -> Result<Self, PlatformError> {
        let tx_ring = p.alloc_page()?;
        let rx_ring = p.alloc_page()?;
        let tx_ref = p.grant(backend, &tx_ring, false)?;
        let rx_ref = match p.grant(backend, &rx_ring, false) {
            Ok(r) => r,
            Err(e) => {
                let _ = p.end_grant(tx_ref);
                return Err(e);
            }
        };
        let ports = p.alloc_unbound(backend).and_then(|t| {
            if split {
                match p.alloc_unbound(backend) {
                    Ok(r) => Ok((t, r)),
                    Err(e) => {
                        p.close(t);
                        Err(e)
                    }
                }
            } else {
                Ok((t, t))
            }
        });
        let (tx_port, rx_port) = match ports {
            Ok(x) => x,
            Err(e) => {
                let _ = p.end_grant(tx_ref);
                let _ = p.end_grant(rx_ref);
                return Err(e);
            }
        };
        let (tx, txsize) = {
            let v = [tx_ring.page()];
            let r = TxRing::init(&v);
            (r.state(), r.size())
        };
        let (rx, rxsize) = {
            let v = [rx_ring.page()];
            let r = RxRing::init(&v);
            (r.state(), r.size())
        };
        let mut f = Netfront {
            p,
            backend,
            tx_ring,
            rx_ring,
            tx_ref,
            rx_ref,
            tx,
            rx,
            tx_port,
            rx_port,
            features: Features {
                split,
                ..Features::default()
            },
            tx_bufs: (0..txsize).map(|_| None).collect(),
            tx_ids: (0..txsize as u16).rev().collect(),
            tx_pool: Vec::new(),
            rx_bufs: (0..rxsize).map(|_| None).collect(),
            rx_pool: Vec::new(),
            ready: VecDeque::new(),
            partial: Vec::new(),
            partial_meta: PacketMeta::default(),
            partial_slots: 0,
            partial_extras: false,
            partial_more: false,
            partial_error: false,
            broken: None,
            stats: Stats::default(),
        };
        for _ in 0..tx_buffers {
            let pg = f.p.alloc_page();
            match pg {
                Ok(pg) => f.tx_pool.push(pg),
                Err(e) => {
                    f.close();
                    return Err(e);
                }
            }
        }
        for _ in 0..rx_buffers.min(rxsize as usize) {
            match f.p.alloc_page() {
                Ok(pg) => f.rx_pool.push(pg),
                Err(e) => {
                    f.close();
                    return Err(e);
                }
            }
        }
        Ok(f)
    }

    pub fn tx_ref(&self) -> GrantRef {
        self.tx_ref
    }

    pub fn rx_ref(&self) -> GrantRef {
        self.rx_ref
    }

    /// `event-channel` (or `event-channel-tx`) and `event-channel-rx`.
    pub fn ports(&self) -> (Port, Port) {
        (self.tx_port, self.rx_port)
    }

    pub fn features(&self) -> Features {
        self.features
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// Sets what was negotiated and posts the rx buffers (before `Connected`: Linux's
    /// netfront fills its rx ring in `xennet_connect`).
    pub fn start(&mut self, features: Features) {
        self.features = features;
        self.refill();
    }

    /// Grants and posts every rx page not posted; notifies the back end if it asked.
    fn refill(&mut self) {
        let v = [self.rx_ring.page()];
        let mut ring = RxRing::resume(&v, self.rx);
        let mask = self.rx_bufs.len() as u32 - 1;
        while ring.free_requests() > 0 {
            let Some(pg) = self.rx_pool.pop() else { break };
            let idx = ring.req_prod_pvt();
            let slot = (idx & mask) as usize;
            if self.rx_bufs[slot].is_some() {
                // Posted and not answered yet (the ring is full in fact).
                self.rx_pool.push(pg);
                break;
            }
            let gref = match self.p.grant(self.backend, &pg, false) {
                Ok(g) => g,
                Err(_) => {
                    self.rx_pool.push(pg);
                    break;
                }
            };
            let _ = ring.put_request(&netif_rx_request {
                id: slot as u16,
                pad: 0,
                gref,
            });
            self.rx_bufs[slot] = Some((pg, gref));
        }
        let notify = ring.push_requests();
        self.rx = ring.state();
        if notify {
            self.stats.notifies += 1;
            self.p.notify(self.rx_port);
        }
    }

    /// Takes what the back end answered: frees transmitted buffers, gathers received
    /// packets (then [`Netfront::receive`] them), posts the buffers again. Returns
    /// whether anything was answered.
    pub fn poll(&mut self) -> Result<bool, Broken> {
        if let Some(b) = self.broken {
            return Err(b);
        }
        let r = self.poll_tx().and_then(|t| Ok(t | self.poll_rx()?));
        if let Err(b) = r {
            self.broken = Some(b);
        }
        self.refill();
        r
    }

    fn poll_tx(&mut self) -> Result<bool, Broken> {
        let v = [self.tx_ring.page()];
        let mut ring = TxRing::resume(&v, self.tx);
        let mut any = false;
        let r = loop {
            match ring.get_response() {
                Err(e) => break Err(Broken::TxRing(e)),
                Ok(Some(rsp)) => {
                    any = true;
                    if rsp.status == NETIF_RSP_NULL as i16 {
                        continue;
                    }
                    let Some(Some(buf)) = self.tx_bufs.get_mut(rsp.id as usize).map(|b| b.take())
                    else {
                        break Err(Broken::TxId(rsp.id));
                    };
                    let first = buf.first;
                    if self.p.end_grant(buf.gref).is_ok() {
                        self.tx_pool.push(buf.page);
                    } else {
                        // Still mapped by the back end: never reuse it.
                        core::mem::forget(buf.page);
                    }
                    self.tx_ids.push(rsp.id);
                    if first && rsp.status != NETIF_RSP_OKAY as i16 {
                        self.stats.tx_errors += 1;
                    }
                }
                Ok(None) => match ring.final_check_for_responses() {
                    Ok(true) => continue,
                    Ok(false) => break Ok(any),
                    Err(e) => break Err(Broken::TxRing(e)),
                },
            }
        };
        self.tx = ring.state();
        r
    }

    fn poll_rx(&mut self) -> Result<bool, Broken> {
        // The responses first, copied out, then their buffers (the ring borrows the
        // ring page of `self`).
        let mut got = Vec::new();
        let r = {
            let v = [self.rx_ring.page()];
            let mut ring = RxRing::resume(&v, self.rx);
            let r = loop {
                let idx = ring.rsp_cons();
                match ring.get_response() {
                    Err(e) => break Err(Broken::RxRing(e)),
                    Ok(Some(rsp)) => got.push((idx, rsp)),
                    Ok(None) => match ring.final_check_for_responses() {
                        Ok(true) => continue,
                        Ok(false) => break Ok(()),
                        Err(e) => break Err(Broken::RxRing(e)),
                    },
                }
            };
            self.rx = ring.state();
            r
        };
        let mask = self.rx_bufs.len() as u32 - 1;
        let any = !got.is_empty();
        for (idx, rsp) in got {
            // Answered at most once: the ring checks that rsp_prod stays within what
            // was posted, and each index is posted again only after its answer.
            let Some((pg, gref)) = self.rx_bufs[(idx & mask) as usize].take() else {
                return Err(Broken::RxChain);
            };
            if self.p.end_grant(gref).is_err() {
                // The back end mapped our buffer and did not let go.
                core::mem::forget(pg);
                continue;
            }
            self.rx_slot(pg, rsp)?;
        }
        r.map(|()| any)
    }

    /// One rx response, for the buffer `pg` (revoked).
    fn rx_slot(&mut self, pg: P::Page, rsp: netif_rx_response) -> Result<(), Broken> {
        self.partial_slots += 1;
        if self.partial_slots > MAX_RX_SLOTS {
            self.rx_pool.push(pg);
            return Err(Broken::RxChain);
        }
        if self.partial_extras {
            // An extra-info slot: its buffer carries no data.
            self.rx_pool.push(pg);
            let e = ExtraInfo::from_rx_slot(&rsp);
            if let Some(Ok(gso)) = e.as_gso() {
                self.partial_meta.gso = Some(gso);
            }
            self.partial_extras = e.more;
        } else {
            let flags = RxFlags(rsp.flags);
            if self.partial_slots == 1 {
                self.partial_meta = PacketMeta {
                    csum_blank: flags.has(RxFlags::CSUM_BLANK),
                    data_validated: flags.has(RxFlags::DATA_VALIDATED),
                    gso: None,
                };
                self.partial_extras = flags.has(RxFlags::EXTRA_INFO);
            }
            self.partial_more = flags.has(RxFlags::MORE_DATA);
            if rsp.status < 0 {
                self.partial_error = true;
                self.rx_pool.push(pg);
            } else {
                let (off, len) = (rsp.offset, rsp.status as u16);
                if off as usize + len as usize > PAGE_SIZE {
                    self.rx_pool.push(pg);
                    return Err(Broken::RxRange { offset: off, len });
                }
                self.partial.push((pg, off, len));
            }
        }
        if self.partial_more || self.partial_extras {
            return Ok(());
        }
        // The packet is whole.
        let parts = core::mem::take(&mut self.partial);
        self.partial_slots = 0;
        if core::mem::take(&mut self.partial_error) {
            self.stats.rx_errors += 1;
            for (pg, _, _) in parts {
                self.rx_pool.push(pg);
            }
        } else {
            let pkt = RxPacket {
                parts,
                meta: self.partial_meta,
            };
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += pkt.len() as u64;
            self.ready.push_back(pkt);
        }
        Ok(())
    }

    /// The next received packet; hand its pages back with [`Netfront::recycle`].
    pub fn receive(&mut self) -> Option<RxPacket<P::Page>> {
        self.ready.pop_front()
    }

    /// Packets received and not taken yet.
    pub fn pending(&self) -> usize {
        self.ready.len()
    }

    /// Gives a received packet's pages back for posting (at the next poll).
    pub fn recycle(&mut self, pkt: RxPacket<P::Page>) {
        for (pg, _, _) in pkt.parts {
            self.rx_pool.push(pg);
        }
    }

    /// Whether a packet of `len` bytes can be sent now.
    pub fn can_send(&self, len: usize) -> bool {
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        self.broken.is_none() && self.tx_pool.len() >= pages && self.tx_ids.len() > pages + 1
    }

    /// Sends a packet of `len` bytes that `fill` writes (a page of ours lent to it
    /// when the packet fits one, a buffer copied into pages otherwise), with the
    /// checksum and GSO metadata `meta` (a blank checksum only if negotiated).
    pub fn send<R>(
        &mut self,
        len: usize,
        meta: PacketMeta,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, TxError> {
        self.send_with(len, |b| (fill(b), meta))
    }

    /// [`Netfront::send`] with the metadata decided by `fill`, once the packet is
    /// written (a GSO packet's kind depends on its IP version).
    pub fn send_with<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> (R, PacketMeta),
    ) -> Result<R, TxError> {
        if let Some(b) = self.broken {
            return Err(TxError::Broken(b));
        }
        // Every error below is returned before `fill` runs.
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        if len > netif::MAX_TX_SIZE || (pages > 1 && !self.features.sg) {
            return Err(TxError::TooLarge);
        }
        if pages > netif::MAX_SLOTS {
            return Err(TxError::TooLarge);
        }
        if !self.can_send(len) {
            // Responses may have freed some.
            let _ = self.poll();
            if !self.can_send(len) {
                return Err(TxError::Full);
            }
        }
        let mut bufs: Vec<P::Page> = (0..pages)
            .map(|_| self.tx_pool.pop().expect("can_send checked"))
            .collect();
        let (r, meta) = if pages == 1 {
            bufs[0].with_bytes(|b| fill(&mut b[..len]))
        } else {
            let mut tmp = alloc::vec![0u8; len];
            let r = fill(&mut tmp);
            for (pg, chunk) in bufs.iter_mut().zip(tmp.chunks(PAGE_SIZE)) {
                pg.with_bytes(|b| b[..chunk.len()].copy_from_slice(chunk));
            }
            r
        };
        let meta = PacketMeta {
            csum_blank: meta.csum_blank && self.features.csum,
            data_validated: meta.data_validated || (meta.csum_blank && self.features.csum),
            gso: meta.gso.filter(|g| match g.kind {
                netif::GsoKind::TcpV4 => self.features.gso_tcpv4,
                netif::GsoKind::TcpV6 => self.features.gso_tcpv6,
            }),
        };
        let mut granted: Vec<(P::Page, GrantRef)> = Vec::with_capacity(pages);
        for pg in bufs {
            match self.p.grant(self.backend, &pg, true) {
                Ok(g) => granted.push((pg, g)),
                Err(_) => {
                    // Out of grant entries after the packet was written: it is
                    // dropped (counted), as a NIC drops what it cannot queue.
                    self.tx_pool.push(pg);
                    for (pg, g) in granted {
                        end(&self.p, pg, g);
                    }
                    self.stats.tx_dropped += 1;
                    return Ok(r);
                }
            }
        }
        let sizes: Vec<(u32, u16, u16)> = granted
            .iter()
            .enumerate()
            .map(|(i, (_, g))| (*g, 0, (len - i * PAGE_SIZE).min(PAGE_SIZE) as u16))
            .collect();
        let ids: Vec<u16> = (0..pages)
            .map(|_| self.tx_ids.pop().expect("can_send checked"))
            .collect();
        for ((pg, g), (k, &id)) in granted.into_iter().zip(ids.iter().enumerate()) {
            self.tx_bufs[id as usize] = Some(TxBuf {
                page: pg,
                gref: g,
                first: k == 0,
            });
        }
        let v = [self.tx_ring.page()];
        let mut ring = TxRing::resume(&v, self.tx);
        netif::tx_slots(&sizes, &ids, &meta, &mut |slot| {
            let _ = ring.put_request(&slot);
        });
        let notify = ring.push_requests();
        self.tx = ring.state();
        if notify {
            self.stats.notifies += 1;
            self.p.notify(self.tx_port);
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        Ok(r)
    }

    /// Revokes every grant, closes the channels, frees what can be freed. Pages the
    /// back end still has mapped are leaked, never reused.
    pub fn close(self) {
        let p = &self.p;
        for (pg, g) in self.rx_bufs.into_iter().flatten() {
            end(p, pg, g);
        }
        for b in self.tx_bufs.into_iter().flatten() {
            end(p, b.page, b.gref);
        }
        end(p, self.tx_ring, self.tx_ref);
        end(p, self.rx_ring, self.rx_ref);
        p.close(self.tx_port);
        if self.rx_port != self.tx_port {
            p.close(self.rx_port);
        }
    }
}

fn end<P: GrantTable>(p: &P, page: P::Page, gref: GrantRef) {
    if p.end_grant(gref).is_err() {
        core::mem::forget(page);
    }
}
