//! The console: a domU's own console ring (`io/console.h`, through `consfront` of
//! `drivers-front`), which the console back-end in dom0 prints, or else the hypervisor
//! console (`console_io`); and the `log` backend over it.
//!
//! A domU uses its ring when `start_info` names one (`console.domU.evtchn` set: a
//! back-end is there to drain it). dom0, and a domU without a back-end, write through
//! `console_io`, as before. If the back-end corrupts the ring's indices, the domain
//! falls back to `console_io` and says so.

use core::fmt::{self, Write};

use drivers_front::consfront::Consfront;
use spin::Mutex;

use crate::events;
use crate::hypercall::console_write;
use crate::platform::{self, Xen};

/// The console ring, once [`init_ring`] found one.
static RING: Mutex<Option<Consfront<'static, Xen>>> = Mutex::new(None);

/// Switches output to the console ring if this domain has one.
pub(crate) fn init_ring() {
    let si = crate::start_info::get();
    // SAFETY: `console` is a union whose `domU` member is the PV guest's view.
    let (mfn, port) = unsafe { (si.raw().console.domU.mfn, si.raw().console.domU.evtchn) };
    if si.initial_domain() || port == 0 || mfn == 0 {
        return;
    }
    let va = crate::paging::pfn_to_virt(crate::paging::mfn_to_pfn(mfn));
    // SAFETY: the console page is a page of our own memory, mapped in the linear
    // region for the domain's lifetime, and shared only through atomics.
    let page = unsafe { platform::page_at(va) };
    events::masked(|| *RING.lock() = Some(Consfront::new(page, port, Xen)));
}

/// Sends bytes to the console. Never fails: with no ring (or a broken one, or one
/// busy in the code this interrupted) the hypervisor console takes them.
pub fn write_bytes(bytes: &[u8]) {
    let done = events::masked(|| {
        let Some(mut ring) = RING.try_lock() else {
            return false;
        };
        let Some(front) = ring.as_mut() else {
            return false;
        };
        if front.write_all(bytes).is_ok() {
            return true;
        }
        *ring = None;
        let _ =
            console_write(b"libos: console ring indices corrupt: using the hypervisor console\n");
        false
    });
    if !done {
        let _ = console_write(bytes);
    }
}

/// Reads console input (typed for this domain), if any arrived.
pub fn read(buf: &mut [u8]) -> usize {
    events::masked(|| {
        RING.lock()
            .as_mut()
            .and_then(|f| f.read(buf).ok())
            .unwrap_or(0)
    })
}

/// The console ring's port (input arrives as events on it), if there is a ring.
pub fn ring_port() -> Option<crate::events::Port> {
    events::masked(|| RING.lock().as_ref().map(|f| f.port()))
}

/// Writes formatted text to the console.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Formats into a line buffer first so that each line goes out in one hypercall.
pub fn print(args: fmt::Arguments) {
    let mut line = LineBuffer {
        buf: [0; 256],
        len: 0,
    };
    let _ = line.write_fmt(args);
    line.flush();
}

struct LineBuffer {
    buf: [u8; 256],
    len: usize,
}

impl LineBuffer {
    fn flush(&mut self) {
        if self.len > 0 {
            write_bytes(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        print(format_args!("[{}] {}\n", r.level(), r.args()));
    }
    fn flush(&self) {}
}

pub(crate) fn init() {
    static LOGGER: ConsoleLogger = ConsoleLogger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}
