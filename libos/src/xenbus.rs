//! An async xenstore client over the domain's store ring (`io/xs_wire.h`,
//! `io/xenbus.h`; the page and port come from `start_info.store_mfn`/`store_evtchn`):
//! read, write, mkdir, rm, directory, permissions, watches and transactions.
//!
//! Requests of any number of tasks share the ring: each gets a request id, its bytes
//! queue for the request ring, and the reply with its id completes it. Watch events
//! go to the [`Watch`] registered with their token. Whoever polls moves bytes both
//! ways ([`pump`]); the store port's event handler only wakes the waiting tasks
//! (wakers are safe to call in upcall context; their table is only locked with
//! events masked).
//!
//! The ring's indices come from the store, which we trust no more than needed: bad
//! indices or a malformed message break the connection, and every request then fails
//! with `EIO`.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use pv_core::byte_ring::ByteRing;
use pv_core::page::SharedPage;
use pv_core::xs_wire::{self, Framer, Message, MsgType, XsError};
use spin::Mutex;

use crate::events::{self, Port};
use crate::hypercall;
use crate::platform;

struct Conn {
    page: SharedPage<'static>,
    port: Port,
    /// Request bytes not yet in the ring.
    out: VecDeque<u8>,
    framer: Framer,
    replies: BTreeMap<u32, Message>,
    /// Watch events by token: the paths that fired.
    events: BTreeMap<String, VecDeque<String>>,
    broken: bool,
}

static CONN: Mutex<Option<Conn>> = Mutex::new(None);
static NEXT_REQ: AtomicU32 = AtomicU32::new(1);
static NEXT_WAITER: AtomicU64 = AtomicU64::new(1);
/// Tasks waiting for the store; only locked with events masked.
static WAITERS: Mutex<BTreeMap<u64, Waker>> = Mutex::new(BTreeMap::new());

/// Whether this domain has a store ring (`start_info.store_evtchn` set).
pub fn available() -> bool {
    crate::start_info::get().raw().store_evtchn != 0
}

fn wake_all(_port: Port) {
    for w in WAITERS.lock().values() {
        w.wake_by_ref();
    }
}

fn connect() -> Option<()> {
    let mut c = CONN.lock();
    if c.is_none() {
        let si = crate::start_info::get().raw();
        if si.store_evtchn == 0 {
            return None;
        }
        let va = crate::paging::pfn_to_virt(crate::paging::mfn_to_pfn(si.store_mfn));
        // SAFETY: the store page is a page of our own memory, mapped in the linear
        // region for the domain's lifetime, and shared only through atomics.
        let page = unsafe { platform::page_at(va) };
        static HANDLER: fn(Port) = wake_all;
        events::bind(si.store_evtchn, &HANDLER);
        *c = Some(Conn {
            page,
            port: si.store_evtchn,
            out: VecDeque::new(),
            framer: Framer::new(),
            replies: BTreeMap::new(),
            events: BTreeMap::new(),
            broken: false,
        });
    }
    Some(())
}

/// Moves queued request bytes into the ring and reply bytes out of it; notifies the
/// store when either moved.
fn pump(c: &mut Conn) {
    if c.broken {
        return;
    }
    let mut moved = false;
    while !c.out.is_empty() {
        let (a, _) = c.out.as_slices();
        match ByteRing::STORE_REQ.write(&c.page, a) {
            Ok(0) => break,
            Ok(n) => {
                c.out.drain(..n);
                moved = true;
            }
            Err(_) => return fail(c, "request ring indices are corrupt"),
        }
    }
    let mut buf = [0u8; 256];
    loop {
        let n = match ByteRing::STORE_RSP.read(&c.page, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return fail(c, "reply ring indices are corrupt"),
        };
        moved = true;
        let mut input = &buf[..n];
        while !input.is_empty() {
            match c.framer.feed(&mut input) {
                Ok(Some(m)) => deliver(c, m),
                Ok(None) => {}
                Err(e) => return fail(c, &alloc::format!("malformed reply: {e:?}")),
            }
        }
    }
    if moved {
        let _ = hypercall::evtchn_send(c.port);
    }
}

