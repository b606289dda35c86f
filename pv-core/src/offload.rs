//! Checksum and segmentation offloads of the network drivers
//! (`xen/include/public/io/netif.h`): what a packet's `NETTXF_*`/`NETRXF_*` flags and its
//! `XEN_NETIF_EXTRA_TYPE_GSO` extra say ([`PacketMeta`]), and the software fallbacks a
//! party runs when the next one does not take the offload: filling a blank checksum and
//! cutting a large TCP segment into MTU-sized ones.
//!
//! The rules follow Linux: where the L4 header is and what a blank checksum holds are
//! `skb_checksum_setup` (`net/core/skbuff.c`, which netback calls on every packet a guest
//! sends flagged `csum_blank`); segmentation is `tcp_gso_segment`
//! (`net/ipv4/tcp_offload.c`) under `inet_gso_segment` and `ipv6_gso_segment`. Frames are
//! Ethernet II; the headers are read with smoltcp's `wire` module.
//!
//! Anything that is not TCP or UDP over IPv4 or IPv6 right after the Ethernet header
//! (another EtherType, an 802.1Q tag, another protocol, an IPv6 extension header other
//! than hop-by-hop or destination options) has nothing to fill or verify here:
//! [`OffloadError::NotTcpUdp`]. Fragments cannot be checked piece by piece. Nothing a
//! peer writes makes these functions panic.
//!
//! The checks are computed with `smoltcp::wire::checksum` rather than the packets'
//! `verify_checksum`, which smoltcp turns into `true` under `cfg(fuzzing)`: the fuzz
//! target checks that what [`fill_checksum`] writes verifies, which it could not then.

use alloc::vec::Vec;
use core::fmt;

use smoltcp::wire::{
    checksum, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6ExtHeader,
    Ipv6Packet, TcpPacket, TcpSeqNumber, UdpPacket,
};

/// The metadata types live with the ring formats ([`crate::netif`]).
pub use crate::netif::{Gso, GsoKind, PacketMeta};

/// Why a frame's checksum could not be filled or the frame could not be segmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// Not TCP or UDP over IPv4 or IPv6 (another EtherType, a VLAN tag, another
    /// protocol, an IPv6 routing or unknown extension header).
    NotTcpUdp,
    /// An IPv4 fragment or an IPv6 fragment header: the L4 checksum covers the whole
    /// datagram, not one piece.
    Fragment,
    /// The IP or L4 header is truncated, or its lengths do not fit the frame.
    Malformed,
    /// Segmentation of something other than TCP (UDP).
    NotTcp,
    /// A GSO size of 0.
    BadGsoSize,
    /// A TCPv4 GSO on an IPv6 packet, or the reverse.
    GsoKindMismatch,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffloadError::NotTcpUdp => "not TCP or UDP over IPv4 or IPv6",
            OffloadError::Fragment => "an IP fragment (its checksum covers the whole datagram)",
            OffloadError::Malformed => "IP or TCP/UDP header truncated or inconsistent",
            OffloadError::NotTcp => "only TCP can be segmented",
            OffloadError::BadGsoSize => "GSO size of 0",
            OffloadError::GsoKindMismatch => "GSO type does not match the IP version",
        })
    }
}

/// Bytes of an Ethernet II header.
pub const ETHERNET_HEADER_LEN: usize = 14;

/// Where a TCP or UDP packet is in an Ethernet frame ([`headers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// IPv6; else IPv4.
    pub ipv6: bool,
    /// TCP; else UDP.
    pub tcp: bool,
    /// Offset of the IP header (the end of the Ethernet header).
    pub l3: usize,
    /// Offset of the TCP or UDP header (after IPv4 options or IPv6 extension headers).
    pub l4: usize,
    /// Bytes from `l4` to the end of the IP packet, as the IP header says (Ethernet
    /// padding after it excluded). A UDP header's own length may be shorter (Linux
    /// trims to it, and so does the checksum).
    pub l4_len: usize,
}

