//! Machine memory as the shim's logic sees it: frames by machine frame number.
//!
//! On the hardware this is the direct map (`src/arch/`); in host tests, a vector of pages.
//! Guest virtual memory is reached only through a software walk of the guest's own page
//! tables ([`GuestMemory`]), so a bad guest pointer is an error, never a shim fault.

use core::mem::size_of;
use core::ops::Range;

use crate::abi::{FromGuest, ToGuest, MAX_SIZE};
use crate::paging::{self, Pte};

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
pub use crate::paging::Mfn;
pub type Frame = [u8; PAGE_SIZE];

pub trait Machine {
    /// The frame `mfn`, or `None` if it is not RAM the shim can reach.
    fn frame(&self, mfn: Mfn) -> Option<&Frame>;
    fn frame_mut(&mut self, mfn: Mfn) -> Option<&mut Frame>;

    fn read_phys(&self, paddr: u64, out: &mut [u8]) -> Option<()> {
        for chunk in page_chunks(paddr, out.len()) {
            let (a, off, r) = chunk?;
            let f = self.frame(a >> PAGE_SHIFT)?;
            out[r.clone()].copy_from_slice(&f[off..off + r.len()]);
        }
        Some(())
    }

    fn read_phys_u64(&self, paddr: u64) -> Option<u64> {
        let mut b = [0; 8];
        self.read_phys(paddr, &mut b)?;
        Some(u64::from_le_bytes(b))
    }

    fn read_phys_u32(&self, paddr: u64) -> Option<u32> {
        let mut b = [0; 4];
        self.read_phys(paddr, &mut b)?;
        Some(u32::from_le_bytes(b))
    }

    /// Stops using the address space rooted at `l4` (before its frames are scrubbed).
    fn release_address_space(&mut self, _l4: Mfn) {}

    fn zero_frame(&mut self, mfn: Mfn) -> Option<()> {
        self.frame_mut(mfn)?.fill(0);
        Some(())
    }

    /// Reads an I/O port of `size` bytes (1, 2, 4) for a guest allowed to (see
    /// `emulate.rs`); all ones where there is no port hardware.
    fn port_in(&mut self, _port: u16, _size: u8) -> u32 {
        u32::MAX
    }

    /// Writes an I/O port for a guest allowed to.
    fn port_out(&mut self, _port: u16, _size: u8, _value: u32) {}

    /// The time-stamp counter, which system time derives from (`time.rs`).
    fn tsc(&self) -> u64 {
        0
    }
}

/// Splits `[addr, addr + len)` at page boundaries: each piece's address, its offset in
/// its page, and its range in the caller's buffer; `None` where the range wraps.
fn page_chunks(addr: u64, len: usize) -> impl Iterator<Item = Option<(u64, usize, Range<usize>)>> {
    let mut done = 0;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let Some(a) = addr.checked_add(done as u64) else {
            done = len;
            return Some(None);
        };
        let off = (a as usize) & (PAGE_SIZE - 1);
        let n = (PAGE_SIZE - off).min(len - done);
        done += n;
        Some(Some((a, off, done - n..done)))
    })
}

/// Writes `bytes` at byte `offset` of frame `mfn` (within the frame).
pub fn write_bytes<M: Machine + ?Sized>(m: &mut M, mfn: Mfn, offset: usize, bytes: &[u8]) {
    if let Some(f) = m.frame_mut(mfn) {
        if let Some(dst) = f.get_mut(offset..offset + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
}

pub fn write_u64<M: Machine + ?Sized>(m: &mut M, mfn: Mfn, offset: usize, v: u64) {
    write_bytes(m, mfn, offset, &v.to_le_bytes());
}

#[inline]
pub fn read_u64(frame: &Frame, index: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&frame[index * 8..index * 8 + 8]);
    u64::from_le_bytes(b)
}

/// The L1 table that maps `va` in the address space rooted at `l4`
/// (`map_guest_l1e`), if the upper levels map it with 4 KiB pages.
pub fn l1_table<M: Machine + ?Sized>(m: &M, l4: Mfn, va: u64) -> Option<Mfn> {
    let mut table = l4;
    for level in (2..=4).rev() {
        let e = Pte(read_u64(m.frame(table)?, paging::index(va, level)));
        if !e.present() || e.huge() {
            return None;
        }
        table = e.mfn();
    }
    Some(table)
}

/// Why a guest virtual address could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestFault {
    /// Not canonical, not mapped, not user-accessible, or not writable when written.
    Unmapped(u64),
}

/// A domain's view of its own virtual memory, through its current page tables.
pub struct GuestMemory<'a, M: Machine + ?Sized> {
    pub machine: &'a mut M,
    pub l4: Mfn,
}

