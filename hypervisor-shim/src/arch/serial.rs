//! COM1 (16550 UART at I/O port 0x3f8): the shim's console, polled, no interrupts.

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