/// Where the TCP or UDP header of `frame` is, with the IP addresses of its pseudo-header.
fn locate(frame: &[u8]) -> Result<(Headers, IpAddress, IpAddress), OffloadError> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| OffloadError::NotTcpUdp)?;
    let l3 = ETHERNET_HEADER_LEN;
    let (ipv6, proto, l4, end, src, dst) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| OffloadError::Malformed)?;
            if ip.version() != 4 {
                return Err(OffloadError::Malformed);
            }
            let proto = ip.next_header();
            if !matches!(proto, IpProtocol::Tcp | IpProtocol::Udp) {
                return Err(OffloadError::NotTcpUdp);
            }
            if ip.more_frags() || ip.frag_offset() != 0 {
                return Err(OffloadError::Fragment);
            }
            let l4 = l3 + usize::from(ip.header_len());
            let end = l3 + usize::from(ip.total_len());
            (
                false,
                proto,
                l4,
                end,
                ip.src_addr().into(),
                ip.dst_addr().into(),
            )
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).map_err(|_| OffloadError::Malformed)?;
            if ip.version() != 6 {
                return Err(OffloadError::Malformed);
            }
            let end = l3 + ip.total_len();
            let mut proto = ip.next_header();
            let mut l4 = l3 + ip.header_len();
            // Hop-by-hop and destination options change nothing for TCP or UDP; a routing
            // header would put the final destination in the pseudo-header, and Linux's
            // skb_checksum_setup_ipv6 skips the same two (plus routing, whose final
            // destination it then gets wrong).
            loop {
                match proto {
                    IpProtocol::Tcp | IpProtocol::Udp => break,
                    IpProtocol::HopByHop | IpProtocol::Ipv6Opts => {
                        let ext = Ipv6ExtHeader::new_checked(&frame[l4..end])
                            .map_err(|_| OffloadError::Malformed)?;
                        proto = ext.next_header();
                        l4 += 8 + 8 * usize::from(ext.header_len());
                    }
                    IpProtocol::Ipv6Frag => return Err(OffloadError::Fragment),
                    _ => return Err(OffloadError::NotTcpUdp),
                }
            }
            (
                true,
                proto,
                l4,
                end,
                ip.src_addr().into(),
                ip.dst_addr().into(),
            )
        }
        _ => return Err(OffloadError::NotTcpUdp),
    };
    let tcp = proto == IpProtocol::Tcp;
    let l4_bytes = &frame[l4..end];
    let fits = if tcp {
        TcpPacket::new_checked(l4_bytes).is_ok()
    } else {
        UdpPacket::new_checked(l4_bytes).is_ok()
    };
    if !fits {
        return Err(OffloadError::Malformed);
    }
    let h = Headers {
        ipv6,
        tcp,
        l3,
        l4,
        l4_len: end - l4,
    };
    Ok((h, src, dst))
}

/// Where the TCP or UDP header of an Ethernet frame is, and which versions: the part
/// of every function here that reads the headers, for a driver that must check a
/// peer's offload request before accepting the packet (netback drops a packet whose
/// blank checksum it cannot set up).
pub fn headers(frame: &[u8]) -> Result<Headers, OffloadError> {
    locate(frame).map(|(h, _, _)| h)
}

/// The bytes the L4 checksum covers besides the pseudo-header: the TCP segment, or the
/// UDP datagram as long as its header says.
fn covered(frame: &[u8], h: &Headers) -> usize {
    let l4 = &frame[h.l4..h.l4 + h.l4_len];
    if h.tcp {
        h.l4_len
    } else {
        // `locate` checked that the UDP length fits.
        usize::from(UdpPacket::new_unchecked(l4).len())
    }
}

fn pseudo(h: &Headers, src: &IpAddress, dst: &IpAddress, len: usize) -> u16 {
    let proto = if h.tcp {
        IpProtocol::Tcp
    } else {
        IpProtocol::Udp
    };
    checksum::pseudo_header(src, dst, proto, len as u32)
}

/// Writes into the TCP/UDP checksum field the folded pseudo-header sum only (not
/// complemented): what Linux's netfront leaves in a CHECKSUM_PARTIAL packet, and what
/// a sender sets before flagging `csum_blank`.
pub fn pseudo_header_checksum(frame: &mut [u8]) -> Result<(), OffloadError> {
    let (h, src, dst) = locate(frame)?;
    let len = covered(frame, &h);
    let sum = pseudo(&h, &src, &dst, len);
    let l4 = &mut frame[h.l4..h.l4 + h.l4_len];
    if h.tcp {
        TcpPacket::new_unchecked(l4).set_checksum(sum);
    } else {
        UdpPacket::new_unchecked(l4).set_checksum(sum);
    }
    Ok(())
}

