//! A log-structured key-value store on a block device, for appliances (the `kvstore`
//! example keeps it on its virtual disk). no_std, generic over [`Storage`] (an async
//! disk: blkfront's in a guest, memory in tests).
//!
//! **On disk.** Sector 0 is the superblock ([`superblock`]); the log starts at
//! [`LOG_START`]. A record is a 24-byte header, the key and the value, padded with zeros
//! to whole sectors ([`record`]): magic, CRC-32 of everything after the CRC field, a
//! sequence number one more than the record before, the kind (put or delete) and the
//! lengths.
//!
//! **Durability.** [`Kv::put`] and [`Kv::del`] change the map at once and stage the
//! record; [`Kv::commit`] writes every staged record in one write and then flushes the
//! disk, and only when the flush is answered does it return: a caller acknowledges a
//! write after its commit, never before.
//!
//! **Recovery.** [`Kv::open`] replays the log from the start until the first record that
//! is not intact (bad magic, impossible length, CRC mismatch, or a sequence number that
//! does not follow): that and everything after it is a torn tail from a crash, dropped.
//! Before appending, it zeroes (and flushes) the [`MAX_BATCH`] bytes after the tail: a
//! torn commit may have left intact records *after* a torn one, which a later replay
//! must never find again behind the new records.
//!
//! There is no compaction: the log grows until the disk is full ([`Error::Full`]).
#![no_std]

extern crate alloc;

pub mod record;
pub mod superblock;

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

pub use record::{Kind, Record, MAX_KEY, MAX_VALUE};

pub const SECTOR: u64 = 512;
/// Where the log starts (after the superblock's sector, aligned to a page).
pub const LOG_START: u64 = 4096;
/// The most one commit writes; a larger batch is committed in several.
pub const MAX_BATCH: u64 = 256 * 1024;
/// How much of the log replay reads at a time.
const SCAN_CHUNK: usize = 256 * 1024;

/// A disk failure (the device answered with an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError;

/// What the store needs of a disk.
#[allow(async_fn_in_trait)]
pub trait Storage {
    /// Size in bytes.
    fn size(&self) -> u64;
    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError>;
    async fn write(&self, offset: u64, data: &[u8]) -> Result<(), IoError>;
    /// Makes every completed write durable.
    async fn flush(&self) -> Result<(), IoError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    Io,
    /// Sector 0 holds something that is not our superblock: not formatted over.
    NotOurs,
    /// The disk is too small to hold a log.
    TooSmall,
    /// No room left in the log for the staged records.
    Full,
    /// A key or value over [`MAX_KEY`] / [`MAX_VALUE`], or an empty key.
    BadSize,
    /// Opened read-only ([`Kv::open_readonly`]): no writes.
    ReadOnly,
    /// A read-only disk without a store on it.
    Blank,
}

impl From<IoError> for Error {
    fn from(_: IoError) -> Self {
        Error::Io
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Io => "disk I/O error",
            Error::NotOurs => "the disk holds something else (not a kvlog superblock)",
            Error::TooSmall => "the disk is too small for a log",
            Error::Full => "the log is full",
            Error::BadSize => "empty key, or key or value too long",
            Error::ReadOnly => "the store is read-only",
            Error::Blank => "the read-only disk holds no store",
        })
    }
}

/// What [`Kv::open`] found and what the store did since.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The disk was blank and was formatted.
    pub formatted: bool,
    /// Records replayed at open.
    pub replayed: u64,
    /// Replay stopped at something other than zeros: a commit was cut short.
    pub torn_tail: bool,
    pub commits: u64,
    pub records_written: u64,
    /// Where the next record goes, and the disk's size.
    pub log_bytes: u64,
    pub disk_bytes: u64,
}

/// The store: the map in memory, the log on `disk`.
pub struct Kv<S: Storage> {
    disk: S,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// End of the log on disk.
    tail: u64,
    /// The next record's sequence number.
    seq: u64,
    /// Encoded records staged since the last commit.
    staged: Vec<u8>,
    stats: Stats,
    readonly: bool,
}

impl<S: Storage> Kv<S> {
    /// Opens the store on `disk`: formats a blank disk, replays an existing log.
    pub async fn open(disk: S) -> Result<Kv<S>, Error> {
        Self::open_mode(disk, false).await
    }

    /// Opens the store on a disk it may not write: replays the log; the store refuses
    /// changes.
    pub async fn open_readonly(disk: S) -> Result<Kv<S>, Error> {
        Self::open_mode(disk, true).await
    }

    async fn open_mode(disk: S, readonly: bool) -> Result<Kv<S>, Error> {
        if disk.size() < LOG_START + MAX_BATCH {
            return Err(Error::TooSmall);
        }
        let mut sb = vec![0u8; SECTOR as usize];
        disk.read(0, &mut sb).await?;
        let mut kv = Kv {
            disk,
            map: BTreeMap::new(),
            tail: LOG_START,
            seq: 1,
            staged: Vec::new(),
            stats: Stats::default(),
            readonly,
        };
        kv.stats.disk_bytes = kv.disk.size();
        match superblock::check(&sb) {
            Ok(()) => kv.replay().await?,
            Err(superblock::Blank) if readonly => return Err(Error::Blank),
            Err(superblock::Blank) if sb.iter().all(|&b| b == 0) => {
                kv.stats.formatted = true;
                kv.disk.write(0, &superblock::encode()).await?;
            }
            Err(superblock::Blank) => return Err(Error::NotOurs),
        }
        kv.stats.log_bytes = kv.tail;
        if readonly {
            return Ok(kv);
        }
        // Nothing stale may follow the tail (see the module doc).
        let end = (kv.tail + MAX_BATCH).min(kv.disk.size());
        let zeros = vec![0u8; (end - kv.tail) as usize];
        kv.disk.write(kv.tail, &zeros).await?;
        kv.disk.flush().await?;
        Ok(kv)
    }

