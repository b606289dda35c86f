//! The daemon: connections by domain id, request dispatch (`process_message` and the
//! `wire_funcs` table of C `xenstored_core.c`), domain introduction and release
//! (`xenstored_domain.c`), and dom0's in-process calls.

use super::connection::Connection;
use super::ops::{check_perm_list, Ops};
use super::path;
use super::perms::{rights, Access, Caller, Perm};
use super::quota::Limits;
use super::transaction::Transaction;
use super::tree::Tree;
use super::view::View;
use super::watch::{Change, Watch};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use pv_core::xs_wire::{self, Message, MsgType, WireError, XsError};

const INTRODUCE_DOMAIN: &str = "@introduceDomain";
const RELEASE_DOMAIN: &str = "@releaseDomain";

/// A protocol violation after which a domain's connection is unusable. xenstored has
/// already dropped the connection's state; the caller should stop serving the domain's
/// ring (C xenstored ignores such a connection until the domain is released).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fatal {
    /// A request header announced more than `XENSTORE_PAYLOAD_MAX` bytes.
    PayloadTooLong { len: u32 },
    /// The domain has no connection (never introduced, released, or disconnected after
    /// an earlier violation).
    NotConnected,
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::PayloadTooLong { len } => write!(f, "xenstore request of {len} bytes"),
            Fatal::NotConnected => write!(f, "no xenstore connection"),
        }
    }
}

/// Work for dom0's glue asked for over the wire by a privileged connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainRequest {
    /// `XS_INTRODUCE`: the connection exists now; map the domain's store ring at `mfn`
    /// and bind event channel `port`.
    Introduce { domid: u16, mfn: u64, port: u32 },
    /// `XS_RELEASE`: the connection is gone; unmap the ring.
    Release { domid: u16 },
}

/// How a request completed.
enum Done {
    Reply(Vec<u8>),
    /// The reply, then a watch event for the same connection (`XS_WATCH`'s initial
    /// event follows its acknowledgement).
    ReplyThenEvent(Vec<u8>, Vec<u8>),
}

fn ok() -> Result<Done, XsError> {
    Ok(Done::Reply(b"OK\0".to_vec()))
}

/// The single argument of a request: the payload is one string and its NUL (C's
/// `onearg`).
fn onearg(payload: &[u8]) -> Result<&[u8], XsError> {
    match payload.iter().position(|&b| b == 0) {
        Some(nul) if nul + 1 == payload.len() => Ok(&payload[..nul]),
        _ => Err(XsError::EINVAL),
    }
}

/// A decimal number argument.
fn number<T: TryFrom<u64>>(s: &[u8]) -> Result<T, XsError> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return Err(XsError::EINVAL);
    }
    let mut n: u64 = 0;
    for &d in s {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(XsError::EINVAL)?;
    }
    T::try_from(n).map_err(|_| XsError::EINVAL)
}

/// A node name argument, canonical for `domid`. Special `@` names are not nodes.
fn node_path(domid: u16, raw: &[u8]) -> Result<String, XsError> {
    if path::is_special(raw) {
        return Err(XsError::EINVAL);
    }
    path::canonicalize(domid, raw)
}

/// `perms` without the non-owner entries naming `domid`.
fn without_entries_for(perms: &[Perm], domid: u16) -> Vec<Perm> {
    let mut out = Vec::with_capacity(perms.len());
    out.extend(perms.first());
    out.extend(perms.iter().skip(1).filter(|e| e.domid != domid));
    out
}

/// The xenstore daemon. Bytes in and out per domain; dom0's toolstack calls the node
/// operations directly.
pub struct Xenstored {
    limits: Limits,
    tree: Tree,
    conns: BTreeMap<u16, Connection>,
    introduce_perms: Vec<Perm>,
    release_perms: Vec<Perm>,
    requests: Vec<DomainRequest>,
}

impl Xenstored {
    /// A store holding `/`, `/local`, `/local/domain`, `/tool` and `/tool/xenstored`,
    /// owned by dom0 with no access for others.
    pub fn new(limits: Limits) -> Xenstored {
        let dom0_only = vec![Perm::new(Access::None, 0)];
        let mut xs = Xenstored {
            limits,
            tree: Tree::new(dom0_only.clone()),
            conns: BTreeMap::new(),
            introduce_perms: dom0_only.clone(),
            release_perms: dom0_only,
            requests: Vec::new(),
        };
        for p in ["/local/domain", "/tool/xenstored"] {
            // dom0 creating fixed names under the root cannot fail.
            let _ = xs.mkdir(0, p);
        }
        xs
    }

