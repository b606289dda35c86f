//! Store messages from a hostile xenstored into the `xenbus` crate's client: replies
//! and watch events with any type, id, token and payload, split anywhere, while tasks
//! make requests, watch and give up.
//!
//! Input: a program; each byte `op % 4` and its arguments:
//! 0 a task starts a read (kept pending until answered or dropped),
//! 1 the store sends a message (u8 type, u8 id selector: below 128 the id of the n-th
//!   request it received, else a raw u32 id; u8 payload length; payload bytes), split
//!   into chunks of (u8 % 16 + 1) bytes,
//! 2 the store sends raw bytes (u8 length, bytes),
//! 3 the oldest pending read is dropped (its caller gave up).
//! Every step ends with a poll of every pending read and of a watch registered at the
//! start.
//!
//! Properties: nothing panics (no message, however malformed, unasked for or
//! duplicated, reaches an assertion in the client); once the connection broke every
//! request fails with EIO at once; the watch's queue holds each path at most once.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::Wake;

use pv_core::xs_wire::{self, Framer, MsgType, XsError};
use xenbus::transport::{Broken, Transport};
use xenbus::{Client, Store, NO_TX};

use crate::Bytes;

struct Wire {
    framer: Framer,
    /// Request ids the store received, in order.
    received: Vec<u32>,
    inbox: VecDeque<u8>,
    chunk: usize,
}

struct Hostile(Arc<Mutex<Wire>>);

impl Transport for Hostile {
    fn send(&self, bytes: &[u8]) -> Result<usize, Broken> {
        let mut w = self.0.lock().unwrap();
        let mut input = bytes;
        while let Ok(Some(m)) = w.framer.feed(&mut input) {
            w.received.push(m.header.req_id);
        }
        Ok(bytes.len())
    }
    fn receive(&self, buf: &mut [u8]) -> Result<usize, Broken> {
        let mut w = self.0.lock().unwrap();
        let n = w.inbox.len().min(buf.len()).min(w.chunk.max(1));
        for (b, x) in buf.iter_mut().zip(w.inbox.drain(..n)) {
            *b = x;
        }
        Ok(n)
    }
    fn notify(&self) {}
}

struct NoWake;
impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

type Read<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, XsError>> + 'a>>;

pub fn check(data: &[u8]) {
    let wire = Arc::new(Mutex::new(Wire {
        framer: Framer::new(),
        received: Vec::new(),
        inbox: VecDeque::new(),
        chunk: 64,
    }));
    let client = Client::new(Hostile(wire.clone()));
    let waker = Arc::new(NoWake).into();
    let mut cx = Context::from_waker(&waker);
    let mut watch = {
        let mut w = Box::pin(client.watch("/w"));
        match w.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(w)) => Some(w),
            _ => None,
        }
    };
    let mut reads: Vec<Read> = Vec::new();
    let mut input = Bytes::new(data);
    while !input.is_empty() {
        match input.u8() % 4 {
            0 => reads.push(Box::pin(client.read(NO_TX, "/r"))),
            1 => {
                let ty = MsgType::from_raw(u32::from(input.u8() % 32));
                let sel = input.u8();
                let id = {
                    let w = wire.lock().unwrap();
                    if sel < 128 && !w.received.is_empty() {
                        w.received[sel as usize % w.received.len()]
                    } else {
                        input.u32()
                    }
                };
                let len = usize::from(input.u8());
                let payload = input.take(len).to_vec();
                let chunk = usize::from(input.u8() % 16) + 1;
                if let Ok(bytes) = xs_wire::encode(ty, id, 0, &payload) {
                    let mut w = wire.lock().unwrap();
                    w.chunk = chunk;
                    w.inbox.extend(bytes);
                }
            }
            2 => {
                let len = usize::from(input.u8());
                let raw = input.take(len).to_vec();
                wire.lock().unwrap().inbox.extend(raw);
            }
            _ => {
                if !reads.is_empty() {
                    drop(reads.remove(0));
                }
            }
        }
        reads.retain_mut(|r| match r.as_mut().poll(&mut cx) {
            Poll::Ready(_) => false,
            Poll::Pending => true,
        });
        if let Some(w) = watch.as_mut() {
            let mut seen = Vec::new();
            loop {
                let mut next = Box::pin(w.next());
                match next.as_mut().poll(&mut cx) {
                    Poll::Ready(Ok(p)) => {
                        assert!(!seen.contains(&p), "{p} queued twice");
                        seen.push(p);
                    }
                    _ => break,
                }
            }
        }
        if client.broken().is_some() {
            let mut r = Box::pin(client.read(NO_TX, "/x"));
            assert_eq!(r.as_mut().poll(&mut cx), Poll::Ready(Err(XsError::EIO)));
        }
    }
}
