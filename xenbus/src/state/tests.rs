use super::*;
use std::vec::Vec;
use State::*;

#[test]
fn numbers_and_nodes_are_the_header_s() {
    for (i, s) in State::ALL.into_iter().enumerate() {
        assert_eq!(s.number(), i as u32);
        assert_eq!(State::parse(s.node().as_bytes()), Some(s));
    }
    assert_eq!(State::parse(b" 4\n"), Some(Connected));
    for bad in [
        &b""[..],
        b"9",
        b"-1",
        b"4x",
        b"0x4",
        b"0004",
        b"\xff",
        b"connected",
    ] {
        assert_eq!(State::parse(bad), None, "{bad:?}");
    }
}

/// Both ends, each reacting to the other's published state until neither changes;
/// the actions taken, in order.
struct Pair {
    front: State,
    back: State,
    log: Vec<(&'static str, Action)>,
}

impl Pair {
    fn new() -> Self {
        Pair {
            front: Initialising,
            back: InitWait,
            log: Vec::new(),
        }
    }

    fn settle(&mut self) {
        for _ in 0..20 {
            let f = front_end(self.front, Some(self.back));
            if f.action != Action::Wait {
                self.log.push(("front", f.action));
            }
            let changed_f = f.next.is_some_and(|n| n != self.front);
            if let Some(n) = f.next {
                self.front = n;
            }
            let b = back_end(self.back, Some(self.front));
            if b.action != Action::Wait {
                self.log.push(("back", b.action));
            }
            let changed_b = b.next.is_some_and(|n| n != self.back);
            if let Some(n) = b.next {
                self.back = n;
            }
            if !changed_f && !changed_b {
                return;
            }
        }
        panic!(
            "never settles: front {:?}, back {:?}",
            self.front, self.back
        );
    }
}

#[test]
fn the_handshake_connects_both_ends_in_order() {
    let mut p = Pair::new();
    p.settle();
    assert_eq!((p.front, p.back), (Connected, Connected));
    assert_eq!(
        p.log,
        [
            ("front", Action::Connect),
            ("back", Action::Connect),
            ("front", Action::Start)
        ]
    );
}

#[test]
fn either_end_closes_and_both_end_closed() {
    for closer in ["front", "back"] {
        let mut p = Pair::new();
        p.settle();
        p.log.clear();
        if closer == "front" {
            p.front = Closing;
        } else {
            p.back = Closing;
        }
        p.settle();
        assert_eq!(
            (p.front, p.back),
            (Closed, Closed),
            "closed by the {closer}"
        );
        assert!(p
            .log
            .iter()
            .any(|&(who, a)| who != closer && a == Action::Disconnect));
    }
}

#[test]
fn a_front_end_that_comes_back_starts_a_new_handshake() {
    let mut p = Pair::new();
    p.settle();
    p.front = Closing;
    p.settle();
    p.front = Initialising;
    p.log.clear();
    p.settle();
    assert_eq!((p.front, p.back), (Connected, Connected));
    assert_eq!(p.log.len(), 3);
}

#[test]
fn a_vanished_or_garbled_peer_closes_the_device() {
    // The front end's domain died: its node is gone.
    assert_eq!(
        back_end(Connected, None),
        step(Action::Disconnect, Some(Closed))
    );
    assert_eq!(
        back_end(InitWait, Some(Unknown)),
        step(Action::Disconnect, Some(Closed))
    );
    assert_eq!(back_end(Closed, None), WAIT);
    // The back end vanished under a connected front end.
    assert_eq!(
        front_end(Connected, None),
        step(Action::Disconnect, Some(Closed))
    );
    // Before connecting, there is nothing to drop: wait for a back end.
    assert_eq!(front_end(Initialising, None), WAIT);
    // Rings published, the back end not there yet: wait for it (a front end that
    // reads the back end's state again before it moved sees this).
    assert_eq!(front_end(Initialised, Some(InitWait)), WAIT);
    // A back end that starts over under a connected front end.
    assert_eq!(
        front_end(Connected, Some(InitWait)),
        step(Action::Disconnect, Some(Closing))
    );
    // A front end that starts over under a connected back end.
    assert_eq!(
        back_end(Connected, Some(Initialising)),
        step(Action::Disconnect, Some(Closing))
    );
}

/// From any pair of states, whatever the peer wrote: an end never starts I/O on rings it
/// does not have (Start only after Connect), and two ends that settle are either both
/// connected or neither is.
#[test]
fn every_state_pair_settles_sensibly() {
    for f in State::ALL {
        for b in State::ALL {
            let mut p = Pair {
                front: f,
                back: b,
                log: Vec::new(),
            };
            p.settle();
            // Reconfiguring/Reconfigured (pvscsi's) are a connected back end's.
            let up = |s: State| matches!(s, Connected | Reconfiguring | Reconfigured);
            let connected = up(p.front) as u8 + up(p.back) as u8;
            assert_ne!(
                connected, 1,
                "from ({f:?}, {b:?}) to ({:?}, {:?})",
                p.front, p.back
            );
            for (i, &(who, a)) in p.log.iter().enumerate() {
                if who == "front" && a == Action::Start {
                    assert!(
                        f == Initialised
                            || f == Connected
                            || p.log[..i].contains(&("front", Action::Connect)),
                        "start without rings from ({f:?}, {b:?}): {:?}",
                        p.log
                    );
                }
            }
        }
    }
}
