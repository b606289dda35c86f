//! [`TestMachine`]: machine memory for host tests, a vector of frames.

use crate::machine::{Frame, Machine, Mfn, PAGE_SIZE};

/// Machine memory for host tests: frames `base..base + n`.
pub struct TestMachine {
    pub base: Mfn,
    pub frames: alloc::vec::Vec<Frame>,
    /// Port writes (port, size, value), in order.
    pub port_writes: alloc::vec::Vec<(u16, u8, u32)>,
    /// What `tsc()` reads: tests move time by hand.
    pub tsc: u64,
}

impl TestMachine {
    pub fn new(base: Mfn, n: usize) -> Self {
        Self {
            base,
            frames: alloc::vec![[0; PAGE_SIZE]; n],
            port_writes: alloc::vec::Vec::new(),
            tsc: 0,
        }
    }
}

impl Machine for TestMachine {
    fn frame(&self, mfn: Mfn) -> Option<&Frame> {
        self.frames.get(mfn.checked_sub(self.base)? as usize)
    }
    fn frame_mut(&mut self, mfn: Mfn) -> Option<&mut Frame> {
        self.frames.get_mut(mfn.checked_sub(self.base)? as usize)
    }
    fn port_in(&mut self, port: u16, size: u8) -> u32 {
        // A recognisable pattern: the port number in every byte pair.
        (port as u32 | (port as u32) << 16) & (u32::MAX >> (32 - 8 * size as u32))
    }
    fn port_out(&mut self, port: u16, size: u8, value: u32) {
        self.port_writes.push((port, size, value));
    }
    fn tsc(&self) -> u64 {
        self.tsc
    }
}