    fn caller(&self, domid: u16) -> Caller {
        Caller::new(domid, self.conns.get(&domid).and_then(|c| c.target))
    }

    // ---- connections -------------------------------------------------------------

    /// The domain's connection exists now (its ring is mapped). Fires
    /// `@introduceDomain` for a new domain other than dom0. Introducing a connected
    /// domain again resets its connection (watches, transactions, queued output).
    pub fn introduce(&mut self, domid: u16) -> Result<(), XsError> {
        if domid >= xen_sys::DOMID_FIRST_RESERVED {
            return Err(XsError::EINVAL);
        }
        if let Some(conn) = self.conns.get_mut(&domid) {
            conn.reset();
            conn.broken = false;
            return Ok(());
        }
        self.conns.insert(domid, Connection::new(domid));
        if domid != 0 {
            self.fire_special(INTRODUCE_DOMAIN);
        }
        Ok(())
    }

    /// The domain is gone: drops its connection (watches, transactions, queued
    /// output), removes the nodes it owns and its entries in other nodes' permission
    /// lists (so that a new domain reusing the id inherits nothing), and fires
    /// `@releaseDomain`. Removing `/local/domain/<domid>` stays the toolstack's job.
    pub fn release(&mut self, domid: u16) {
        if domid == 0 {
            return;
        }
        let was_connected = self.conns.remove(&domid).is_some();
        for conn in self.conns.values_mut() {
            if conn.target == Some(domid) {
                conn.target = None;
            }
        }
        self.forget_domain(domid);
        if was_connected {
            self.fire_special(RELEASE_DOMAIN);
        }
    }

    /// Removes what a dead domain owns and its permission entries.
    fn forget_domain(&mut self, domid: u16) {
        let owned: Vec<String> = self
            .tree
            .paths()
            .filter(|p| self.tree.get(p).is_some_and(|n| n.owner() == domid))
            .cloned()
            .collect();
        // `paths` is sorted, so an owned ancestor comes before its descendants.
        let mut removed: Vec<&str> = Vec::new();
        for p in &owned {
            if p == "/" || removed.iter().any(|r| path::is_child(p, r)) {
                continue;
            }
            // dom0 may remove anything; a failure would leave the node, which is safe.
            let _ = self.run(0, None, |ops| ops.rm(p));
            removed.push(p);
        }
        let listed: Vec<String> = self
            .tree
            .paths()
            .filter(|p| {
                self.tree
                    .get(p)
                    .is_some_and(|n| n.perms.iter().skip(1).any(|e| e.domid == domid))
            })
            .cloned()
            .collect();
        for p in listed {
            if let Some(mut node) = self.tree.get(&p).cloned() {
                node.perms = without_entries_for(&node.perms, domid);
                // A new generation: transactions that saw the old list must retry.
                self.tree.put(&p, node);
            }
        }
        for special in [&mut self.introduce_perms, &mut self.release_perms] {
            *special = if special.first().is_some_and(|o| o.domid == domid) {
                vec![Perm::new(Access::None, 0)]
            } else {
                without_entries_for(special, domid)
            };
        }
    }

    /// True while the domain has a connection (`XS_IS_DOMAIN_INTRODUCED`).
    pub fn is_introduced(&self, domid: u16) -> bool {
        self.conns.contains_key(&domid)
    }

    /// Introductions and releases requested over the wire since the last call.
    pub fn take_domain_requests(&mut self) -> Vec<DomainRequest> {
        core::mem::take(&mut self.requests)
    }

    /// Disconnects a domain after a protocol violation (C's `ignore_connection`).
    fn disconnect(&mut self, domid: u16) {
        if let Some(conn) = self.conns.get_mut(&domid) {
            conn.reset();
            conn.broken = true;
        }
    }

    // ---- bytes in, bytes out -----------------------------------------------------

    /// Request bytes read from the domain's ring, split anywhere. Complete requests are
    /// processed at once; replies and watch events queue for [`Self::take_output`].
    pub fn receive(&mut self, domid: u16, bytes: &[u8]) -> Result<(), Fatal> {
        let mut input = bytes;
        loop {
            let conn = match self.conns.get_mut(&domid) {
                Some(conn) if !conn.broken => conn,
                _ => return Err(Fatal::NotConnected),
            };
            match conn.feed(&mut input) {
                Ok(Some(msg)) => self.handle(domid, msg),
                Ok(None) => return Ok(()),
                Err(WireError::PayloadTooLong { len }) => {
                    self.disconnect(domid);
                    return Err(Fatal::PayloadTooLong { len });
                }
                Err(WireError::Truncated) => return Ok(()),
            }
            if input.is_empty() {
                return Ok(());
            }
        }
    }

