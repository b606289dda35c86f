//! Helpers for the xenstored tests (a wire client over `receive`/`take_output`) and
//! the block tests (a vbd offering everything).
#![allow(dead_code)]

pub mod world;

use drivers_back::xenstore::{Access, Limits, Perm, Xenstored, XsError};
use pv_core::xs_wire::{self, Framer, Message, MsgType};

/// A store with dom0 and domUs 1 and 2 connected; each domU owns its home
/// `/local/domain/N` (others: no access), as a toolstack would set it up.
pub fn store() -> Xenstored {
    store_with(Limits::default())
}

pub fn store_with(limits: Limits) -> Xenstored {
    let mut xs = Xenstored::new(limits);
    xs.introduce(0).unwrap();
    for d in [1, 2] {
        add_domain(&mut xs, d);
    }
    xs
}

pub fn add_domain(xs: &mut Xenstored, d: u16) {
    let home = format!("/local/domain/{d}");
    xs.mkdir(0, &home).unwrap();
    xs.set_perms(0, &home, &[Perm::new(Access::None, d)])
        .unwrap();
    xs.introduce(d).unwrap();
}

/// Every complete message in `bytes` (which must hold whole messages only).
pub fn parse_all(bytes: &[u8]) -> Vec<Message> {
    let mut f = Framer::new();
    let mut out = Vec::new();
    let mut input = bytes;
    while !input.is_empty() {
        if let Some(m) = f.feed(&mut input).expect("xenstored sent a bad message") {
            out.push(m);
        }
    }
    assert_eq!(f.buffered(), 0, "partial message in output");
    out
}

/// Everything queued for `domid`.
pub fn drain(xs: &mut Xenstored, domid: u16) -> Vec<Message> {
    let bytes = xs.take_output(domid, usize::MAX);
    assert_eq!(xs.pending_output(domid), 0);
    parse_all(&bytes)
}

pub fn event_of(m: &Message) -> (String, String) {
    assert_eq!(m.header.ty, MsgType::WatchEvent, "not an event: {m:?}");
    assert_eq!((m.header.req_id, m.header.tx_id), (0, 0));
    let (p, t) = xs_wire::watch_event(&m.payload).expect("bad event payload");
    (
        String::from_utf8(p.to_vec()).unwrap(),
        String::from_utf8(t.to_vec()).unwrap(),
    )
}

/// Watch events queued for `domid` (asserting nothing else is).
pub fn events(xs: &mut Xenstored, domid: u16) -> Vec<(String, String)> {
    drain(xs, domid).iter().map(event_of).collect()
}

pub fn result_of(m: &Message) -> Result<Vec<u8>, XsError> {
    if m.header.ty == MsgType::Error {
        let e = XsError::parse(&m.payload).expect("unknown error name");
        assert_eq!(m.payload.last(), Some(&0), "error without NUL");
        Err(e)
    } else {
        Ok(m.payload.clone())
    }
}

/// Sends one request and returns its reply; watch events queued before or after it
/// are left aside in `events` order.
pub struct Exchange {
    pub reply: Result<Vec<u8>, XsError>,
    pub reply_header: pv_core::xs_wire::Header,
    pub events: Vec<(String, String)>,
}

pub fn exchange(xs: &mut Xenstored, domid: u16, ty: MsgType, tx: u32, payload: &[u8]) -> Exchange {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(100);
    let req_id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bytes = xs_wire::encode(ty, req_id, tx, payload).unwrap();
    xs.receive(domid, &bytes).expect("fatal");
    let msgs = drain(xs, domid);
    let mut replies = msgs.iter().filter(|m| m.header.ty != MsgType::WatchEvent);
    let reply = replies.next().expect("no reply");
    assert!(replies.next().is_none(), "two replies");
    assert_eq!(reply.header.req_id, req_id, "req_id not echoed");
    assert_eq!(reply.header.tx_id, tx, "tx_id not echoed");
    if reply.header.ty != MsgType::Error {
        assert_eq!(reply.header.ty, ty, "reply type differs from request");
    }
    let events = msgs
        .iter()
        .filter(|m| m.header.ty == MsgType::WatchEvent)
        .map(event_of)
        .collect();
    Exchange {
        reply: result_of(reply),
        reply_header: reply.header,
        events,
    }
}