impl<M: Machine + ?Sized> GuestMemory<'_, M> {
    /// Walks the guest's tables like the MMU would for a ring-3 access.
    #[inline]
    pub fn translate(&self, va: u64, write: bool) -> Result<Mfn, GuestFault> {
        let fault = GuestFault::Unmapped(va);
        if !paging::is_canonical(va) {
            return Err(fault);
        }
        let mut table = self.l4;
        for level in (1..=4).rev() {
            let frame = self.machine.frame(table).ok_or(fault)?;
            let pte = Pte(read_u64(frame, paging::index(va, level)));
            if !pte.present() || !pte.user() || (write && !pte.writable()) || pte.huge() {
                return Err(fault);
            }
            table = pte.mfn();
        }
        Ok(table)
    }

    pub fn read(&self, va: u64, out: &mut [u8]) -> Result<(), GuestFault> {
        // Most guest arguments are small and within one page: one walk, one copy.
        let off = (va as usize) & (PAGE_SIZE - 1);
        if off + out.len() <= PAGE_SIZE {
            let mfn = self.translate(va, false)?;
            let f = self.machine.frame(mfn).ok_or(GuestFault::Unmapped(va))?;
            out.copy_from_slice(&f[off..off + out.len()]);
            return Ok(());
        }
        for chunk in page_chunks(va, out.len()) {
            let (a, off, r) = chunk.ok_or(GuestFault::Unmapped(va))?;
            let mfn = self.translate(a, false)?;
            let f = self.machine.frame(mfn).ok_or(GuestFault::Unmapped(a))?;
            out[r.clone()].copy_from_slice(&f[off..off + r.len()]);
        }
        Ok(())
    }

    pub fn write(&mut self, va: u64, data: &[u8]) -> Result<(), GuestFault> {
        let off = (va as usize) & (PAGE_SIZE - 1);
        if off + data.len() <= PAGE_SIZE {
            let mfn = self.translate(va, true)?;
            let f = self
                .machine
                .frame_mut(mfn)
                .ok_or(GuestFault::Unmapped(va))?;
            f[off..off + data.len()].copy_from_slice(data);
            return Ok(());
        }
        for chunk in page_chunks(va, data.len()) {
            let (a, off, r) = chunk.ok_or(GuestFault::Unmapped(va))?;
            let mfn = self.translate(a, true)?;
            let f = self.machine.frame_mut(mfn).ok_or(GuestFault::Unmapped(a))?;
            f[off..off + r.len()].copy_from_slice(&data[r]);
        }
        Ok(())
    }

    /// Reads a `T` at `va` (the bytes in the ABI's layout, see [`crate::abi`]).
    pub fn read_obj<T: FromGuest>(&self, va: u64) -> Result<T, GuestFault> {
        const { assert!(size_of::<T>() <= MAX_SIZE) };
        let mut buf = [0u8; MAX_SIZE];
        let b = &mut buf[..size_of::<T>()];
        self.read(va, b)?;
        Ok(T::decode(b))
    }

    /// Writes `v` at `va` (padding bytes as zeros).
    pub fn write_obj<T: ToGuest>(&mut self, va: u64, v: &T) -> Result<(), GuestFault> {
        const { assert!(size_of::<T>() <= MAX_SIZE) };
        let mut buf = [0u8; MAX_SIZE];
        let b = &mut buf[..size_of::<T>()];
        v.encode(b);
        self.write(va, b)
    }

    pub fn read_u32(&self, va: u64) -> Result<u32, GuestFault> {
        let mut b = [0; 4];
        self.read(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read_u16(&self, va: u64) -> Result<u16, GuestFault> {
        let mut b = [0; 2];
        self.read(va, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub fn read_u64(&self, va: u64) -> Result<u64, GuestFault> {
        let mut b = [0; 8];
        self.read(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_u32(&mut self, va: u64, v: u32) -> Result<(), GuestFault> {
        self.write(va, &v.to_le_bytes())
    }
}

// Bitmaps in guest frames (`shared_info`'s pending and mask bits, `vcpu_info`'s
// selector): the guest may change them at any moment, so a bit read is only a hint.

fn bit_location(base: usize, bit: u32) -> (usize, u8) {
    (base + (bit / 8) as usize, 1 << (bit % 8))
}

/// Bit `bit` of the bitmap at byte `base` of frame `mfn` (false if not RAM).
pub fn test_bit<M: Machine + ?Sized>(m: &M, mfn: Mfn, base: usize, bit: u32) -> bool {
    let (at, b) = bit_location(base, bit);
    m.frame(mfn)
        .and_then(|f| f.get(at))
        .is_some_and(|&v| v & b != 0)
}

/// Sets a bit in guest memory and says whether it was set before.
pub fn test_and_set<M: Machine + ?Sized>(m: &mut M, mfn: Mfn, base: usize, bit: u32) -> bool {
    let (at, b) = bit_location(base, bit);
    match m.frame_mut(mfn).and_then(|f| f.get_mut(at)) {
        Some(v) => {
            let was = *v & b != 0;
            *v |= b;
            was
        }
        None => true,
    }
}

/// Clears a bit in guest memory and says whether it was set before.
pub fn test_and_clear<M: Machine + ?Sized>(m: &mut M, mfn: Mfn, base: usize, bit: u32) -> bool {
    let (at, b) = bit_location(base, bit);
    match m.frame_mut(mfn).and_then(|f| f.get_mut(at)) {
        Some(v) => {
            let was = *v & b != 0;
            *v &= !b;
            was
        }
        None => false,
    }
}
