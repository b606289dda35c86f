//! One domain's console back end: the per-domain part of xenconsoled
//! (`tools/console/daemon/io.c`: `domain_create_ring`, `buffer_append`,
//! `handle_tty_read`, `domain_handle_broken_ring`).

use super::lines::LineAssembler;
use alloc::collections::VecDeque;
use alloc::string::String;
use pv_core::byte_ring::{ByteRing, Corrupt};
use pv_core::platform::{
    DomId, EventChannel, ForeignMemory, GrantRef, PlatformError, Port, SharePage,
};

/// Most input bytes kept for a domain that has not read them yet; more typed input is
/// dropped, so a domain that never reads cannot make dom0 hold unbounded input.
pub const INPUT_QUEUE_MAX: usize = 4096;

/// The console of one connected domain.
pub struct ConsoleBack<P: ForeignMemory + EventChannel> {
    domid: DomId,
    name: String,
    mapping: P::Mapping,
    port: Port,
    lines: LineAssembler,
    input: VecDeque<u8>,
}

impl<P: ForeignMemory + EventChannel> ConsoleBack<P> {
    /// Connects to domain `domid`'s console: maps its `xencons_interface` page, granted
    /// as `gref` (`GNTTAB_RESERVED_CONSOLE` for the primary console), read-write, and
    /// binds to `remote_port`, the port the domain left unbound for us (its
    /// `start_info.console.domU.evtchn`). Lines are prefixed with `name`.
    pub fn connect(
        p: &P,
        domid: DomId,
        name: &str,
        gref: GrantRef,
        remote_port: Port,
    ) -> Result<Self, PlatformError> {
        let mapping = p.map(domid, gref, false)?;
        let port = match p.bind_interdomain(domid, remote_port) {
            Ok(port) => port,
            Err(e) => {
                // Nothing else holds the mapping: give it back and report the bind error.
                let _ = p.unmap(mapping);
                return Err(e);
            }
        };
        Ok(Self {
            domid,
            name: String::from(name),
            mapping,
            port,
            lines: LineAssembler::new(name),
            input: VecDeque::new(),
        })
    }

    /// The domain served.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The domain's name, as in the line prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Our local port to the domain: events on it mean the domain produced output or
    /// consumed input.
    pub fn port(&self) -> Port {
        self.port
    }

    /// Takes at most `budget` bytes of the domain's output, passing each completed line
    /// (prefixed, `\n`-terminated) to `sink`, and notifies the domain if its out ring
    /// got room. Returns the bytes taken. `Err(Corrupt)`: the domain broke the ring;
    /// disconnect it (bytes taken before are already in lines or the partial line).
    pub fn drain_output(
        &mut self,
        p: &P,
        budget: usize,
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<usize, Corrupt> {
        let page = self.mapping.page();
        let mut buf = [0u8; 256];
        let mut taken = 0;
        let result = loop {
            if taken >= budget {
                break Ok(());
            }
            let want = buf.len().min(budget - taken);
            match ByteRing::CONSOLE_OUT.read(&page, &mut buf[..want]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    self.lines.push(&buf[..n], sink);
                    taken += n;
                }
                Err(e) => break Err(e),
            }
        };
        if taken > 0 {
            p.notify(self.port);
        }
        result.map(|()| taken)
    }

    /// Queues typed bytes for the domain; returns how many were accepted (the queue holds
    /// at most [`INPUT_QUEUE_MAX`]). [`ConsoleBack::push_input`] moves them to the ring.
    pub fn queue_input(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(INPUT_QUEUE_MAX - self.input.len());
        self.input.extend(&bytes[..n]);
        n
    }

    /// Bytes queued and not yet in the domain's in ring.
    pub fn queued_input(&self) -> usize {
        self.input.len()
    }

    /// Writes as much queued input as the in ring has room for and notifies the domain
    /// if any was written; the rest waits for the domain to read. Returns the bytes
    /// written.
    pub fn push_input(&mut self, p: &P) -> Result<usize, Corrupt> {
        let page = self.mapping.page();
        let mut written = 0;
        // A VecDeque is at most two slices; the ring takes a prefix of them in order.
        while !self.input.is_empty() {
            let (front, _) = self.input.as_slices();
            let len = front.len();
            let n = ByteRing::CONSOLE_IN.write(&page, front)?;
            self.input.drain(..n);
            written += n;
            if n < len {
                break;
            }
        }
        if written > 0 {
            p.notify(self.port);
        }
        Ok(written)
    }

    /// Disconnects: prints what is left in the out ring (one ring at most) and the
    /// partial line, if any, then closes the port and
    /// unmaps the ring. An unmap failure is returned (the platform keeps its
    /// bookkeeping); the console is gone either way.
    pub fn disconnect(mut self, p: &P, sink: &mut impl FnMut(&[u8])) -> Result<(), PlatformError> {
        // What the domain wrote before it went is still in its ring: at most one ring's
        // worth (a corrupt ring gives nothing more).
        let _ = self.drain_output(p, ByteRing::CONSOLE_OUT.size(), sink);
        self.lines.flush(sink);
        p.close(self.port);
        p.unmap(self.mapping)
    }
}
