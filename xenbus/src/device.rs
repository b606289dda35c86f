//! Where split devices live in the store and how their two ends find each other
//! (Xen's `docs/misc/xenstore-paths.pandoc`, Linux's `xenbus_probe_frontend.c` and
//! `xenbus_probe_backend.c`):
//!
//! - the front end's directory, in the guest's home: `device/<type>/<id>`, with
//!   `backend` (the back end's directory, absolute), `backend-id`, `state`, and what
//!   the front end publishes (ring references, event channels, its features);
//! - the back end's, in the back-end domain's home:
//!   `backend/<type>/<front-domid>/<id>`, with `frontend`, `frontend-id`, `state`,
//!   and what the back end offers (`feature-*`, sizes).
//!
//! Both ends read nodes the other end (or the other end's domain) can write, so every
//! value is parsed strictly: a node that is not what it should be is an error, never a
//! guess.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::str::FromStr;

use pv_core::platform::PlatformError;
use pv_core::xs_wire::XsError;

use crate::state::State;
use crate::store::{Store, Tx, Watch, NO_TX};

/// Why a device's handshake failed, at either end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Store(XsError),
    /// Rings could not be granted or mapped, or the channel allocated or bound.
    Platform(PlatformError),
    /// The other end closed or vanished during the handshake (its state then).
    Closed(Option<State>),
    /// A node the other end must write is missing or malformed.
    BadNode(String),
}

impl From<XsError> for Error {
    fn from(e: XsError) -> Self {
        Error::Store(e)
    }
}

impl From<PlatformError> for Error {
    fn from(e: PlatformError) -> Self {
        Error::Platform(e)
    }
}

/// A front end's directory, relative to its domain's home.
pub fn front_dir(ty: &str, id: u32) -> String {
    format!("device/{ty}/{id}")
}

/// A back end's directory, relative to the back-end domain's home.
pub fn back_dir(ty: &str, front: u16, id: u32) -> String {
    format!("backend/{ty}/{front}/{id}")
}

