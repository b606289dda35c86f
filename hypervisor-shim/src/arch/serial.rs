//! COM1 (16550 UART at I/O port 0x3f8): the shim's console. Output is polled; input
//! raises an interrupt (routed by `ioapic.rs`) and is drained by [`Serial::read_bytes`].

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

pub struct Serial;

impl Serial {
    pub fn init() {
        // SAFETY: COM1 is the shim's own device; these are the standard 16550 set-up
        // writes (8N1, 115200 baud, FIFOs on, interrupts off).
        unsafe {
            Port::<u8>::new(COM1 + 1).write(0x00);
            Port::<u8>::new(COM1 + 3).write(0x80);
            Port::<u8>::new(COM1).write(0x01);
            Port::<u8>::new(COM1 + 1).write(0x00);
            Port::<u8>::new(COM1 + 3).write(0x03);
            Port::<u8>::new(COM1 + 2).write(0xc7);
            Port::<u8>::new(COM1 + 4).write(0x03);
        }
    }

    /// Turns on the received-data interrupt (and OUT2, which gates the IRQ line on PC
    /// UARTs).
    pub fn enable_rx_interrupt() {
        // SAFETY: COM1's interrupt-enable and modem-control registers.
        unsafe {
            Port::<u8>::new(COM1 + 4).write(0x0b);
            Port::<u8>::new(COM1 + 1).write(0x01);
        }
    }

    /// Reads what was received, up to `buf.len()` bytes. Reading the data register
    /// until the FIFO is empty also lowers the interrupt line, so the next byte raises
    /// a new edge.
    pub fn read_bytes(buf: &mut [u8]) -> usize {
        let mut n = 0;
        // SAFETY: polling the line-status register and reading the data register of
        // COM1 has no effect on memory.
        unsafe {
            let mut lsr = Port::<u8>::new(COM1 + 5);
            while n < buf.len() && lsr.read() & 0x01 != 0 {
                buf[n] = Port::<u8>::new(COM1).read();
                n += 1;
            }
        }
        n
    }

    pub fn write_byte(b: u8) {
        // SAFETY: polling the line-status register and writing the data register of
        // COM1 has no effect on memory.
        unsafe {
            let mut lsr = Port::<u8>::new(COM1 + 5);
            while lsr.read() & 0x20 == 0 {}
            Port::<u8>::new(COM1).write(b);
        }
    }

    pub fn write_bytes(bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                Self::write_byte(b'\r');
            }
            Self::write_byte(b);
        }
    }
}

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        Self::write_bytes(s.as_bytes());
        Ok(())
    }
}
