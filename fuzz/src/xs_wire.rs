//! The xenstore wire framer (`pv_core::xs_wire`): the input is a byte stream as read
//! from a store ring.
//!
//! Properties: framing does not depend on how the stream is split (all at once, byte by
//! byte, in chunks of 7 give the same messages and end state); re-encoding the messages
//! gives back exactly the bytes they were framed from; a broken framer stopped at a
//! header whose length is over `XENSTORE_PAYLOAD_MAX` and stays broken. Payload helpers
//! (`strings`, `watch_event`, `XsError::parse`) take any payload.

use pv_core::xs_wire::{self, Framer, Header, Message, WireError, XsError, HEADER_LEN};

use crate::lies_within;

/// What framing a stream in pieces of `chunk` bytes gives: the messages, the error that
/// broke the framer (if any) and the bytes left buffered.
fn frame(data: &[u8], chunk: usize) -> (Vec<Message>, Option<WireError>, usize) {
    let mut f = Framer::new();
    let mut msgs = Vec::new();
    for mut piece in data.chunks(chunk) {
        loop {
            match f.feed(&mut piece) {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => {
                    assert!(piece.is_empty(), "framer stopped with input left");
                    break;
                }
                Err(e) => {
                    assert!(f.is_broken());
                    // Broken for good, whatever comes next.
                    assert_eq!(f.feed(&mut &b"more"[..]), Err(e));
                    return (msgs, Some(e), f.buffered());
                }
            }
            if piece.is_empty() {
                break;
            }
        }
    }
    (msgs, None, f.buffered())
}

pub fn check(data: &[u8]) {
    let whole = frame(data, data.len().max(1));
    assert_eq!(frame(data, 1), whole, "byte by byte");
    assert_eq!(frame(data, 7), whole, "in chunks of 7");
    let (msgs, err, buffered) = whole;

    let mut again = Vec::new();
    for m in &msgs {
        assert_eq!(m.payload.len(), m.header.len as usize);
        let bytes = xs_wire::encode(m.header.ty, m.header.req_id, m.header.tx_id, &m.payload)
            .expect("a framed payload fits");
        assert_eq!(Header::parse(&bytes), Ok(m.header));
        again.extend_from_slice(&bytes);
        payload_helpers(&m.payload);
    }
    assert_eq!(&data[..again.len()], &again[..], "re-encoding differs");
    let rest = &data[again.len()..];
    match err {
        None => assert_eq!(buffered, rest.len()),
        Some(e) => {
            assert!(matches!(e, WireError::PayloadTooLong { .. }));
            assert_eq!(Header::parse(&rest[..HEADER_LEN]), Err(e));
        }
    }
}

fn payload_helpers(payload: &[u8]) {
    let mut joined = Vec::new();
    for s in xs_wire::strings(payload) {
        assert!(!s.contains(&0));
        joined.extend_from_slice(s);
        joined.push(0);
    }
    let last_nul = payload.iter().rposition(|&b| b == 0).map_or(0, |i| i + 1);
    assert_eq!(joined, &payload[..last_nul]);
    if let Some((path, token)) = xs_wire::watch_event(payload) {
        assert!(lies_within(payload, path) && lies_within(payload, token));
    }
    if let Some(e) = XsError::parse(payload) {
        assert_eq!(XsError::parse(&e.payload()), Some(e));
    }
}