    /// Replays the log into the map; sets the tail after the last intact record.
    async fn replay(&mut self) -> Result<(), Error> {
        // `buf` holds the disk from `base` on.
        let mut buf: Vec<u8> = Vec::new();
        let mut base = self.tail;
        loop {
            let at = (self.tail - base) as usize;
            self.fill(&mut buf, base, at + record::HEADER).await?;
            let total = record::total_len(&buf[at..]);
            if let Some(total) = total {
                self.fill(&mut buf, base, at + total).await?;
            }
            let end = buf.len().min(at + total.unwrap_or(0));
            let Some(r) = total.and_then(|_| Record::decode(&buf[at..end], self.seq)) else {
                // Anything but zeros where the next commit goes was left by a crash.
                self.fill(&mut buf, base, at + MAX_BATCH as usize).await?;
                let last = buf.len().min(at + MAX_BATCH as usize);
                self.stats.torn_tail = buf[at..last].iter().any(|&b| b != 0);
                return Ok(());
            };
            match r.kind {
                Kind::Put => {
                    self.map.insert(r.key.to_vec(), r.value.to_vec());
                }
                Kind::Del => {
                    self.map.remove(r.key);
                }
            }
            self.tail += r.encoded_len() as u64;
            self.seq += 1;
            self.stats.replayed += 1;
            // Keep the buffer from growing without end.
            let at = (self.tail - base) as usize;
            if at > SCAN_CHUNK {
                buf.drain(..at);
                base = self.tail;
            }
        }
    }

    /// Reads on until `buf` (the disk from `base`) has `want` bytes or the disk ends.
    async fn fill(&self, buf: &mut Vec<u8>, base: u64, want: usize) -> Result<(), Error> {
        let size = self.disk.size();
        while buf.len() < want {
            let from = base + buf.len() as u64;
            if from >= size {
                break;
            }
            let n = ((size - from) as usize).min(SCAN_CHUNK);
            let old = buf.len();
            buf.resize(old + n, 0);
            self.disk.read(from, &mut buf[old..]).await?;
        }
        Ok(())
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|v| v.as_slice())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.map.keys().map(|k| k.as_slice())
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Records staged and not yet committed.
    pub fn staged_bytes(&self) -> usize {
        self.staged.len()
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    fn stage(&mut self, kind: Kind, key: &[u8], value: &[u8]) -> Result<(), Error> {
        if self.readonly {
            return Err(Error::ReadOnly);
        }
        if key.is_empty() || key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(Error::BadSize);
        }
        let r = Record {
            seq: self.seq,
            kind,
            key,
            value,
        };
        let room = self.disk.size() - self.tail;
        if (self.staged.len() + r.encoded_len()) as u64 > room {
            return Err(Error::Full);
        }
        r.encode_into(&mut self.staged);
        self.seq += 1;
        Ok(())
    }

    /// Sets `key` to `value` (durable after the next [`Kv::commit`]).
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.stage(Kind::Put, key, value)?;
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    /// Removes `key`; whether it was there (durable after the next commit).
    pub fn del(&mut self, key: &[u8]) -> Result<bool, Error> {
        if self.readonly {
            return Err(Error::ReadOnly);
        }
        if !self.map.contains_key(key) {
            return Ok(false);
        }
        self.stage(Kind::Del, key, &[])?;
        self.map.remove(key);
        Ok(true)
    }

    /// Writes the staged records and flushes the disk; returns once both are done.
    /// After an error the store must be reopened (the map may hold what the disk
    /// does not).
    pub async fn commit(&mut self) -> Result<(), Error> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let mut done = 0;
        while done < self.staged.len() {
            // Whole records, at most MAX_BATCH (or one record larger than that).
            let mut end = done;
            while end < self.staged.len() {
                let len = record::total_len(&self.staged[end..]).expect("staged records are ours");
                if end > done && (end + len - done) as u64 > MAX_BATCH {
                    break;
                }
                end += len;
            }
            self.disk
                .write(self.tail + done as u64, &self.staged[done..end])
                .await?;
            done = end;
        }
        self.disk.flush().await?;
        self.tail += self.staged.len() as u64;
        self.stats.commits += 1;
        self.stats.records_written += count_records(&self.staged);
        self.stats.log_bytes = self.tail;
        self.staged.clear();
        Ok(())
    }
}

fn count_records(mut staged: &[u8]) -> u64 {
    let mut n = 0;
    while let Some(len) = record::total_len(staged) {
        n += 1;
        staged = &staged[len.min(staged.len())..];
    }
    n
}

#[cfg(test)]
mod tests;
