//! Serial input routing: the triple Ctrl-A escape of Xen's `xen/drivers/char/console.c`
//! (`serial_rx`). Ctrl-A is counted rather than delivered; the third in a row switches
//! the input focus, and any other byte first releases the Ctrl-As held back before it.

/// The escape byte, Ctrl-A (as Xen's default `conswitch=a`).
pub const ESCAPE: u8 = 0x01;

/// What one typed byte amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// A Ctrl-A, held back until we know whether it is part of the escape.
    Held,
    /// The third Ctrl-A in a row: move the focus to the next domain.
    Switch,
    /// Deliver `escapes` Ctrl-A bytes that were held back, then `byte`.
    Deliver { escapes: u8, byte: u8 },
}

impl Routed {
    /// The bytes to deliver to the focused domain, in order.
    pub fn bytes(self) -> impl Iterator<Item = u8> {
        let (escapes, byte) = match self {
            Routed::Deliver { escapes, byte } => (escapes as usize, Some(byte)),
            _ => (0, None),
        };
        core::iter::repeat_n(ESCAPE, escapes).chain(byte)
    }
}

/// Recognises the escape in a stream of typed bytes.
#[derive(Debug, Default)]
pub struct InputRouter {
    held: u8,
}

impl InputRouter {
    /// A router with nothing held back.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one typed byte.
    pub fn feed(&mut self, byte: u8) -> Routed {
        if byte == ESCAPE {
            self.held += 1;
            if self.held == 3 {
                self.held = 0;
                return Routed::Switch;
            }
            return Routed::Held;
        }
        let escapes = core::mem::take(&mut self.held);
        Routed::Deliver { escapes, byte }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn route(input: &[u8]) -> (Vec<u8>, Vec<usize>) {
        let mut r = InputRouter::new();
        let (mut delivered, mut switches) = (Vec::new(), Vec::new());
        for (i, &b) in input.iter().enumerate() {
            let routed = r.feed(b);
            if routed == Routed::Switch {
                switches.push(i);
            }
            delivered.extend(routed.bytes());
        }
        (delivered, switches)
    }

    #[test]
    fn triple_ctrl_a_switches_and_is_eaten() {
        assert_eq!(route(b"ab\x01\x01\x01cd"), (b"abcd".to_vec(), vec![4]));
        // Six in a row: two switches.
        assert_eq!(
            route(b"\x01\x01\x01\x01\x01\x01x"),
            (b"x".to_vec(), vec![2, 5])
        );
    }

    #[test]
    fn fewer_than_three_are_delivered_as_typed() {
        assert_eq!(
            route(b"\x01x\x01\x01y"),
            (b"\x01x\x01\x01y".to_vec(), vec![])
        );
        // Four: a switch, then one held Ctrl-A delivered before the next byte.
        assert_eq!(route(b"\x01\x01\x01\x01z"), (b"\x01z".to_vec(), vec![2]));
        // Held back until something else is typed.
        assert_eq!(route(b"q\x01\x01"), (b"q".to_vec(), vec![]));
    }
}
