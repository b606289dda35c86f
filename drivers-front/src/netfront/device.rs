//! netfront as a `smoltcp::phy::Device` (feature `smoltcp`; smoltcp's `phy/mod.rs`
//! for the contract): a received packet's token lends the page it arrived in (its
//! grant revoked, so the back end cannot change it while the stack reads it), a
//! transmit token lends a free page of ours to the stack to write the frame in. No
//! copy between netfront and the stack, but for packets that span several pages
//! (which the stack sees as one buffer).
//!
//! Checksums: the stack computes the checksums it sends, but TCP's when the back end
//! takes GSO: then the stack hands over large TCP segments to send whole (smoltcp's
//! segmentation offload, sent with netif.h's GSO extra-info) and leaves their
//! checksums to the device: we write the pseudo-header sum and flag it blank (Linux's
//! CHECKSUM_PARTIAL), or fill it when blank ones were not negotiated. Packets go out
//! marked `data_validated`, so a receiver behind the same bridge need not check them.
//! The stack checks no TCP/UDP/IPv4 checksum itself; we check the ones the back end
//! did not vouch for (`NETRXF_data_validated`) or left blank for us
//! (`NETRXF_csum_blank`, a peer's offload: nothing to check), with
//! [`pv_core::offload::verify_checksum`], and hand a failing packet over as an empty
//! frame, which the stack drops.

use core::cell::RefCell;

use pv_core::netif::{Gso, GsoKind, PacketMeta};
use pv_core::offload;
use pv_core::platform::{EventChannel, GrantTable, LocalPage};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::ring::{Netfront, RxPacket};

/// The Ethernet MTU the stack is told (IP MTU 1500).
pub const MTU: usize = 1514;
/// The largest GSO packet we hand the back end (netif.h's sizes are 16 bits).
pub const GSO_MAX: usize = 65535 - 14;

/// A netfront for smoltcp.
pub struct NetDevice<P: GrantTable + EventChannel> {
    front: RefCell<Netfront<P>>,
    /// Received packets that failed their checksum.
    bad_checksums: core::cell::Cell<u64>,
}

impl<P: GrantTable + EventChannel> NetDevice<P>
where
    P::Page: LocalPage,
{
    pub fn new(front: Netfront<P>) -> Self {
        NetDevice {
            front: RefCell::new(front),
            bad_checksums: core::cell::Cell::new(0),
        }
    }

    /// The netfront inside (to poll it on its events, read its counters).
    pub fn front(&self) -> core::cell::RefMut<'_, Netfront<P>> {
        self.front.borrow_mut()
    }

    /// The largest packet the stack may ask a token for: room for it is what
    /// `transmit` and `receive` wait for.
    fn largest(&self) -> usize {
        let f = self.front.borrow().features();
        if f.gso_tcpv4 || f.gso_tcpv6 {
            GSO_MAX
        } else {
            MTU
        }
    }

    /// Whether a packet as large as the stack may send fits the free buffers now.
    pub fn can_send(&self) -> bool {
        self.front.borrow().can_send(self.largest())
    }

    pub fn bad_checksums(&self) -> u64 {
        self.bad_checksums.get()
    }
}

pub struct RxToken<'a, P: GrantTable + EventChannel> {
    pkt: RxPacket<P::Page>,
    dev: &'a NetDevice<P>,
}

pub struct TxToken<'a, P: GrantTable + EventChannel> {
    dev: &'a NetDevice<P>,
    /// The stack's request to cut the packet into segments of this size (a large TCP
    /// segment: netfront sends it whole, as GSO).
    mss: Option<u16>,
}

