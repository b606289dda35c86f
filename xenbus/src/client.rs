//! An async xenstore client (`io/xs_wire.h`; Linux's `xenbus_xs.c`, Mini-OS's
//! `xenbus.c`) over any [`Transport`]: read, write, mkdir, rm, directory, permissions,
//! watches and transactions.
//!
//! Any number of tasks share the connection: each request gets an id, its bytes queue
//! for the transport, and the reply carrying its id completes it. Watch events go to
//! the [`Watching`] registered with their token. Whoever polls moves bytes both ways;
//! the owner calls [`Client::wake_all`] when the store signals (from an event handler:
//! the waker table and the connection are locked only under [`Transport::masked`], so
//! a handler may even poll a store task of its own).
//!
//! The store is trusted no more than needed: a reply to a request nobody made (or
//! whose caller gave up) is dropped, as is an event for a token nobody holds; events
//! for a path already queued are merged (a watcher reads the node anyway), so a
//! flood of events costs at most one entry per path. A broken transport or a malformed
//! message closes the connection, and every request then fails with `EIO`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use pv_core::xs_wire::{self, Framer, Message, MsgType, XsError};
use spin::Mutex;

use crate::store::{self, Store, Tx};
use crate::transport::Transport;

/// One connection to xenstore.
pub struct Client<T> {
    transport: T,
    conn: Mutex<Conn>,
    /// Tasks waiting for the store; locked only under `transport.masked`.
    waiters: Mutex<BTreeMap<u64, Waker>>,
    next_req: AtomicU32,
    next_waiter: AtomicU64,
    next_token: AtomicU64,
}

struct Conn {
    /// Request bytes the transport has not taken yet.
    out: VecDeque<u8>,
    framer: Framer,
    /// Requests in flight by id, with their reply once it came.
    replies: BTreeMap<u32, Option<Message>>,
    /// Watch events by token: the paths that fired, each once.
    events: BTreeMap<String, VecDeque<String>>,
    /// Why the connection closed.
    broken: Option<String>,
}

impl<T: Transport> Client<T> {
    pub fn new(transport: T) -> Self {
        Client {
            transport,
            conn: Mutex::new(Conn {
                out: VecDeque::new(),
                framer: Framer::new(),
                replies: BTreeMap::new(),
                events: BTreeMap::new(),
                broken: None,
            }),
            waiters: Mutex::new(BTreeMap::new()),
            next_req: AtomicU32::new(1),
            next_waiter: AtomicU64::new(1),
            next_token: AtomicU64::new(1),
        }
    }

    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Runs `f` on the connection's state, under [`Transport::masked`]: a guest may
    /// poll a store task from its event handler (libos's power control does), so the
    /// lock must never be held where that handler can interrupt.
    fn with_conn<R>(&self, f: impl FnOnce(&mut Conn) -> R) -> R {
        self.transport.masked(|| f(&mut self.conn.lock()))
    }

    /// Why the connection closed, if it did.
    pub fn broken(&self) -> Option<String> {
        self.with_conn(|c| c.broken.clone())
    }

    /// Wakes every task waiting for the store: call it when the store signals.
    pub fn wake_all(&self) {
        self.transport.masked(|| {
            for w in self.waiters.lock().values() {
                w.wake_by_ref();
            }
        })
    }

    /// Moves bytes both ways; notifies the store when any moved. Returns whether any
    /// did.
    pub fn pump(&self) -> bool {
        let moved = self.with_conn(|c| self.pump_locked(c));
        if moved {
            self.transport.notify();
        }
        moved
    }

    fn pump_locked(&self, c: &mut Conn) -> bool {
        if c.broken.is_some() {
            return false;
        }
        let mut moved = false;
        while !c.out.is_empty() {
            let (a, _) = c.out.as_slices();
            match self.transport.send(a) {
                Ok(0) => break,
                Ok(n) => {
                    c.out.drain(..n.min(a.len()));
                    moved = true;
                }
                Err(e) => return self.fail(c, String::from(e.0)),
            }
        }
        let mut buf = [0u8; 512];
        loop {
            let n = match self.transport.receive(&mut buf) {
                Ok(0) => break,
                Ok(n) => n.min(buf.len()),
                Err(e) => return self.fail(c, String::from(e.0)),
            };
            moved = true;
            let mut input = &buf[..n];
            while !input.is_empty() {
                match c.framer.feed(&mut input) {
                    Ok(Some(m)) => deliver(c, m),
                    Ok(None) => {}
                    Err(e) => return self.fail(c, format!("malformed message: {e:?}")),
                }
            }
        }
        moved
    }

