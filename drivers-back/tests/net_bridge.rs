//! dom0's L2 bridge (`drivers_back::net::bridge`) between an uplink and vifs: the
//! source filters, learning and its bounds, forwarding, the fair share of a queue, and
//! the adaptation of offloaded frames to each port.

use drivers_back::net::bridge::{
    Bridge, DropReason, Frame, Offloads, PortConfig, PortId, PortStats, Verdict, MAX_LEARNED,
};
use proptest::prelude::*;
use pv_core::offload::{self, Gso, GsoKind, OffloadError, PacketMeta};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
};

const A_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 0x0a];
const B_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 0x0b];
const X_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01]; // a host behind the uplink
const Y_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x02];
const BCAST: [u8; 6] = [0xff; 6];
const A_IP: [u8; 4] = [10, 0, 0, 10];
const B_IP: [u8; 4] = [10, 0, 0, 11];
const X_IP: [u8; 4] = [10, 0, 0, 1];

const ALL: Offloads = Offloads {
    csum_blank: true,
    ipv6_csum_blank: true,
    gso_tcpv4: true,
    gso_tcpv6: true,
};

fn vif(mac: [u8; 6], ip: Option<[u8; 4]>, accepts: Offloads) -> PortConfig {
    PortConfig {
        mac: Some(mac),
        ip,
        accepts,
        queue: 64,
    }
}

fn uplink(accepts: Offloads) -> PortConfig {
    PortConfig {
        mac: None,
        ip: None,
        accepts,
        queue: 64,
    }
}

/// An uplink and vifs A (10.0.0.10) and B (10.0.0.11), all taking every offload.
struct Net {
    br: Bridge,
    up: PortId,
    a: PortId,
    b: PortId,
}

fn net() -> Net {
    let mut br = Bridge::new();
    let up = br.add_port(uplink(ALL));
    let a = br.add_port(vif(A_MAC, Some(A_IP), ALL));
    let b = br.add_port(vif(B_MAC, Some(B_IP), ALL));
    Net { br, up, a, b }
}

fn eth(src: [u8; 6], dst: [u8; 6], ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0; 14 + payload.len()];
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    EthernetRepr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    }
    .emit(&mut e);
    e.payload_mut().copy_from_slice(payload);
    f
}

/// A UDP datagram from `src_ip` carrying `tag` (so that tests can tell frames apart).
fn udp(src: [u8; 6], dst: [u8; 6], src_ip: [u8; 4], tag: u32) -> Vec<u8> {
    let payload = tag.to_be_bytes();
    let (s, d) = (Ipv4Address::from(src_ip), Ipv4Address::from(X_IP));
    let mut ip = vec![0; 20 + 8 + payload.len()];
    let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
    Ipv4Repr {
        src_addr: s,
        dst_addr: d,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    }
    .emit(&mut p, &ChecksumCapabilities::default());
    UdpRepr {
        src_port: 5000,
        dst_port: 5001,
    }
    .emit(
        &mut UdpPacket::new_unchecked(p.payload_mut()),
        &s.into(),
        &d.into(),
        payload.len(),
        |b| b.copy_from_slice(&payload),
        &ChecksumCapabilities::default(),
    );
    eth(src, dst, EthernetProtocol::Ipv4, &ip)
}

fn tag_of(f: &Frame) -> u32 {
    let n = f.data.len();
    u32::from_be_bytes(f.data[n - 4..].try_into().unwrap())
}

fn arp(src: [u8; 6], sha: [u8; 6], spa: [u8; 4]) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(sha),
        source_protocol_addr: spa.into(),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: X_IP.into(),
    };
    let mut a = vec![0; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut a[..]));
    eth(src, BCAST, EthernetProtocol::Arp, &a)
}

