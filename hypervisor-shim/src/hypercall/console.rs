//! `console_io` (`xen.h`): the hypervisor console. Writes go to the serial line; reads
//! take what was typed on it.
//!
//! Input: bytes typed on the serial line collect in domain 0's buffer (at most
//! [`INPUT_MAX`]; Xen's `serial_rx_ring` also drops what does not fit), `VIRQ_CONSOLE`
//! tells domain 0, and `CONSOLEIO_read` hands them out. Only the control domain may read
//! (Xen's `xsm_console_io` default: -EPERM for others); its console back-end passes the
//! input on to the domain it chose.
//!
//! As in Xen (`guest_console_write`), the control domain writes straight through, and
//! every other domain's output is collected into whole lines, printed with a `(dN) `
//! prefix: domains running in turn never cut into each other's lines.

use xen_sys::*;

use super::env::Env;
use super::error::{Error, Result};
use crate::domain::Domain;
use crate::machine::Machine;

/// Bytes copied from the guest per step (a stack buffer: no allocation per call).
const CHUNK: usize = 512;

pub fn console_io<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &mut Domain,
    cmd: u64,
    count: u64,
    buffer: u64,
) -> Result<i64> {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        CONSOLEIO_write => {
            // `count` is an unsigned int in the ABI.
            let count = count as u32 as u64;
            let mut buf = [0u8; CHUNK];
            let mut done = 0u64;
            while done < count {
                let n = (count - done).min(CHUNK as u64) as usize;
                let va = buffer.checked_add(done).ok_or(Error::FAULT)?;
                env.guest(dom)
                    .read(va, &mut buf[..n])
                    .map_err(|_| Error::FAULT)?;
                if dom.id == 0 {
                    (env.console)(&buf[..n]);
                } else {
                    write_lines(env, dom, &buf[..n]);
                }
                done += n as u64;
            }
            Ok(0)
        }
        CONSOLEIO_read => {
            if !dom.privileged {
                return Err(XEN_EPERM.into());
            }
            let count = (count as u32 as usize).min(dom.console_input.len());
            let (a, b) = dom.console_input.as_slices();
            let (a, b) = if a.len() >= count {
                (&a[..count], &b[..0])
            } else {
                (a, &b[..count - a.len()])
            };
            let mut mem = env.guest(dom);
            if mem.write(buffer, a).is_err()
                || mem.write(buffer.wrapping_add(a.len() as u64), b).is_err()
            {
                return Err(Error::FAULT);
            }
            dom.console_input.drain(..count);
            Ok(count as i64)
        }
        _ => Err(XEN_ENOSYS.into()),
    }
}

/// Most typed bytes kept for domain 0 to read.
pub const INPUT_MAX: usize = 4096;

/// Longest line kept for a domain before it is printed anyway (Xen's
/// `DOMAIN_PBUF_SIZE`).
const LINE_MAX: usize = 200;

