//! All of the domain's memory, mapped by libos itself through the PV MMU (`xen.h`:
//! `mmu_update`, `update_va_mapping`).
//!
//! The domain builder maps only the image, start_info, the P2M list, the bootstrap
//! page tables and stack, plus some padding. [`init`] extends that linear mapping
//! (`VIRT_BASE + pfn * 4096`, see [`crate::paging`]) to every frame in
//! `start_info.nr_pages`:
//!
//! * the last frames of memory are set aside: first the new page tables this needs
//!   (L1s, and L2s for memory past a 1 GiB boundary), then a small pool of spare
//!   frames that applications take with [`alloc_frame`] (new page tables, GDT frames);
//!   both are mapped **read-only** in the linear region, as Xen requires of a frame
//!   that is or may become a page table;
//! * a new table frame is zeroed through the scratch page ([`with_frame`]: a writable
//!   mapping that is removed again before the frame is hooked in, so no writable
//!   mapping of it exists when Xen validates it as a page table), then hooked into its
//!   parent table with `mmu_update`;
//! * every other frame is mapped writable and given to the heap.

use spin::Mutex;
use xen_sys::{mmu_update, MMU_NORMAL_PT_UPDATE, UVMF_INVLPG};

use crate::hypercall::{self, XenError};
use crate::paging::{self, pte, ENTRIES, PAGE_SIZE};
use crate::start_info::StartInfo;

/// Spare frames kept for page tables and descriptor tables.
pub const POOL_FRAMES: u64 = 64;

unsafe extern "C" {
    /// A page of our image whose mapping [`with_frame`] borrows (see `start.rs`).
    static libos_scratch_page: u8;
}

fn scratch_va() -> u64 {
    core::ptr::addr_of!(libos_scratch_page) as u64
}

/// A pseudo-physical frame and its machine frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub pfn: u64,
    pub mfn: u64,
}

impl Frame {
    pub fn from_pfn(pfn: u64) -> Frame {
        Frame {
            pfn,
            mfn: paging::pfn_to_mfn(pfn),
        }
    }
    /// Its address in the linear region.
    pub fn va(self) -> u64 {
        paging::pfn_to_virt(self.pfn)
    }
}

struct Pool {
    first_pfn: u64,
    count: u64,
    /// Bit i set: frame `first_pfn + i` is free.
    free: u64,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    first_pfn: 0,
    count: 0,
    free: 0,
});

/// Serialises users of the scratch mapping.
static SCRATCH: Mutex<u64> = Mutex::new(0);

/// Takes a spare frame from the pool: mapped read-only in the linear region and
/// nowhere else, so it can become a page table. Contents unspecified.
pub fn alloc_frame() -> Option<Frame> {
    let mut pool = POOL.lock();
    let i = pool.free.trailing_zeros() as u64;
    if i >= pool.count {
        return None;
    }
    pool.free &= !(1 << i);
    Some(Frame::from_pfn(pool.first_pfn + i))
}

/// Gives a frame back to the pool. It must be in the state [`alloc_frame`] handed
/// it out in (no page-table type, no writable mapping).
pub fn free_frame(f: Frame) {
    let mut pool = POOL.lock();
    let i = f.pfn.wrapping_sub(pool.first_pfn);
    assert!(i < pool.count, "frame {f:?} is not a pool frame");
    pool.free |= 1 << i;
}

/// How many pool frames are free.
pub fn free_frames() -> u64 {
    u64::from(POOL.lock().free.count_ones())
}

/// Runs `f` on machine frame `mfn` mapped writable at the scratch page, then removes
/// that mapping (restoring the scratch page's own frame), so that afterwards no
/// writable mapping of `mfn` made here remains.
pub fn with_frame<R>(mfn: u64, f: impl FnOnce(&mut [u64; ENTRIES]) -> R) -> Result<R, XenError> {
    let saved = SCRATCH.lock();
    let va = scratch_va();
    hypercall::update_va_mapping(va, (mfn * PAGE_SIZE) | pte::DATA_RW, UVMF_INVLPG)?;
    // SAFETY: the scratch page is a page-aligned page of our image, now mapped
    // writable to `mfn`, and only used under the SCRATCH lock.
    let r = f(unsafe { &mut *(va as *mut [u64; ENTRIES]) });
    hypercall::update_va_mapping(va, *saved, UVMF_INVLPG)?;
    Ok(r)
}

/// Writes one page-table entry (machine address `maddr`) with `mmu_update`.
pub fn set_entry(maddr: u64, val: u64) -> Result<(), XenError> {
    hypercall::mmu_update(&[mmu_update {
        ptr: maddr | u64::from(MMU_NORMAL_PT_UPDATE),
        val,
    }])
    .map(|_| ())
    .map_err(|(e, _)| e)
}

/// A batch of `mmu_update` requests.
struct Batch {
    reqs: [mmu_update; 128],
    len: usize,
}

impl Batch {
    fn push(&mut self, maddr: u64, val: u64) -> Result<(), XenError> {
        if self.len == self.reqs.len() {
            self.flush()?;
        }
        self.reqs[self.len] = mmu_update {
            ptr: maddr | u64::from(MMU_NORMAL_PT_UPDATE),
            val,
        };
        self.len += 1;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), XenError> {
        if self.len > 0 {
            hypercall::mmu_update(&self.reqs[..self.len]).map_err(|(e, _)| e)?;
            self.len = 0;
        }
        Ok(())
    }
}

