//! The balloon (Linux's `drivers/xen/balloon.c`, Mini-OS's `balloon.c`): the toolstack
//! sets `memory/target` (KiB) and the domain gives frames back to the hypervisor
//! (`XENMEM_decrease_reservation`) or takes back what it gave (`XENMEM_populate_physmap`),
//! so that `xl mem-set` and a host's memory overcommit work.
//!
//! A frame given back is a page-sized, page-aligned block of our heap: allocated (so
//! nothing else uses it), unmapped, its P2M entry invalid, its machine frame released.
//! Taking it back repopulates the same pseudo-physical frame, maps it again and frees
//! the block. So the balloon can give back only what the heap has free; it never takes
//! more than it gave (the domain's size at boot is its ceiling). libos's power control
//! task follows `memory/target` ([`crate::control`]), from the store's event handler,
//! so every appliance obeys.

use alloc::alloc::{alloc, dealloc, Layout};
use alloc::vec::Vec;

use spin::Mutex;
use xen_sys::{XENMEM_decrease_reservation, XENMEM_populate_physmap, UVMF_INVLPG};

use crate::hypercall;
use crate::paging::{self, pte, PAGE_SIZE};
use crate::{events, start_info};

/// The heap addresses of the pages given back.
static GIVEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// A P2M entry with no frame behind it (Linux's `INVALID_P2M_ENTRY`).
const INVALID_P2M: u64 = !0;
/// Frames per reservation hypercall.
const BATCH: usize = 256;

const PAGE: Layout = match Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize) {
    Ok(l) => l,
    Err(_) => panic!("a page is a valid layout"),
};

/// Pages given back to the hypervisor now.
pub fn given_back() -> usize {
    events::masked(|| GIVEN.lock().len())
}

/// The domain's memory now (KiB): what it booted with, less what it gave back.
pub fn current_kib() -> u64 {
    (start_info::get().nr_pages() - given_back() as u64) * (PAGE_SIZE / 1024)
}

/// Gives frames back or takes them back until the domain holds `target_kib` (as near
/// as the free heap and the boot size allow); returns the KiB it holds then.
pub fn set_target(target_kib: u64) -> u64 {
    events::masked(|| {
        let mut given = GIVEN.lock();
        let held = start_info::get().nr_pages() - given.len() as u64;
        let want = target_kib / (PAGE_SIZE / 1024);
        if want < held {
            give_back(&mut given, (held - want) as usize);
        } else if want > held {
            take_back(&mut given, (want - held) as usize);
        }
    });
    current_kib()
}

/// Gives back what the heap has free beyond `reserve_kib`: for an appliance that knows
/// at start how much it will use (the toolstack's `memory/target`, if it writes one
/// later, wins). Returns the KiB held then.
pub fn give_back_unused(reserve_kib: u64) -> u64 {
    let spare = (crate::heap::free() as u64 / 1024).saturating_sub(reserve_kib);
    set_target(current_kib().saturating_sub(spare))
}

fn map(va: u64, mfn: u64) -> Result<(), hypercall::XenError> {
    hypercall::update_va_mapping(va, (mfn * PAGE_SIZE) | pte::DATA_RW | pte::NX, UVMF_INVLPG)
}

fn give_back(given: &mut Vec<u64>, mut pages: usize) {
    while pages > 0 {
        let (mut vas, mut mfns) = (Vec::new(), Vec::new());
        while vas.len() < pages.min(BATCH) {
            // SAFETY: a non-zero layout.
            let p = unsafe { alloc(PAGE) };
            if p.is_null() {
                break;
            }
            let va = p as u64;
            let mfn = paging::virt_to_mfn(va);
            // Xen takes only frames nothing maps.
            if hypercall::update_va_mapping(va, 0, UVMF_INVLPG).is_err() {
                // SAFETY: just allocated with this layout, still mapped.
                unsafe { dealloc(p, PAGE) };
                break;
            }
            paging::set_p2m(paging::virt_to_pfn(va), INVALID_P2M);
            vas.push(va);
            mfns.push(mfn);
        }
        if vas.is_empty() {
            return;
        }
        let n = vas.len();
        let done = hypercall::reservation(XENMEM_decrease_reservation, &mut mfns, n as u64, 0)
            .map_or(0, |d| (d as usize).min(n));
        // What the hypervisor did not take is ours again.
        for (&va, &mfn) in vas[done..].iter().zip(&mfns[done..]) {
            restore(va, mfn);
        }
        given.extend_from_slice(&vas[..done]);
        pages -= done;
        if done < n {
            return;
        }
    }
}

/// Maps `va` to `mfn` again and frees its block.
fn restore(va: u64, mfn: u64) {
    if map(va, mfn).is_err() {
        log::error!("balloon: cannot map frame {mfn:#x} back at {va:#x}: the page is lost");
        return;
    }
    paging::set_p2m(paging::virt_to_pfn(va), mfn);
    // SAFETY: a block of `give_back`, allocated with this layout, mapped again.
    unsafe { dealloc(va as *mut u8, PAGE) };
}

fn take_back(given: &mut Vec<u64>, pages: usize) {
    let mut left = pages.min(given.len());
    while left > 0 {
        let k = left.min(BATCH);
        let vas: Vec<u64> = given[given.len() - k..].to_vec();
        // In: the pseudo-physical frames; out: the machine frames populated.
        let mut frames: Vec<u64> = vas.iter().map(|&va| paging::virt_to_pfn(va)).collect();
        let done = hypercall::reservation(XENMEM_populate_physmap, &mut frames, k as u64, 0)
            .map_or(0, |d| (d as usize).min(k));
        for (&va, &mfn) in vas[..done].iter().zip(&frames[..done]) {
            restore(va, mfn);
        }
        let keep = given.len() - k + done;
        // The populated ones left the balloon: `given` keeps the rest, in order.
        given.drain(given.len() - k..keep);
        left -= done;
        if done < k {
            return;
        }
    }
}