impl<P: GrantTable + EventChannel> phy::Device for NetDevice<P>
where
    P::Page: LocalPage,
{
    type RxToken<'a>
        = RxToken<'a, P>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, P>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_, P>, TxToken<'_, P>)> {
        let pkt = {
            let mut f = self.front.borrow_mut();
            // The stack may answer from inside the rx token with the tx token: receive
            // only what could be answered (a dropped ACK or SYN-ACK costs the peer a
            // retransmission timeout). The rest waits for our transmissions to finish.
            let largest = if f.features().gso_tcpv4 || f.features().gso_tcpv6 {
                GSO_MAX
            } else {
                MTU
            };
            if !f.can_send(largest) {
                let _ = f.poll();
                if !f.can_send(largest) {
                    return None;
                }
            }
            match f.receive() {
                Some(p) => p,
                None => {
                    // Answers may have come since the last event.
                    let _ = f.poll();
                    f.receive()?
                }
            }
        };
        let dev = &*self;
        Some((RxToken { pkt, dev }, TxToken { dev, mss: None }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_, P>> {
        let largest = self.largest();
        self.front.borrow().can_send(largest).then_some(TxToken {
            dev: &*self,
            mss: None,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        let f = self.front.borrow().features();
        let gso = f.gso_tcpv4 || f.gso_tcpv6;
        let mut sum = ChecksumCapabilities::default();
        // Computed when sending, checked here when receiving; with GSO, TCP's are ours
        // to write when sending (smoltcp's rule for segmentation offload).
        sum.ipv4 = Checksum::Tx;
        sum.tcp = if gso { Checksum::None } else { Checksum::Tx };
        sum.udp = Checksum::Tx;
        caps.checksum = sum;
        // Large TCP segments, sent whole as GSO, if the back end takes them (smoltcp
        // then asks for a segment size in the packet's metadata).
        let big = core::num::NonZeroUsize::new(GSO_MAX);
        if f.gso_tcpv4 {
            caps.segmentation.tcpv4 = big;
        }
        if f.gso_tcpv6 {
            caps.segmentation.tcpv6 = big;
        }
        caps
    }
}

impl<P: GrantTable + EventChannel> phy::RxToken for RxToken<'_, P>
where
    P::Page: LocalPage,
{
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let RxToken { mut pkt, dev } = self;
        let check = !pkt.meta.data_validated && !pkt.meta.csum_blank;
        let r = if pkt.parts.len() == 1 {
            let (page, off, len) = &mut pkt.parts[0];
            let (off, len) = (*off as usize, *len as usize);
            page.with_bytes(|b| {
                let frame = &b[off..off + len];
                if check && !offload::verify_checksum(frame) {
                    dev.bad_checksums.set(dev.bad_checksums.get() + 1);
                    f(&[])
                } else {
                    f(frame)
                }
            })
        } else {
            let frame = pkt.to_vec();
            if check && !offload::verify_checksum(&frame) {
                dev.bad_checksums.set(dev.bad_checksums.get() + 1);
                f(&[])
            } else {
                f(&frame)
            }
        };
        // The stack may have sent a reply from inside `f`: the front end is free
        // again only now.
        dev.front.borrow_mut().recycle(pkt);
        r
    }
}

impl<P: GrantTable + EventChannel> phy::TxToken for TxToken<'_, P>
where
    P::Page: LocalPage,
{
    fn set_meta(&mut self, meta: phy::PacketMeta) {
        self.mss = meta.segmentation_offload_size.map(|s| s.get());
    }

    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mss = self.mss;
        let mut f = Some(f);
        let mut front = self.dev.front.borrow_mut();
        let feats = front.features();
        // smoltcp leaves TCP checksums to us when GSO is on (see `capabilities`).
        let tcp_ours = feats.gso_tcpv4 || feats.gso_tcpv6;
        let fill = |b: &mut [u8]| {
            let r = (f.take().expect("called once"))(b);
            let mut meta = PacketMeta {
                data_validated: true,
                ..PacketMeta::default()
            };
            let tcp = offload::headers(b).ok().filter(|h| h.tcp);
            if let (true, Some(h)) = (tcp_ours, tcp) {
                let blank_ok = if h.ipv6 { feats.ipv6_csum } else { feats.csum };
                if blank_ok || mss.is_some() {
                    // Blank: the pseudo-header sum (Linux's CHECKSUM_PARTIAL); the
                    // receiver trusts it, whoever must check it fills it first.
                    let _ = offload::pseudo_header_checksum(b);
                    meta.csum_blank = true;
                } else {
                    let _ = offload::fill_checksum(b);
                }
                if let Some(size) = mss {
                    meta.gso = Some(Gso {
                        kind: if h.ipv6 {
                            GsoKind::TcpV6
                        } else {
                            GsoKind::TcpV4
                        },
                        size,
                    });
                }
            }
            (r, meta)
        };
        match front.send_with(len, fill) {
            Ok(r) => r,
            // `transmit` checked for room; a vif that broke since still owes the
            // stack a buffer to write into: the frame is dropped. (`send` fails only
            // before it calls `f`.)
            Err(_) => {
                drop(front);
                let mut scratch = alloc::vec![0u8; len];
                (f.take().expect("not called"))(&mut scratch)
            }
        }
    }
}
