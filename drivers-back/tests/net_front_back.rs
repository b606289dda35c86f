//! netfront against netback over the in-memory platform: packets of every size both
//! ways (one slot, several with `feature-sg`, GSO with its extra-info slot), the
//! checksum flags of each direction, rx buffers running out and coming back, and what
//! a hostile front end's slots make netback do (drop the packet or disconnect).

use drivers_back::net::{Disconnect, Features as BackFeatures, Frame, NetBack, QueueRefs};
use drivers_front::netfront::{Features, Netfront, TxError};
use pv_core::mem_platform::{MemDomain, MemPage, MemWorld};
use pv_core::netif::{ExtraInfo, Gso, GsoKind, PacketMeta, TxFatal, TxFlags, MAX_SLOTS};
use pv_core::platform::{EventChannel, GrantTable, SharePage};
use pv_core::ring::FrontRing;
use xen_sys::{
    netif_tx_request, netif_tx_response, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY,
};

const ALL: Features = Features {
    sg: true,
    gso_tcpv4: true,
    gso_tcpv6: true,
    csum: true,
    ipv6_csum: true,
    split: true,
};

fn back_features(f: &Features) -> BackFeatures {
    BackFeatures {
        rx_notify: true,
        sg: f.sg,
        gso_tcpv4: f.gso_tcpv4,
        gso_tcpv6: f.gso_tcpv6,
        csum: f.csum,
        ipv6_csum: f.ipv6_csum,
        split: f.split,
    }
}

struct Vif {
    dom0: MemDomain,
    front: Netfront<MemDomain>,
    back: NetBack<MemDomain>,
}