fn write_lines<M: Machine + ?Sized>(env: &mut Env<'_, M>, dom: &mut Domain, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let room = LINE_MAX - dom.console_line.len();
        let (n, eol) = match bytes.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (bytes.len().min(room), bytes.len() >= room),
        };
        dom.console_line.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        if eol {
            let prefix = alloc::format!("(d{}) ", dom.id);
            (env.console)(prefix.as_bytes());
            if dom.console_line.last() != Some(&b'\n') {
                dom.console_line.push(b'\n');
            }
            (env.console)(&dom.console_line);
            dom.console_line.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::env::err;
    use super::super::tests::{World, SCRATCH};
    use super::*;

    #[test]
    fn write_copies_the_guest_buffer() {
        let mut w = World::new(true);
        w.poke(SCRATCH, b"hello, console");
        assert_eq!(
            w.call(
                __HYPERVISOR_console_io,
                &[CONSOLEIO_write as u64, 14, SCRATCH]
            ),
            0
        );
        assert_eq!(w.out, b"hello, console");
        // A write spanning pages and larger than one chunk arrives whole.
        let big: alloc::vec::Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
        w.out.clear();
        w.poke(SCRATCH + 0xf00, &big);
        assert_eq!(
            w.call(__HYPERVISOR_console_io, &[0, 3000, SCRATCH + 0xf00]),
            0
        );
        assert_eq!(w.out, big);
    }

    #[test]
    fn dom0_reads_typed_input_and_a_domu_may_not() {
        let mut w = World::new(true);
        w.dom.console_input.extend(b"typed");
        let read = |w: &mut World, n: u64| {
            w.call(
                __HYPERVISOR_console_io,
                &[CONSOLEIO_read as u64, n, SCRATCH],
            )
        };
        assert_eq!(read(&mut w, 3), 3);
        assert_eq!(w.peek(SCRATCH, 3), b"typ");
        assert_eq!(read(&mut w, 100), 2, "only what is there");
        assert_eq!(w.peek(SCRATCH, 2), b"ed");
        assert_eq!(read(&mut w, 100), 0);
        // Wrapped around inside the buffer: still read in order.
        w.dom.console_input.extend(b"abcdef");
        w.dom.console_input.drain(..4);
        w.dom.console_input.extend(b"ghij");
        assert_eq!(read(&mut w, 6), 6);
        assert_eq!(w.peek(SCRATCH, 6), b"efghij");
        w.dom.console_input.extend(b"x");
        assert_eq!(read(&mut w, (1 << 40) + 1), 1, "count is an unsigned int");
        w.dom.console_input.extend(b"y");
        assert_eq!(read(&mut w, 1), 1);

        let mut u = World::new(false);
        u.dom.console_input.extend(b"secret");
        assert_eq!(read(&mut u, 6), err(XEN_EPERM));
        assert_eq!(u.dom.console_input.len(), 6);
    }

    #[test]
    fn a_domu_writes_whole_prefixed_lines() {
        let mut w = World::new(false);
        w.dom.id = 3;
        w.poke(SCRATCH, b"one\ntw");
        let write = |w: &mut World, n: u64| {
            w.call(
                __HYPERVISOR_console_io,
                &[CONSOLEIO_write as u64, n, SCRATCH],
            )
        };
        assert_eq!(write(&mut w, 6), 0);
        assert_eq!(w.out, b"(d3) one\n", "the partial line waits");
        w.poke(SCRATCH, b"o\n");
        assert_eq!(write(&mut w, 2), 0);
        assert_eq!(w.out, b"(d3) one\n(d3) two\n");
        w.out.clear();
        w.poke(SCRATCH, &[b'x'; 250]);
        assert_eq!(write(&mut w, 250), 0);
        assert_eq!(
            w.out.len(),
            5 + 200 + 1,
            "an overlong line is cut at 200 bytes"
        );
    }

    #[test]
    fn bad_pointers_are_efault_not_a_shim_fault() {
        let mut w = World::new(true);
        for bad in [
            0,
            0xffff_8300_0000_0000,
            0x8000_0000_0000_0000,
            u64::MAX - 4,
        ] {
            assert_eq!(
                w.call(__HYPERVISOR_console_io, &[0, 16, bad]),
                err(XEN_EFAULT),
                "{bad:#x}"
            );
        }
        // Runs off the end of the mapped region part-way through.
        let end = w.v_end;
        assert_eq!(
            w.call(__HYPERVISOR_console_io, &[0, 0x2000, end - 0x1000]),
            err(XEN_EFAULT)
        );
        // Count is 32 bits: the upper half is ignored, as Xen does.
        w.out.clear();
        assert_eq!(w.call(__HYPERVISOR_console_io, &[0, 1 << 32, 0]), 0);
        assert!(w.out.is_empty());
    }

    #[test]
    fn read_returns_nothing_and_unknown_subops_are_enosys() {
        let mut w = World::new(true);
        assert_eq!(
            w.call(
                __HYPERVISOR_console_io,
                &[CONSOLEIO_read as u64, 16, SCRATCH]
            ),
            0
        );
        assert_eq!(
            w.call(__HYPERVISOR_console_io, &[7, 16, SCRATCH]),
            err(XEN_ENOSYS)
        );
    }
}
