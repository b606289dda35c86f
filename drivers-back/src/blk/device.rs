//! What a vbd is backed by: byte-addressed reads and writes, a cache flush that makes
//! what completed durable, and discard.

use alloc::vec;
use alloc::vec::Vec;

/// A device operation failed (the front end gets `BLKIF_RSP_ERROR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError;

/// A read or write that may run beside others ([`BlockDevice::run_batch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoOp {
    pub write: bool,
    /// Byte offset on the disk.
    pub offset: u64,
    /// The data to write, or where a read lands (its length is the operation's).
    pub buf: Vec<u8>,
    pub result: Result<(), IoError>,
}

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

    /// Runs every operation of `ops` and sets its `result`; a device that can have
    /// several requests in flight runs them at once, in any order (blkback batches
    /// only operations with no ordering between them). By default, one after another.
    fn run_batch(&mut self, ops: &mut [IoOp]) {
        for op in ops {
            op.result = if op.write {
                self.write(op.offset, &op.buf)
            } else {
                self.read(op.offset, &mut op.buf)
            };
        }
    }
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