/// A TCP segment with `len` bytes of payload and a blank checksum (as netfront sends
/// one with CHECKSUM_PARTIAL), over IPv4 from `src_ip` or over IPv6.
fn tcp(src: [u8; 6], dst: [u8; 6], src_ip: [u8; 4], v6: bool, len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let repr = TcpRepr {
        src_port: 40000,
        dst_port: 80,
        control: TcpControl::Psh,
        seq_number: TcpSeqNumber(1000),
        ack_number: Some(TcpSeqNumber(1)),
        window_len: 1024,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &payload,
    };
    let tcp_len = repr.buffer_len();
    let caps = ChecksumCapabilities::default();
    let mut ip;
    if v6 {
        let (s, d) = (
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 10),
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        );
        ip = vec![0; 40 + tcp_len];
        let mut p = Ipv6Packet::new_unchecked(&mut ip[..]);
        Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::Tcp,
            payload_len: tcp_len,
            hop_limit: 64,
        }
        .emit(&mut p);
        repr.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &s.into(),
            &d.into(),
            &caps,
        );
    } else {
        let (s, d) = (Ipv4Address::from(src_ip), Ipv4Address::from(X_IP));
        ip = vec![0; 20 + tcp_len];
        let mut p = Ipv4Packet::new_unchecked(&mut ip[..]);
        Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            next_header: IpProtocol::Tcp,
            payload_len: tcp_len,
            hop_limit: 64,
        }
        .emit(&mut p, &caps);
        repr.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            &s.into(),
            &d.into(),
            &caps,
        );
    }
    let ethertype = if v6 {
        EthernetProtocol::Ipv6
    } else {
        EthernetProtocol::Ipv4
    };
    let mut f = eth(src, dst, ethertype, &ip);
    offload::pseudo_header_checksum(&mut f).unwrap();
    f
}

fn plain(data: Vec<u8>) -> Frame {
    Frame {
        data,
        meta: PacketMeta::default(),
    }
}

fn blank(data: Vec<u8>) -> Frame {
    Frame {
        data,
        meta: PacketMeta {
            csum_blank: true,
            data_validated: true,
            gso: None,
        },
    }
}

fn gso(data: Vec<u8>, kind: GsoKind, size: u16) -> Frame {
    Frame {
        data,
        meta: PacketMeta {
            csum_blank: true,
            data_validated: true,
            gso: Some(Gso { kind, size }),
        },
    }
}

fn drain(br: &mut Bridge, port: PortId) -> Vec<Frame> {
    std::iter::from_fn(|| br.pop(port)).collect()
}

fn queues(n: &Net) -> [usize; 3] {
    [n.br.queued(n.up), n.br.queued(n.a), n.br.queued(n.b)]
}

const FWD1: Verdict = Verdict::Forwarded { to: 1 };
const FWD2: Verdict = Verdict::Forwarded { to: 2 };

#[test]
fn frames_shorter_than_an_ethernet_header_are_dropped() {
    let mut n = net();
    let v = n.br.input(n.a, plain(vec![0xff; 13]));
    assert_eq!(v, Verdict::Dropped(DropReason::TooShort));
    assert_eq!(queues(&n), [0; 3]);
    assert_eq!(n.br.stats(n.a).rx_malformed, 1);
    // Exactly a header (no payload) is a frame.
    let mut f = A_MAC.to_vec();
    f.splice(0..0, BCAST);
    f.extend_from_slice(&[0x88, 0xb5]);
    assert_eq!(n.br.input(n.a, plain(f)), FWD2);
}

#[test]
fn a_vif_sends_only_from_its_own_mac() {
    let mut n = net();
    for src in [B_MAC, X_MAC] {
        let v = n.br.input(n.a, plain(udp(src, BCAST, A_IP, 1)));
        assert_eq!(v, Verdict::Dropped(DropReason::SourceMac));
    }
    assert_eq!(queues(&n), [0; 3], "a spoofed frame goes nowhere");
    let s = n.br.stats(n.a);
    assert_eq!((s.rx, s.rx_filtered), (2, 2));
    // Nor was the spoofed MAC learned: a frame to X is still flooded.
    assert_eq!(n.br.lookup(&X_MAC), None);
    assert_eq!(n.br.input(n.a, plain(udp(A_MAC, BCAST, A_IP, 2))), FWD2);
}