    fn fail(&self, c: &mut Conn, why: String) -> bool {
        c.broken = Some(why);
        c.replies.clear();
        c.out.clear();
        // Nothing more will arrive: every waiter must see the error now.
        self.wake_all();
        true
    }

    fn register(&self, waiter: u64, waker: &Waker) {
        self.transport.masked(|| {
            let mut w = self.waiters.lock();
            match w.get_mut(&waiter) {
                Some(old) if old.will_wake(waker) => {}
                Some(old) => old.clone_from(waker),
                None => {
                    w.insert(waiter, waker.clone());
                }
            }
        })
    }

    fn unregister(&self, waiter: u64) {
        self.transport.masked(|| {
            self.waiters.lock().remove(&waiter);
        })
    }

    fn new_waiter(&self) -> u64 {
        self.next_waiter.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request of type `ty` in transaction `tx` and waits for its reply's
    /// payload (an `XS_ERROR` reply is its error).
    pub async fn request(&self, ty: MsgType, tx: Tx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
        let req_id = self.with_conn(|c| {
            if c.broken.is_some() {
                return Err(XsError::EIO);
            }
            // Ids are free-running; skip one still in flight after a wrap.
            let mut id = self.next_req.fetch_add(1, Ordering::Relaxed);
            while c.replies.contains_key(&id) {
                id = self.next_req.fetch_add(1, Ordering::Relaxed);
            }
            let bytes = xs_wire::encode(ty, id, tx.0, payload).map_err(|_| XsError::E2BIG)?;
            c.replies.insert(id, None);
            c.out.extend(bytes);
            Ok(id)
        })?;
        Request {
            client: self,
            req_id,
            waiter: self.new_waiter(),
        }
        .await
    }
}

/// Files a message that arrived: a reply for its request, an event for its watch.
fn deliver(c: &mut Conn, m: Message) {
    if m.header.ty == MsgType::WatchEvent {
        let Some((path, token)) = xs_wire::watch_event(&m.payload) else {
            return;
        };
        let Some(q) = c.events.get_mut(&*String::from_utf8_lossy(token)) else {
            return;
        };
        let path = String::from_utf8_lossy(path);
        if !q.iter().any(|p| *p == path) {
            q.push_back(path.into_owned());
        }
    } else if let Some(slot) = c.replies.get_mut(&m.header.req_id) {
        // A second reply to one request is as unasked for as one to no request.
        if slot.is_none() {
            *slot = Some(m);
        }
    }
}

/// One request in flight.
struct Request<'a, T: Transport> {
    client: &'a Client<T>,
    req_id: u32,
    waiter: u64,
}

impl<T: Transport> Future for Request<'_, T> {
    type Output = Result<Vec<u8>, XsError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let client = self.client;
        client.register(self.waiter, cx.waker());
        let req_id = self.req_id;
        client.with_conn(|c| {
            if client.pump_locked(c) {
                client.transport.notify();
            }
            if c.broken.is_some() {
                return Poll::Ready(Err(XsError::EIO));
            }
            if let Some(Some(_)) = c.replies.get(&req_id) {
                let Some(Some(m)) = c.replies.remove(&req_id) else {
                    unreachable!()
                };
                return Poll::Ready(if m.header.ty == MsgType::Error {
                    Err(XsError::parse(&m.payload).unwrap_or(XsError::EIO))
                } else {
                    Ok(m.payload)
                });
            }
            Poll::Pending
        })
    }
}

impl<T: Transport> Drop for Request<'_, T> {
    fn drop(&mut self) {
        self.client.unregister(self.waiter);
        // A caller that gave up: its reply, now or later, is dropped.
        let req_id = self.req_id;
        self.client.with_conn(|c| c.replies.remove(&req_id));
    }
}

fn path_payload(path: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p
}

/// A NUL-separated list (`XS_DIRECTORY`'s, `XS_GET_PERMS`'s reply).
fn list(payload: &[u8]) -> Vec<String> {
    xs_wire::strings(payload)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A reply that is one string (`XS_GET_DOMAIN_PATH`, `XS_TRANSACTION_START`).
fn one_string(p: &[u8]) -> Result<&str, XsError> {
    let s = p.strip_suffix(&[0]).unwrap_or(p);
    core::str::from_utf8(s).map_err(|_| XsError::EINVAL)
}

/// A registered watch of a [`Client`]: yields the paths that changed under its node.
pub struct Watching<'a, T: Transport> {
    client: &'a Client<T>,
    path: String,
    token: String,
    waiter: u64,
}

