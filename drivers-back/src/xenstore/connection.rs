//! One domain's connection (C's `struct connection`): its request framer, its queue of
//! replies and watch events waiting for the response ring, its watches and its open
//! transactions.

use super::perms::Caller;
use super::quota::Limits;
use super::transaction::Transaction;
use super::watch::Watch;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use pv_core::xs_wire::{self, Framer, Message, MsgType, WireError, XsError};

#[derive(Debug)]
struct Outgoing {
    bytes: Vec<u8>,
    /// Bytes already handed out by `take`.
    sent: usize,
    event: bool,
}

#[derive(Debug)]
pub(crate) struct Connection {
    domid: u16,
    /// Domain this one is the device model of (`XS_SET_TARGET`).
    pub target: Option<u16>,
    framer: Framer,
    out: VecDeque<Outgoing>,
    out_bytes: usize,
    /// Replies queued and not completely taken (`quota_req_outstanding`).
    replies: u32,
    pub watches: Vec<Watch>,
    pub transactions: BTreeMap<u32, Transaction>,
    next_tx: u32,
    /// Disconnected after a protocol violation: no more input or output (C's
    /// `ignore_connection`). The domain stays introduced until released.
    pub broken: bool,
}

impl Connection {
    pub fn new(domid: u16) -> Connection {
        Connection {
            domid,
            target: None,
            framer: Framer::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            replies: 0,
            watches: Vec::new(),
            transactions: BTreeMap::new(),
            next_tx: 1,
            broken: false,
        }
    }

    pub fn caller(&self) -> Caller {
        Caller::new(self.domid, self.target)
    }

    /// Drops everything but the identity: watches, transactions, queued output and any
    /// partial request (C's `domain_conn_reset`, `ignore_connection`).
    pub fn reset(&mut self) {
        self.framer = Framer::new();
        self.out.clear();
        self.out_bytes = 0;
        self.replies = 0;
        self.watches.clear();
        self.transactions.clear();
    }

    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Option<Message>, WireError> {
        self.framer.feed(input)
    }

    /// Queues a reply echoing the request's ids. A payload too long for one message
    /// becomes an E2BIG error, as in C.
    pub fn reply(&mut self, ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) {
        let bytes = match xs_wire::encode(ty, req_id, tx_id, payload) {
            Ok(bytes) => bytes,
            Err(_) => {
                let err = XsError::E2BIG.payload();
                match xs_wire::encode(MsgType::Error, req_id, tx_id, &err) {
                    Ok(bytes) => bytes,
                    Err(_) => return,
                }
            }
        };
        self.push(bytes, false);
        self.replies += 1;
    }

    pub fn error(&mut self, req_id: u32, tx_id: u32, err: XsError) {
        self.reply(MsgType::Error, req_id, tx_id, &err.payload());
    }

    /// Queues a watch event (`path\0token\0`). An identical event still waiting is not
    /// queued twice (special events excepted), and an unprivileged domain's events are
    /// dropped once its queued output reaches the quota.
    pub fn event(&mut self, payload: &[u8], limits: &Limits) {
        let Ok(bytes) = xs_wire::encode(MsgType::WatchEvent, 0, 0, payload) else {
            return; // C does not send over-long events either.
        };
        if payload.first() != Some(&b'@')
            && self
                .out
                .iter()
                .any(|o| o.event && o.sent == 0 && o.bytes == bytes)
        {
            return;
        }
        if !self.caller().privileged()
            && self.out_bytes + bytes.len() > limits.output_bytes as usize
        {
            return;
        }
        self.push(bytes, true);
    }

    fn push(&mut self, bytes: Vec<u8>, event: bool) {
        self.out_bytes += bytes.len();
        self.out.push_back(Outgoing {
            bytes,
            sent: 0,
            event,
        });
    }

    pub fn pending(&self) -> usize {
        self.out_bytes
    }

    pub fn outstanding(&self) -> u32 {
        self.replies
    }

    /// Up to `max` bytes of queued output, in order.
    pub fn take(&mut self, max: usize) -> Vec<u8> {
        let mut taken = Vec::with_capacity(max.min(self.out_bytes));
        while taken.len() < max {
            let Some(front) = self.out.front_mut() else {
                break;
            };
            let n = (front.bytes.len() - front.sent).min(max - taken.len());
            taken.extend_from_slice(&front.bytes[front.sent..front.sent + n]);
            front.sent += n;
            self.out_bytes -= n;
            if front.sent == front.bytes.len() {
                if !front.event {
                    self.replies = self.replies.saturating_sub(1);
                }
                self.out.pop_front();
            }
        }
        taken
    }

    /// A transaction id not in use (never 0, which means "no transaction").
    pub fn new_tx_id(&mut self) -> u32 {
        loop {
            let id = self.next_tx;
            self.next_tx = self.next_tx.wrapping_add(1).max(1);
            if !self.transactions.contains_key(&id) {
                return id;
            }
        }
    }
}