#[test]
fn multicast_broadcast_and_zero_sources_are_dropped_from_any_port() {
    let mut n = net();
    let mut a_mcast = A_MAC;
    a_mcast[0] |= 1;
    for (port, src) in [
        (n.a, a_mcast),
        (n.a, BCAST),
        (n.up, BCAST),
        (n.up, [1, 0, 0x5e, 0, 0, 1]),
        (n.up, [0; 6]),
    ] {
        let v = n.br.input(port, plain(udp(src, BCAST, A_IP, 1)));
        assert_eq!(v, Verdict::Dropped(DropReason::InvalidSource));
    }
    assert_eq!(queues(&n), [0; 3]);
    assert_eq!(n.br.learned(), 0);
}

#[test]
fn a_vif_with_an_address_sends_ipv4_and_arp_only_from_it() {
    let mut n = net();
    let dropped = Verdict::Dropped(DropReason::SourceIp);
    // IPv4 from another address, or too short to tell.
    assert_eq!(n.br.input(n.a, plain(udp(A_MAC, BCAST, B_IP, 1))), dropped);
    let mut short = udp(A_MAC, BCAST, A_IP, 1);
    short.truncate(14 + 19);
    assert_eq!(n.br.input(n.a, plain(short)), dropped);
    // ARP claiming another address, or another MAC.
    assert_eq!(n.br.input(n.a, plain(arp(A_MAC, A_MAC, X_IP))), dropped);
    assert_eq!(n.br.input(n.a, plain(arp(A_MAC, B_MAC, A_IP))), dropped);
    let mut cut = arp(A_MAC, A_MAC, A_IP);
    cut.truncate(30);
    assert_eq!(n.br.input(n.a, plain(cut)), dropped);
    // A VLAN tag would hide the IPv4 header.
    let inner = udp(A_MAC, BCAST, B_IP, 1);
    let mut tagged = inner[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    tagged.extend_from_slice(&inner[12..]);
    let v = n.br.input(n.a, plain(tagged));
    assert_eq!(v, Verdict::Dropped(DropReason::Tagged));
    assert_eq!(queues(&n), [0; 3]);
    assert_eq!(n.br.stats(n.a).rx_filtered, 6);

    // Its own address, an ARP probe (RFC 5227: sender 0.0.0.0), and what is not IPv4.
    assert_eq!(n.br.input(n.a, plain(udp(A_MAC, BCAST, A_IP, 1))), FWD2);
    assert_eq!(n.br.input(n.a, plain(arp(A_MAC, A_MAC, A_IP))), FWD2);
    assert_eq!(n.br.input(n.a, plain(arp(A_MAC, A_MAC, [0; 4]))), FWD2);
    let v6 = tcp(A_MAC, BCAST, A_IP, true, 10);
    assert_eq!(n.br.input(n.a, blank(v6)), FWD2);
    // A vif without an address (DHCP) and the uplink are not filtered by IP.
    let c =
        n.br.add_port(vif([0x00, 0x16, 0x3e, 0, 0, 0x0c], None, ALL));
    let v = n.br.input(
        c,
        plain(udp([0x00, 0x16, 0x3e, 0, 0, 0x0c], BCAST, [0; 4], 1)),
    );
    assert_eq!(v, Verdict::Forwarded { to: 3 });
    assert_eq!(
        n.br.input(n.up, plain(udp(X_MAC, BCAST, B_IP, 1))),
        Verdict::Forwarded { to: 3 }
    );
}

#[test]
fn forwarding_floods_unknown_and_multicast_and_sends_known_unicast_to_one_port() {
    let mut n = net();
    // B's MAC is pinned when B is added: known before B sends anything.
    assert_eq!(n.br.input(n.a, plain(udp(A_MAC, B_MAC, A_IP, 1))), FWD1);
    assert_eq!(queues(&n), [0, 0, 1]);
    // X is unknown: flooded to all but A (the uplink and B).
    assert_eq!(n.br.input(n.a, plain(udp(A_MAC, X_MAC, A_IP, 2))), FWD2);
    assert_eq!(queues(&n), [1, 0, 2]);
    // X speaks from the uplink (broadcast: A and B, never the uplink) and is learned.
    assert_eq!(n.br.input(n.up, plain(udp(X_MAC, BCAST, X_IP, 3))), FWD2);
    assert_eq!(queues(&n), [1, 1, 3]);
    assert_eq!(n.br.lookup(&X_MAC), Some(n.up));
    assert_eq!(n.br.input(n.a, plain(udp(A_MAC, X_MAC, A_IP, 4))), FWD1);
    assert_eq!(queues(&n), [2, 1, 3]);
    // Multicast goes everywhere else.
    let mcast = [0x33, 0x33, 0, 0, 0, 1];
    assert_eq!(n.br.input(n.b, plain(udp(B_MAC, mcast, B_IP, 5))), FWD2);
    assert_eq!(queues(&n), [3, 2, 3]);
    // Never back: a frame from the uplink to a host learned there.
    let v = n.br.input(n.up, plain(udp(Y_MAC, X_MAC, X_IP, 6)));
    assert_eq!(v, Verdict::Dropped(DropReason::NoDestination));
    let tags: Vec<u32> = drain(&mut n.br, n.b).iter().map(tag_of).collect();
    assert_eq!(tags, [1, 2, 3]);
    let tags: Vec<u32> = drain(&mut n.br, n.up).iter().map(tag_of).collect();
    assert_eq!(tags, [2, 4, 5]);
    let s = n.br.stats(n.up);
    assert_eq!((s.rx, s.tx), (2, 3));
}

#[test]
fn a_learned_mac_moves_but_a_vif_mac_is_pinned() {
    let mut br = Bridge::new();
    let up1 = br.add_port(uplink(ALL));
    let up2 = br.add_port(uplink(ALL));
    let a = br.add_port(vif(A_MAC, None, ALL));
    br.input(up1, plain(udp(X_MAC, BCAST, X_IP, 1)));
    assert_eq!(br.lookup(&X_MAC), Some(up1));
    br.input(up2, plain(udp(X_MAC, BCAST, X_IP, 2)));
    assert_eq!(br.lookup(&X_MAC), Some(up2));
    drain(&mut br, up2);
    assert_eq!(br.input(a, plain(udp(A_MAC, X_MAC, A_IP, 3))), FWD1);
    assert_eq!(br.queued(up2), 1);

    // The uplink cannot take A's MAC: its frame is dropped, A's stays with A.
    let v = br.input(up1, plain(udp(A_MAC, BCAST, X_IP, 4)));
    assert_eq!(v, Verdict::Dropped(DropReason::SourceMac));
    assert_eq!(br.lookup(&A_MAC), Some(a));
    assert_eq!(drain(&mut br, a).len(), 2, "the two broadcasts");
    assert_eq!(br.input(up2, plain(udp(X_MAC, A_MAC, X_IP, 5))), FWD1);
    assert_eq!(br.queued(a), 1);
    // Nor can another vif.
    let b = br.add_port(vif(B_MAC, None, ALL));
    let v = br.input(b, plain(udp(A_MAC, BCAST, B_IP, 6)));
    assert_eq!(v, Verdict::Dropped(DropReason::SourceMac));
    assert_eq!(br.lookup(&A_MAC), Some(a));
}

#[test]
fn a_flood_of_source_macs_learns_a_bounded_table_oldest_out() {
    let mut n = net();
    let mac = |i: u32| {
        let b = i.to_be_bytes();
        [0x02, 0x99, b[0], b[1], b[2], b[3]]
    };
    // X keeps talking all along: refreshed, never the oldest.
    for i in 0..5 * MAX_LEARNED as u32 {
        n.br.input(n.up, plain(udp(mac(i), BCAST, X_IP, i)));
        if i % 100 == 0 {
            n.br.input(n.up, plain(udp(X_MAC, BCAST, X_IP, i)));
        }
        drain(&mut n.br, n.a);
        drain(&mut n.br, n.b);
        assert!(n.br.learned() <= MAX_LEARNED);
    }
    assert_eq!(n.br.learned(), MAX_LEARNED);
    assert_eq!(n.br.lookup(&mac(0)), None, "the oldest was forgotten");
    assert_eq!(n.br.lookup(&mac(5 * MAX_LEARNED as u32 - 1)), Some(n.up));
    assert_eq!(n.br.lookup(&X_MAC), Some(n.up));
    // The vifs' pinned MACs are not in the table and never evicted.
    assert_eq!(n.br.lookup(&A_MAC), Some(n.a));
    assert_eq!(n.br.lookup(&B_MAC), Some(n.b));
}

fn small_queue(n: &mut Net, cap: usize) -> PortId {
    n.br.add_port(PortConfig {
        mac: Some([0x00, 0x16, 0x3e, 0, 0, 0xdd]),
        ip: None,
        accepts: ALL,
        queue: cap,
    })
}

const D_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 0xdd];

