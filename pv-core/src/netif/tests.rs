use super::*;
use std::vec;
use std::vec::Vec;

fn req(id: u16, gref: u32, offset: u16, size: u16, flags: TxFlags) -> netif_tx_request {
    netif_tx_request {
        gref,
        offset,
        flags: flags.0,
        id,
        size,
    }
}

fn parse(slots: &[netif_tx_request]) -> Result<TxPacket, TxError> {
    parse_tx(slots.len(), |i| slots[i])
}

fn write(pages: &[(u32, u16, u16)], meta: PacketMeta) -> Vec<netif_tx_request> {
    let ids: Vec<u16> = (0..pages.len() as u16).map(|i| 100 + i).collect();
    let mut out = Vec::new();
    tx_slots(pages, &ids, &meta, &mut |s| out.push(s));
    out
}

#[test]
fn the_two_directions_have_their_own_flag_bits() {
    // netif.h: NETTXF_csum_blank is bit 0, NETRXF_csum_blank bit 1; data_validated the
    // other way round.
    assert_eq!(TxFlags::CSUM_BLANK.0, 1);
    assert_eq!(TxFlags::DATA_VALIDATED.0, 2);
    assert_eq!(RxFlags::DATA_VALIDATED.0, 1);
    assert_eq!(RxFlags::CSUM_BLANK.0, 2);
    assert_eq!(TxFlags::MORE_DATA.0, RxFlags::MORE_DATA.0);
    assert_eq!(TxFlags::EXTRA_INFO.0, RxFlags::EXTRA_INFO.0);
    let blank = PacketMeta {
        csum_blank: true,
        ..Default::default()
    };
    assert_eq!(blank.tx_flags().0, 1);
    assert_eq!(blank.rx_flags().0, 2);
    let valid = PacketMeta {
        data_validated: true,
        ..Default::default()
    };
    assert_eq!(valid.tx_flags().0, 2);
    assert_eq!(valid.rx_flags().0, 1);
}

#[test]
fn a_front_ends_slots_parse_back_to_the_packet() {
    let meta = PacketMeta {
        csum_blank: true,
        data_validated: true,
        gso: Some(Gso {
            kind: GsoKind::TcpV4,
            size: 1448,
        }),
    };
    let pages = [(10, 64, 4032), (11, 0, 4096), (12, 0, 100)];
    let slots = write(&pages, meta);
    // First, its GSO extra-info, two fragments.
    assert_eq!(slots.len(), 4);
    assert_eq!(slots[0].size as usize, 4032 + 4096 + 100);
    let p = parse(&slots).unwrap();
    assert_eq!(p.len, 4032 + 4096 + 100);
    assert_eq!(p.extras, 1);
    assert_eq!(p.slots(), 4);
    assert_eq!(p.meta, meta);
    let frags: Vec<_> = p.frags.iter().map(|f| (f.gref, f.offset, f.size)).collect();
    assert_eq!(frags, pages);
    assert_eq!(
        p.frags.iter().map(|f| f.id).collect::<Vec<_>>(),
        [100, 101, 102]
    );
}

#[test]
fn extra_info_round_trips_through_both_rings() {
    let gso = Gso {
        kind: GsoKind::TcpV6,
        size: 1220,
    };
    let e = ExtraInfo::gso(gso);
    assert_eq!(ExtraInfo::from_tx_slot(&e.as_tx_slot()), e);
    assert_eq!(ExtraInfo::from_rx_slot(&e.as_rx_slot()), e);
    assert_eq!(e.as_gso(), Some(Ok(gso)));
    // Layout of netif_extra_info: type, flags, then u.gso.size (LE), u.gso.type.
    assert_eq!(e.to_bytes(), [1, 0, 0xc4, 0x04, 2, 0, 0, 0]);
}

#[test]
fn broken_extra_info_disconnects() {
    let first = req(1, 5, 0, 60, TxFlags::EXTRA_INFO);
    assert_eq!(parse(&[first]), Err(TxError::Fatal(TxFatal::MissingExtra)));
    let bad = ExtraInfo {
        kind: 0,
        more: false,
        data: [0; 6],
    };
    assert_eq!(
        parse(&[first, bad.as_tx_slot()]),
        Err(TxError::Fatal(TxFatal::BadExtraType(0)))
    );
    let beyond = ExtraInfo { kind: 5, ..bad };
    assert_eq!(
        parse(&[first, beyond.as_tx_slot()]),
        Err(TxError::Fatal(TxFatal::BadExtraType(5)))
    );
    // A chain that promises another extra-info that was never pushed.
    let chained = ExtraInfo {
        more: true,
        ..ExtraInfo::gso(Gso {
            kind: GsoKind::TcpV4,
            size: 1000,
        })
    };
    assert_eq!(
        parse(&[first, chained.as_tx_slot()]),
        Err(TxError::Fatal(TxFatal::MissingExtra))
    );
    let mut zero = ExtraInfo::gso(Gso {
        kind: GsoKind::TcpV4,
        size: 1,
    });
    zero.data[0] = 0;
    assert_eq!(
        parse(&[first, zero.as_tx_slot()]),
        Err(TxError::Fatal(TxFatal::GsoSizeZero))
    );
    let mut kind = ExtraInfo::gso(Gso {
        kind: GsoKind::TcpV4,
        size: 1000,
    });
    kind.data[2] = 7;
    assert_eq!(
        parse(&[first, kind.as_tx_slot()]),
        Err(TxError::Fatal(TxFatal::BadGsoType(7)))
    );
}