/// Computes the full TCP or UDP checksum (IPv4 and IPv6) from scratch, whatever the
/// field held (zero, or a pseudo-header sum). A UDP result of 0 is written 0xffff (RFC
/// 768; for IPv6 RFC 8200 forbids 0 outright). The IPv4 header checksum is left alone:
/// `csum_blank` says nothing about it.
pub fn fill_checksum(frame: &mut [u8]) -> Result<(), OffloadError> {
    let (h, src, dst) = locate(frame)?;
    let l4 = &mut frame[h.l4..h.l4 + h.l4_len];
    // Both measure what they cover as `locate` did (TCP: the whole segment; UDP: its
    // length field), and UDP's turns a 0 into 0xffff.
    if h.tcp {
        TcpPacket::new_unchecked(l4).fill_checksum(&src, &dst);
    } else {
        UdpPacket::new_unchecked(l4).fill_checksum(&src, &dst);
    }
    Ok(())
}

/// True if the frame is not TCP/UDP over IP (nothing to verify: [`OffloadError::NotTcpUdp`]
/// or a fragment) or its L4 checksum, and for IPv4 its header checksum, are right.
/// False for a frame whose IP header says TCP or UDP but whose headers are broken
/// ([`OffloadError::Malformed`]): no receiver would take it. A UDP checksum of 0 is
/// right over IPv4 (none computed) and wrong over IPv6 (RFC 8200).
pub fn verify_checksum(frame: &[u8]) -> bool {
    let (h, src, dst) = match locate(frame) {
        Ok(found) => found,
        Err(OffloadError::Malformed) => return false,
        Err(_) => return true,
    };
    if !h.ipv6 {
        let ihl = h.l4 - h.l3;
        if checksum::data(&frame[h.l3..h.l3 + ihl]) != !0 {
            return false;
        }
    }
    let len = covered(frame, &h);
    let l4 = &frame[h.l4..h.l4 + len];
    if !h.tcp && UdpPacket::new_unchecked(l4).checksum() == 0 {
        return !h.ipv6;
    }
    checksum::combine(&[pseudo(&h, &src, &dst, len), checksum::data(l4)]) == !0
}

/// A checked segmentation: where the TCP payload is and how many segments it makes.
struct Plan {
    h: Headers,
    /// End of the TCP header (start of the payload).
    payload: usize,
    payload_len: usize,
    segments: usize,
}

fn plan(frame: &[u8], gso: Gso) -> Result<Plan, OffloadError> {
    if gso.size == 0 {
        return Err(OffloadError::BadGsoSize);
    }
    let (h, _, _) = locate(frame)?;
    if !h.tcp {
        return Err(OffloadError::NotTcp);
    }
    if h.ipv6 != (gso.kind == GsoKind::TcpV6) {
        return Err(OffloadError::GsoKindMismatch);
    }
    let tcp = TcpPacket::new_unchecked(&frame[h.l4..h.l4 + h.l4_len]);
    let th = usize::from(tcp.header_len());
    let payload_len = h.l4_len - th;
    let size = usize::from(gso.size);
    Ok(Plan {
        h,
        payload: h.l4 + th,
        payload_len,
        segments: payload_len.div_ceil(size).max(1),
    })
}

/// How many frames [`segment`] would make of `frame` (1 when its payload fits one
/// segment), or why it would refuse: a check of a peer's GSO request before it is
/// accepted, and a bound on the work it will cost.
pub fn segment_count(frame: &[u8], gso: Gso) -> Result<usize, OffloadError> {
    plan(frame, gso).map(|p| p.segments)
}

