//! The console back end in dom0: the counterpart of consfront, doing what Xen's
//! `tools/console/daemon/io.c` (xenconsoled) does for `io/console.h` rings, with the
//! serial line as the only terminal.
//!
//! - [`ConsoleBack`]: one domain's console. It maps the domain's `xencons_interface` page
//!   by grant reference (for the primary console the toolstack's reserved entry
//!   `GNTTAB_RESERVED_CONSOLE`), binds to the domain's console port, drains the `out`
//!   ring into whole lines prefixed by the domain name (`"name| text"`, see
//!   [`LineAssembler`]) and writes serial input into the `in` ring.
//! - [`Consoles`]: all connected domains, served in rounds. A round takes at most
//!   [`ROUND_BUDGET`] bytes from each domain, so a domain writing without pause cannot
//!   silence the others: every domain's output waits at most one round for its turn.
//!   A domain whose ring indices are impossible is disconnected (ring unmapped, port
//!   closed); the others go on.
//! - [`InputRouter`]: serial input goes to one domain at a time, the focused one.
//!
//! # Switching console input
//!
//! Bytes typed on the serial console go to the focused domain (the first one connected,
//! at first). Pressing **Ctrl-A three times in a row** moves the focus to the next
//! connected domain (in connection order, wrapping around), like Xen's own serial
//! console switches input between Xen and dom0 with triple Ctrl-A
//! (`xen/drivers/char/console.c`, `serial_rx`). The three Ctrl-A are not delivered; a
//! Ctrl-A or two followed by any other byte are delivered as typed. Each switch prints a
//! notice: `[console input now goes to dN name]`.

mod back;
mod input;
mod lines;
mod set;

pub use back::{ConsoleBack, INPUT_QUEUE_MAX};
pub use input::{InputRouter, Routed, ESCAPE};
pub use lines::{LineAssembler, LINE_MAX};
pub use set::{Consoles, Round, ROUND_BUDGET};
