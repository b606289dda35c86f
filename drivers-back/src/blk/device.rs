//! What a vbd is backed by: byte-addressed reads and writes, a cache flush that makes
//! what completed durable, and discard.

use alloc::vec;
use alloc::vec::Vec;

/// A device operation failed (the front end gets `BLKIF_RSP_ERROR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError;

/// A disk of [`BlockDevice::sectors`] 512-byte sectors.
pub trait BlockDevice {
    /// Size in 512-byte sectors.
    fn sectors(&self) -> u64;
    /// Reads `buf.len()` bytes at byte `offset`.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes `data` at byte `offset` (into the device's cache, if it has one).
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), IoError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), IoError>;
    /// Discards `len` bytes at `offset` (they read back as zeros here).
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), IoError>;
}

/// A disk in memory with a write cache: `durable` is what survives a power cut (what
/// the last [`BlockDevice::flush`] saw), for tests of what is acknowledged when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemDisk {
    pub data: Vec<u8>,
    pub durable: Vec<u8>,
    pub flushes: u32,
    pub discards: Vec<(u64, u64)>,
}

impl MemDisk {
    /// A zeroed disk of `sectors` sectors.
    pub fn new(sectors: u64) -> Self {
        let data = vec![0; (sectors << 9) as usize];
        MemDisk {
            durable: data.clone(),
            data,
            flushes: 0,
            discards: Vec::new(),
        }
    }

    fn range(&self, offset: u64, len: u64) -> Result<core::ops::Range<usize>, IoError> {
        let end = offset.checked_add(len).ok_or(IoError)?;
        if end > self.data.len() as u64 {
            return Err(IoError);
        }
        Ok(offset as usize..end as usize)
    }
}

impl BlockDevice for MemDisk {
    fn sectors(&self) -> u64 {
        self.data.len() as u64 >> 9
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let r = self.range(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let r = self.range(offset, data.len() as u64)?;
        self.data[r].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.durable.clone_from(&self.data);
        self.flushes += 1;
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), IoError> {
        let r = self.range(offset, len)?;
        self.data[r].fill(0);
        self.discards.push((offset, len));
        Ok(())
    }
}
