//! `nic-selftest`: proves the virtio-net driver against QEMU's user-mode network
//! (slirp), whose gateway 10.0.2.2 answers ARP and runs a DHCP server handing out
//! 10.0.2.15 first. dom0 sends, from 10.0.2.15, an ARP request for 10.0.2.2 and a
//! DHCPDISCOVER, waits on the NIC's interrupt (idle in `SCHEDOP_poll`, never spinning)
//! for the ARP reply and the DHCPOFFER, resending what is unanswered every second, and
//! prints what it learnt, or FAILED after [`TIMEOUT_NS`]. Frames are built and parsed
//! with smoltcp's `wire` module (checksums included).

use libos::println;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress,
    EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr, DHCP_CLIENT_PORT, DHCP_SERVER_PORT,
    ETHERNET_HEADER_LEN,
};

use crate::virtio_net::{Mac, VirtioNic};

const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
const OURS: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const XID: u32 = 0x6430_6e69; // "d0ni"
const TIMEOUT_NS: u64 = 10_000_000_000;
const RESEND_NS: u64 = 1_000_000_000;
/// Echo data: the largest that fits a 1514-byte Ethernet frame.
const PING_DATA: usize = 1514 - 14 - 20 - 8;
/// Frames of the burst: many times both queues.
const BURST: usize = 2000;

#[derive(Default)]
struct Learnt {
    gateway_mac: Option<EthernetAddress>,
    /// (offered address, server).
    offer: Option<(Ipv4Address, Ipv4Address)>,
}

pub fn run(nic: &mut VirtioNic) {
    let mac = EthernetAddress(nic.mac());
    let mut learnt = Learnt::default();
    let start = libos::time::now().as_nanos();
    let mut next_send = start;
    loop {
        let now = libos::time::now().as_nanos();
        if learnt.gateway_mac.is_some() && learnt.offer.is_some() {
            break;
        }
        if now >= start + TIMEOUT_NS {
            break;
        }
        if now >= next_send {
            let mut frame = [0u8; 600];
            if learnt.gateway_mac.is_none() {
                let n = arp_request(mac, &mut frame);
                send(nic, &frame[..n]);
            }
            if learnt.offer.is_none() {
                let n = dhcp_discover(mac, &mut frame);
                send(nic, &frame[..n]);
            }
            nic.flush();
            next_send = now + RESEND_NS;
        }
        // Acknowledged before the drain: a frame after it interrupts again.
        if nic.wait(next_send.min(start + TIMEOUT_NS).saturating_sub(now)) {
            nic.ack();
        }
        nic.receive(|f| parse(mac, f, &mut learnt));
    }
    match learnt.gateway_mac {
        Some(m) => println!("dom0: nic-selftest: {GATEWAY} is at {}", Mac(m.0)),
        None => println!("dom0: nic-selftest: FAILED: no ARP reply from {GATEWAY}"),
    }
    match learnt.offer {
        Some((ip, server)) => println!("dom0: nic-selftest: DHCP offer {ip} from {server}"),
        None => println!("dom0: nic-selftest: FAILED: no DHCP offer"),
    }
    if let Some(gateway) = learnt.gateway_mac {
        ping(nic, mac, gateway);
        burst(nic, mac);
    }
    let s = nic.stats();
    println!(
        "dom0: nic-selftest: {} frames ({} bytes) out, {} frames ({} bytes) in, {} rx dropped",
        s.frames_out, s.bytes_out, s.frames_in, s.bytes_in, s.rx_dropped
    );
}

