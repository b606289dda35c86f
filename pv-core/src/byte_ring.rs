//! The two-index byte ring of `xen/include/public/io/console.h` (`in`/`out`) and
//! `xen/include/public/io/xs_wire.h` (`req`/`rsp`).
//!
//! Each ring is a power-of-two data area plus two free-running 32-bit indices in the same
//! page: the producer writes bytes at `prod & (size - 1)` and then advances `prod`; the
//! consumer reads at `cons & (size - 1)` and then advances `cons`. `prod - cons`
//! (wrapping) is the number of bytes in the ring, so the ring is full at `size`, not
//! `size - 1` (`MASK_XENCONS_IDX`, `MASK_XENSTORE_IDX`).
//!
//! The peer may be hostile: indices are read once per operation, validated
//! (`prod - cons <= size`, as Linux's `hvc_xen.c` and Xen's `xenconsoled` check) and
//! used only as local, masked copies. An impossible pair is [`Corrupt`]: the caller
//! disconnects the peer. Ordering follows `hvc_xen.c`: the producer stores data before a
//! Release store of `prod`; the consumer loads `prod` with Acquire before the data and
//! releases `cons` after it.

use crate::page::{SharedPage, PAGE_SIZE};
use core::mem::offset_of;
use xen_sys::{xencons_interface, xenstore_domain_interface, XENSTORE_RING_SIZE};

/// The peer left the ring indices in an impossible state (more bytes in the ring than
/// it holds). The ring cannot be used any more; disconnect the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

impl core::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("shared ring indices corrupt")
    }
}

/// Where one byte ring lives in its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRing {
    data_off: usize,
    size: u32,
    cons_off: usize,
    prod_off: usize,
}

/// The length of an array field, from an accessor: lets the ring sizes come from the
/// bindgen structs rather than from numbers written here.
const fn array_len<S, T, const N: usize>(_field: fn(&S) -> &[T; N]) -> usize {
    N
}

impl ByteRing {
    /// `xencons_interface.in`: input to the guest. The back end produces, the front end
    /// consumes.
    pub const CONSOLE_IN: ByteRing = ByteRing::new(
        offset_of!(xencons_interface, in_),
        array_len(|i: &xencons_interface| &i.in_),
        offset_of!(xencons_interface, in_cons),
        offset_of!(xencons_interface, in_prod),
    );
    /// `xencons_interface.out`: output of the guest. The front end produces, the back
    /// end consumes.
    pub const CONSOLE_OUT: ByteRing = ByteRing::new(
        offset_of!(xencons_interface, out),
        array_len(|i: &xencons_interface| &i.out),
        offset_of!(xencons_interface, out_cons),
        offset_of!(xencons_interface, out_prod),
    );
    /// `xenstore_domain_interface.req`: requests. The guest produces, xenstored consumes.
    pub const STORE_REQ: ByteRing = ByteRing::new(
        offset_of!(xenstore_domain_interface, req),
        array_len(|i: &xenstore_domain_interface| &i.req),
        offset_of!(xenstore_domain_interface, req_cons),
        offset_of!(xenstore_domain_interface, req_prod),
    );
    /// `xenstore_domain_interface.rsp`: responses and watch events. xenstored produces,
    /// the guest consumes.
    pub const STORE_RSP: ByteRing = ByteRing::new(
        offset_of!(xenstore_domain_interface, rsp),
        array_len(|i: &xenstore_domain_interface| &i.rsp),
        offset_of!(xenstore_domain_interface, rsp_cons),
        offset_of!(xenstore_domain_interface, rsp_prod),
    );

    /// A ring of `size` bytes at `data_off` with its indices at `cons_off`/`prod_off`.
    ///
    /// # Panics
    /// If `size` is not a power of two, an area leaves the page, or an index is
    /// unaligned: a layout bug, caught at compile time for the constants above.
    pub const fn new(data_off: usize, size: usize, cons_off: usize, prod_off: usize) -> Self {
        assert!(size.is_power_of_two() && size <= PAGE_SIZE);
        assert!(data_off <= PAGE_SIZE - size);
        assert!(cons_off.is_multiple_of(4) && cons_off < PAGE_SIZE);
        assert!(prod_off.is_multiple_of(4) && prod_off < PAGE_SIZE);
        ByteRing {
            data_off,
            size: size as u32,
            cons_off,
            prod_off,
        }
    }

