//! The byte interface: framing split anywhere, malformed and oversized messages.

mod common;
use common::*;
use drivers_back::xenstore::{Fatal, XsError};
use pv_core::xs_wire::{self, MsgType};

/// A session of requests from domain 1.
fn session() -> Vec<u8> {
    let mut s = Vec::new();
    let reqs: [(MsgType, &[u8]); 7] = [
        (MsgType::Write, b"a/b\0hello"),
        (MsgType::Watch, b"a\0tok\0"),
        (MsgType::Read, b"a/b\0"),
        (MsgType::Directory, b"a\0"),
        (MsgType::Write, b"a/c\0"),
        (MsgType::Read, b"missing\0"),
        (MsgType::Rm, b"a\0"),
    ];
    for (i, (ty, p)) in reqs.iter().enumerate() {
        s.extend(xs_wire::encode(*ty, i as u32 + 1, 0, p).unwrap());
    }
    s
}

#[test]
fn split_at_every_byte_boundary() {
    let stream = session();
    let mut whole = store();
    whole.receive(1, &stream).unwrap();
    let expected = whole.take_output(1, usize::MAX);
    // 7 replies; events: the registration one (still pending, so rm's identical event
    // merges into it) and a/c's.
    assert_eq!(parse_all(&expected).len(), 7 + 2);
    for cut in 0..=stream.len() {
        let mut xs = store();
        xs.receive(1, &stream[..cut]).unwrap();
        xs.receive(1, &stream[cut..]).unwrap();
        assert_eq!(xs.take_output(1, usize::MAX), expected, "cut at {cut}");
    }
    // Byte by byte, output taken in odd-sized pieces.
    let mut xs = store();
    for b in &stream {
        xs.receive(1, std::slice::from_ref(b)).unwrap();
    }
    let mut out = Vec::new();
    while xs.pending_output(1) > 0 {
        let piece = xs.take_output(1, 7);
        assert!(!piece.is_empty() && piece.len() <= 7);
        out.extend(piece);
    }
    assert_eq!(out, expected);
    // Output taken while input still arrives: the registration event is gone before
    // rm fires, so rm's event is not merged into it this time.
    let mut xs = store();
    let mut out = Vec::new();
    for b in &stream {
        xs.receive(1, std::slice::from_ref(b)).unwrap();
        out.extend(xs.take_output(1, 5));
    }
    out.extend(xs.take_output(1, usize::MAX));
    let msgs = parse_all(&out);
    let replies: Vec<u32> = msgs
        .iter()
        .filter(|m| m.header.ty != MsgType::WatchEvent)
        .map(|m| m.header.req_id)
        .collect();
    assert_eq!(replies, [1, 2, 3, 4, 5, 6, 7]);
    let evs: Vec<_> = msgs
        .iter()
        .filter(|m| m.header.ty == MsgType::WatchEvent)
        .map(event_of)
        .collect();
    assert_eq!(evs, [ev("a", "tok"), ev("a/c", "tok"), ev("a", "tok")]);
}

#[test]
fn oversized_message_is_fatal() {
    let mut xs = store();
    watch(&mut xs, 1, "x", "t");
    let tx = tx_start(&mut xs, 1).unwrap();
    write(&mut xs, 1, tx, "x", b"").unwrap();
    xs.receive(1, &xs_wire::encode(MsgType::Read, 1, 0, b"x\0").unwrap())
        .unwrap();
    let mut hdr = xs_wire::Header {
        ty: MsgType::Write,
        req_id: 1,
        tx_id: 0,
        len: 0,
    }
    .to_bytes();
    hdr[12..16].copy_from_slice(&4097u32.to_ne_bytes());
    assert_eq!(
        xs.receive(1, &hdr),
        Err(Fatal::PayloadTooLong { len: 4097 })
    );
    // Disconnected: nothing queued, nothing accepted, its state dropped.
    assert_eq!(xs.pending_output(1), 0);
    assert!(!xs.wants_input(1));
    assert_eq!(xs.receive(1, b"anything"), Err(Fatal::NotConnected));
    xs.write(0, "/local/domain/1/x", b"").unwrap();
    assert_eq!(xs.pending_output(1), 0);
    xs.check_invariants().unwrap();
    // Other domains are unaffected; the domain is still known until released.
    write(&mut xs, 2, 0, "fine", b"").unwrap();
    assert!(xs.is_introduced(1));
    // Introducing it again (C's XS_INTRODUCE of a known domain) reconnects it afresh.
    xs.introduce(1).unwrap();
    assert_eq!(read(&mut xs, 1, 0, "x").unwrap(), b"");
    assert_eq!(read(&mut xs, 1, tx, "x"), Err(XsError::ENOENT));
}

#[test]
fn largest_message_is_fine() {
    let mut xs = store();
    let mut p = b"/local/domain/0/big\0".to_vec();
    p.resize(xs_wire::PAYLOAD_MAX, b'v');
    let bytes = xs_wire::encode(MsgType::Write, 3, 0, &p).unwrap();
    xs.receive(0, &bytes).unwrap();
    let out = drain(&mut xs, 0);
    assert_eq!(out[0].payload, b"OK\0");
    assert_eq!(
        xs.read(0, "/local/domain/0/big").unwrap().len(),
        xs_wire::PAYLOAD_MAX - 20
    );
}

#[test]
fn unknown_connections() {
    let mut xs = store();
    assert_eq!(xs.receive(9, b"x"), Err(Fatal::NotConnected));
    assert_eq!(xs.pending_output(9), 0);
    assert!(xs.take_output(9, 100).is_empty());
    assert!(!xs.wants_input(9));
    assert_eq!(xs.introduce(0x7ff0), Err(XsError::EINVAL));
}

#[test]
fn garbage_payloads_get_error_replies() {
    let mut xs = store();
    let garbage: [&[u8]; 6] = [
        b"",
        b"\0",
        b"\xff\xfe\0",
        b"\0\0\0",
        b"a\0b\0c\0",
        &[0x80; 100],
    ];
    let types = [
        MsgType::Read,
        MsgType::Write,
        MsgType::Mkdir,
        MsgType::Rm,
        MsgType::Directory,
        MsgType::DirectoryPart,
        MsgType::GetPerms,
        MsgType::SetPerms,
        MsgType::Watch,
        MsgType::Unwatch,
        MsgType::TransactionEnd,
        MsgType::GetDomainPath,
    ];
    for ty in types {
        for g in garbage {
            // One reply each, connection alive.
            let _ = req(&mut xs, 1, ty, 0, g);
        }
    }
    write(&mut xs, 1, 0, "alive", b"").unwrap();
    xs.check_invariants().unwrap();
}
