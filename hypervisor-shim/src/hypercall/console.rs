//! `console_io` (`xen.h`): the hypervisor console. Writes go to the serial line; reads
//! return nothing (input arrives with the console back-end).

use xen_sys::*;

use super::{err, Env};
use crate::domain::Domain;
use crate::machine::Machine;

/// Bytes copied from the guest per step (a stack buffer: no allocation per call).
const CHUNK: usize = 512;

pub fn console_io<M: Machine + ?Sized>(
    env: &mut Env<'_, M>,
    dom: &Domain,
    cmd: u64,
    count: u64,
    buffer: u64,
) -> i64 {
    match u32::try_from(cmd).unwrap_or(u32::MAX) {
        CONSOLEIO_write => {
            // `count` is an unsigned int in the ABI.
            let count = count as u32 as u64;
            let mut buf = [0u8; CHUNK];
            let mut done = 0u64;
            while done < count {
                let n = (count - done).min(CHUNK as u64) as usize;
                let Some(va) = buffer.checked_add(done) else {
                    return err(XEN_EFAULT);
                };
                if env.guest(dom).read(va, &mut buf[..n]).is_err() {
                    return err(XEN_EFAULT);
                }
                (env.console)(&buf[..n]);
                done += n as u64;
            }
            0
        }
        CONSOLEIO_read => 0,
        _ => err(XEN_ENOSYS),
    }
}

#[cfg(test)]
mod tests {
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