    /// Bytes the data area holds.
    pub const fn size(&self) -> usize {
        self.size as usize
    }

    /// Reads both indices once and checks them: `(cons, prod)`.
    fn indices(&self, page: &SharedPage<'_>) -> Result<(u32, u32), Corrupt> {
        let cons = page.load_u32(self.cons_off);
        let prod = page.load_u32(self.prod_off);
        if prod.wrapping_sub(cons) > self.size {
            return Err(Corrupt);
        }
        Ok((cons, prod))
    }

    /// Bytes ready for the consumer.
    pub fn available(&self, page: &SharedPage<'_>) -> Result<usize, Corrupt> {
        let (cons, prod) = self.indices(page)?;
        Ok(prod.wrapping_sub(cons) as usize)
    }

    /// Bytes the producer may write now.
    pub fn space(&self, page: &SharedPage<'_>) -> Result<usize, Corrupt> {
        Ok(self.size() - self.available(page)?)
    }

    /// Producer side: writes as much of `data` as fits, then publishes it by advancing
    /// `prod` (Release). Returns the number of bytes written (0 when full). The caller
    /// notifies the peer if that is not 0.
    pub fn write(&self, page: &SharedPage<'_>, data: &[u8]) -> Result<usize, Corrupt> {
        let (cons, prod) = self.indices(page)?;
        let free = self.size - prod.wrapping_sub(cons);
        let n = data.len().min(free as usize);
        let start = (prod & (self.size - 1)) as usize;
        let first = n.min(self.size() - start);
        page.write(self.data_off + start, &data[..first]);
        page.write(self.data_off, &data[first..n]);
        if n > 0 {
            // n <= size <= 4096, so the cast is exact.
            page.store_u32(self.prod_off, prod.wrapping_add(n as u32));
        }
        Ok(n)
    }

    /// Consumer side: copies up to `buf.len()` waiting bytes into `buf`, then releases
    /// their space by advancing `cons` (Release). Returns the number of bytes read (0
    /// when empty). The caller notifies the peer if that is not 0.
    pub fn read(&self, page: &SharedPage<'_>, buf: &mut [u8]) -> Result<usize, Corrupt> {
        let (cons, prod) = self.indices(page)?;
        let n = buf.len().min(prod.wrapping_sub(cons) as usize);
        let start = (cons & (self.size - 1)) as usize;
        let first = n.min(self.size() - start);
        page.read(self.data_off + start, &mut buf[..first]);
        page.read(self.data_off, &mut buf[first..n]);
        if n > 0 {
            page.store_u32(self.cons_off, cons.wrapping_add(n as u32));
        }
        Ok(n)
    }
}