/// A zeroed new page-table frame hooked into `parent_maddr` (the entry's machine
/// address).
fn new_table(next: &mut u64, limit: u64, parent_maddr: u64) -> Result<u64, XenError> {
    assert!(
        *next < limit,
        "page-table frames for the memory map ran out"
    );
    let mfn = paging::pfn_to_mfn(*next);
    *next += 1;
    with_frame(mfn, |t| t.fill(0))?;
    set_entry(parent_maddr, (mfn * PAGE_SIZE) | pte::TABLE)?;
    Ok(mfn)
}

/// What [`init`] found and did.
pub struct MemoryMap {
    /// The heap: [heap_start, heap_end) in the linear region.
    pub heap_start: u64,
    pub heap_end: u64,
    /// Pages mapped by the domain builder / by libos.
    pub boot_pages: u64,
    pub mapped_pages: u64,
    pub table_frames: u64,
    /// Why the rest of memory could not be mapped (the heap is then the bootstrap
    /// padding only, and the pool is empty).
    pub error: Option<XenError>,
}

/// Maps all memory (see the module doc). Returns the heap's region. If the
/// hypervisor refuses (e.g. one without a PV MMU answers `-ENOSYS`), the heap is the
/// bootstrap padding and [`MemoryMap::error`] says why.
pub fn init(si: &StartInfo) -> MemoryMap {
    let va = scratch_va();
    let (_, scratch_pte) =
        paging::walk(paging::boot_l4_mfn(), va, 1).expect("the scratch page is mapped");
    *SCRATCH.lock() = scratch_pte;

    let nr = si.nr_pages();
    // Heap after the page tables and the bootstrap stack that follows them.
    let heap_start = si.pt_base() + (si.nr_pt_frames() + 1) * PAGE_SIZE;
    let mut boot_end = heap_start;
    while boot_end < paging::pfn_to_virt(nr) && paging::is_mapped(boot_end) {
        boot_end += PAGE_SIZE;
    }
    map_rest(nr, heap_start, boot_end).unwrap_or_else(|e| MemoryMap {
        heap_start,
        heap_end: boot_end,
        boot_pages: paging::virt_to_pfn(boot_end),
        mapped_pages: 0,
        table_frames: 0,
        error: Some(e),
    })
}

fn map_rest(nr: u64, heap_start: u64, boot_end: u64) -> Result<MemoryMap, XenError> {
    let first = paging::virt_to_pfn(boot_end);
    // Upper bound on the new tables: one L1 per 2 MiB (plus the partial first one), one
    // L2 per 1 GiB (plus one).
    let l1s = (nr.saturating_sub(first)).div_ceil(512) + 1;
    let l2s = ((nr * PAGE_SIZE) >> 30) + 2;
    let reserved = l1s + l2s + POOL_FRAMES;
    if nr < first + reserved {
        // Too little memory beyond the bootstrap mapping: no pool, heap as mapped.
        return Ok(MemoryMap {
            heap_start,
            heap_end: boot_end,
            boot_pages: first,
            mapped_pages: 0,
            table_frames: 0,
            error: None,
        });
    }
    let tables_first = nr - reserved;
    let pool_first = nr - POOL_FRAMES;
    let mut next_table = tables_first;

    let l4 = paging::boot_l4_mfn();
    let mut batch = Batch {
        reqs: [mmu_update::default(); 128],
        len: 0,
    };
    // The tables of the current 1 GiB / 2 MiB region, and whether the L2 is new.
    let mut l2: Option<(u64, u64, bool)> = None;
    let mut l1: Option<(u64, u64)> = None;
    for pfn in first..nr {
        let v = paging::pfn_to_virt(pfn);
        let gib = v >> 30;
        let mib2 = v >> 21;
        if l1.is_none_or(|(r, _)| r != mib2) {
            batch.flush()?;
            if l2.is_none_or(|(r, _, _)| r != gib) {
                let (l3e_maddr, l3e) = paging::walk(l4, v, 3).expect("our L4 maps our L3");
                l2 = Some(if l3e & pte::PRESENT != 0 {
                    (gib, (l3e & pte::ADDR_MASK) / PAGE_SIZE, false)
                } else {
                    (
                        gib,
                        new_table(&mut next_table, pool_first, l3e_maddr)?,
                        true,
                    )
                });
            }
            let (_, l2_mfn, l2_new) = l2.expect("set above");
            let index = paging::table_index(v, 2);
            let l2e_maddr = l2_mfn * PAGE_SIZE + index as u64 * 8;
            let l2e = if l2_new {
                0
            } else {
                paging::read_entry(l2_mfn, index)
            };
            let l1_mfn = if l2e & pte::PRESENT != 0 {
                (l2e & pte::ADDR_MASK) / PAGE_SIZE
            } else {
                new_table(&mut next_table, pool_first, l2e_maddr)?
            };
            l1 = Some((mib2, l1_mfn));
        }
        let (_, l1_mfn) = l1.expect("set above");
        let flags = if pfn < tables_first {
            pte::DATA_RW
        } else {
            pte::DATA_RO
        };
        let l1e_maddr = l1_mfn * PAGE_SIZE + paging::table_index(v, 1) as u64 * 8;
        batch.push(l1e_maddr, (paging::pfn_to_mfn(pfn) * PAGE_SIZE) | flags)?;
    }
    batch.flush()?;

    *POOL.lock() = Pool {
        first_pfn: pool_first,
        count: POOL_FRAMES,
        free: u64::MAX >> (64 - POOL_FRAMES),
    };
    Ok(MemoryMap {
        heap_start,
        heap_end: paging::pfn_to_virt(tables_first),
        boot_pages: first,
        mapped_pages: nr - first,
        table_frames: next_table - tables_first,
        error: None,
    })
}
