//! `pv_core::offload` on frames a guest or the wire sends: the checksum fill and check
//! and software TCP segmentation must take any bytes. Input: byte 0 picks the GSO kind
//! (bit 0: TCPv6) and whether the IPv4 header checksum is set right before the checks
//! (bit 1; random bytes seldom have one, and without it no filled frame verifies);
//! bytes 1 and 2 are the GSO size (little-endian); the rest is the Ethernet frame.
//!
//! Checked: nothing panics; a frame [`fill_checksum`] accepts then verifies (when its
//! IPv4 header checksum is right), and [`pseudo_header_checksum`] then `fill_checksum`
//! gives the same bytes; [`segment`] makes as many frames as [`segment_count`] says, or
//! fails without making any; one frame is the input with its checksum filled; several
//! all verify, carry the input's payload in order in pieces of the GSO size, and
//! advance the sequence number by it.

use pv_core::offload::{
    fill_checksum, headers, pseudo_header_checksum, segment, segment_count, verify_checksum, Gso,
    GsoKind,
};
use smoltcp::wire::{Ipv4Packet, TcpPacket};

use crate::Bytes;

pub fn check(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mode = b.u8();
    let size = b.u16();
    let mut frame = b.take(usize::MAX).to_vec();
    let kind = if mode & 1 == 0 {
        GsoKind::TcpV4
    } else {
        GsoKind::TcpV6
    };
    if mode & 2 != 0 {
        if let Ok(h) = headers(&frame) {
            if !h.ipv6 {
                Ipv4Packet::new_unchecked(&mut frame[h.l3..h.l4]).fill_checksum();
            }
        }
    }
    let _ = verify_checksum(&frame);

    let mut filled = frame.clone();
    let fill = fill_checksum(&mut filled);
    let mut blanked = frame.clone();
    let blank = pseudo_header_checksum(&mut blanked);
    assert_eq!(fill, blank, "fill and pseudo-header read the headers alike");
    if fill.is_ok() {
        assert_eq!(filled.len(), frame.len());
        if mode & 2 != 0 {
            assert!(
                verify_checksum(&filled),
                "a filled checksum does not verify"
            );
        }
        fill_checksum(&mut blanked).expect("fillable once, fillable again");
        assert_eq!(blanked, filled, "fill depends on what the field held");
    }

    let gso = Gso { kind, size };
    let mut segs = Vec::new();
    let result = segment(&frame, gso, &mut |s| segs.push(s));
    let count = segment_count(&frame, gso);
    match result {
        Err(e) => {
            assert_eq!(count, Err(e));
            assert!(segs.is_empty(), "segments passed before an error");
        }
        Ok(()) => {
            assert_eq!(count, Ok(segs.len()));
            let h = headers(&frame).expect("segmented, so parsed");
            if segs.len() == 1 {
                assert_eq!(segs[0], filled, "a frame that fits is only filled");
                return;
            }
            let orig = TcpPacket::new_unchecked(&frame[h.l4..h.l4 + h.l4_len]);
            let mut joined = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                assert!(verify_checksum(s), "segment {i} does not verify");
                let sh = headers(s).expect("a segment parses");
                let t = TcpPacket::new_unchecked(&s[sh.l4..sh.l4 + sh.l4_len]);
                let want = (orig.seq_number().0 as u32).wrapping_add(i as u32 * u32::from(size));
                assert_eq!(t.seq_number().0 as u32, want);
                let last = i == segs.len() - 1;
                assert!(t.payload().len() == usize::from(size) || last);
                joined.extend_from_slice(t.payload());
            }
            assert_eq!(joined, orig.payload(), "the payloads do not add up");
        }
    }
}