/// One full-size frame each way: an ICMP echo request of [`PING_DATA`] bytes to the
/// gateway (slirp answers those itself), whose reply must carry the same bytes.
fn ping(nic: &mut VirtioNic, mac: EthernetAddress, gateway: EthernetAddress) {
    let mut data = [0u8; PING_DATA];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 7 + i / 256) as u8;
    }
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 0xd0,
        seq_no: 1,
        data: &data,
    };
    let ip = Ipv4Repr {
        src_addr: OURS,
        dst_addr: GATEWAY,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let len = ETHERNET_HEADER_LEN + ip.buffer_len() + ip.payload_len;
    let caps = ChecksumCapabilities::default();
    let mut buf = [0u8; 1514];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
    EthernetRepr {
        src_addr: mac,
        dst_addr: gateway,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(ipp.payload_mut()), &caps);
    let start = libos::time::now().as_nanos();
    let (mut next_send, mut echoed) = (start, None);
    while echoed.is_none() {
        let now = libos::time::now().as_nanos();
        if now >= start + TIMEOUT_NS {
            break;
        }
        if now >= next_send {
            send(nic, &buf[..len]);
            nic.flush();
            next_send = now + RESEND_NS;
        }
        if nic.wait(next_send.min(start + TIMEOUT_NS).saturating_sub(now)) {
            nic.ack();
        }
        nic.receive(|f| {
            if let Some(same) = echo_reply(f, &data) {
                echoed = Some(same);
            }
        });
    }
    match echoed {
        Some(true) => {
            println!("dom0: nic-selftest: {GATEWAY} echoed {PING_DATA} bytes ({len}-byte frames)")
        }
        Some(false) => println!("dom0: nic-selftest: FAILED: {GATEWAY}'s echo reply differs"),
        None => println!("dom0: nic-selftest: FAILED: no echo reply from {GATEWAY}"),
    }
}

/// Whether `frame` is the echo reply to [`ping`] (`Some`), and whether it carries
/// `data`.
fn echo_reply(frame: &[u8], data: &[u8]) -> Option<bool> {
    let caps = ChecksumCapabilities::default();
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ipp = Ipv4Packet::new_checked(eth.payload()).ok()?;
    let ip = Ipv4Repr::parse(&ipp, &caps).ok()?;
    if ip.next_header != IpProtocol::Icmp || ip.src_addr != GATEWAY {
        return None;
    }
    let icmpp = Icmpv4Packet::new_checked(ipp.payload()).ok()?;
    match Icmpv4Repr::parse(&icmpp, &caps).ok()? {
        Icmpv4Repr::EchoReply {
            ident: 0xd0,
            seq_no: 1,
            data: got,
        } => Some(got == data),
        _ => None,
    }
}

/// [`BURST`] ARP requests for the gateway as fast as the transmit buffers allow
/// (refused ones wait for the next interrupt), counting the replies: every buffer of
/// both queues is used many times over, and nothing may be lost.
fn burst(nic: &mut VirtioNic, mac: EthernetAddress) {
    let mut frame = [0u8; 64];
    let n = arp_request(mac, &mut frame);
    let full_before = nic.stats().tx_full;
    let (mut sent, mut replies) = (0, 0);
    let start = libos::time::now().as_nanos();
    let deadline = start + TIMEOUT_NS;
    loop {
        while sent < BURST && nic.transmit(&frame[..n]).is_ok() {
            sent += 1;
        }
        nic.flush();
        let now = libos::time::now().as_nanos();
        if (sent == BURST && replies == BURST) || now >= deadline {
            break;
        }
        if nic.wait(deadline - now) {
            nic.ack();
        }
        nic.receive(|f| {
            let mut l = Learnt::default();
            parse(mac, f, &mut l);
            replies += usize::from(l.gateway_mac.is_some());
        });
    }
    let ms = (libos::time::now().as_nanos() - start) / 1_000_000;
    let verdict = if replies == BURST { "" } else { "FAILED: " };
    println!(
        "dom0: nic-selftest: {verdict}burst of {sent} ARP requests: {replies} replies in {ms} ms, \
         transmit full {} times",
        nic.stats().tx_full - full_before
    );
}

fn send(nic: &mut VirtioNic, frame: &[u8]) {
    if nic.transmit(frame).is_err() {
        println!("dom0: nic-selftest: every transmit buffer in flight");
    }
}