// The xenstore rings are the size xs_wire.h names.
const _: () = assert!(ByteRing::STORE_REQ.size() == XENSTORE_RING_SIZE as usize);
const _: () = assert!(ByteRing::STORE_RSP.size() == XENSTORE_RING_SIZE as usize);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::page::PAGE_WORDS;
    use core::sync::atomic::AtomicU32;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    fn zeroed() -> [AtomicU32; PAGE_WORDS] {
        core::array::from_fn(|_| AtomicU32::new(0))
    }

    const ALL: [ByteRing; 4] = [
        ByteRing::CONSOLE_IN,
        ByteRing::CONSOLE_OUT,
        ByteRing::STORE_REQ,
        ByteRing::STORE_RSP,
    ];

    #[test]
    fn layouts_match_the_headers() {
        // The numbers of console.h and xs_wire.h, checked here once against the
        // offset_of! constants (which are what the code uses).
        assert_eq!(ByteRing::CONSOLE_IN, ByteRing::new(0, 1024, 3072, 3076));
        assert_eq!(ByteRing::CONSOLE_OUT, ByteRing::new(1024, 2048, 3080, 3084));
        assert_eq!(ByteRing::STORE_REQ, ByteRing::new(0, 1024, 2048, 2052));
        assert_eq!(ByteRing::STORE_RSP, ByteRing::new(1024, 1024, 2056, 2060));
    }

    #[test]
    fn wraps_at_every_offset() {
        for ring in ALL {
            let size = ring.size();
            for start in 0..size as u32 {
                // Start both indices near the u32 wrap too, for half of the offsets.
                let base = if start % 2 == 0 {
                    0
                } else {
                    u32::MAX - size as u32 + 1
                };
                let words = zeroed();
                let page = SharedPage::new(&words);
                let idx = base.wrapping_add(start);
                page.store_u32(ring.cons_off, idx);
                page.store_u32(ring.prod_off, idx);
                // A length that crosses the end of the data area from most offsets.
                let len = size / 2 + 3;
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + start as usize) as u8).collect();
                assert_eq!(ring.write(&page, &data), Ok(len));
                assert_eq!(ring.available(&page), Ok(len));
                let mut out = vec![0u8; size];
                assert_eq!(ring.read(&page, &mut out), Ok(len));
                assert_eq!(&out[..len], &data[..]);
                assert_eq!(ring.available(&page), Ok(0));
                assert_eq!(page.load_u32(ring.cons_off), idx.wrapping_add(len as u32));
            }
        }
    }

    #[test]
    fn full_and_empty() {
        let ring = ByteRing::CONSOLE_OUT;
        let words = zeroed();
        let page = SharedPage::new(&words);
        let mut buf = [0u8; 16];
        assert_eq!(
            ring.read(&page, &mut buf),
            Ok(0),
            "empty ring reads nothing"
        );
        assert_eq!(ring.space(&page), Ok(2048));
        let big = vec![0x5a; 5000];
        assert_eq!(ring.write(&page, &big), Ok(2048), "writes only what fits");
        assert_eq!(ring.space(&page), Ok(0));
        assert_eq!(ring.write(&page, b"x"), Ok(0), "full ring takes nothing");
        assert_eq!(page.load_u32(ring.prod_off), 2048);
        assert_eq!(ring.read(&page, &mut buf), Ok(16));
        assert_eq!(ring.space(&page), Ok(16));
        assert_eq!(ring.write(&page, &big), Ok(16));
        // The other rings of the page were not touched.
        assert_eq!(ByteRing::CONSOLE_IN.available(&page), Ok(0));
    }

    #[test]
    fn impossible_indices_are_corrupt_and_change_nothing() {
        let ring = ByteRing::CONSOLE_OUT;
        for (cons, prod) in [(0, 2049), (10, 5), (u32::MAX, 2048), (0, u32::MAX)] {
            let words = zeroed();
            let page = SharedPage::new(&words);
            page.store_u32(ring.cons_off, cons);
            page.store_u32(ring.prod_off, prod);
            let mut buf = [0u8; 8];
            assert_eq!(ring.read(&page, &mut buf), Err(Corrupt), "{cons} {prod}");
            assert_eq!(ring.write(&page, b"abc"), Err(Corrupt));
            assert_eq!(ring.available(&page), Err(Corrupt));
            assert_eq!(ring.space(&page), Err(Corrupt));
            assert_eq!(page.load_u32(ring.cons_off), cons);
            assert_eq!(page.load_u32(ring.prod_off), prod);
        }
        // Exactly full across the u32 wrap is fine.
        let words = zeroed();
        let page = SharedPage::new(&words);
        page.store_u32(ring.cons_off, u32::MAX - 9);
        page.store_u32(ring.prod_off, 2038);
        assert_eq!(ring.available(&page), Ok(2048));
    }

    proptest! {
        /// Whatever indices the peer writes, the ring never panics, never reads or
        /// writes more than the ring holds, and is Corrupt exactly when prod - cons > size.
        #[test]
        fn random_peer_indices_never_panic(
            ring in prop::sample::select(ALL.to_vec()),
            cons in any::<u32>(),
            prod in any::<u32>(),
            len in 0usize..5000,
        ) {
            let words = zeroed();
            let page = SharedPage::new(&words);
            page.store_u32(ring.cons_off, cons);
            page.store_u32(ring.prod_off, prod);
            let used = prod.wrapping_sub(cons);
            let corrupt = used > ring.size;
            let mut buf = vec![0u8; len];
            match ring.read(&page, &mut buf) {
                Err(Corrupt) => prop_assert!(corrupt),
                Ok(n) => {
                    prop_assert!(!corrupt);
                    prop_assert_eq!(n, len.min(used as usize));
                }
            }
            page.store_u32(ring.cons_off, cons);
            match ring.write(&page, &buf) {
                Err(Corrupt) => prop_assert!(corrupt),
                Ok(n) => {
                    prop_assert!(!corrupt);
                    prop_assert_eq!(n, len.min((ring.size - used) as usize));
                }
            }
        }
    }
}