#[test]
fn a_lone_sender_fills_a_queue_and_no_more() {
    let mut n = net();
    let d = small_queue(&mut n, 8);
    for i in 0..8 {
        assert_eq!(n.br.input(n.a, plain(udp(A_MAC, D_MAC, A_IP, i))), FWD1);
    }
    let v = n.br.input(n.a, plain(udp(A_MAC, D_MAC, A_IP, 8)));
    assert_eq!(v, Verdict::Dropped(DropReason::QueueFull));
    assert_eq!(n.br.queued(d), 8);
    let s = n.br.stats(d);
    assert_eq!((s.tx, s.tx_dropped), (8, 1));
    let tags: Vec<u32> = drain(&mut n.br, d).iter().map(tag_of).collect();
    assert_eq!(tags, (0..8).collect::<Vec<_>>(), "FIFO");
    assert_eq!(n.br.input(n.a, plain(udp(A_MAC, D_MAC, A_IP, 9))), FWD1);
}

#[test]
fn a_flooding_vif_cannot_starve_another_sender() {
    let mut n = net();
    let d = small_queue(&mut n, 16);
    // A floods; B sends one frame every tenth of A's, and nobody pops.
    let mut b_sent = Vec::new();
    for i in 0..200u32 {
        n.br.input(n.a, plain(udp(A_MAC, D_MAC, A_IP, i)));
        if i % 10 == 5 && b_sent.len() < 5 {
            let tag = 1_000_000 + i;
            assert_eq!(n.br.input(n.b, plain(udp(B_MAC, D_MAC, B_IP, tag))), FWD1);
            b_sent.push(tag);
        }
        assert!(n.br.queued(d) <= 16);
    }
    let got: Vec<u32> = drain(&mut n.br, d).iter().map(tag_of).collect();
    assert_eq!(got.len(), 16);
    let from_b: Vec<u32> = got.iter().copied().filter(|&t| t >= 1_000_000).collect();
    assert_eq!(from_b, b_sent, "every one of B's frames arrives, in order");
    // A's are its oldest, in order: it was its newest that made room.
    let from_a: Vec<u32> = got.iter().copied().filter(|&t| t < 1_000_000).collect();
    assert_eq!(from_a, (0..11).collect::<Vec<_>>());
    assert!(n.br.stats(d).tx_dropped > 0);
}