pub fn req(
    xs: &mut Xenstored,
    domid: u16,
    ty: MsgType,
    tx: u32,
    payload: &[u8],
) -> Result<Vec<u8>, XsError> {
    exchange(xs, domid, ty, tx, payload).reply
}

/// Payload of NUL-terminated strings.
pub fn args(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p);
        out.push(0);
    }
    out
}

pub fn read(xs: &mut Xenstored, d: u16, tx: u32, path: &str) -> Result<Vec<u8>, XsError> {
    req(xs, d, MsgType::Read, tx, &args(&[path.as_bytes()]))
}

pub fn write(xs: &mut Xenstored, d: u16, tx: u32, path: &str, value: &[u8]) -> Result<(), XsError> {
    let mut p = args(&[path.as_bytes()]);
    p.extend_from_slice(value);
    req(xs, d, MsgType::Write, tx, &p).map(|r| assert_eq!(r, b"OK\0"))
}

pub fn mkdir(xs: &mut Xenstored, d: u16, tx: u32, path: &str) -> Result<(), XsError> {
    req(xs, d, MsgType::Mkdir, tx, &args(&[path.as_bytes()])).map(|r| assert_eq!(r, b"OK\0"))
}

pub fn rm(xs: &mut Xenstored, d: u16, tx: u32, path: &str) -> Result<(), XsError> {
    req(xs, d, MsgType::Rm, tx, &args(&[path.as_bytes()])).map(|r| assert_eq!(r, b"OK\0"))
}

pub fn dir(xs: &mut Xenstored, d: u16, tx: u32, path: &str) -> Result<Vec<String>, XsError> {
    let r = req(xs, d, MsgType::Directory, tx, &args(&[path.as_bytes()]))?;
    Ok(xs_wire::strings(&r)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect())
}

pub fn get_perms(xs: &mut Xenstored, d: u16, path: &str) -> Result<Vec<String>, XsError> {
    let r = req(xs, d, MsgType::GetPerms, 0, &args(&[path.as_bytes()]))?;
    Ok(xs_wire::strings(&r)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect())
}

pub fn set_perms(xs: &mut Xenstored, d: u16, path: &str, perms: &[&str]) -> Result<(), XsError> {
    let mut parts: Vec<&[u8]> = vec![path.as_bytes()];
    parts.extend(perms.iter().map(|p| p.as_bytes()));
    req(xs, d, MsgType::SetPerms, 0, &args(&parts)).map(|r| assert_eq!(r, b"OK\0"))
}

pub fn watch(xs: &mut Xenstored, d: u16, path: &str, token: &str) -> Exchange {
    exchange(
        xs,
        d,
        MsgType::Watch,
        0,
        &args(&[path.as_bytes(), token.as_bytes()]),
    )
}

pub fn unwatch(xs: &mut Xenstored, d: u16, path: &str, token: &str) -> Result<Vec<u8>, XsError> {
    req(
        xs,
        d,
        MsgType::Unwatch,
        0,
        &args(&[path.as_bytes(), token.as_bytes()]),
    )
}

pub fn tx_start(xs: &mut Xenstored, d: u16) -> Result<u32, XsError> {
    let r = req(xs, d, MsgType::TransactionStart, 0, b"\0")?;
    assert_eq!(r.last(), Some(&0));
    Ok(std::str::from_utf8(&r[..r.len() - 1])
        .unwrap()
        .parse()
        .unwrap())
}

pub fn tx_end(xs: &mut Xenstored, d: u16, tx: u32, commit: bool) -> Result<(), XsError> {
    let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
    req(xs, d, MsgType::TransactionEnd, tx, arg).map(|r| assert_eq!(r, b"OK\0"))
}

pub fn ev(path: &str, token: &str) -> (String, String) {
    (path.to_string(), token.to_string())
}

/// A vbd offering every feature of blkif.h, with 256 indirect segments (blkback sets
/// `sectors` from its device).
pub const ALL_FEATURES: pv_core::blkif::Disk = pv_core::blkif::Disk {
    sectors: 0,
    readonly: false,
    flush: true,
    barrier: true,
    discard: true,
    max_indirect_segments: 256,
};
