//! A window of virtual addresses for frames that are not part of our linear region:
//! our grant-table frames, and other domains' pages mapped through grants.
//!
//! The window lies 2 MiB past the end of the linear region. Its L1 tables are made
//! once (from the spare-frame pool of [`crate::memory`]), so that every slot has an L1
//! entry: `GNTTABOP_map_grant_ref` with `GNTMAP_host_map` needs one to write into, and
//! plain mappings go through `update_va_mapping`.

use spin::Mutex;
use xen_sys::UVMF_INVLPG;

use crate::hypercall::{self, XenError};
use crate::memory;
use crate::paging::{self, pte, PAGE_SIZE};
use crate::start_info;

/// Slots in the window (4 MiB: two L1 tables).
pub const SLOTS: usize = 1024;
const L1_SPAN: u64 = 2 << 20;

struct Window {
    base: u64,
    /// Bit set: slot in use.
    used: [u64; SLOTS / 64],
}

static WINDOW: Mutex<Option<Window>> = Mutex::new(None);

/// Makes the window's page tables (once).
fn window() -> Result<spin::MutexGuard<'static, Option<Window>>, XenError> {
    let mut w = WINDOW.lock();
    if w.is_none() {
        let end = paging::pfn_to_virt(start_info::get().nr_pages());
        let base = (end + 2 * L1_SPAN - 1) & !(L1_SPAN - 1);
        let l4 = paging::boot_l4_mfn();
        let mut va = base;
        while va < base + SLOTS as u64 * PAGE_SIZE {
            for level in [3, 2] {
                let (maddr, entry) =
                    paging::walk(l4, va, level).expect("the window lies under our own L4 slot");
                if entry & pte::PRESENT == 0 {
                    new_table(maddr)?;
                }
            }
            va += L1_SPAN;
        }
        *w = Some(Window {
            base,
            used: [0; SLOTS / 64],
        });
    }
    Ok(w)
}

/// A zeroed pool frame hooked in as the table under the entry at `parent_maddr`.
fn new_table(parent_maddr: u64) -> Result<(), XenError> {
    let f = memory::alloc_frame().ok_or(XenError(xen_sys::XEN_ENOMEM as i64))?;
    memory::with_frame(f.mfn, |t| t.fill(0))?;
    memory::set_entry(parent_maddr, (f.mfn * PAGE_SIZE) | pte::TABLE)
}

/// A free slot of the window (its L1 entry exists and is empty).
pub fn alloc() -> Result<u64, XenError> {
    let mut guard = window()?;
    let w = guard.as_mut().expect("made by window()");
    for (i, word) in w.used.iter_mut().enumerate() {
        if *word != u64::MAX {
            let bit = word.trailing_ones() as usize;
            *word |= 1 << bit;
            return Ok(w.base + (i * 64 + bit) as u64 * PAGE_SIZE);
        }
    }
    Err(XenError(xen_sys::XEN_ENOMEM as i64))
}

/// Returns a slot (whose mapping is gone).
pub fn free(va: u64) {
    let mut guard = WINDOW.lock();
    let w = guard.as_mut().expect("a slot was handed out");
    let i = ((va - w.base) / PAGE_SIZE) as usize;
    assert!(i < SLOTS, "{va:#x} is not a window slot");
    w.used[i / 64] &= !(1 << (i % 64));
}

/// Maps machine frame `mfn` (one Xen lets us map: ours, or a shared one) at a new slot.
pub fn map_mfn(mfn: u64, writable: bool) -> Result<u64, XenError> {
    let va = alloc()?;
    let flags = if writable { pte::DATA_RW } else { pte::DATA_RO };
    if let Err(e) =
        hypercall::update_va_mapping(va, (mfn * PAGE_SIZE) | flags | pte::NX, UVMF_INVLPG)
    {
        free(va);
        return Err(e);
    }
    Ok(va)
}

/// Removes a mapping made by [`map_mfn`] and frees its slot.
pub fn unmap(va: u64) -> Result<(), XenError> {
    hypercall::update_va_mapping(va, 0, UVMF_INVLPG)?;
    free(va);
    Ok(())
}