fn fail(c: &mut Conn, why: &str) {
    log::error!("xenbus: {why}: connection closed");
    c.broken = true;
    events::masked(|| wake_all(0));
}

fn deliver(c: &mut Conn, m: Message) {
    if m.header.ty == MsgType::WatchEvent {
        if let Some((path, token)) = xs_wire::watch_event(&m.payload) {
            let token = String::from_utf8_lossy(token).into_owned();
            if let Some(q) = c.events.get_mut(&token) {
                q.push_back(String::from_utf8_lossy(path).into_owned());
            }
        }
    } else {
        c.replies.insert(m.header.req_id, m);
    }
}

/// Registers (or refreshes) a waiter's waker.
fn register(id: u64, waker: &Waker) {
    events::masked(|| {
        WAITERS.lock().insert(id, waker.clone());
    });
}

fn unregister(id: u64) {
    events::masked(|| {
        WAITERS.lock().remove(&id);
    });
}

/// One request in flight.
struct Request {
    req_id: u32,
    waiter: u64,
}

impl Future for Request {
    type Output = Result<Vec<u8>, XsError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        register(self.waiter, cx.waker());
        let mut guard = CONN.lock();
        let Some(c) = guard.as_mut() else {
            return Poll::Ready(Err(XsError::EIO));
        };
        pump(c);
        if let Some(m) = c.replies.remove(&self.req_id) {
            return Poll::Ready(if m.header.ty == MsgType::Error {
                Err(XsError::parse(&m.payload).unwrap_or(XsError::EIO))
            } else {
                Ok(m.payload)
            });
        }
        if c.broken {
            return Poll::Ready(Err(XsError::EIO));
        }
        Poll::Pending
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        unregister(self.waiter);
        // A reply that arrives after we gave up is dropped with the connection's
        // next look at it; forget any that is already here.
        if let Some(c) = CONN.lock().as_mut() {
            c.replies.remove(&self.req_id);
        }
    }
}

/// Sends a request of type `ty` in transaction `tx` (0: none) and waits for its reply's
/// payload.
pub async fn request(ty: MsgType, tx: u32, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    connect().ok_or(XsError::ENOSYS)?;
    let req_id = NEXT_REQ.fetch_add(1, Ordering::Relaxed);
    let bytes = xs_wire::encode(ty, req_id, tx, payload).map_err(|_| XsError::E2BIG)?;
    {
        let mut guard = CONN.lock();
        let c = guard.as_mut().ok_or(XsError::EIO)?;
        if c.broken {
            return Err(XsError::EIO);
        }
        c.out.extend(bytes);
    }
    Request {
        req_id,
        waiter: NEXT_WAITER.fetch_add(1, Ordering::Relaxed),
    }
    .await
}

fn path_payload(path: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p
}