impl<T: Transport> Watching<'_, T> {
    /// See [`store::Watch::next`].
    pub async fn next(&mut self) -> Result<String, XsError> {
        poll_fn(|cx| {
            let client = self.client;
            client.register(self.waiter, cx.waker());
            let token = &self.token;
            client.with_conn(|c| {
                if client.pump_locked(c) {
                    client.transport.notify();
                }
                if let Some(p) = c.events.get_mut(token).and_then(|q| q.pop_front()) {
                    return Poll::Ready(Ok(p));
                }
                if c.broken.is_some() {
                    return Poll::Ready(Err(XsError::EIO));
                }
                Poll::Pending
            })
        })
        .await
    }

    /// Removes the watch from the store.
    pub async fn unwatch(self) -> Result<(), XsError> {
        let mut p = path_payload(&self.path);
        p.extend_from_slice(self.token.as_bytes());
        p.push(0);
        self.client
            .request(MsgType::Unwatch, store::NO_TX, &p)
            .await
            .map(|_| ())
    }
}

impl<T: Transport> store::Watch for Watching<'_, T> {
    async fn next(&mut self) -> Result<String, XsError> {
        Watching::next(self).await
    }
    async fn unwatch(self) -> Result<(), XsError> {
        Watching::unwatch(self).await
    }
}

impl<T: Transport> Drop for Watching<'_, T> {
    fn drop(&mut self) {
        self.client.unregister(self.waiter);
        let token = &self.token;
        self.client.with_conn(|c| c.events.remove(token));
    }
}

impl<T: Transport> Store for Client<T> {
    type Watch<'a>
        = Watching<'a, T>
    where
        T: 'a;

    async fn read(&self, tx: Tx, path: &str) -> Result<Vec<u8>, XsError> {
        self.request(MsgType::Read, tx, &path_payload(path)).await
    }

    async fn write(&self, tx: Tx, path: &str, value: &[u8]) -> Result<(), XsError> {
        let mut p = path_payload(path);
        p.extend_from_slice(value);
        self.request(MsgType::Write, tx, &p).await.map(|_| ())
    }

    async fn mkdir(&self, tx: Tx, path: &str) -> Result<(), XsError> {
        let p = path_payload(path);
        self.request(MsgType::Mkdir, tx, &p).await.map(|_| ())
    }

    async fn rm(&self, tx: Tx, path: &str) -> Result<(), XsError> {
        let p = path_payload(path);
        self.request(MsgType::Rm, tx, &p).await.map(|_| ())
    }

    async fn directory(&self, tx: Tx, path: &str) -> Result<Vec<String>, XsError> {
        let p = path_payload(path);
        self.request(MsgType::Directory, tx, &p)
            .await
            .map(|r| list(&r))
    }

    async fn get_perms(&self, tx: Tx, path: &str) -> Result<Vec<String>, XsError> {
        let p = path_payload(path);
        self.request(MsgType::GetPerms, tx, &p)
            .await
            .map(|r| list(&r))
    }

    async fn set_perms(&self, tx: Tx, path: &str, perms: &[&str]) -> Result<(), XsError> {
        let mut p = path_payload(path);
        for perm in perms {
            p.extend_from_slice(perm.as_bytes());
            p.push(0);
        }
        self.request(MsgType::SetPerms, tx, &p).await.map(|_| ())
    }

    async fn get_domain_path(&self, domid: u16) -> Result<String, XsError> {
        let id = format!("{domid}");
        let p = self
            .request(MsgType::GetDomainPath, store::NO_TX, &path_payload(&id))
            .await?;
        one_string(&p).map(String::from)
    }

    async fn transaction_start(&self) -> Result<Tx, XsError> {
        let p = self
            .request(MsgType::TransactionStart, store::NO_TX, &[0])
            .await?;
        match one_string(&p)?.parse() {
            Ok(0) | Err(_) => Err(XsError::EINVAL),
            Ok(id) => Ok(Tx(id)),
        }
    }

    async fn transaction_end(&self, tx: Tx, commit: bool) -> Result<(), XsError> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(MsgType::TransactionEnd, tx, arg)
            .await
            .map(|_| ())
    }

    async fn watch(&self, path: &str) -> Result<Watching<'_, T>, XsError> {
        let token = format!("xb-{}", self.next_token.fetch_add(1, Ordering::Relaxed));
        self.with_conn(|c| {
            if c.broken.is_some() {
                return Err(XsError::EIO);
            }
            c.events.insert(token.clone(), VecDeque::new());
            Ok(())
        })?;
        // From here, dropping the Watching removes the token, whatever happens below.
        let w = Watching {
            client: self,
            path: String::from(path),
            token,
            waiter: self.new_waiter(),
        };
        let mut p = path_payload(path);
        p.extend_from_slice(w.token.as_bytes());
        p.push(0);
        self.request(MsgType::Watch, store::NO_TX, &p).await?;
        Ok(w)
    }
}

#[cfg(test)]
mod tests;
