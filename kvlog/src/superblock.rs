//! Sector 0: what marks a disk as a kvlog one.
//!
//! ```text
//!  0  [u8; 8]  "KVLOG\0\x01\0" (magic, format version 1)
//!  8  u64      where the log starts (LOG_START)
//! 16  u32      CRC-32 of bytes 0..16
//! ```

use alloc::vec;
use alloc::vec::Vec;

const MAGIC: &[u8; 8] = b"KVLOG\0\x01\0";

/// Not our superblock (blank, or something else: the caller looks which).
#[derive(Debug, PartialEq, Eq)]
pub struct Blank;

pub fn encode() -> Vec<u8> {
    let mut s = vec![0u8; super::SECTOR as usize];
    s[..8].copy_from_slice(MAGIC);
    s[8..16].copy_from_slice(&super::LOG_START.to_le_bytes());
    let crc = crc32fast::hash(&s[..16]);
    s[16..20].copy_from_slice(&crc.to_le_bytes());
    s
}

pub fn check(s: &[u8]) -> Result<(), Blank> {
    if s.len() < 20 || &s[..8] != MAGIC {
        return Err(Blank);
    }
    let crc = u32::from_le_bytes(s[16..20].try_into().map_err(|_| Blank)?);
    let start = u64::from_le_bytes(s[8..16].try_into().map_err(|_| Blank)?);
    if crc != crc32fast::hash(&s[..16]) || start != super::LOG_START {
        return Err(Blank);
    }
    Ok(())
}