    /// Bytes queued for the domain's response ring.
    pub fn pending_output(&self, domid: u16) -> usize {
        self.conns.get(&domid).map_or(0, Connection::pending)
    }

    /// Up to `max` queued bytes for the domain's response ring, in order.
    pub fn take_output(&mut self, domid: u16, max: usize) -> Vec<u8> {
        self.conns
            .get_mut(&domid)
            .map_or_else(Vec::new, |c| c.take(max))
    }

    /// False while the domain should not be given more requests: it is not connected,
    /// or (an unprivileged domain) as many replies as the `outstanding` quota wait for
    /// it to read them. A domain that never reads its ring thus cannot make dom0 hold
    /// more than about `outstanding` replies (plus those of the requests already handed
    /// to [`Self::receive`]) and `output_bytes` of watch events.
    pub fn wants_input(&self, domid: u16) -> bool {
        match self.conns.get(&domid) {
            Some(c) if !c.broken => domid == 0 || c.outstanding() < self.limits.outstanding,
            _ => false,
        }
    }

    fn handle(&mut self, domid: u16, msg: Message) {
        let h = msg.header;
        let done = self.dispatch(domid, h.ty, h.tx_id, &msg.payload);
        let Some(conn) = self.conns.get_mut(&domid) else {
            return; // The request released its own connection.
        };
        match done {
            Ok(Done::Reply(payload)) => conn.reply(h.ty, h.req_id, h.tx_id, &payload),
            Ok(Done::ReplyThenEvent(payload, event)) => {
                conn.reply(h.ty, h.req_id, h.tx_id, &payload);
                conn.event(&event, &self.limits);
            }
            Err(e) => conn.error(h.req_id, h.tx_id, e),
        }
    }