/// Software TCP segmentation (what a NIC does for TSO, and Linux's `tcp_gso_segment`):
/// cuts the TCP payload into `gso.size`-byte pieces and passes each to `out` as a full
/// frame, in order: the Ethernet, IP (with IPv4 options or IPv6 extension headers) and
/// TCP headers copied; IPv4 total length, identification (+1 per segment) and header
/// checksum, or IPv6 payload length, rewritten; the sequence number advanced; FIN and
/// PSH only on the last segment, CWR only on the first; each TCP checksum filled. The
/// urgent pointer is copied as Linux does.
///
/// A frame whose payload fits one segment is passed on unchanged (Ethernet padding
/// included) but with its TCP checksum filled.
///
/// Every check is made before the first segment is passed: on an error `out` was not
/// called. Errors: [`OffloadError::BadGsoSize`] for a size of 0,
/// [`OffloadError::NotTcp`] for UDP, [`OffloadError::GsoKindMismatch`], and those of
/// [`headers`].
pub fn segment(frame: &[u8], gso: Gso, out: &mut impl FnMut(Vec<u8>)) -> Result<(), OffloadError> {
    let p = plan(frame, gso)?;
    if p.segments == 1 {
        let mut whole = frame.to_vec();
        fill_checksum(&mut whole)?;
        out(whole);
        return Ok(());
    }
    let size = usize::from(gso.size);
    let headers = &frame[..p.payload];
    let data = &frame[p.payload..p.payload + p.payload_len];
    let ident = if p.h.ipv6 {
        0
    } else {
        Ipv4Packet::new_unchecked(&frame[p.h.l3..]).ident()
    };
    let seq = TcpPacket::new_unchecked(&frame[p.h.l4..]).seq_number().0 as u32;
    let last = p.segments - 1;
    for (i, piece) in data.chunks(size).enumerate() {
        let mut seg = Vec::with_capacity(headers.len() + piece.len());
        seg.extend_from_slice(headers);
        seg.extend_from_slice(piece);
        let l3_len = seg.len() - p.h.l3;
        if p.h.ipv6 {
            let mut ip = Ipv6Packet::new_unchecked(&mut seg[p.h.l3..]);
            // Fits: smaller than the original's.
            ip.set_payload_len((l3_len - ip.header_len()) as u16);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut seg[p.h.l3..]);
            ip.set_total_len(l3_len as u16);
            ip.set_ident(ident.wrapping_add(i as u16));
            ip.fill_checksum();
        }
        let (src, dst) = addresses(&seg, &p.h);
        let mut tcp = TcpPacket::new_unchecked(&mut seg[p.h.l4..]);
        tcp.set_seq_number(TcpSeqNumber(seq.wrapping_add((i * size) as u32) as i32));
        if i != last {
            tcp.set_fin(false);
            tcp.set_psh(false);
        }
        if i != 0 {
            tcp.set_cwr(false);
        }
        tcp.fill_checksum(&src, &dst);
        out(seg);
    }
    Ok(())
}

