//! The client against a scripted store: a handler sees each request the client sends
//! and answers with whatever bytes the test wants, in any order, split anywhere.

use super::*;
use crate::store::NO_TX;
use crate::transport::Broken;
use std::boxed::Box;
use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;
use std::task::Wake;
use std::vec;

type Handler = Box<dyn FnMut(Message) -> Vec<Vec<u8>> + Send>;

struct Script {
    framer: StdMutex<Framer>,
    handler: StdMutex<Handler>,
    inbox: StdMutex<VecDeque<u8>>,
    /// Bytes handed out per `receive` (1: byte by byte).
    chunk: usize,
    fail_send: bool,
}

impl Script {
    fn new(handler: impl FnMut(Message) -> Vec<Vec<u8>> + Send + 'static) -> Script {
        Script {
            framer: StdMutex::new(Framer::new()),
            handler: StdMutex::new(Box::new(handler)),
            inbox: StdMutex::new(VecDeque::new()),
            chunk: usize::MAX,
            fail_send: false,
        }
    }
}

impl Transport for Script {
    fn send(&self, bytes: &[u8]) -> Result<usize, Broken> {
        if self.fail_send {
            return Err(Broken("test: send fails"));
        }
        let mut input = bytes;
        while let Some(m) = self.framer.lock().unwrap().feed(&mut input).unwrap() {
            for out in (self.handler.lock().unwrap())(m) {
                self.inbox.lock().unwrap().extend(out);
            }
        }
        Ok(bytes.len())
    }
    fn receive(&self, buf: &mut [u8]) -> Result<usize, Broken> {
        let mut inbox = self.inbox.lock().unwrap();
        let n = inbox.len().min(buf.len()).min(self.chunk);
        for (b, x) in buf.iter_mut().zip(inbox.drain(..n)) {
            *b = x;
        }
        Ok(n)
    }
    fn notify(&self) {}
}

fn reply(m: &Message, ty: MsgType, payload: &[u8]) -> Vec<u8> {
    xs_wire::encode(ty, m.header.req_id, m.header.tx_id, payload).unwrap()
}

fn event(path: &str, token: &str) -> Vec<u8> {
    let p = format!("{path}\0{token}\0");
    xs_wire::encode(MsgType::WatchEvent, 0, 0, p.as_bytes()).unwrap()
}

struct NoWake;
impl Wake for NoWake {
    fn wake(self: std::sync::Arc<Self>) {}
}

fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    let waker = std::sync::Arc::new(NoWake).into();
    f.poll(&mut Context::from_waker(&waker))
}

/// Runs a future the script completes without waiting.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = core::pin::pin!(f);
    for _ in 0..4 {
        if let Poll::Ready(v) = poll(f.as_mut()) {
            return v;
        }
    }
    panic!("future did not complete");
}

/// A store that answers reads with the path read back, and watches with OK.
fn echo(m: Message) -> Vec<Vec<u8>> {
    match m.header.ty {
        MsgType::Read => vec![reply(&m, MsgType::Read, &m.payload[..m.payload.len() - 1])],
        ty => vec![reply(&m, ty, b"OK\0")],
    }
}

#[test]
fn replies_find_their_requests_in_any_order() {
    let mut held: Option<Message> = None;
    let c = Client::new(Script::new(move |m| match held.take() {
        None => {
            held = Some(m);
            vec![]
        }
        // The second request is answered first, then the first.
        Some(first) => vec![
            reply(&m, MsgType::Read, b"second"),
            reply(&first, MsgType::Read, b"first"),
        ],
    }));
    let mut a = core::pin::pin!(c.read(NO_TX, "a"));
    let mut b = core::pin::pin!(c.read(NO_TX, "b"));
    assert!(poll(a.as_mut()).is_pending());
    assert_eq!(poll(b.as_mut()), Poll::Ready(Ok(b"second".to_vec())));
    assert_eq!(poll(a.as_mut()), Poll::Ready(Ok(b"first".to_vec())));
    assert!(c.conn.lock().replies.is_empty());
}

#[test]
fn replies_arrive_byte_by_byte() {
    let mut s = Script::new(echo);
    s.chunk = 1;
    let c = Client::new(s);
    assert_eq!(now(c.read(NO_TX, "device/vbd")), Ok(b"device/vbd".to_vec()));
}

#[test]
fn an_error_reply_is_its_errno() {
    let c = Client::new(Script::new(|m| {
        vec![reply(&m, MsgType::Error, b"ENOENT\0")]
    }));
    assert_eq!(now(c.read(NO_TX, "nope")), Err(XsError::ENOENT));
    let c = Client::new(Script::new(|m| vec![reply(&m, MsgType::Error, b"EWHAT\0")]));
    assert_eq!(now(c.read(NO_TX, "nope")), Err(XsError::EIO));
}