#[test]
fn two_floods_share_a_queue_half_and_half() {
    let mut n = net();
    let d = small_queue(&mut n, 16);
    for i in 0..100u32 {
        n.br.input(n.a, plain(udp(A_MAC, D_MAC, A_IP, i)));
        n.br.input(n.b, plain(udp(B_MAC, D_MAC, B_IP, 1_000_000 + i)));
    }
    let got: Vec<u32> = drain(&mut n.br, d).iter().map(tag_of).collect();
    let from_b = got.iter().filter(|&&t| t >= 1_000_000).count();
    assert_eq!((got.len(), from_b), (16, 8));
}

#[test]
fn a_blank_checksum_is_filled_for_a_port_without_the_offload() {
    let mut br = Bridge::new();
    let up = br.add_port(uplink(Offloads::default()));
    let v4_only = Offloads {
        csum_blank: true,
        ..Offloads::default()
    };
    let b = br.add_port(vif(B_MAC, None, v4_only));
    let a = br.add_port(vif(A_MAC, Some(A_IP), ALL));
    for v6 in [false, true] {
        let sent = blank(tcp(A_MAC, BCAST, A_IP, v6, 300));
        assert!(!offload::verify_checksum(&sent.data));
        assert_eq!(br.input(a, sent.clone()), FWD2);
        let at_up = br.pop(up).unwrap();
        assert!(offload::verify_checksum(&at_up.data));
        let filled_meta = PacketMeta {
            csum_blank: false,
            data_validated: true,
            gso: None,
        };
        assert_eq!(at_up.meta, filled_meta);
        let mut want = sent.data.clone();
        offload::fill_checksum(&mut want).unwrap();
        assert_eq!(at_up.data, want, "only the checksum changed");
        // B takes blank IPv4 checksums, not IPv6 ones.
        let at_b = br.pop(b).unwrap();
        if v6 {
            assert_eq!(at_b, at_up);
        } else {
            assert_eq!(at_b, sent);
        }
    }
}

