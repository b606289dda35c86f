//! Device access for the control domain, the way a Xen dom0 has it: a device's
//! registers mapped through the PV MMU (Xen lets an I/O-capable domain map the
//! device's MMIO frames, nothing else outside RAM), its interrupt line as an event
//! channel (`PHYSDEVOP_map_pirq`, `EVTCHNOP_bind_pirq`, `PHYSDEVOP_eoi`), and DMA to our
//! own frames by machine address, with machine-contiguous buffers for transfers that
//! span pages.
//!
//! A domU that tries any of it gets Xen's errors (-EPERM), returned as they are.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::vec::Vec;
use core::ptr::NonNull;

use crate::events::{self, Port};
use crate::hypercall::{self, XenError};
use crate::paging::{self, pte, PAGE_SIZE};
use crate::vmap;

/// Cache-disabled, write-through: a device's registers (Xen allows PCD/PWT in L1
/// entries of an I/O-capable domain).
const UNCACHED: u64 = (1 << 4) | (1 << 3);

/// A device's register window mapped uncached.
#[derive(Debug)]
pub struct Mmio {
    va: u64,
    offset: u64,
}

impl Mmio {
    /// Maps `len` bytes of device registers at machine address `maddr`. The window must
    /// lie within one page (virtio-mmio's 512 bytes do).
    pub fn map(maddr: u64, len: u64) -> Result<Mmio, XenError> {
        let offset = maddr % PAGE_SIZE;
        if len == 0 || offset + len > PAGE_SIZE {
            return Err(XenError(xen_sys::XEN_EINVAL as i64));
        }
        let va = vmap::alloc()?;
        let entry = (maddr - offset) | pte::DATA_RW | pte::NX | UNCACHED;
        if let Err(e) = hypercall::update_va_mapping(va, entry, xen_sys::UVMF_INVLPG) {
            vmap::free(va);
            return Err(e);
        }
        Ok(Mmio { va, offset })
    }

    /// The window's first register.
    pub fn ptr(&self) -> NonNull<u8> {
        NonNull::new((self.va + self.offset) as *mut u8).expect("a window slot is not null")
    }
}

impl Drop for Mmio {
    fn drop(&mut self) {
        let _ = vmap::unmap(self.va);
    }
}

/// A device's interrupt line, bound to an event channel.
#[derive(Debug)]
pub struct Line {
    pub pirq: u32,
    pub port: Port,
}

impl Line {
    /// Maps GSI `gsi` as a pirq and binds it; the line is live from here on.
    pub fn bind(gsi: u32) -> Result<Line, XenError> {
        let pirq = hypercall::map_gsi_pirq(gsi)?;
        match hypercall::evtchn_bind_pirq(pirq) {
            Ok(port) => Ok(Line { pirq, port }),
            Err(e) => {
                let _ = hypercall::unmap_pirq(pirq);
                Err(e)
            }
        }
    }

    /// Waits until the line fired (its event latched), or `timeout_ns` passed; returns
    /// whether it fired. Idles in `SCHEDOP_poll` meanwhile.
    pub fn wait(&self, timeout_ns: u64) -> bool {
        let deadline = crate::time::now().as_nanos().saturating_add(timeout_ns);
        loop {
            if events::take_latched(self.port) {
                return true;
            }
            if crate::time::now().as_nanos() >= deadline {
                return false;
            }
            let enabled = events::disable();
            if !events::is_latched(self.port) && !events::is_pending(self.port) {
                let _ = hypercall::sched_poll(&[self.port], deadline);
            }
            events::restore(enabled);
        }
    }

    /// The device was served: the line may fire again.
    pub fn eoi(&self) {
        let _ = hypercall::pirq_eoi(self.pirq);
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let _ = hypercall::evtchn_close(self.port);
        let _ = hypercall::unmap_pirq(self.pirq);
    }
}

/// The machine address behind a mapped virtual address (walking our page tables: the
/// linear region, the image, the stack, mapped grants alike).
pub fn virt_to_maddr(va: u64) -> Option<u64> {
    let (_, e) = paging::walk(paging::boot_l4_mfn(), va, 1)?;
    (e & pte::PRESENT != 0).then_some((e & pte::ADDR_MASK) | (va % PAGE_SIZE))
}

/// The machine address of `len` bytes at `va` if they are machine-contiguous.
pub fn contiguous_maddr(va: u64, len: usize) -> Option<u64> {
    let start = virt_to_maddr(va)?;
    let last = va + len.max(1) as u64 - 1;
    let mut page = va & !(PAGE_SIZE - 1);
    while page < (last & !(PAGE_SIZE - 1)) {
        page += PAGE_SIZE;
        let want = (start & !(PAGE_SIZE - 1)) + (page - (va & !(PAGE_SIZE - 1)));
        if virt_to_maddr(page)? != want {
            return None;
        }
    }
    Some(start)
}

fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE as usize)?, PAGE_SIZE as usize).ok()
}

/// Multi-page DMA blocks always through `XENMEM_exchange` (for tests of that path;
/// dom0's command line word `dma-exchange`).
static ALWAYS_EXCHANGE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn always_exchange(on: bool) {
    ALWAYS_EXCHANGE.store(on, core::sync::atomic::Ordering::Relaxed);
}

/// `pages` zeroed, page-aligned, machine-contiguous pages of ours for a device to read
/// and write: their machine address and where they are. The shim gives the control
/// domain its memory in machine order, so a heap block usually is contiguous; when it
/// is not (Xen's dom0, a fragmented heap), its frames are exchanged for a contiguous
/// extent (`XENMEM_exchange`, as Linux's `xen_create_contiguous_region` does).
pub fn dma_alloc(pages: usize) -> Option<(u64, NonNull<u8>)> {
    // Whole powers of two (an extent's size), on both paths and in `dma_free`.
    let pages = pages.max(1).next_power_of_two();
    let exchange = pages > 1 && ALWAYS_EXCHANGE.load(core::sync::atomic::Ordering::Relaxed);
    if !exchange {
        let layout = dma_layout(pages)?;
        // SAFETY: the layout has a non-zero size (at least one page).
        let p = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        if let Some(maddr) = contiguous_maddr(p.as_ptr() as u64, layout.size()) {
            return Some((maddr, p));
        }
        // SAFETY: allocated just above with this layout, not handed out.
        unsafe { dealloc(p.as_ptr(), layout) };
    }
    let found = exchanged(pages);
    if found.is_none() {
        log::warn!("no machine-contiguous block of {pages} pages for DMA");
    }
    found
}

/// A heap block of `pages` (a power of two) whose frames are exchanged for one
/// machine-contiguous extent, mapped where the old frames were.
fn exchanged(pages: usize) -> Option<(u64, NonNull<u8>)> {
    let n = pages;
    let order = n.trailing_zeros();
    let layout = dma_layout(n)?;
    // SAFETY: a non-zero layout.
    let p = NonNull::new(unsafe { alloc_zeroed(layout) })?;
    let va = p.as_ptr() as u64;
    let vas: Vec<u64> = (0..n as u64).map(|i| va + i * PAGE_SIZE).collect();
    let mut old: Vec<u64> = vas.iter().map(|&v| paging::virt_to_mfn(v)).collect();
    let map = |v: u64, mfn: u64| {
        hypercall::update_va_mapping(
            v,
            (mfn * PAGE_SIZE) | pte::DATA_RW | pte::NX,
            xen_sys::UVMF_INVLPG,
        )
    };
    // Xen takes only frames nothing maps.
    for &v in &vas {
        let _ = hypercall::update_va_mapping(v, 0, xen_sys::UVMF_INVLPG);
    }
    let mut new = [0u64; 1];
    let saved = old.clone();
    let r = hypercall::memory_exchange(&mut old, 0, &mut new, order);
    let frames: Vec<u64> = match r {
        Ok(()) => (0..n as u64).map(|i| new[0] + i).collect(),
        Err(e) => {
            log::warn!("XENMEM_exchange of {n} frames: {e}");
            saved
        }
    };
    for (&v, &mfn) in vas.iter().zip(&frames) {
        if map(v, mfn).is_err() {
            log::error!("cannot map frame {mfn:#x} back at {v:#x}");
            return None;
        }
        paging::set_p2m(paging::virt_to_pfn(v), mfn);
    }
    if r.is_err() {
        // SAFETY: allocated above with this layout, mapped as it was, not handed out.
        unsafe { dealloc(p.as_ptr(), layout) };
        return None;
    }
    log::info!(
        "DMA: {n} frames exchanged for a contiguous extent at {:#x}",
        new[0] * PAGE_SIZE
    );
    Some((new[0] * PAGE_SIZE, p))
}

/// Frees what [`dma_alloc`] gave (an exchanged block's frames are ordinary frames of
/// ours, mapped where the heap expects them).
///
/// # Safety
/// `p` came from `dma_alloc(pages)` and is not used afterwards.
pub unsafe fn dma_free(p: NonNull<u8>, pages: usize) {
    if let Some(layout) = dma_layout(pages.max(1).next_power_of_two()) {
        // SAFETY: forwarded to the caller.
        unsafe { dealloc(p.as_ptr(), layout) };
    }
}
