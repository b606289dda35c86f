//! A 4 KiB page shared with another domain (a granted page, or a foreign mapping of one).
//!
//! The peer is possibly hostile and runs concurrently: it may change any byte of the page
//! at any time. So every access goes through an atomic word, never through a plain
//! reference (which would be a data race), and nothing read from the page is trusted:
//! the ring code ([`crate::byte_ring`]) reads each peer index once, validates it and masks
//! it before using it as an offset.
//!
//! Byte `i` of the page is byte `i % 4` (little-endian, as on x86) of word `i / 4`.
//!
//! Offsets given to these methods come from our own code (layout constants built from
//! `xen_sys` with `offset_of!`, or indices the ring code has already masked), never from
//! the peer; an out-of-page offset is therefore a bug in this program and panics.

use core::sync::atomic::{AtomicU32, Ordering};

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;
/// 32-bit words in a page.
pub const PAGE_WORDS: usize = PAGE_SIZE / 4;

/// A view of one shared page. Cheap to copy: it is a reference.
#[derive(Clone, Copy)]
pub struct SharedPage<'a> {
    words: &'a [AtomicU32; PAGE_WORDS],
}

impl core::fmt::Debug for SharedPage<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedPage")
            .field("at", &(self.words as *const _))
            .finish()
    }
}

impl<'a> SharedPage<'a> {
    /// A view of `words`, the whole shared page.
    pub fn new(words: &'a [AtomicU32; PAGE_WORDS]) -> Self {
        Self { words }
    }

    /// Loads the aligned 32-bit word at `byte_off` with Acquire ordering: data the peer
    /// wrote before publishing this value (a ring index) is visible afterwards.
    ///
    /// # Panics
    /// If `byte_off` is not 4-aligned or not inside the page (a bug in the caller).
    pub fn load_u32(&self, byte_off: usize) -> u32 {
        self.word(byte_off).load(Ordering::Acquire)
    }

    /// Stores the aligned 32-bit word at `byte_off` with Release ordering: everything we
    /// wrote (or read) before is done before the peer can see the new value.
    ///
    /// # Panics
    /// If `byte_off` is not 4-aligned or not inside the page (a bug in the caller).
    pub fn store_u32(&self, byte_off: usize, v: u32) {
        self.word(byte_off).store(v, Ordering::Release)
    }

    /// Copies `buf.len()` bytes starting at `byte_off` (any alignment) out of the page.
    ///
    /// The loads are Relaxed: ordering against the peer comes from the Acquire load of
    /// the index that told us the bytes are ready.
    ///
    /// # Panics
    /// If the range is not inside the page (a bug in the caller).
    pub fn read(&self, byte_off: usize, buf: &mut [u8]) {
        Self::check_range(byte_off, buf.len());
        let mut off = byte_off;
        let mut done = 0;
        while done < buf.len() {
            let word = self.words[off / 4].load(Ordering::Relaxed).to_le_bytes();
            let start = off % 4;
            let n = (4 - start).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&word[start..start + n]);
            done += n;
            off += n;
        }
    }

    /// Copies `data` into the page starting at `byte_off` (any alignment).
    ///
    /// Whole words are stored; a word only partly covered (at either end of an unaligned
    /// range) is updated by a load, a merge and a store. That read-modify-write is not
    /// atomic as a whole, which is correct because in the rings of `io/console.h` and
    /// `io/xs_wire.h` each data area has a single producer (us, when we call this) and
    /// the areas and the index words never share a word: the peer never writes the
    /// words we write. If a hostile peer writes them anyway, it only garbles its own
    /// view of data we are producing for it. The stores are Relaxed: the Release store
    /// of the producer index publishes them.
    ///
    /// # Panics
    /// If the range is not inside the page (a bug in the caller).
    pub fn write(&self, byte_off: usize, data: &[u8]) {
        Self::check_range(byte_off, data.len());
        let mut off = byte_off;
        let mut done = 0;
        while done < data.len() {
            let start = off % 4;
            let n = (4 - start).min(data.len() - done);
            let cell = &self.words[off / 4];
            if n == 4 {
                let bytes = [data[done], data[done + 1], data[done + 2], data[done + 3]];
                cell.store(u32::from_le_bytes(bytes), Ordering::Relaxed);
            } else {
                let mut word = cell.load(Ordering::Relaxed).to_le_bytes();
                word[start..start + n].copy_from_slice(&data[done..done + n]);
                cell.store(u32::from_le_bytes(word), Ordering::Relaxed);
            }
            done += n;
            off += n;
        }
    }

    fn word(&self, byte_off: usize) -> &AtomicU32 {
        assert!(
            byte_off.is_multiple_of(4) && byte_off < PAGE_SIZE,
            "shared page word offset {byte_off:#x} unaligned or outside the page"
        );
        &self.words[byte_off / 4]
    }

    fn check_range(byte_off: usize, len: usize) {
        assert!(
            byte_off <= PAGE_SIZE && len <= PAGE_SIZE - byte_off,
            "shared page range {byte_off:#x}+{len:#x} outside the page"
        );
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn zeroed() -> [AtomicU32; PAGE_WORDS] {
        core::array::from_fn(|_| AtomicU32::new(0))
    }

    #[test]
    fn words_are_little_endian_bytes() {
        let words = zeroed();
        let page = SharedPage::new(&words);
        page.store_u32(8, 0x0403_0201);
        let mut b = [0u8; 4];
        page.read(8, &mut b);
        assert_eq!(b, [1, 2, 3, 4]);
        page.write(13, &[0xaa]);
        assert_eq!(page.load_u32(12), 0x0000_aa00);
    }

    #[test]
    fn unaligned_write_read_roundtrip_keeps_neighbours() {
        // Every start offset and length inside a 16-byte window, against a background
        // pattern: the bytes written come back, and no byte outside the range changes.
        for off in 0..16 {
            for len in 0..=16 - off {
                let words = zeroed();
                let page = SharedPage::new(&words);
                let background: Vec<u8> = (0..32u8).map(|i| 0x80 | i).collect();
                page.write(100, &background);
                let data: Vec<u8> = (0..len as u8).collect();
                page.write(100 + off, &data);
                let mut all = vec![0u8; 32];
                page.read(100, &mut all);
                let mut want = background.clone();
                want[off..off + len].copy_from_slice(&data);
                assert_eq!(all, want, "off {off} len {len}");
            }
        }
    }

    #[test]
    fn last_bytes_of_the_page_are_reachable() {
        let words = zeroed();
        let page = SharedPage::new(&words);
        page.write(PAGE_SIZE - 3, &[7, 8, 9]);
        let mut b = [0u8; 3];
        page.read(PAGE_SIZE - 3, &mut b);
        assert_eq!(b, [7, 8, 9]);
        page.write(PAGE_SIZE, &[]);
    }

    #[test]
    #[should_panic(expected = "outside the page")]
    fn range_past_the_page_panics() {
        let words = zeroed();
        SharedPage::new(&words).write(PAGE_SIZE - 2, &[0; 3]);
    }

    #[test]
    #[should_panic(expected = "unaligned")]
    fn unaligned_word_panics() {
        let words = zeroed();
        SharedPage::new(&words).load_u32(2);
    }
}