/// The IP addresses of a frame `locate` accepted.
fn addresses(frame: &[u8], h: &Headers) -> (IpAddress, IpAddress) {
    if h.ipv6 {
        let ip = Ipv6Packet::new_unchecked(&frame[h.l3..]);
        (ip.src_addr().into(), ip.dst_addr().into())
    } else {
        let ip = Ipv4Packet::new_unchecked(&frame[h.l3..]);
        (ip.src_addr().into(), ip.dst_addr().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetRepr, Ipv4Address, Ipv4Repr, Ipv6Address, Ipv6Repr, TcpControl,
        TcpRepr, UdpRepr,
    };

    const V4_SRC: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const V4_DST: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
    const V6_SRC: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    const V6_DST: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
    const IDENT: u16 = 0xfffe;

    fn addrs(v6: bool) -> (IpAddress, IpAddress) {
        if v6 {
            (V6_SRC.into(), V6_DST.into())
        } else {
            (V4_SRC.into(), V4_DST.into())
        }
    }

    /// An Ethernet frame around an IP packet of `l4_len` bytes of `proto`, whose L4
    /// part `fill` writes (given the addresses); checksums right.
    fn ip_frame(
        v6: bool,
        proto: IpProtocol,
        l4_len: usize,
        fill: impl FnOnce(&mut [u8], &IpAddress, &IpAddress),
    ) -> Vec<u8> {
        let ethertype = if v6 {
            EthernetProtocol::Ipv6
        } else {
            EthernetProtocol::Ipv4
        };
        let l3_len = if v6 { 40 } else { 20 };
        let mut f = vec![0; ETHERNET_HEADER_LEN + l3_len + l4_len];
        EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        let ip = &mut f[ETHERNET_HEADER_LEN..];
        if v6 {
            Ipv6Repr {
                src_addr: V6_SRC,
                dst_addr: V6_DST,
                next_header: proto,
                payload_len: l4_len,
                hop_limit: 64,
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut *ip));
        } else {
            let repr = Ipv4Repr {
                src_addr: V4_SRC,
                dst_addr: V4_DST,
                next_header: proto,
                payload_len: l4_len,
                hop_limit: 64,
            };
            let mut p = Ipv4Packet::new_unchecked(&mut *ip);
            repr.emit(&mut p, &ChecksumCapabilities::default());
            p.set_ident(IDENT);
            p.fill_checksum();
        }
        let (src, dst) = addrs(v6);
        fill(&mut ip[l3_len..], &src, &dst);
        f
    }

    fn tcp_repr(control: TcpControl, payload: &[u8]) -> TcpRepr<'_> {
        TcpRepr {
            src_port: 4000,
            dst_port: 80,
            control,
            seq_number: TcpSeqNumber(-10),
            ack_number: Some(TcpSeqNumber(77)),
            window_len: 512,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: Some(smoltcp::wire::TcpTimestampRepr::new(1, 2)),
            payload,
        }
    }

    fn tcp_frame(v6: bool, control: TcpControl, payload: &[u8]) -> Vec<u8> {
        let repr = tcp_repr(control, payload);
        ip_frame(v6, IpProtocol::Tcp, repr.buffer_len(), |b, s, d| {
            repr.emit(
                &mut TcpPacket::new_unchecked(b),
                s,
                d,
                &ChecksumCapabilities::default(),
            )
        })
    }

    fn udp_frame(v6: bool, payload: &[u8]) -> Vec<u8> {
        ip_frame(v6, IpProtocol::Udp, 8 + payload.len(), |b, s, d| {
            UdpRepr {
                src_port: 68,
                dst_port: 67,
            }
            .emit(
                &mut UdpPacket::new_unchecked(b),
                s,
                d,
                payload.len(),
                |p| p.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            )
        })
    }

    /// smoltcp's own verdict on a frame built here (no Ethernet padding).
    fn smoltcp_verifies(frame: &[u8]) -> bool {
        let h = headers(frame).unwrap();
        let (src, dst) = addresses(frame, &h);
        let l4 = &frame[h.l4..h.l4 + h.l4_len];
        let ip_ok = h.ipv6
            || Ipv4Packet::new_checked(&frame[h.l3..])
                .unwrap()
                .verify_checksum();
        let l4_ok = if h.tcp {
            TcpPacket::new_checked(l4)
                .unwrap()
                .verify_checksum(&src, &dst)
        } else {
            UdpPacket::new_checked(l4)
                .unwrap()
                .verify_checksum(&src, &dst)
        };
        ip_ok && l4_ok
    }

    fn l4_checksum(frame: &[u8]) -> u16 {
        let h = headers(frame).unwrap();
        u16::from_be_bytes(if h.tcp {
            [frame[h.l4 + 16], frame[h.l4 + 17]]
        } else {
            [frame[h.l4 + 6], frame[h.l4 + 7]]
        })
    }

    fn set_l4_checksum(frame: &mut [u8], v: u16) {
        let h = headers(frame).unwrap();
        let at = h.l4 + if h.tcp { 16 } else { 6 };
        frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    fn samples() -> Vec<Vec<u8>> {
        let payload: Vec<u8> = (0..301u32).map(|i| (i * 7) as u8).collect();
        vec![
            tcp_frame(false, TcpControl::Psh, &payload),
            tcp_frame(true, TcpControl::Psh, &payload),
            udp_frame(false, &payload),
            udp_frame(true, &payload),
            tcp_frame(false, TcpControl::None, &[]),
        ]
    }

    #[test]
    fn pseudo_header_then_fill_gives_the_full_checksum_back() {
        for good in samples() {
            assert!(smoltcp_verifies(&good) && verify_checksum(&good));
            let h = headers(&good).unwrap();
            let (src, dst) = addresses(&good, &h);
            let mut f = good.clone();
            pseudo_header_checksum(&mut f).unwrap();
            let l4 = &f[h.l4..];
            if h.tcp {
                assert!(TcpPacket::new_checked(l4)
                    .unwrap()
                    .verify_partial_checksum(&src, &dst));
            } else {
                let want = checksum::pseudo_header(&src, &dst, IpProtocol::Udp, l4.len() as u32);
                assert_eq!(l4_checksum(&f), want);
            }
            assert!(!verify_checksum(&f), "a blank checksum does not verify");
            fill_checksum(&mut f).unwrap();
            assert_eq!(f, good);
            // From a zero field, or garbage, the same.
            set_l4_checksum(&mut f, 0);
            fill_checksum(&mut f).unwrap();
            assert_eq!(f, good);
            set_l4_checksum(&mut f, 0x1234);
            fill_checksum(&mut f).unwrap();
            assert_eq!(f, good);
        }
    }

    #[test]
    fn verify_catches_a_flipped_bit_in_payload_and_in_the_ipv4_header() {
        for good in samples() {
            let h = headers(&good).unwrap();
            let mut f = good.clone();
            let last = f.len() - 1;
            f[last] ^= 0x10;
            if h.l4 + 20 < f.len() {
                assert!(!verify_checksum(&f));
            }
            if !h.ipv6 {
                let mut f = good.clone();
                f[h.l3 + 8] ^= 1; // TTL
                assert!(!verify_checksum(&f));
            }
        }
    }

    #[test]
    fn udp_zero_result_is_sent_as_ffff() {
        for v6 in [false, true] {
            // A last payload word equal to the checksum the frame has without it makes
            // the sum all ones, hence a computed checksum of 0.
            let mut f = udp_frame(v6, &[1, 2, 3, 4, 0, 0]);
            let c = l4_checksum(&f);
            let n = f.len();
            f[n - 2..].copy_from_slice(&c.to_be_bytes());
            fill_checksum(&mut f).unwrap();
            assert_eq!(l4_checksum(&f), 0xffff);
            assert!(verify_checksum(&f) && smoltcp_verifies(&f));
        }
    }

    #[test]
    fn udp_without_checksum_is_right_over_ipv4_only() {
        let mut f = udp_frame(false, b"hello");
        set_l4_checksum(&mut f, 0);
        assert!(verify_checksum(&f));
        let mut f = udp_frame(true, b"hello");
        set_l4_checksum(&mut f, 0);
        assert!(!verify_checksum(&f));
    }

    #[test]
    fn ethernet_padding_is_not_checksummed() {
        for mut f in samples() {
            let good = f.clone();
            f.extend_from_slice(&[0xaa; 17]);
            assert!(verify_checksum(&f));
            set_l4_checksum(&mut f, 0);
            fill_checksum(&mut f).unwrap();
            assert_eq!(&f[..good.len()], &good[..]);
        }
    }

    #[test]
    fn what_is_not_tcp_or_udp_over_ip() {
        let good = tcp_frame(false, TcpControl::None, b"data");
        // An 802.1Q tag: the EtherType is 0x8100, and the IP header is not parsed.
        let mut tagged = good[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&good[12..]);
        // ICMP over IPv4.
        let icmp = ip_frame(false, IpProtocol::Icmp, 8, |_, _, _| {});
        // ARP.
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        for mut f in [tagged, icmp, arp, good[..10].to_vec()] {
            assert_eq!(headers(&f), Err(OffloadError::NotTcpUdp));
            assert_eq!(fill_checksum(&mut f), Err(OffloadError::NotTcpUdp));
            assert_eq!(pseudo_header_checksum(&mut f), Err(OffloadError::NotTcpUdp));
            assert!(verify_checksum(&f));
        }
    }

    #[test]
    fn fragments_are_not_checked() {
        let mut f = tcp_frame(false, TcpControl::None, b"data");
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_HEADER_LEN..]);
        ip.set_more_frags(true);
        ip.fill_checksum();
        assert_eq!(fill_checksum(&mut f), Err(OffloadError::Fragment));
        assert!(verify_checksum(&f));
        // IPv6: a fragment header.
        let f = ip_frame(true, IpProtocol::Ipv6Frag, 8 + 20, |b, _, _| {
            b[0] = 6;
            b[3] = 1; // more fragments
        });
        assert_eq!(headers(&f), Err(OffloadError::Fragment));
    }

    #[test]
    fn truncated_headers_are_malformed() {
        let good = tcp_frame(false, TcpControl::None, b"data");
        // The IP total length cut inside the TCP header.
        let mut f = good.clone();
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_HEADER_LEN..]);
        ip.set_total_len(30);
        ip.fill_checksum();
        assert_eq!(fill_checksum(&mut f), Err(OffloadError::Malformed));
        assert!(!verify_checksum(&f));
        // The IP header beyond the frame.
        assert_eq!(headers(&good[..30]), Err(OffloadError::Malformed));
        // An IPv4 EtherType with version 6.
        let mut f = good.clone();
        f[ETHERNET_HEADER_LEN] = 0x65;
        assert_eq!(headers(&f), Err(OffloadError::Malformed));
        // A UDP length longer than the IP packet.
        let mut f = udp_frame(true, b"abc");
        let n = ETHERNET_HEADER_LEN + 40 + 4;
        f[n..n + 2].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(headers(&f), Err(OffloadError::Malformed));
    }

    /// A hop-by-hop header (a PadN option) between the IPv6 header and `inner`'s TCP.
    fn with_hop_by_hop(inner: &[u8]) -> Vec<u8> {
        let l4 = ETHERNET_HEADER_LEN + 40;
        let tcp = &inner[l4..];
        let f = ip_frame(true, IpProtocol::HopByHop, 8 + tcp.len(), |b, _, _| {
            b[..8].copy_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
            b[8..].copy_from_slice(tcp);
        });
        assert_eq!(headers(&f).unwrap().l4, l4 + 8);
        f
    }

    #[test]
    fn ipv6_options_headers_are_skipped() {
        let inner = tcp_frame(true, TcpControl::Psh, &[9; 100]);
        let mut f = with_hop_by_hop(&inner);
        assert!(verify_checksum(&f) && smoltcp_verifies(&f));
        set_l4_checksum(&mut f, 0);
        assert!(!verify_checksum(&f));
        fill_checksum(&mut f).unwrap();
        assert!(verify_checksum(&f) && smoltcp_verifies(&f));
        // A routing header is not walked.
        let mut r = f.clone();
        r[ETHERNET_HEADER_LEN + 6] = 43;
        assert_eq!(headers(&r), Err(OffloadError::NotTcpUdp));
    }

    fn gso(v6: bool, size: u16) -> Gso {
        let kind = if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 };
        Gso { kind, size }
    }

    fn segments(frame: &[u8], g: Gso) -> Result<Vec<Vec<u8>>, OffloadError> {
        let mut out = Vec::new();
        segment(frame, g, &mut |s| out.push(s))?;
        assert_eq!(segment_count(frame, g), Ok(out.len()));
        Ok(out)
    }

    /// Checks every property of `segs` as a segmentation of `frame` at `size`.
    fn check_segments(frame: &[u8], segs: &[Vec<u8>], size: usize) {
        let h = headers(frame).unwrap();
        let orig = TcpPacket::new_checked(&frame[h.l4..h.l4 + h.l4_len]).unwrap();
        let payload = orig.payload();
        assert_eq!(segs.len(), payload.len().div_ceil(size).max(1));
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let sh = headers(s).unwrap();
            assert_eq!((sh.l3, sh.l4, sh.ipv6), (h.l3, h.l4, h.ipv6));
            assert!(smoltcp_verifies(s) && verify_checksum(s), "segment {i}");
            // Headers before TCP copied, lengths and IPv4 ident aside.
            let t = TcpPacket::new_checked(&s[sh.l4..]).unwrap();
            assert_eq!(t.header_len(), orig.header_len());
            assert_eq!(t.options(), orig.options());
            assert_eq!(&s[..12], &frame[..12]);
            if h.ipv6 {
                assert_eq!(&s[h.l3 + 6..h.l4], &frame[h.l3 + 6..h.l4]);
            } else {
                let ip = Ipv4Packet::new_checked(&s[h.l3..]).unwrap();
                assert_eq!(ip.ident(), IDENT.wrapping_add(i as u16));
                assert_eq!(usize::from(ip.total_len()), s.len() - h.l3);
                assert_eq!(&s[h.l3 + 20..h.l4], &frame[h.l3 + 20..h.l4], "options");
            }
            let last = i == segs.len() - 1;
            if segs.len() > 1 {
                assert!(t.payload().len() == size || last && t.payload().len() <= size);
            }
            assert_eq!(
                t.seq_number().0,
                orig.seq_number().0.wrapping_add((i * size) as i32)
            );
            assert_eq!(t.ack_number(), orig.ack_number());
            assert_eq!(t.fin(), orig.fin() && last);
            assert_eq!(t.psh(), orig.psh() && last);
            assert_eq!(t.cwr(), orig.cwr() && i == 0);
            assert_eq!(
                (t.ack(), t.ece(), t.syn()),
                (orig.ack(), orig.ece(), orig.syn())
            );
            joined.extend_from_slice(t.payload());
        }
        assert_eq!(joined, payload);
    }

    /// A TCP frame with `flags` set (CWR, FIN, PSH, ECE), checksums right.
    fn flagged(v6: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = tcp_frame(v6, TcpControl::Fin, payload);
        let h = headers(&f).unwrap();
        let mut t = TcpPacket::new_unchecked(&mut f[h.l4..]);
        t.set_cwr(true);
        t.set_psh(true);
        t.set_ece(true);
        let (src, dst) = addrs(v6);
        t.fill_checksum(&src, &dst);
        f
    }

    #[test]
    fn segmentation_cuts_the_payload_and_fixes_every_header() {
        let payload: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        for v6 in [false, true] {
            let f = flagged(v6, &payload);
            for size in [1448, 1000, 1, 3999, 4000] {
                let segs = segments(&f, gso(v6, size)).unwrap();
                check_segments(&f, &segs, usize::from(size));
            }
        }
    }

    #[test]
    fn segmentation_keeps_ipv4_options_and_ipv6_options_headers() {
        let payload = [5u8; 3000];
        // IPv4 with 4 bytes of options (NOP NOP NOP EOL).
        let plain = flagged(false, &payload);
        let l3 = ETHERNET_HEADER_LEN;
        let mut f = plain[..l3 + 20].to_vec();
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&plain[l3 + 20..]);
        let mut ip = Ipv4Packet::new_unchecked(&mut f[l3..]);
        ip.set_header_len(24);
        ip.set_total_len(ip.total_len() + 4);
        ip.fill_checksum();
        assert!(verify_checksum(&f));
        check_segments(&f, &segments(&f, gso(false, 1400)).unwrap(), 1400);
        let f = with_hop_by_hop(&flagged(true, &payload));
        check_segments(&f, &segments(&f, gso(true, 1400)).unwrap(), 1400);
    }

    #[test]
    fn a_payload_that_fits_comes_out_whole_with_its_checksum_filled() {
        for v6 in [false, true] {
            let mut good = flagged(v6, &[3; 500]);
            good.extend_from_slice(&[0; 6]); // padding stays too
            let mut blank = good.clone();
            pseudo_header_checksum(&mut blank).unwrap();
            for size in [500, 1448, u16::MAX] {
                assert_eq!(segments(&blank, gso(v6, size)).unwrap(), vec![good.clone()]);
            }
            let empty = flagged(v6, &[]);
            assert_eq!(segments(&empty, gso(v6, 1)).unwrap(), vec![empty.clone()]);
        }
    }

    #[test]
    fn segmentation_refusals() {
        let v4 = tcp_frame(false, TcpControl::None, &[1; 3000]);
        let v6 = tcp_frame(true, TcpControl::None, &[1; 3000]);
        let cases = [
            (&v4, gso(false, 0), OffloadError::BadGsoSize),
            (&v4, gso(true, 1000), OffloadError::GsoKindMismatch),
            (&v6, gso(false, 1000), OffloadError::GsoKindMismatch),
            (
                &udp_frame(false, &[1; 3000]),
                gso(false, 1000),
                OffloadError::NotTcp,
            ),
            (
                &v4[..30].to_vec(),
                gso(false, 1000),
                OffloadError::Malformed,
            ),
        ];
        for (f, g, want) in cases {
            let mut called = false;
            assert_eq!(segment(f, g, &mut |_| called = true), Err(want));
            assert_eq!(segment_count(f, g), Err(want));
            assert!(!called);
        }
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut f = tcp_frame(false, TcpControl::None, &[1; 3000]);
        let h = headers(&f).unwrap();
        let mut t = TcpPacket::new_unchecked(&mut f[h.l4..]);
        t.set_seq_number(TcpSeqNumber(-2)); // 0xffff_fffe
        let segs = segments(&f, gso(false, 1000)).unwrap();
        let seq = |s: &Vec<u8>| TcpPacket::new_unchecked(&s[h.l4..]).seq_number().0 as u32;
        assert_eq!(
            segs.iter().map(seq).collect::<Vec<_>>(),
            [0xffff_fffe, 998, 1998]
        );
    }

    proptest! {
        #[test]
        fn segmentation_of_any_payload_at_any_size(
            len in 0usize..5000,
            size in 1u16..2000,
            v6: bool,
            blank: bool,
        ) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
            let mut f = flagged(v6, &payload);
            if blank {
                pseudo_header_checksum(&mut f).unwrap();
            }
            let segs = segments(&f, gso(v6, size)).unwrap();
            check_segments(&f, &segs, usize::from(size));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_fill_verifies(
            mut data in proptest::collection::vec(any::<u8>(), 0..200),
            ipv4 in any::<bool>(),
            size: u16,
        ) {
            // Steer half the inputs to a plausible IPv4 or IPv6 TCP/UDP header.
            if data.len() > 24 {
                data[12..14].copy_from_slice(if ipv4 { &[8, 0] } else { &[0x86, 0xdd] });
                data[14] = if ipv4 { 0x45 } else { 0x60 };
                if ipv4 { data[23] = if size % 2 == 0 { 6 } else { 17 } }
            }
            let _ = verify_checksum(&data);
            let _ = headers(&data);
            for kind in [GsoKind::TcpV4, GsoKind::TcpV6] {
                let _ = segment(&data, Gso { kind, size }, &mut |_| {});
            }
            let mut f = data.clone();
            let _ = pseudo_header_checksum(&mut f);
            if fill_checksum(&mut data).is_ok() {
                let h = headers(&data).unwrap();
                if !h.ipv6 {
                    Ipv4Packet::new_unchecked(&mut data[h.l3..]).fill_checksum();
                }
                prop_assert!(verify_checksum(&data));
            }
        }
    }
}