#[test]
fn a_gso_frame_is_cut_for_a_port_without_that_gso_kind() {
    let mut br = Bridge::new();
    let no_offload = br.add_port(uplink(Offloads::default()));
    let v4_gso = Offloads {
        csum_blank: true,
        gso_tcpv4: true,
        ..Offloads::default()
    };
    let gso_no_csum = Offloads {
        gso_tcpv4: true,
        gso_tcpv6: true,
        ..Offloads::default()
    };
    let b = br.add_port(vif(B_MAC, None, v4_gso));
    let c = br.add_port(vif([0x00, 0x16, 0x3e, 0, 0, 0x0c], None, gso_no_csum));
    let all = br.add_port(vif([0x00, 0x16, 0x3e, 0, 0, 0x0e], None, ALL));
    let a = br.add_port(vif(A_MAC, Some(A_IP), ALL));
    for (v6, kind) in [(false, GsoKind::TcpV4), (true, GsoKind::TcpV6)] {
        let sent = gso(tcp(A_MAC, X_MAC, A_IP, v6, 5000), kind, 1448);
        assert_eq!(br.input(a, sent.clone()), Verdict::Forwarded { to: 4 });
        // Unchanged where taken (B takes TCPv4 GSO only).
        assert_eq!(br.pop(all).unwrap(), sent);
        if !v6 {
            assert_eq!(br.pop(b).unwrap(), sent);
        }
        let mut ports = vec![no_offload, c];
        if v6 {
            ports.push(b);
        }
        for p in ports {
            let segs = drain(&mut br, p);
            assert_eq!(segs.len(), 4, "5000 bytes at 1448");
            let mut payload = Vec::new();
            for s in &segs {
                assert!(s.data.len() <= 14 + 40 + 20 + 1448);
                assert!(offload::verify_checksum(&s.data));
                assert_eq!(
                    s.meta,
                    PacketMeta {
                        csum_blank: false,
                        data_validated: true,
                        gso: None
                    }
                );
                let h = offload::headers(&s.data).unwrap();
                payload.extend_from_slice(&s.data[h.l4 + 20..h.l4 + h.l4_len]);
            }
            let h = offload::headers(&sent.data).unwrap();
            assert_eq!(payload, sent.data[h.l4 + 20..]);
            let st = br.stats(p);
            assert!(st.tx >= 4);
        }
    }
}

