//! The shared harness of the fuzz targets: one module per parser of guest- or
//! user-supplied bytes, each with a `check(data)` that feeds `data` to the parser and
//! asserts properties of what it returns (not only that it returns). The binaries in
//! `fuzz_targets/` are one-line wrappers around these, as in rust-vmm's `fuzz/common`.
//!
//! Each module's doc says how it reads its input, so that a crash input under
//! `fuzz/regressions/` can be read by hand; `examples/seeds.rs` writes the checked-in corpus.
#![forbid(unsafe_code)]

pub mod blkif;
pub mod blkfront;
pub mod bundle;
pub mod byte_ring;
pub mod bzimage;
pub mod elf;
pub mod hypercalls;
pub mod kvlog;
pub mod offload;
pub mod xenstored;
pub mod xs_client;
pub mod xs_wire;

/// Where `inner` starts in `outer`, if it is a sub-slice of it (borrows from it, within
/// its bounds).
///
/// Compares offsets, never addresses: libFuzzer's comparison tracing would otherwise
/// learn this run's heap addresses, and runs with the same seed would differ.
pub fn offset_within(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let start = (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize);
    let fits = start <= outer.len() && inner.len() <= outer.len() - start;
    fits.then_some(start)
}

/// Whether `inner` is a sub-slice of `outer`.
pub fn lies_within(outer: &[u8], inner: &[u8]) -> bool {
    offset_within(outer, inner).is_some()
}

/// Reads the input as a sequence of small fields; missing bytes read as 0, so every
/// input is a valid (if short) program.
pub struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { rest: data }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        let (b, rest) = self
            .rest
            .split_first()
            .map_or((0, &[][..]), |(b, r)| (*b, r));
        self.rest = rest;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = b;
        a
    }
}