#[test]
fn stray_replies_and_events_are_dropped() {
    let c = Client::new(Script::new(|m| {
        let mut stray = m.clone();
        stray.header.req_id ^= 0x8000_0000;
        vec![
            reply(&stray, MsgType::Read, b"not yours"),
            event("/x", "nobody's token"),
            reply(&m, MsgType::Read, b"yours"),
            // A second reply to the same request.
            reply(&m, MsgType::Read, b"again"),
        ]
    }));
    assert_eq!(now(c.read(NO_TX, "x")), Ok(b"yours".to_vec()));
    let conn = c.conn.lock();
    assert!(conn.replies.is_empty() && conn.events.is_empty());
    assert!(conn.broken.is_none());
}

#[test]
fn a_reply_for_a_request_given_up_on_is_dropped() {
    let held = std::sync::Arc::new(StdMutex::new(Vec::new()));
    let h = held.clone();
    let c = Client::new(Script::new(move |m| {
        if m.payload.starts_with(b"slow") {
            h.lock().unwrap().push(m);
            vec![]
        } else {
            // The slow request's answer comes late, just before this one's.
            let mut out: Vec<Vec<u8>> = h
                .lock()
                .unwrap()
                .drain(..)
                .map(|s| reply(&s, MsgType::Read, b"late"))
                .collect();
            out.push(reply(&m, MsgType::Read, b"quick"));
            out
        }
    }));
    {
        let mut slow = core::pin::pin!(c.read(NO_TX, "slow"));
        assert!(poll(slow.as_mut()).is_pending());
    }
    assert_eq!(now(c.read(NO_TX, "quick")), Ok(b"quick".to_vec()));
    assert!(c.conn.lock().replies.is_empty());
    assert!(c.waiters.lock().is_empty());
}

#[test]
fn watch_events_merge_per_path() {
    let c = Client::new(Script::new(|m| {
        let mut out = echo(m.clone());
        if m.header.ty == MsgType::Watch {
            let token = xs_wire::strings(&m.payload).nth(1).unwrap();
            let token = core::str::from_utf8(token).unwrap();
            for p in ["/a", "/a/b", "/a", "/a/b", "/a"] {
                out.push(event(p, token));
            }
        }
        out
    }));
    let mut w = now(c.watch("/a")).unwrap();
    assert_eq!(now(w.next()), Ok(String::from("/a")));
    assert_eq!(now(w.next()), Ok(String::from("/a/b")));
    let mut next = core::pin::pin!(w.next());
    assert!(poll(next.as_mut()).is_pending());
}

#[test]
fn dropping_a_watch_forgets_its_token() {
    let c = Client::new(Script::new(echo));
    let w = now(c.watch("/a")).unwrap();
    assert_eq!(c.conn.lock().events.len(), 1);
    drop(w);
    assert!(c.conn.lock().events.is_empty());
    assert!(c.waiters.lock().is_empty());
}

#[test]
fn a_malformed_message_closes_the_connection() {
    let c = Client::new(Script::new(|_| {
        // A header claiming a payload longer than xenstore allows.
        let mut h = vec![0u8; 16];
        h[12..16].copy_from_slice(&100_000u32.to_le_bytes());
        vec![h]
    }));
    assert_eq!(now(c.read(NO_TX, "x")), Err(XsError::EIO));
    assert!(c.broken().unwrap().contains("malformed"));
    // Everything after fails at once, and nothing more is sent.
    assert_eq!(now(c.write(NO_TX, "x", b"1")), Err(XsError::EIO));
    assert!(now(c.watch("/x")).is_err());
    assert!(c.conn.lock().out.is_empty());
}

#[test]
fn a_broken_transport_fails_every_request() {
    let mut s = Script::new(echo);
    s.fail_send = true;
    let c = Client::new(s);
    assert_eq!(now(c.read(NO_TX, "x")), Err(XsError::EIO));
    assert_eq!(c.broken().as_deref(), Some("test: send fails"));
}

#[test]
fn transactions_and_domain_paths_are_parsed() {
    let c = Client::new(Script::new(|m| match m.header.ty {
        MsgType::TransactionStart => vec![reply(&m, m.header.ty, b"17\0")],
        MsgType::GetDomainPath => vec![reply(&m, m.header.ty, b"/local/domain/3\0")],
        ty => vec![reply(&m, ty, b"OK\0")],
    }));
    assert_eq!(now(c.transaction_start()), Ok(Tx(17)));
    assert_eq!(now(c.get_domain_path(3)).as_deref(), Ok("/local/domain/3"));
    for bad in [&b"0\0"[..], b"x\0", b"\xff\0"] {
        let bad = bad.to_vec();
        let c = Client::new(Script::new(move |m| vec![reply(&m, m.header.ty, &bad)]));
        assert_eq!(now(c.transaction_start()), Err(XsError::EINVAL));
    }
}