#[test]
fn a_frame_for_one_port_that_takes_it_as_it_is_is_not_copied() {
    let mut n = net();
    for f in [
        plain(udp(A_MAC, B_MAC, A_IP, 1)),
        blank(tcp(A_MAC, B_MAC, A_IP, false, 100)),
        gso(tcp(A_MAC, B_MAC, A_IP, true, 4000), GsoKind::TcpV6, 1000),
    ] {
        let at = f.data.as_ptr();
        assert_eq!(n.br.input(n.a, f), FWD1);
        assert_eq!(n.br.pop(n.b).unwrap().data.as_ptr(), at);
    }
    // A broadcast is copied for all but one.
    let f = plain(udp(A_MAC, BCAST, A_IP, 2));
    let at = f.data.as_ptr();
    n.br.input(n.a, f);
    let (u, b) = (n.br.pop(n.up).unwrap(), n.br.pop(n.b).unwrap());
    assert_eq!(u, b);
    assert!(u.data.as_ptr() == at || b.data.as_ptr() == at);
}

#[test]
fn offload_requests_the_headers_cannot_honour_are_dropped() {
    let mut n = net();
    let cases = [
        (blank(arp(A_MAC, A_MAC, A_IP)), OffloadError::NotTcpUdp),
        (
            gso(tcp(A_MAC, BCAST, A_IP, false, 3000), GsoKind::TcpV6, 1448),
            OffloadError::GsoKindMismatch,
        ),
        (
            gso(tcp(A_MAC, BCAST, A_IP, false, 3000), GsoKind::TcpV4, 0),
            OffloadError::BadGsoSize,
        ),
        (
            gso(udp(A_MAC, BCAST, A_IP, 1), GsoKind::TcpV4, 1448),
            OffloadError::NotTcp,
        ),
    ];
    for (f, e) in cases {
        assert_eq!(
            n.br.input(n.a, f),
            Verdict::Dropped(DropReason::BadOffload(e))
        );
    }
    assert_eq!(queues(&n), [0; 3]);
    assert_eq!(n.br.stats(n.a).rx_malformed, 4);
    // Even to ports that would take them as they are: what a frame becomes does not
    // depend on which ports are there.
    assert_eq!(n.br.stats(n.up).tx_dropped, 0);
}

#[test]
fn a_removed_port_is_forgotten_and_its_id_not_reused() {
    let mut n = net();
    n.br.input(n.a, plain(udp(A_MAC, B_MAC, A_IP, 1)));
    n.br.input(n.b, plain(udp(B_MAC, BCAST, B_IP, 2)));
    n.br.input(n.up, plain(udp(X_MAC, BCAST, X_IP, 3)));
    assert_eq!(n.br.queued(n.up), 1);
    n.br.remove_port(n.b);
    assert_eq!(n.br.queued(n.b), 0);
    assert_eq!(n.br.pop(n.b), None);
    assert_eq!(n.br.stats(n.b), PortStats::default());
    assert_eq!(n.br.lookup(&B_MAC), None);
    let v = n.br.input(n.b, plain(udp(B_MAC, BCAST, B_IP, 4)));
    assert_eq!(v, Verdict::Dropped(DropReason::UnknownPort));
    // B's frame already queued to the uplink stays.
    assert_eq!(tag_of(&n.br.pop(n.up).unwrap()), 2);
    // Unicast to B's MAC is unknown now: flooded to the rest.
    assert_eq!(n.br.input(n.a, plain(udp(A_MAC, B_MAC, A_IP, 5))), FWD1);
    assert_eq!(n.br.queued(n.up), 1);
    // Learned entries of a removed uplink go too.
    n.br.remove_port(n.up);
    assert_eq!(n.br.lookup(&X_MAC), None);
    let b2 = n.br.add_port(vif(B_MAC, Some(B_IP), ALL));
    assert!(b2 > n.up && b2 > n.b, "ids are not reused");
    assert_eq!(n.br.lookup(&B_MAC), Some(b2));
}