/// Splits a NUL-separated list (`XS_DIRECTORY`'s reply).
fn list(payload: &[u8]) -> Vec<String> {
    xs_wire::strings(payload)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A transaction id (0 is "no transaction").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tx(pub u32);

/// Outside any transaction.
pub const NO_TX: Tx = Tx(0);

pub async fn read(tx: Tx, path: &str) -> Result<Vec<u8>, XsError> {
    request(MsgType::Read, tx.0, &path_payload(path)).await
}

/// [`read`] as text.
pub async fn read_string(tx: Tx, path: &str) -> Result<String, XsError> {
    let v = read(tx, path).await?;
    String::from_utf8(v).map_err(|_| XsError::EINVAL)
}

pub async fn write(tx: Tx, path: &str, value: &[u8]) -> Result<(), XsError> {
    let mut p = path_payload(path);
    p.extend_from_slice(value);
    request(MsgType::Write, tx.0, &p).await.map(|_| ())
}

pub async fn mkdir(tx: Tx, path: &str) -> Result<(), XsError> {
    request(MsgType::Mkdir, tx.0, &path_payload(path))
        .await
        .map(|_| ())
}

pub async fn rm(tx: Tx, path: &str) -> Result<(), XsError> {
    request(MsgType::Rm, tx.0, &path_payload(path))
        .await
        .map(|_| ())
}

pub async fn directory(tx: Tx, path: &str) -> Result<Vec<String>, XsError> {
    request(MsgType::Directory, tx.0, &path_payload(path))
        .await
        .map(|p| list(&p))
}

/// The permissions of `path`, as the strings of the wire (`"n0"`, `"r1"`, ...).
pub async fn get_perms(tx: Tx, path: &str) -> Result<Vec<String>, XsError> {
    request(MsgType::GetPerms, tx.0, &path_payload(path))
        .await
        .map(|p| list(&p))
}

/// Sets `path`'s permissions (`"n0"`: owner 0, nobody else; `"r1"`: domain 1 reads ...).
pub async fn set_perms(tx: Tx, path: &str, perms: &[&str]) -> Result<(), XsError> {
    let mut p = path_payload(path);
    for perm in perms {
        p.extend_from_slice(perm.as_bytes());
        p.push(0);
    }
    request(MsgType::SetPerms, tx.0, &p).await.map(|_| ())
}

/// Our home in the store (`/local/domain/<domid>`).
pub async fn get_domain_path(domid: u16) -> Result<String, XsError> {
    let id = alloc::format!("{domid}");
    let p = request(MsgType::GetDomainPath, 0, &path_payload(&id)).await?;
    let s = p.strip_suffix(&[0]).unwrap_or(&p);
    String::from_utf8(s.to_vec()).map_err(|_| XsError::EINVAL)
}

/// Starts a transaction.
pub async fn transaction_start() -> Result<Tx, XsError> {
    let p = request(MsgType::TransactionStart, 0, &[0]).await?;
    let s = p.strip_suffix(&[0]).unwrap_or(&p);
    core::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Tx)
        .ok_or(XsError::EINVAL)
}

/// Ends a transaction: commits it (`Err(EAGAIN)`: something it read or wrote changed
/// meanwhile, nothing was written; start again) or throws it away.
pub async fn transaction_end(tx: Tx, commit: bool) -> Result<(), XsError> {
    let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
    request(MsgType::TransactionEnd, tx.0, arg)
        .await
        .map(|_| ())
}

/// A registered watch: yields the paths that changed under its node.
pub struct Watch {
    path: String,
    token: String,
    waiter: u64,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// Watches `path` (and everything under it). As in xenstore, the first event comes at
/// once, for the path itself.
pub async fn watch(path: &str) -> Result<Watch, XsError> {
    connect().ok_or(XsError::ENOSYS)?;
    let token = alloc::format!("libos-{}", NEXT_TOKEN.fetch_add(1, Ordering::Relaxed));
    if let Some(c) = CONN.lock().as_mut() {
        c.events.insert(token.clone(), VecDeque::new());
    }
    let mut p = path_payload(path);
    p.extend_from_slice(token.as_bytes());
    p.push(0);
    if let Err(e) = request(MsgType::Watch, 0, &p).await {
        if let Some(c) = CONN.lock().as_mut() {
            c.events.remove(&token);
        }
        return Err(e);
    }
    Ok(Watch {
        path: String::from(path),
        token,
        waiter: NEXT_WAITER.fetch_add(1, Ordering::Relaxed),
    })
}

impl Watch {
    /// The next path that fired (`Err(EIO)` if the connection broke).
    pub async fn next(&mut self) -> Result<String, XsError> {
        core::future::poll_fn(|cx| {
            register(self.waiter, cx.waker());
            let mut guard = CONN.lock();
            let Some(c) = guard.as_mut() else {
                return Poll::Ready(Err(XsError::EIO));
            };
            pump(c);
            if let Some(p) = c.events.get_mut(&self.token).and_then(|q| q.pop_front()) {
                return Poll::Ready(Ok(p));
            }
            if c.broken {
                return Poll::Ready(Err(XsError::EIO));
            }
            Poll::Pending
        })
        .await
    }

    /// Removes the watch.
    pub async fn unwatch(self) -> Result<(), XsError> {
        let mut p = path_payload(&self.path);
        p.extend_from_slice(self.token.as_bytes());
        p.push(0);
        request(MsgType::Unwatch, 0, &p).await.map(|_| ())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        unregister(self.waiter);
        if let Some(c) = CONN.lock().as_mut() {
            c.events.remove(&self.token);
        }
    }
}
