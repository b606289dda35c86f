//! The `virtio-drivers` crate's [`Hal`] for the control domain (feature `virtio`):
//! device memory and DMA as [`crate::device`] provides them. Buffers the device reads
//! or writes are given by machine address; one whose pages are not machine-contiguous
//! (a stack buffer across a page boundary, say) goes through a contiguous bounce block,
//! copied in before and out after, as Linux's swiotlb-xen does.

use alloc::vec::Vec;
use core::ptr::NonNull;

use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::device::{self, Mmio};
use crate::paging::PAGE_SIZE;

pub struct XenHal;

/// Live bounce blocks: machine address, block, pages.
struct Bounce {
    maddr: u64,
    block: NonNull<u8>,
    pages: usize,
}

// SAFETY: the blocks are plain heap memory owned by the table; one CPU.
unsafe impl Send for Bounce {}

static BOUNCES: Mutex<Vec<Bounce>> = Mutex::new(Vec::new());

// SAFETY: `dma_alloc` returns zeroed, page-aligned, machine-contiguous memory of ours
// that stays put until `dma_dealloc`; `share` gives the device a machine address whose
// bytes are the buffer's (directly, or a bounce block copied in and out).
unsafe impl Hal for XenHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        device::dma_alloc(pages).unwrap_or((0, NonNull::dangling()))
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: virtio-drivers gives back what `dma_alloc` returned.
        unsafe { device::dma_free(vaddr, pages) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // Only the PCI transport asks (we use virtio-mmio): mapped for good.
        let m = Mmio::map(paddr, size as u64).expect("device registers the shim lets us map");
        let p = m.ptr();
        core::mem::forget(m);
        p
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let va = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len();
        if let Some(maddr) = device::contiguous_maddr(va, len) {
            return maddr;
        }
        let pages = len.div_ceil(PAGE_SIZE as usize).max(1);
        let (maddr, block) =
            device::dma_alloc(pages).expect("a machine-contiguous bounce block for DMA");
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the buffer is `len` readable bytes (virtio-drivers' contract); the
            // block is `pages` pages, at least `len` bytes.
            unsafe { core::ptr::copy_nonoverlapping(va as *const u8, block.as_ptr(), len) };
        }
        BOUNCES.lock().push(Bounce {
            maddr,
            block,
            pages,
        });
        maddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let b = {
            let mut bounces = BOUNCES.lock();
            match bounces.iter().position(|b| b.maddr == paddr) {
                Some(i) => bounces.swap_remove(i),
                None => return,
            }
        };
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: as in `share`; the buffer is writable for a device-to-driver share.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    b.block.as_ptr(),
                    buffer.as_ptr() as *mut u8,
                    buffer.len(),
                )
            };
        }
        // SAFETY: the block came from `dma_alloc(b.pages)` and is no longer shared.
        unsafe { device::dma_free(b.block, b.pages) };
    }
}
