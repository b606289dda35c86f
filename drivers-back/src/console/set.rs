//! All connected consoles, served fairly, and the routing of serial input among them
//! (xenconsoled's main loop, `tools/console/daemon/io.c: handle_io`, with its per-domain
//! rate limiting replaced by a fixed byte budget per round).

use super::back::ConsoleBack;
use super::input::{InputRouter, Routed};
use alloc::format;
use alloc::vec::Vec;
use pv_core::platform::{DomId, EventChannel, ForeignMemory, GrantRef, PlatformError, Port};

/// Most bytes taken from one domain's out ring in one round. The whole ring (2048 bytes)
/// takes four rounds to drain, so a domain that keeps it full gets a quarter of its ring
/// per round while every other domain gets its turn.
pub const ROUND_BUDGET: usize = 512;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Bytes taken from out rings.
    pub output: usize,
    /// Bytes written to in rings.
    pub input: usize,
    /// Some domain used its whole budget: poll again before waiting for events.
    pub more: bool,
    /// Domains disconnected because their ring was corrupt.
    pub disconnected: Vec<DomId>,
}

/// The consoles of all connected domains.
pub struct Consoles<P: ForeignMemory + EventChannel> {
    platform: P,
    backs: Vec<ConsoleBack<P>>,
    /// Index the next round starts at, rotating so no domain is always first.
    next: usize,
    focus: Option<DomId>,
    router: InputRouter,
}

impl<P: ForeignMemory + EventChannel> Consoles<P> {
    /// No consoles yet, on `platform`.
    pub fn new(platform: P) -> Self {
        Self {
            platform,
            backs: Vec::new(),
            next: 0,
            focus: None,
            router: InputRouter::new(),
        }
    }

    /// The platform the consoles run on.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Connects domain `domid`'s console (see [`ConsoleBack::connect`]). `Busy` if it is
    /// already connected. The first domain connected gets the input focus.
    pub fn connect(
        &mut self,
        domid: DomId,
        name: &str,
        gref: GrantRef,
        remote_port: Port,
    ) -> Result<(), PlatformError> {
        if self.index(domid).is_some() {
            return Err(PlatformError::Busy);
        }
        let back = ConsoleBack::connect(&self.platform, domid, name, gref, remote_port)?;
        self.backs.push(back);
        self.focus.get_or_insert(domid);
        Ok(())
    }

    /// Disconnects domain `domid` (it died or closed its console): its partial line is
    /// flushed to `sink`, its port closed and its ring unmapped. `Invalid` if it is not
    /// connected; an unmap failure is passed on, the console is gone either way.
    pub fn disconnect(
        &mut self,
        domid: DomId,
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<(), PlatformError> {
        let idx = self.index(domid).ok_or(PlatformError::Invalid)?;
        self.remove(idx, sink)
    }

    /// Whether `domid`'s console is connected.
    pub fn is_connected(&self, domid: DomId) -> bool {
        self.index(domid).is_some()
    }

    /// The connected domains, in connection order.
    pub fn domains(&self) -> impl Iterator<Item = DomId> + '_ {
        self.backs.iter().map(|b| b.domid())
    }

    /// Our port to `domid`'s console, to wait on.
    pub fn port(&self, domid: DomId) -> Option<Port> {
        self.index(domid).map(|i| self.backs[i].port())
    }

    /// The domain serial input goes to.
    pub fn focus(&self) -> Option<DomId> {
        self.focus
    }

    /// One round: from each domain in turn, at most [`ROUND_BUDGET`] bytes of output
    /// (completed lines go to `sink`), then as much queued input as its in ring takes.
    /// Domains with corrupt rings are disconnected, with a notice line to `sink`.
    pub fn poll(&mut self, sink: &mut impl FnMut(&[u8])) -> Round {
        let mut round = Round::default();
        let n = self.backs.len();
        if n == 0 {
            return round;
        }
        let start = self.next % n;
        self.next = (start + 1) % n;
        let mut corrupt = Vec::new();
        for k in 0..n {
            let back = &mut self.backs[(start + k) % n];
            let taken = back.drain_output(&self.platform, ROUND_BUDGET, sink);
            let pushed = taken.and_then(|taken| {
                round.output += taken;
                round.more |= taken == ROUND_BUDGET;
                back.push_input(&self.platform)
            });
            match pushed {
                Ok(pushed) => round.input += pushed,
                Err(_) => corrupt.push(back.domid()),
            }
        }
        for domid in corrupt {
            self.drop_corrupt(domid, sink);
            round.disconnected.push(domid);
        }
        round
    }

    /// Serial input typed on dom0's console: routed to the focused domain, with the
    /// triple Ctrl-A escape switching the focus (module documentation of `console`);
    /// each switch writes a notice line to `sink`. Input while no domain is connected
    /// is dropped, as is input beyond a domain's queue limit.
    pub fn input(&mut self, bytes: &[u8], sink: &mut impl FnMut(&[u8])) {
        for &b in bytes {
            match self.router.feed(b) {
                Routed::Held => {}
                Routed::Switch => self.switch_focus(sink),
                routed => {
                    if let Some(i) = self.focus.and_then(|d| self.index(d)) {
                        for byte in routed.bytes() {
                            self.backs[i].queue_input(&[byte]);
                        }
                    }
                }
            }
        }
        // Deliver at once rather than at the next round: typing should echo promptly.
        if let Some(i) = self.focus.and_then(|d| self.index(d)) {
            if self.backs[i].push_input(&self.platform).is_err() {
                let domid = self.backs[i].domid();
                self.drop_corrupt(domid, sink);
            }
        }
    }

    fn switch_focus(&mut self, sink: &mut impl FnMut(&[u8])) {
        let n = self.backs.len();
        if n == 0 {
            sink(b"[console input: no domain connected]\n");
            return;
        }
        let next = self
            .focus
            .and_then(|d| self.index(d))
            .map_or(0, |i| (i + 1) % n);
        let back = &self.backs[next];
        self.focus = Some(back.domid());
        let notice = format!(
            "[console input now goes to d{} {}]\n",
            back.domid(),
            back.name()
        );
        sink(notice.as_bytes());
    }

    fn drop_corrupt(&mut self, domid: DomId, sink: &mut impl FnMut(&[u8])) {
        let Some(idx) = self.index(domid) else {
            return;
        };
        let notice = format!(
            "[d{} {}: console ring corrupt, disconnected]\n",
            domid,
            self.backs[idx].name()
        );
        // An unmap failure leaves nothing for us to do: the platform keeps the grant's
        // bookkeeping and the domain is cut off from us either way.
        let _ = self.remove(idx, sink);
        sink(notice.as_bytes());
    }

    fn remove(&mut self, idx: usize, sink: &mut impl FnMut(&[u8])) -> Result<(), PlatformError> {
        let back = self.backs.remove(idx);
        if idx < self.next {
            self.next -= 1;
        }
        if self.focus == Some(back.domid()) {
            // The focus moves on to the domain after the removed one, if any.
            self.focus = match self.backs.len() {
                0 => None,
                n => Some(self.backs[idx % n].domid()),
            };
        }
        back.disconnect(&self.platform, sink)
    }

    fn index(&self, domid: DomId) -> Option<usize> {
        self.backs.iter().position(|b| b.domid() == domid)
    }
}