    fn dispatch(
        &mut self,
        domid: u16,
        ty: MsgType,
        tx_id: u32,
        payload: &[u8],
    ) -> Result<Done, XsError> {
        use MsgType::*;
        let caller = self.caller(domid);
        match ty {
            Unknown(_) | WatchEvent | Error => return Err(XsError::ENOSYS),
            Control | Introduce | Release | IsDomainIntroduced | Resume | SetTarget
                if !caller.privileged() =>
            {
                return Err(XsError::EACCES)
            }
            _ => {}
        }
        // Watches are not transactional: their tx_id is ignored.
        let tx = if tx_id != 0 && !matches!(ty, Watch | Unwatch) {
            let known = self
                .conns
                .get(&domid)
                .is_some_and(|c| c.transactions.contains_key(&tx_id));
            if !known {
                return Err(XsError::ENOENT);
            }
            Some(tx_id)
        } else {
            None
        };
        match ty {
            Read => {
                let p = node_path(domid, onearg(payload)?)?;
                self.run(domid, tx, |ops| ops.read(&p)).map(Done::Reply)
            }
            Directory => {
                let p = node_path(domid, onearg(payload)?)?;
                let names = self.run(domid, tx, |ops| ops.directory(&p))?;
                let mut out = Vec::new();
                for n in names {
                    out.extend_from_slice(n.as_bytes());
                    out.push(0);
                }
                Ok(Done::Reply(out))
            }
            DirectoryPart => {
                let args: Vec<&[u8]> = xs_wire::strings(payload).collect();
                let [p, offset] = args[..] else {
                    return Err(XsError::EINVAL);
                };
                if payload.last() != Some(&0) {
                    return Err(XsError::EINVAL);
                }
                let p = node_path(domid, p)?;
                let offset: usize = number(offset)?;
                self.run(domid, tx, |ops| ops.directory_part(&p, offset))
                    .map(Done::Reply)
            }
            Write => {
                let nul = payload
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(XsError::EINVAL)?;
                let p = node_path(domid, &payload[..nul])?;
                let value = &payload[nul + 1..];
                self.run(domid, tx, |ops| ops.write(&p, value))?;
                ok()
            }
            Mkdir => {
                let p = node_path(domid, onearg(payload)?)?;
                self.run(domid, tx, |ops| ops.mkdir(&p))?;
                ok()
            }
            Rm => {
                let p = node_path(domid, onearg(payload)?)?;
                self.run(domid, tx, |ops| ops.rm(&p))?;
                ok()
            }
            GetPerms => {
                let p = node_path(domid, onearg(payload)?)?;
                let perms = self.run(domid, tx, |ops| ops.get_perms(&p))?;
                Ok(Done::Reply(super::perms::to_strings(&perms)))
            }
            SetPerms => {
                let mut args = xs_wire::strings(payload);
                let p = args.next().ok_or(XsError::EINVAL)?;
                let list: Vec<&[u8]> = args.collect();
                if list.is_empty() {
                    return Err(XsError::EINVAL);
                }
                if !caller.privileged() && list.len() > self.limits.perms_per_node as usize {
                    return Err(XsError::ENOSPC);
                }
                let perms = list
                    .iter()
                    .map(|s| Perm::parse(s))
                    .collect::<Result<Vec<_>, _>>()?;
                if path::is_special(p) {
                    self.set_special_perms(caller, p, &perms)?;
                    return ok();
                }
                let p = path::canonicalize(domid, p)?;
                self.run(domid, tx, |ops| ops.set_perms(&p, &perms))?;
                ok()
            }
            Watch => self.watch(domid, payload),
            Unwatch => self.unwatch(domid, payload),
            TransactionStart => {
                if tx.is_some() {
                    return Err(XsError::EBUSY); // No nested transactions.
                }
                let limit = self.limits.transactions as usize;
                let conn = self.conns.get_mut(&domid).ok_or(XsError::EIO)?;
                if !caller.privileged() && conn.transactions.len() >= limit {
                    return Err(XsError::ENOSPC);
                }
                let id = conn.new_tx_id();
                conn.transactions.insert(id, Transaction::new());
                Ok(Done::Reply(format!("{id}\0").into_bytes()))
            }
            TransactionEnd => {
                let commit = match onearg(payload)? {
                    b"T" => true,
                    b"F" => false,
                    _ => return Err(XsError::EINVAL),
                };
                let id = tx.ok_or(XsError::ENOENT)?;
                let conn = self.conns.get_mut(&domid).ok_or(XsError::EIO)?;
                let t = conn.transactions.remove(&id).ok_or(XsError::ENOENT)?;
                if commit {
                    let changes = t.commit(&mut self.tree, caller, &self.limits)?;
                    self.fire(changes);
                }
                ok()
            }
            GetDomainPath => {
                let d: u16 = number(onearg(payload)?)?;
                let mut out = path::domain_path(d).into_bytes();
                out.push(0);
                Ok(Done::Reply(out))
            }
            IsDomainIntroduced => {
                let d: u16 = number(onearg(payload)?)?;
                let yes = d == xen_sys::DOMID_SELF || self.is_introduced(d);
                Ok(Done::Reply(if yes {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                }))
            }
            Introduce => {
                let args: Vec<&[u8]> = xs_wire::strings(payload).collect();
                let [d, mfn, port, ..] = args[..] else {
                    return Err(XsError::EINVAL);
                };
                let (domid, mfn, port): (u16, u64, u32) = (number(d)?, number(mfn)?, number(port)?);
                if port == 0 {
                    return Err(XsError::EINVAL);
                }
                self.introduce(domid)?;
                self.requests
                    .push(DomainRequest::Introduce { domid, mfn, port });
                ok()
            }
            Release => {
                let d = self.introduced_arg(payload)?;
                self.release(d);
                self.requests.push(DomainRequest::Release { domid: d });
                ok()
            }
            Resume => {
                // Xenstored keeps no shutdown state to clear: check the argument only.
                self.introduced_arg(payload)?;
                ok()
            }
            SetTarget => {
                let args: Vec<&[u8]> = xs_wire::strings(payload).collect();
                let [d, t, ..] = args[..] else {
                    return Err(XsError::EINVAL);
                };
                let (d, t): (u16, u16) = (number(d)?, number(t)?);
                if !self.is_introduced(t) {
                    return Err(XsError::ENOENT);
                }
                self.conns.get_mut(&d).ok_or(XsError::ENOENT)?.target = Some(t);
                ok()
            }
            ResetWatches => {
                if let Some(conn) = self.conns.get_mut(&domid) {
                    conn.watches.clear();
                    conn.transactions.clear();
                }
                ok()
            }
            // No control commands (log, quota, live update, ...) are implemented.
            Control => Err(XsError::EINVAL),
            Unknown(_) | WatchEvent | Error => Err(XsError::ENOSYS),
        }
    }

