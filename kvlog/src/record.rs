//! One log record: a 24-byte little-endian header, the key, the value, zeros to the
//! next sector boundary.
//!
//! ```text
//!  0  u32  magic "KVR1"
//!  4  u32  CRC-32 (IEEE) of bytes 8.. up to the end of the value
//!  8  u64  sequence number
//! 16  u8   kind: 1 put, 2 delete
//! 17  u8   0
//! 18  u16  key length (1..=MAX_KEY)
//! 20  u32  value length (0..=MAX_VALUE; 0 for a delete)
//! 24       key, value
//! ```

use alloc::vec::Vec;

pub const MAGIC: u32 = u32::from_le_bytes(*b"KVR1");
pub const HEADER: usize = 24;
pub const MAX_KEY: usize = 256;
pub const MAX_VALUE: usize = 64 * 1024;
const SECTOR: usize = super::SECTOR as usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Put = 1,
    Del = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub seq: u64,
    pub kind: Kind,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The padded length of the record whose header starts `b`, if the header is
/// plausible (magic, lengths in range); the CRC is not checked.
pub fn total_len(b: &[u8]) -> Option<usize> {
    if b.len() < HEADER || u32_at(b, 0) != MAGIC {
        return None;
    }
    let (klen, vlen) = (u16_at(b, 18) as usize, u32_at(b, 20) as usize);
    if klen == 0 || klen > MAX_KEY || vlen > MAX_VALUE {
        return None;
    }
    Some((HEADER + klen + vlen).div_ceil(SECTOR) * SECTOR)
}

impl<'a> Record<'a> {
    pub fn encoded_len(&self) -> usize {
        (HEADER + self.key.len() + self.value.len()).div_ceil(SECTOR) * SECTOR
    }

    /// Appends the record, padded, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(self.kind as u8);
        out.push(0);
        out.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.value.len() as u32).to_le_bytes());
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.value);
        let crc = crc32fast::hash(&out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        out.resize(start + self.encoded_len(), 0);
    }

    /// The intact record at the start of `b` with sequence number `seq`, or `None`
    /// (torn, corrupt, out of order, or not a record at all).
    pub fn decode(b: &'a [u8], seq: u64) -> Option<Record<'a>> {
        let total = total_len(b)?;
        if b.len() < total {
            return None;
        }
        let (klen, vlen) = (u16_at(b, 18) as usize, u32_at(b, 20) as usize);
        let body = &b[8..HEADER + klen + vlen];
        if crc32fast::hash(body) != u32_at(b, 4) || b[17] != 0 {
            return None;
        }
        let kind = match b[16] {
            1 => Kind::Put,
            2 if vlen == 0 => Kind::Del,
            _ => return None,
        };
        if u64::from_le_bytes(b[8..16].try_into().ok()?) != seq {
            return None;
        }
        Some(Record {
            seq,
            kind,
            key: &b[HEADER..HEADER + klen],
            value: &b[HEADER + klen..HEADER + klen + vlen],
        })
    }
}
