//! netfront as a `smoltcp::phy::Device` (feature `smoltcp`; smoltcp's `phy/mod.rs`
//! for the contract): a received packet's token lends the page it arrived in (its
//! grant revoked, so the back end cannot change it while the stack reads it), a
//! transmit token lends a free page of ours to the stack to write the frame in. No
//! copy between netfront and the stack, but for packets that span several pages
//! (which the stack sees as one buffer).
//!
//! Checksums: the stack computes every checksum it sends; the packet goes out marked
//! `data_validated`, so a receiver behind the same bridge need not check it again.
//! The stack checks no TCP/UDP/IPv4 checksum itself; we check the ones the back end
//! did not vouch for (`NETRXF_data_validated`) or left blank for us
//! (`NETRXF_csum_blank`, a peer's offload: nothing to check), with
//! [`pv_core::offload::verify_checksum`], and hand a failing packet over as an empty
//! frame, which the stack drops.

use core::cell::RefCell;

use pv_core::netif::PacketMeta;
use pv_core::offload;
use pv_core::platform::{EventChannel, GrantTable, LocalPage};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::ring::{Netfront, RxPacket};

/// The Ethernet MTU the stack is told (IP MTU 1500).
pub const MTU: usize = 1514;

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
            if !f.can_send(MTU) {
                let _ = f.poll();
                if !f.can_send(MTU) {
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
        Some((RxToken { pkt, dev }, TxToken { dev }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_, P>> {
        self.front
            .borrow()
            .can_send(MTU)
            .then_some(TxToken { dev: &*self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        let mut sum = ChecksumCapabilities::default();
        // Computed when sending, checked here when receiving.
        sum.ipv4 = Checksum::Tx;
        sum.tcp = Checksum::Tx;
        sum.udp = Checksum::Tx;
        caps.checksum = sum;
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
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let meta = PacketMeta {
            data_validated: true,
            ..PacketMeta::default()
        };
        let mut f = Some(f);
        let mut front = self.dev.front.borrow_mut();
        match front.send(len, meta, |b| (f.take().expect("called once"))(b)) {
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