/// A decimal number as xenstore nodes hold them (surrounding whitespace allowed, no
/// sign, no base prefix, no leading zeros but in `0` itself).
pub fn parse_number<N: FromStr>(node: &[u8]) -> Option<N> {
    let text = core::str::from_utf8(node).ok()?.trim();
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    if text.is_empty() || !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// A number node: `Ok(None)` when it does not exist, `EINVAL` when it is not a number
/// of that type.
pub async fn read_number<S: Store, N: FromStr>(
    store: &S,
    tx: Tx,
    path: &str,
) -> Result<Option<N>, XsError> {
    match store.read(tx, path).await {
        Ok(v) => parse_number(&v).map(Some).ok_or(XsError::EINVAL),
        Err(XsError::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A `feature-*` node, as Linux's `xenbus_read_unsigned(dir, node, 0)` reads it: set
/// when it holds a non-zero number; missing or anything else is "not offered".
pub async fn read_flag<S: Store>(store: &S, tx: Tx, path: &str) -> Result<bool, XsError> {
    match read_number::<S, u64>(store, tx, path).await {
        Ok(v) => Ok(v.is_some_and(|v| v != 0)),
        Err(XsError::EINVAL) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The state in `<dir>/state`: `None` when the node is gone or holds no state.
pub async fn read_state<S: Store>(store: &S, dir: &str) -> Result<Option<State>, XsError> {
    match store.read(NO_TX, &format!("{dir}/state")).await {
        Ok(v) => Ok(State::parse(&v)),
        Err(XsError::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Publishes this end's state.
pub async fn switch_state<S: Store>(store: &S, dir: &str, state: State) -> Result<(), XsError> {
    store
        .write_str(NO_TX, &format!("{dir}/state"), state.node())
        .await
}

/// Waits, on `watch`, until the peer's state (in `<peer_dir>/state`) asks this end,
/// in state `me`, to act: the first [`Step`](crate::state::Step) of `machine` (
/// [`state::front_end`](crate::state::front_end) or
/// [`state::back_end`](crate::state::back_end)) that is not a plain wait.
pub async fn next_step<S: Store, W: Watch>(
    store: &S,
    watch: &mut W,
    peer_dir: &str,
    me: State,
    machine: fn(State, Option<State>) -> crate::state::Step,
) -> Result<(crate::state::Step, Option<State>), XsError> {
    loop {
        let peer = read_state(store, peer_dir).await?;
        let step = machine(me, peer);
        if step != crate::state::Step::WAIT {
            return Ok((step, peer));
        }
        watch.next().await?;
    }
}

/// The children of `dir` that are numbers (device ids, domain ids), sorted; none when
/// `dir` does not exist. Other names are skipped: they are nobody's device.
pub async fn numbered<S: Store, N: FromStr + Ord>(store: &S, dir: &str) -> Result<Vec<N>, XsError> {
    let names = match store.directory(NO_TX, dir).await {
        Ok(n) => n,
        Err(XsError::ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids: Vec<N> = names
        .iter()
        .filter_map(|n| parse_number(n.as_bytes()))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The devices of type `ty` this domain has as a front end (`device/<ty>/*`).
pub async fn front_devices<S: Store>(store: &S, ty: &str) -> Result<Vec<u32>, XsError> {
    numbered(store, &format!("device/{ty}")).await
}

/// The devices of type `ty` this domain serves as a back end
/// (`backend/<ty>/<front-domid>/<id>`), as (front domid, id).
pub async fn back_devices<S: Store>(store: &S, ty: &str) -> Result<Vec<(u16, u32)>, XsError> {
    let mut out = Vec::new();
    for front in numbered::<S, u16>(store, &format!("backend/{ty}")).await? {
        for id in numbered::<S, u32>(store, &format!("backend/{ty}/{front}")).await? {
            out.push((front, id));
        }
    }
    Ok(out)
}

/// The other end of a device, as this end's directory names it (`backend` and
/// `backend-id` for a front end, `frontend` and `frontend-id` for a back end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherEnd {
    pub domid: u16,
    /// Its directory, absolute.
    pub dir: String,
}

/// Reads the other end of the device in `dir` (`which`: `"backend"` or `"frontend"`).
/// `EINVAL` unless both nodes exist, the id is a domain's, and the directory is an
/// absolute path below that domain's home (what the toolstack writes; anything else
/// would let a device point a driver at somebody else's nodes).
pub async fn other_end<S: Store>(store: &S, dir: &str, which: &str) -> Result<OtherEnd, XsError> {
    let domid: u16 = read_number(store, NO_TX, &format!("{dir}/{which}-id"))
        .await?
        .ok_or(XsError::EINVAL)?;
    if domid >= xen_sys::DOMID_FIRST_RESERVED {
        return Err(XsError::EINVAL);
    }
    let path = store.read_string(NO_TX, &format!("{dir}/{which}")).await?;
    let home = format!("/local/domain/{domid}/");
    let rest = path.strip_prefix(&home).ok_or(XsError::EINVAL)?;
    if rest.is_empty() || rest.ends_with('/') || rest.contains("//") || rest.contains('\0') {
        return Err(XsError::EINVAL);
    }
    Ok(OtherEnd { domid, dir: path })
}

/// Follows the front end of the connected back end at `dir` until it closes (Linux's
/// back ends' `frontend_changed`): when it goes `Closing` (or `Closed`, or vanishes),
/// runs `disconnect` (unmap everything) and goes `Closing`, and once the front end is
/// `Closed` (or gone) goes `Closed`. The rings are not served meanwhile: the caller
/// services them on events and calls this when the front end's state changes.
pub async fn follow_close<S: Store>(
    store: &S,
    dir: &str,
    disconnect: impl FnOnce(),
) -> Result<(), Error> {
    let fe = other_end(store, dir, "frontend").await?;
    let mut watch = store.watch(&format!("{}/state", fe.dir)).await?;
    let (step, _) = next_step(
        store,
        &mut watch,
        &fe.dir,
        State::Connected,
        crate::state::back_end,
    )
    .await?;
    disconnect();
    let mut me = step.next.unwrap_or(State::Closing);
    switch_state(store, dir, me).await?;
    while me != State::Closed {
        let (step, _) = next_step(store, &mut watch, &fe.dir, me, crate::state::back_end).await?;
        me = step.next.unwrap_or(me);
        switch_state(store, dir, me).await?;
    }
    Ok(())
}

/// Closes the front end at `dir` in order (Linux's `blkfront_closing`,
/// `xennet_remove`): goes `Closing`, waits for the back end to let go of the rings
/// (any move of it from there: `Closing`, `Closed`, gone), runs `revoke` (end every
/// grant), goes `Closed`.
pub async fn front_close<S: Store>(
    store: &S,
    dir: &str,
    revoke: impl FnOnce(),
) -> Result<(), Error> {
    let back = other_end(store, dir, "backend").await?;
    let mut watch = store.watch(&format!("{}/state", back.dir)).await?;
    switch_state(store, dir, State::Closing).await?;
    next_step(
        store,
        &mut watch,
        &back.dir,
        State::Closing,
        crate::state::front_end,
    )
    .await?;
    revoke();
    switch_state(store, dir, State::Closed).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_number;

    #[test]
    fn numbers_are_read_strictly() {
        assert_eq!(parse_number::<u32>(b"51712"), Some(51712));
        assert_eq!(parse_number::<u32>(b" 7\n"), Some(7));
        assert_eq!(parse_number::<u32>(b"0"), Some(0));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"0x10",
            b"010",
            b"1 2",
            b"\xff",
            b"4294967296",
        ] {
            assert_eq!(parse_number::<u32>(bad), None, "{bad:?}");
        }
        assert_eq!(parse_number::<u16>(b"65536"), None);
    }
}