#[test]
fn a_mac_given_twice_belongs_to_the_first_port_until_it_goes() {
    let mut br = Bridge::new();
    let up = br.add_port(uplink(ALL));
    let a1 = br.add_port(vif(A_MAC, None, ALL));
    let a2 = br.add_port(vif(A_MAC, None, ALL));
    let v = br.input(a2, plain(udp(A_MAC, BCAST, A_IP, 1)));
    assert_eq!(v, Verdict::Dropped(DropReason::SourceMac));
    assert_eq!(br.input(up, plain(udp(X_MAC, A_MAC, X_IP, 2))), FWD1);
    assert_eq!(br.queued(a1), 1);
    br.remove_port(a1);
    assert_eq!(br.lookup(&A_MAC), Some(a2));
    assert_eq!(br.input(a2, plain(udp(A_MAC, X_MAC, A_IP, 3))), FWD1);
}

/// One step of the property test: a frame from a port (its source MAC, destination
/// and spoofing chosen by the numbers), or a pop.
#[derive(Clone, Debug)]
enum Step {
    Send { port: u8, src: u8, dst: u8, ip: u8 },
    Pop { port: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..3, 0u8..6, 0u8..7, 0u8..3)
            .prop_map(|(port, src, dst, ip)| Step::Send { port, src, dst, ip }),
        1 => (0u8..3).prop_map(|port| Step::Pop { port }),
    ]
}

proptest! {
    /// Whatever the ports send: queues stay within their bounds, no frame a filter
    /// dropped is ever delivered, no frame comes back to its sender, and a frame from
    /// a vif carries that vif's MAC.
    #[test]
    fn filters_and_bounds_hold_for_any_traffic(steps in proptest::collection::vec(step(), 1..300)) {
        let mut br = Bridge::new();
        let cap = 8;
        let cfgs = [
            PortConfig { mac: None, ip: None, accepts: ALL, queue: cap },
            PortConfig { mac: Some(A_MAC), ip: Some(A_IP), accepts: ALL, queue: cap },
            PortConfig { mac: Some(B_MAC), ip: Some(B_IP), accepts: Offloads::default(), queue: cap },
        ];
        let ids: Vec<PortId> = cfgs.iter().map(|c| br.add_port(c.clone())).collect();
        let macs = [A_MAC, B_MAC, X_MAC, Y_MAC, BCAST, [0x33, 0x33, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 9]];
        let ips = [A_IP, B_IP, X_IP];
        let mut sender = std::collections::HashMap::new();
        for (tag, s) in steps.iter().enumerate() {
            match *s {
                Step::Send { port, src, dst, ip } => {
                    let p = usize::from(port);
                    let f = udp(macs[usize::from(src)], macs[usize::from(dst)], ips[usize::from(ip)], tag as u32);
                    let v = br.input(ids[p], plain(f));
                    if matches!(v, Verdict::Forwarded { .. }) {
                        sender.insert(tag as u32, p);
                    }
                }
                Step::Pop { port } => {
                    let p = usize::from(port);
                    if let Some(f) = br.pop(ids[p]) {
                        let from = *sender.get(&tag_of(&f)).expect("only forwarded frames arrive");
                        prop_assert_ne!(from, p, "back to its sender");
                        if let Some(mac) = cfgs[from].mac {
                            prop_assert_eq!(&f.data[6..12], &mac[..]);
                        }
                        if let Some(ip) = cfgs[from].ip {
                            prop_assert_eq!(&f.data[26..30], &ip[..]);
                        } else {
                            prop_assert!(f.data[6..12] != A_MAC && f.data[6..12] != B_MAC);
                        }
                    }
                }
            }
            for &id in &ids {
                prop_assert!(br.queued(id) <= cap);
            }
        }
    }
}