fn arp_request(mac: EthernetAddress, buf: &mut [u8]) -> usize {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: OURS,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: GATEWAY,
    };
    let len = ETHERNET_HEADER_LEN + arp.buffer_len();
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
    EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    arp.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    len
}

fn dhcp_discover(mac: EthernetAddress, buf: &mut [u8]) -> usize {
    let dhcp = DhcpRepr {
        message_type: DhcpMessageType::Discover,
        transaction_id: XID,
        secs: 0,
        client_hardware_address: mac,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: Ipv4Address::UNSPECIFIED,
        server_ip: Ipv4Address::UNSPECIFIED,
        router: None,
        subnet_mask: None,
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: true,
        requested_ip: None,
        client_identifier: Some(mac),
        server_identifier: None,
        parameter_request_list: Some(&[1, 3, 6]),
        dns_servers: None,
        max_size: None,
        lease_duration: None,
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let udp = UdpRepr {
        src_port: DHCP_CLIENT_PORT,
        dst_port: DHCP_SERVER_PORT,
    };
    let ip = Ipv4Repr {
        src_addr: Ipv4Address::UNSPECIFIED,
        dst_addr: Ipv4Address::BROADCAST,
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + dhcp.buffer_len(),
        hop_limit: 64,
    };
    let len = ETHERNET_HEADER_LEN + ip.buffer_len() + ip.payload_len;
    let caps = ChecksumCapabilities::default();
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
    EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &caps);
    let mut udpp = UdpPacket::new_unchecked(ipp.payload_mut());
    udp.emit(
        &mut udpp,
        &IpAddress::Ipv4(ip.src_addr),
        &IpAddress::Ipv4(ip.dst_addr),
        dhcp.buffer_len(),
        |payload| {
            // The buffer is exactly `buffer_len` long: emitting cannot fail.
            let _ = dhcp.emit(&mut DhcpPacket::new_unchecked(payload));
        },
        &caps,
    );
    len
}

/// Learns from one received frame: an ARP reply from the gateway to us, or a DHCPOFFER
/// for our transaction. Anything else is ignored.
fn parse(mac: EthernetAddress, frame: &[u8], learnt: &mut Learnt) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    if eth.dst_addr() != mac && !eth.dst_addr().is_broadcast() {
        return;
    }
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let Ok(arp) = ArpPacket::new_checked(eth.payload()) else {
                return;
            };
            if let Ok(ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr,
                source_protocol_addr: GATEWAY,
                target_protocol_addr: OURS,
                ..
            }) = ArpRepr::parse(&arp)
            {
                learnt.gateway_mac = Some(source_hardware_addr);
            }
        }
        EthernetProtocol::Ipv4 => {
            let caps = ChecksumCapabilities::default();
            let Ok(ipp) = Ipv4Packet::new_checked(eth.payload()) else {
                return;
            };
            let Ok(ip) = Ipv4Repr::parse(&ipp, &caps) else {
                return;
            };
            if ip.next_header != IpProtocol::Udp {
                return;
            }
            let Ok(udpp) = UdpPacket::new_checked(ipp.payload()) else {
                return;
            };
            let (src, dst) = (IpAddress::Ipv4(ip.src_addr), IpAddress::Ipv4(ip.dst_addr));
            let Ok(udp) = UdpRepr::parse(&udpp, &src, &dst, &caps) else {
                return;
            };
            if udp.src_port != DHCP_SERVER_PORT || udp.dst_port != DHCP_CLIENT_PORT {
                return;
            }
            let Ok(dhcpp) = DhcpPacket::new_checked(udpp.payload()) else {
                return;
            };
            let Ok(dhcp) = DhcpRepr::parse(&dhcpp) else {
                return;
            };
            if dhcp.message_type == DhcpMessageType::Offer
                && dhcp.transaction_id == XID
                && dhcp.client_hardware_address == mac
            {
                let server = dhcp.server_identifier.unwrap_or(ip.src_addr);
                learnt.offer = Some((dhcp.your_ip, server));
            }
        }
        _ => {}
    }
}
