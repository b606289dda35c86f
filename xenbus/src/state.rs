//! The xenbus device protocol's state machine (`xen/include/public/io/xenbus.h`), for
//! both ends of a split device, as Linux's xenbus drivers run it (`blkfront`'s
//! `blkback_changed`, `blkback`'s `frontend_changed`, and netfront/netback alike).
//!
//! Each end publishes its state in its own `state` node (`device/<type>/<id>/state`
//! for the front end, `backend/<type>/<front-domid>/<id>/state` for the back end) and
//! watches the other's. The handshake:
//!
//! 1. the back end writes its features and goes `InitWait`;
//! 2. the front end, seeing `InitWait`, makes its rings, writes their references and
//!    event channels, and goes `Initialised`;
//! 3. the back end, seeing `Initialised` (or `Connected`), maps the rings and goes
//!    `Connected`;
//! 4. the front end, seeing `Connected`, reads what the back end offers (sizes,
//!    features) and goes `Connected`.
//!
//! Either end closes by going `Closing`; the other, seeing it, stops using the rings and
//! goes `Closing` then `Closed`. A back end whose front end is `Closed` (or gone) goes
//! `Closed` too; a front end that comes back as `Initialising` starts a new handshake.
//!
//! The peer is not trusted: its node may hold anything. A value that is not a state, a
//! step backwards from a connected device, or the peer vanishing is not a reason to
//! keep the rings: the device is closed.

use xen_sys::{
    XenbusStateClosed, XenbusStateClosing, XenbusStateConnected, XenbusStateInitWait,
    XenbusStateInitialised, XenbusStateInitialising, XenbusStateReconfigured,
    XenbusStateReconfiguring, XenbusStateUnknown,
};

/// A xenbus state (`enum xenbus_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Unknown,
    Initialising,
    InitWait,
    Initialised,
    Connected,
    Closing,
    Closed,
    Reconfiguring,
    Reconfigured,
}

impl State {
    /// Every state, in the header's order.
    pub const ALL: [State; 9] = [
        State::Unknown,
        State::Initialising,
        State::InitWait,
        State::Initialised,
        State::Connected,
        State::Closing,
        State::Closed,
        State::Reconfiguring,
        State::Reconfigured,
    ];

    /// The header's number for the state.
    pub fn number(self) -> u32 {
        match self {
            State::Unknown => XenbusStateUnknown,
            State::Initialising => XenbusStateInitialising,
            State::InitWait => XenbusStateInitWait,
            State::Initialised => XenbusStateInitialised,
            State::Connected => XenbusStateConnected,
            State::Closing => XenbusStateClosing,
            State::Closed => XenbusStateClosed,
            State::Reconfiguring => XenbusStateReconfiguring,
            State::Reconfigured => XenbusStateReconfigured,
        }
    }

    /// The state a `state` node holds (a decimal number, as `xenbus_read_driver_state`
    /// reads it, with surrounding whitespace allowed); `None` for anything else.
    pub fn parse(node: &[u8]) -> Option<State> {
        let text = core::str::from_utf8(node).ok()?.trim();
        if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = text.parse().ok()?;
        State::ALL.into_iter().find(|s| s.number() == n)
    }

    /// What to write into a `state` node.
    pub fn node(self) -> &'static str {
        ["0", "1", "2", "3", "4", "5", "6", "7", "8"][self.number() as usize]
    }
}

/// What an end must do after a change of its peer's state, before it writes its own
/// new state (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: wait for the next change.
    Wait,
    /// Front end: make the rings and write their references and event channels, then
    /// go `Initialised`. Back end: map the front end's rings, then go `Connected`.
    Connect,
    /// Front end: read what the back end offers and start I/O, then go `Connected`.
    Start,
    /// Stop using the rings (finish or fail what is in flight, unmap or revoke them),
    /// then go to the new state.
    Disconnect,
}

/// A transition: the action, and the state to publish once it is done (`None`: keep
/// the current one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub next: Option<State>,
}

const fn step(action: Action, next: Option<State>) -> Step {
    Step { action, next }
}

impl Step {
    /// Nothing to do, nothing to publish: wait for the peer's next change.
    pub const WAIT: Step = step(Action::Wait, None);
}

const WAIT: Step = Step::WAIT;

/// The front end is in `me` and sees the back end's node change to `peer` (`None`: not
/// a state, or the node is gone).
pub fn front_end(me: State, peer: Option<State>) -> Step {
    use State::*;
    let connected = matches!(me, Initialised | Connected);
    match peer {
        // A back end that vanishes or writes garbage once we are connected is gone.
        None | Some(Unknown) if connected => step(Action::Disconnect, Some(Closed)),
        None | Some(Unknown) => WAIT,
        Some(InitWait) if me == Initialising => step(Action::Connect, Some(Initialised)),
        // Our rings are published and the back end has not mapped them yet: what a
        // front end that looks again before the back end moved sees (Linux's
        // `blkback_changed` ignores it too).
        Some(InitWait) if me == Initialised => WAIT,
        // A back end that starts over while we hold rings, or claims a state only a
        // front end has: close.
        Some(Initialising | InitWait | Initialised) if connected => {
            step(Action::Disconnect, Some(Closing))
        }
        // A back end changing its devices (pvscsi) is still connected, but it must
        // have connected first.
        Some(Reconfiguring | Reconfigured) if me == Initialised => {
            step(Action::Disconnect, Some(Closing))
        }
        Some(Initialising | InitWait | Initialised | Reconfiguring | Reconfigured) => WAIT,
        Some(Connected) if me == Initialised => step(Action::Start, Some(Connected)),
        Some(Connected) => WAIT,
        Some(Closing) if me == Closed => WAIT,
        Some(Closing) if me == Closing => step(Action::Wait, Some(Closed)),
        Some(Closing) => step(Action::Disconnect, Some(Closed)),
        Some(Closed) if matches!(me, Closed | Initialising) => WAIT,
        Some(Closed) => step(Action::Disconnect, Some(Closed)),
    }
}

/// The back end is in `me` and sees the front end's node change to `peer`.
pub fn back_end(me: State, peer: Option<State>) -> Step {
    use State::*;
    // Reconfiguring/Reconfigured: a connected back end changing its devices (pvscsi).
    let connected = matches!(me, Connected | Reconfiguring | Reconfigured);
    match peer {
        // The front end vanished (its domain died) or wrote garbage.
        None | Some(Unknown) if me == Closed => WAIT,
        None | Some(Unknown) => step(Action::Disconnect, Some(Closed)),
        // A front end that starts over: a new handshake once we are closed.
        Some(Initialising) if connected => step(Action::Disconnect, Some(Closing)),
        Some(Initialising) if me == Closed => step(Action::Wait, Some(InitWait)),
        Some(Initialising) => WAIT,
        Some(Initialised | Connected) if me == InitWait => step(Action::Connect, Some(Connected)),
        Some(Initialised | Connected) => WAIT,
        // States a front end never has (Linux's blkback: `xenbus_dev_fatal`).
        Some(InitWait | Reconfiguring | Reconfigured) if matches!(me, Closing | Closed) => WAIT,
        Some(InitWait | Reconfiguring | Reconfigured) => step(Action::Disconnect, Some(Closing)),
        Some(Closing) if matches!(me, Closing | Closed) => WAIT,
        Some(Closing) => step(Action::Disconnect, Some(Closing)),
        Some(Closed) if me == Closed => WAIT,
        Some(Closed) => step(Action::Disconnect, Some(Closed)),
    }
}

#[cfg(test)]
mod tests;