#[test]
fn multicast_control_is_answered_not_sent() {
    let first = req(9, 5, 0, 0, TxFlags::EXTRA_INFO);
    let add = ExtraInfo {
        kind: XEN_NETIF_EXTRA_TYPE_MCAST_ADD as u8,
        more: false,
        data: [0x01, 0, 0x5e, 0, 0, 1],
    };
    let p = parse(&[first, add.as_tx_slot()]).unwrap();
    assert_eq!(p.mcast, Some((true, [0x01, 0, 0x5e, 0, 0, 1])));
    assert_eq!((p.frags.len(), p.extras), (1, 1));
}

#[test]
fn slot_checks_follow_netback() {
    let more = TxFlags::MORE_DATA;
    // Shorter than an Ethernet header, zero included: dropped, not fatal.
    for size in [0, 13] {
        assert!(matches!(
            parse(&[req(1, 5, 0, size, TxFlags::default())]),
            Err(TxError::Drop { why: TxDrop::TooShort(s), slots: 1, .. }) if s == size
        ));
    }
    // The first slot's own data crosses its page: fatal.
    assert_eq!(
        parse(&[req(1, 5, 4000, 200, TxFlags::default())]),
        Err(TxError::Fatal(TxFatal::CrossPage {
            offset: 4000,
            size: 200
        }))
    );
    // The first slot's own part is what the fragments leave: 1000 - 900 = 100 at 4000
    // fits.
    let p = parse(&[
        req(1, 5, 3996, 1000, more),
        req(2, 6, 0, 900, TxFlags::default()),
    ])
    .unwrap();
    assert_eq!((p.frags[0].size, p.frags[1].size), (100, 900));
    // A fragment crossing its page.
    assert!(matches!(
        parse(&[
            req(1, 5, 0, 1000, more),
            req(2, 6, 3500, 900, TxFlags::default())
        ]),
        Err(TxError::Fatal(TxFatal::CrossPage { .. }))
    ));
    // A fragment larger than what is left: the packet is dropped, both slots answered.
    assert_eq!(
        parse(&[
            req(1, 5, 0, 100, more),
            req(2, 6, 0, 900, TxFlags::default())
        ]),
        Err(TxError::Drop {
            why: TxDrop::FragmentTooLarge,
            ids: vec![1, 2],
            extras: 0,
            slots: 2
        })
    );
    // more_data on the last slot pushed.
    assert_eq!(
        parse(&[req(1, 5, 0, 100, more), req(2, 6, 0, 50, more)]),
        Err(TxError::Fatal(TxFatal::MissingSlots { asked: 2 }))
    );
}

#[test]
fn slot_counts_drop_then_disconnect() {
    let frag = |i: u16, last: bool| {
        let f = if last {
            TxFlags::default()
        } else {
            TxFlags::MORE_DATA
        };
        req(i, 100 + i as u32, 0, 64, f)
    };
    let packet = |frags: usize| {
        let mut s = vec![req(0, 99, 0, (64 * (frags + 1)) as u16, TxFlags::MORE_DATA)];
        s.extend((1..=frags).map(|i| frag(i as u16, i == frags)));
        s
    };
    // The first and MAX_SLOTS fragments: taken.
    assert_eq!(
        parse(&packet(MAX_SLOTS)).unwrap().frags.len(),
        MAX_SLOTS + 1
    );
    // One more: dropped, every slot consumed and answered.
    match parse(&packet(MAX_SLOTS + 1)) {
        Err(TxError::Drop {
            why: TxDrop::TooManySlots,
            ids,
            slots,
            ..
        }) => {
            assert_eq!(slots, MAX_SLOTS + 2);
            assert_eq!(ids.len(), MAX_SLOTS + 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse(&packet(FATAL_SLOTS)),
        Err(TxError::Drop { .. })
    ));
    assert_eq!(
        parse(&packet(FATAL_SLOTS + 1)),
        Err(TxError::Fatal(TxFatal::TooManySlots))
    );
}

#[test]
fn parse_never_reads_past_what_was_pushed() {
    // Every prefix of a valid multi-slot packet: an error, never an out-of-range read.
    let meta = PacketMeta {
        gso: Some(Gso {
            kind: GsoKind::TcpV4,
            size: 1448,
        }),
        ..Default::default()
    };
    let slots = write(&[(1, 0, 4096), (2, 0, 4096), (3, 0, 10)], meta);
    for n in 1..slots.len() {
        let r = parse_tx(n, |i| {
            assert!(i < n, "read slot {i} of {n}");
            slots[i]
        });
        assert!(matches!(r, Err(TxError::Fatal(_))), "{n}: {r:?}");
    }
}

#[test]
fn macs_round_trip_and_bad_ones_are_refused() {
    let mac = [0x00, 0x16, 0x3e, 0xab, 0x0c, 0xff];
    assert_eq!(format_mac(&mac), "00:16:3e:ab:0c:ff");
    assert_eq!(parse_mac("00:16:3E:AB:0C:FF"), Some(mac));
    for bad in [
        "",
        "00:16:3e:ab:0c",
        "00:16:3e:ab:0c:ff:00",
        "00:16:3e:ab:0c:f",
        "00:16:3e:ab:0c:fff",
        "00-16-3e-ab-0c-ff",
        "00:16:3e:ab:0c:g0",
        "+0:16:3e:ab:0c:ff",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad:?}");
    }
}