fn vif(f: Features, rx_buffers: usize) -> Vif {
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let mut front = Netfront::new(w.domain(1), 0, f.split, 64, rx_buffers).unwrap();
    front.start(f);
    let (tx_port, rx_port) = front.ports();
    let refs = QueueRefs {
        tx_ref: front.tx_ref(),
        rx_ref: front.rx_ref(),
        tx_port,
        rx_port,
    };
    let back = NetBack::connect(&dom0, 1, &[refs], back_features(&f)).unwrap();
    Vif { dom0, front, back }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

impl Vif {
    fn send(&mut self, data: &[u8], meta: PacketMeta) -> Result<(), TxError> {
        self.front
            .send(data.len(), meta, |b| b.copy_from_slice(data))
    }

    /// What netback takes from the tx ring now.
    fn transmitted(&mut self) -> Vec<Frame> {
        let mut got = Vec::new();
        while self
            .back
            .transmit(&self.dom0, &mut |f| got.push(f))
            .unwrap()
        {}
        self.front.poll().unwrap();
        got
    }

    /// Delivers `frames` and returns what the front end received (bytes, meta).
    fn deliver(&mut self, frames: Vec<Frame>) -> Vec<(Vec<u8>, PacketMeta)> {
        let mut it = frames.into_iter();
        self.back.receive(&self.dom0, &mut || it.next()).unwrap();
        self.front.poll().unwrap();
        let mut out = Vec::new();
        while let Some(p) = self.front.receive() {
            out.push((p.to_vec(), p.meta));
            self.front.recycle(p);
        }
        out
    }
}

#[test]
fn packets_of_every_size_cross_both_ways() {
    let mut v = vif(ALL, 64);
    let sizes = [14, 60, 1514, 4096, 4097, 9014, 65535];
    for (i, &len) in sizes.iter().enumerate() {
        let data = pattern(len, i as u8);
        v.send(&data, PacketMeta::default()).unwrap();
        let got = v.transmitted();
        assert_eq!(got.len(), 1, "{len}");
        assert!(got[0].data == data, "{len} bytes out differ");
        // And back in.
        let back = v.deliver(vec![Frame {
            data: data.clone(),
            meta: PacketMeta::default(),
        }]);
        assert_eq!(back.len(), 1, "{len}");
        assert!(back[0].0 == data, "{len} bytes in differ");
    }
    let c = v.back.counters();
    assert_eq!((c.tx_packets, c.rx_packets), (7, 7));
    assert_eq!((c.tx_dropped, c.rx_dropped), (0, 0));
    assert_eq!(v.front.stats().tx_errors, 0);
}

#[test]
fn checksum_and_gso_flags_keep_their_meaning_each_way() {
    let mut v = vif(ALL, 64);
    let gso = Gso {
        kind: GsoKind::TcpV4,
        size: 1448,
    };
    let blank = PacketMeta {
        csum_blank: true,
        data_validated: true,
        gso: Some(gso),
    };
    let data = pattern(20_000, 3);
    v.send(&data, blank).unwrap();
    let got = v.transmitted();
    assert_eq!(got[0].meta, blank);
    assert_eq!(v.back.counters().tx_gso, 1);
    let back = v.deliver(got);
    assert_eq!(back[0].1, blank);
    assert!(back[0].0 == data);
    // Validated only.
    let valid = PacketMeta {
        data_validated: true,
        ..Default::default()
    };
    assert_eq!(
        v.deliver(vec![Frame {
            data: data[..100].to_vec(),
            meta: valid
        }])[0]
            .1,
        valid
    );
}

#[test]
fn a_front_end_without_offloads_sends_plain_packets_and_gets_no_large_ones() {
    let mut v = vif(Features::default(), 64);
    // Asked for a blank checksum or GSO, it sends neither.
    let meta = PacketMeta {
        csum_blank: true,
        data_validated: false,
        gso: Some(Gso {
            kind: GsoKind::TcpV4,
            size: 1448,
        }),
    };
    v.send(&pattern(1000, 1), meta).unwrap();
    assert_eq!(v.transmitted()[0].meta, PacketMeta::default());
    assert_eq!(
        v.send(&pattern(5000, 1), PacketMeta::default()),
        Err(TxError::TooLarge)
    );
    // Without feature-sg a packet larger than a page is not delivered.
    let got = v.deliver(vec![
        Frame {
            data: pattern(9000, 2),
            meta: PacketMeta::default(),
        },
        Frame {
            data: pattern(1500, 2),
            meta: PacketMeta::default(),
        },
    ]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.len(), 1500);
    assert_eq!(v.back.counters().rx_dropped, 1);
}

#[test]
fn packets_wait_for_rx_buffers_and_none_is_lost() {
    let mut v = vif(ALL, 4);
    let frames: Vec<Frame> = (0..10)
        .map(|i| Frame {
            data: pattern(1000, i),
            meta: PacketMeta::default(),
        })
        .collect();
    let mut it = frames.clone().into_iter();
    // Four buffers: four delivered, the fifth waits in the vif.
    assert!(v.back.receive(&v.dom0, &mut || it.next()).unwrap());
    v.front.poll().unwrap();
    let mut got = Vec::new();
    loop {
        while let Some(p) = v.front.receive() {
            got.push(p.to_vec());
            v.front.recycle(p);
        }
        // Recycled buffers are posted at the next poll.
        v.front.poll().unwrap();
        let waiting = v.back.receive(&v.dom0, &mut || it.next()).unwrap();
        v.front.poll().unwrap();
        if !waiting && v.front.pending() == 0 {
            break;
        }
    }
    assert_eq!(got.len(), 10);
    for (g, f) in got.iter().zip(&frames) {
        assert!(*g == f.data);
    }
}

/// A front end that writes its own tx slots, for the attacks.
struct Raw {
    dom1: MemDomain,
    ring_page: MemPage,
    ring: pv_core::ring::FrontState,
    data: MemPage,
    gref: u32,
    back: NetBack<MemDomain>,
    dom0: MemDomain,
}

fn raw() -> Raw {
    let w = MemWorld::new();
    let (dom0, dom1) = (w.domain(0), w.domain(1));
    let ring_page = dom1.alloc_page().unwrap();
    let rx_page = dom1.alloc_page().unwrap();
    let refs = QueueRefs {
        tx_ref: dom1.grant(0, &ring_page, false).unwrap(),
        rx_ref: dom1.grant(0, &rx_page, false).unwrap(),
        tx_port: dom1.alloc_unbound(0).unwrap(),
        rx_port: 0,
    };
    let ring = {
        let v = [ring_page.page()];
        FrontRing::<netif_tx_request, netif_tx_response>::init(&v).state()
    };
    std::mem::forget(rx_page);
    let data = dom1.alloc_page().unwrap();
    let gref = dom1.grant(0, &data, true).unwrap();
    let refs = QueueRefs {
        rx_port: refs.tx_port,
        ..refs
    };
    let back = NetBack::connect(&dom0, 1, &[refs], back_features(&ALL)).unwrap();
    Raw {
        dom1,
        ring_page,
        ring,
        data,
        gref,
        back,
        dom0,
    }
}

impl Raw {
    fn push(&mut self, slots: &[netif_tx_request]) {
        let v = [self.ring_page.page()];
        let mut r = FrontRing::<netif_tx_request, netif_tx_response>::resume(&v, self.ring);
        for s in slots {
            r.put_request(s).unwrap();
        }
        r.push_requests();
        self.ring = r.state();
    }

    fn responses(&mut self) -> Vec<(u16, i16)> {
        let v = [self.ring_page.page()];
        let mut r = FrontRing::<netif_tx_request, netif_tx_response>::resume(&v, self.ring);
        let mut out = Vec::new();
        while let Some(rsp) = r.get_response().unwrap() {
            out.push((rsp.id, rsp.status));
        }
        self.ring = r.state();
        out
    }

    fn slot(&self, id: u16, size: u16, flags: TxFlags) -> netif_tx_request {
        netif_tx_request {
            gref: self.gref,
            offset: 0,
            flags: flags.0,
            id,
            size,
        }
    }

    fn run(&mut self) -> (Result<bool, Disconnect>, usize) {
        let mut n = 0;
        let r = self.back.transmit(&self.dom0, &mut |_| n += 1);
        (r, n)
    }
}

const OK: i16 = NETIF_RSP_OKAY as i16;
const ERR: i16 = NETIF_RSP_ERROR as i16;
const NULL: i16 = NETIF_RSP_NULL as i16;

#[test]
fn a_bad_grant_or_a_short_packet_drops_only_that_packet() {
    let mut r = raw();
    let _ = &r.data;
    let mut bad = r.slot(1, 100, TxFlags::default());
    bad.gref = 999;
    let short = r.slot(2, 10, TxFlags::default());
    let good = r.slot(3, 100, TxFlags::default());
    r.push(&[bad, short, good]);
    let (res, sent) = r.run();
    assert_eq!(res, Ok(false));
    assert_eq!(sent, 1);
    let mut rsp = r.responses();
    rsp.sort();
    assert_eq!(rsp, [(1, ERR), (2, ERR), (3, OK)]);
    let c = r.back.counters();
    assert_eq!((c.tx_packets, c.tx_dropped, c.tx_bad_grant), (1, 2, 1));
}

#[test]
fn too_many_slots_drop_then_disconnect() {
    let mut r = raw();
    let more = TxFlags::MORE_DATA;
    // The first and MAX_SLOTS + 1 fragments: dropped, every slot answered.
    let n = MAX_SLOTS + 1;
    let mut slots = vec![r.slot(0, (64 * (n + 1)) as u16, more)];
    for i in 1..=n {
        let f = if i == n { TxFlags::default() } else { more };
        slots.push(r.slot(i as u16, 64, f));
    }
    r.push(&slots);
    assert_eq!(r.run(), (Ok(false), 0));
    let rsp = r.responses();
    assert_eq!(rsp.len(), n + 1);
    assert!(rsp.iter().all(|&(_, s)| s == ERR));
    // A GSO packet whose extra-info says size 0: the vif is disconnected.
    let mut gso = ExtraInfo::gso(Gso {
        kind: GsoKind::TcpV4,
        size: 1,
    });
    gso.data[0] = 0;
    r.push(&[r.slot(40, 100, TxFlags::EXTRA_INFO), gso.as_tx_slot()]);
    assert_eq!(r.run().0, Err(Disconnect::Tx(TxFatal::GsoSizeZero)));
}

#[test]
fn extra_info_slots_are_answered_null_and_a_crossing_slot_disconnects() {
    let mut r = raw();
    let gso = ExtraInfo::gso(Gso {
        kind: GsoKind::TcpV6,
        size: 1200,
    });
    r.push(&[r.slot(7, 200, TxFlags::EXTRA_INFO), gso.as_tx_slot()]);
    assert_eq!(r.run(), (Ok(false), 1));
    assert_eq!(r.responses(), [(7, OK), (0, NULL)]);
    let mut cross = r.slot(8, 200, TxFlags::default());
    cross.offset = 4000;
    r.push(&[cross]);
    assert!(matches!(
        r.run().0,
        Err(Disconnect::Tx(TxFatal::CrossPage { .. }))
    ));
}

#[test]
fn impossible_ring_indices_disconnect() {
    let mut r = raw();
    // req_prod far beyond a ring's worth of requests.
    r.ring_page.page().store_u32(0, 5000);
    assert!(matches!(r.run().0, Err(Disconnect::TxRing(_))));
    r.back.disconnect(&r.dom0);
    // Disconnected: the front end's grants are free to be revoked.
    let _ = r.dom1.id();
}

#[test]
fn a_burst_longer_than_the_budget_is_taken_over_several_turns() {
    let mut v = vif(ALL, 64);
    let mut got = 0;
    let mut sent = 0;
    // More packets than netback takes per turn, sent as fast as buffers free up.
    while sent < 300 {
        match v.send(&pattern(106, sent as u8), PacketMeta::default()) {
            Ok(()) => sent += 1,
            Err(TxError::Full) => {
                // One turn of netback, as dom0's loop gives it.
                v.back.transmit(&v.dom0, &mut |_| got += 1).unwrap();
                v.front.poll().unwrap();
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    while v.back.transmit(&v.dom0, &mut |_| got += 1).unwrap() {}
    v.front.poll().unwrap();
    let c = v.back.counters();
    assert_eq!((got, c.tx_dropped, c.last_copy_error), (300, 0, None));
    assert_eq!(v.front.stats().tx_errors, 0);
}