    /// The domain id argument of `XS_RELEASE` and `XS_RESUME`: a connected domU.
    fn introduced_arg(&self, payload: &[u8]) -> Result<u16, XsError> {
        let d: u16 = number(onearg(payload)?)?;
        if d == 0 {
            return Err(XsError::EINVAL);
        }
        if !self.is_introduced(d) {
            return Err(XsError::ENOENT);
        }
        Ok(d)
    }

    /// Runs a node operation as `domid`, in transaction `tx` of its connection if
    /// given, and fires the watch events of what it changed.
    fn run<T>(
        &mut self,
        domid: u16,
        tx: Option<u32>,
        f: impl FnOnce(&mut Ops<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        let caller = self.caller(domid);
        let transaction = match tx {
            Some(id) => Some(
                self.conns
                    .get_mut(&domid)
                    .and_then(|c| c.transactions.get_mut(&id))
                    .ok_or(XsError::ENOENT)?,
            ),
            None => None,
        };
        let tx_limit = (!caller.privileged()).then_some(self.limits.transaction_nodes);
        let mut ops = Ops::new(
            View::new(&mut self.tree, transaction, tx_limit),
            caller,
            &self.limits,
        );
        let result = f(&mut ops);
        let changes = ops.into_changes();
        self.fire(changes);
        result
    }

    // ---- watches -----------------------------------------------------------------

    fn watch(&mut self, domid: u16, payload: &[u8]) -> Result<Done, XsError> {
        let args: Vec<&[u8]> = xs_wire::strings(payload).collect();
        let [raw, token] = args[..] else {
            return Err(XsError::EINVAL);
        };
        let watch = if path::is_special(raw) {
            Watch {
                path: path::validate_special(raw)?,
                token: token.to_vec(),
                relative: false,
            }
        } else {
            let relative = raw.first() != Some(&b'/');
            Watch {
                path: path::canonicalize(domid, raw)?,
                token: token.to_vec(),
                relative,
            }
        };
        let limit = self.limits.watches as usize;
        let conn = self.conns.get_mut(&domid).ok_or(XsError::EIO)?;
        if conn
            .watches
            .iter()
            .any(|w| w.path == watch.path && w.token == watch.token)
        {
            return Err(XsError::EEXIST);
        }
        if !conn.caller().privileged() && conn.watches.len() >= limit {
            return Err(XsError::E2BIG);
        }
        // Every new watch fires once at once: clients rely on it to read the
        // initial state.
        let event = watch.event(&watch.path, domid);
        conn.watches.push(watch);
        Ok(Done::ReplyThenEvent(b"OK\0".to_vec(), event))
    }

    fn unwatch(&mut self, domid: u16, payload: &[u8]) -> Result<Done, XsError> {
        let args: Vec<&[u8]> = xs_wire::strings(payload).collect();
        let [raw, token] = args[..] else {
            return Err(XsError::EINVAL);
        };
        let name = if path::is_special(raw) {
            path::validate_special(raw)
        } else {
            path::canonicalize(domid, raw)
        };
        let conn = self.conns.get_mut(&domid).ok_or(XsError::EIO)?;
        let Ok(name) = name else {
            return Err(XsError::ENOENT);
        };
        let at = conn
            .watches
            .iter()
            .position(|w| w.path == name && w.token == token)
            .ok_or(XsError::ENOENT)?;
        conn.watches.remove(at);
        ok()
    }

    /// Queues events for changes on every connection whose watches they fire and that
    /// may see them.
    fn fire(&mut self, changes: Vec<Change>) {
        for change in &changes {
            for conn in self.conns.values_mut().filter(|c| !c.broken) {
                if !change.visible_to(conn.caller()) {
                    continue;
                }
                let domid = conn.caller().domid;
                let events: Vec<Vec<u8>> = conn
                    .watches
                    .iter()
                    .filter(|w| w.fires_for(&change.path, change.exact))
                    .map(|w| w.event(&change.path, domid))
                    .collect();
                for e in events {
                    conn.event(&e, &self.limits);
                }
            }
        }
    }

    fn special_perms(&self, name: &str) -> Option<&Vec<Perm>> {
        match name {
            INTRODUCE_DOMAIN => Some(&self.introduce_perms),
            RELEASE_DOMAIN => Some(&self.release_perms),
            _ => None,
        }
    }

    /// Fires a special event to the watchers its permission list lets read it.
    fn fire_special(&mut self, name: &str) {
        let Some(perms) = self.special_perms(name).cloned() else {
            return;
        };
        for conn in self.conns.values_mut().filter(|c| !c.broken) {
            let domid = conn.caller().domid;
            if !rights(conn.caller(), &perms).read {
                continue;
            }
            let events: Vec<Vec<u8>> = conn
                .watches
                .iter()
                .filter(|w| w.fires_for(name, false))
                .map(|w| w.event(name, domid))
                .collect();
            for e in events {
                conn.event(&e, &self.limits);
            }
        }
    }

    /// `XS_SET_PERMS` on a special name: who may watch it. Needs write and owner
    /// rights on its current list (dom0 by default).
    fn set_special_perms(
        &mut self,
        caller: Caller,
        raw: &[u8],
        perms: &[Perm],
    ) -> Result<(), XsError> {
        let name = path::validate_special(raw)?;
        check_perm_list(perms, caller.privileged(), &self.limits)?;
        let slot = match name.as_str() {
            INTRODUCE_DOMAIN => &mut self.introduce_perms,
            RELEASE_DOMAIN => &mut self.release_perms,
            _ => return Err(XsError::EINVAL),
        };
        let r = rights(caller, slot);
        if !(r.write && r.owner) {
            return Err(XsError::EACCES);
        }
        *slot = perms.to_vec();
        Ok(())
    }

    // ---- dom0's in-process calls -------------------------------------------------
    //
    // The same operations as over the wire, performed as domain `domid` (dom0's
    // toolstack passes 0), outside any transaction. Paths may be relative to the
    // domain's home. Watch events fire as for wire requests.

    pub fn read(&mut self, domid: u16, path: &str) -> Result<Vec<u8>, XsError> {
        let p = node_path(domid, path.as_bytes())?;
        self.run(domid, None, |ops| ops.read(&p))
    }

    /// Writes a value, creating the node and missing parents.
    pub fn write(&mut self, domid: u16, path: &str, value: &[u8]) -> Result<(), XsError> {
        let p = node_path(domid, path.as_bytes())?;
        self.run(domid, None, |ops| ops.write(&p, value))
    }

    /// Creates a node (and missing parents) with an empty value; fine if it exists.
    pub fn mkdir(&mut self, domid: u16, path: &str) -> Result<(), XsError> {
        let p = node_path(domid, path.as_bytes())?;
        self.run(domid, None, |ops| ops.mkdir(&p))
    }

    /// Removes a node and everything below it; fine if it is already gone.
    pub fn rm(&mut self, domid: u16, path: &str) -> Result<(), XsError> {
        let p = node_path(domid, path.as_bytes())?;
        self.run(domid, None, |ops| ops.rm(&p))
    }

    /// The names of a node's children, in creation order.
    pub fn directory(&mut self, domid: u16, path: &str) -> Result<Vec<String>, XsError> {
        let p = node_path(domid, path.as_bytes())?;
        self.run(domid, None, |ops| ops.directory(&p))
    }

    /// Replaces a node's permission list (first entry: owner and default access).
    pub fn set_perms(&mut self, domid: u16, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        if path::is_special(path.as_bytes()) {
            return self.set_special_perms(self.caller(domid), path.as_bytes(), perms);
        }
        let p = node_path(domid, path.as_bytes())?;
        self.run(domid, None, |ops| ops.set_perms(&p, perms))
    }

    pub fn get_perms(&mut self, domid: u16, path: &str) -> Result<Vec<Perm>, XsError> {
        let p = node_path(domid, path.as_bytes())?;
        self.run(domid, None, |ops| ops.get_perms(&p))
    }

    /// Checks the store's internal consistency (tests and debugging): the tree's
    /// structure and owner counts, and that no transaction outlived its connection.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.tree.check()?;
        for (domid, conn) in &self.conns {
            if conn.broken && (conn.pending() > 0 || !conn.watches.is_empty()) {
                return Err(format!("disconnected domain {domid} keeps state"));
            }
            if *domid != 0 && conn.watches.len() > self.limits.watches as usize {
                return Err(format!("domain {domid} over its watch quota"));
            }
            if *domid != 0 && conn.transactions.len() > self.limits.transactions as usize {
                return Err(format!("domain {domid} over its transaction quota"));
            }
        }
        Ok(())
    }

    /// Number of nodes in the store.
    pub fn node_count(&self) -> usize {
        self.tree.len()
    }
}
