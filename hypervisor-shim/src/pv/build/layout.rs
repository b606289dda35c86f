//! Where everything goes in a new PV domain's initial virtual region, following the
//! start-of-day rules of `xen/include/public/xen.h` ("Start-of-day memory layout"):
//! kernel, P2M list, start_info, (xenstore and console pages for a domU), bootstrap page
//! tables, bootstrap stack, all packed 4 KiB-aligned from `VIRT_BASE`, the region padded
//! by at least 512 KiB and ending on a 4 MiB boundary; page `i` of the region is
//! pseudo-physical frame `i`.

use crate::machine::PAGE_SIZE;
use crate::pv::build::elf::XenImage;

const PAGE: u64 = PAGE_SIZE as u64;
const FOUR_MB: u64 = 4 << 20;

/// Virtual addresses of the bootstrap elements (each a `[start, end)` page range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub v_start: u64,
    pub kernel: (u64, u64),
    pub p2m: (u64, u64),
    pub start_info: u64,
    /// The xenstore and console ring pages of a domU (absent for the initial domain).
    pub store_console: Option<(u64, u64)>,
    pub page_tables: (u64, u64),
    pub stack: (u64, u64),
    pub v_end: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The initial mapping needs more pages than the domain has.
    TooSmall { needed: u64, available: u64 },
    /// The region would leave the canonical half the kernel is in.
    OutOfRange,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            LayoutError::TooSmall { needed, available } => write!(
                f,
                "domain too small: the initial mapping needs {needed} pages, it has {available}"
            ),
            LayoutError::OutOfRange => write!(f, "initial mapping runs off the address space"),
        }
    }
}

/// Page-table pages needed to map `[start, end)` with 4 KiB pages: one L4, and the L3,
/// L2 and L1 tables covering the range.
pub fn tables_needed(start: u64, end: u64) -> u64 {
    let span = |shift: u32| ((end - 1) >> shift) - (start >> shift) + 1;
    1 + span(39) + span(30) + span(21)
}

impl Layout {
    pub fn new(image: &XenImage, nr_pages: u64, initial_domain: bool) -> Result<Self, LayoutError> {
        // Every address below is checked for overflow: the region ends at most a few
        // MiB past the P2M, whose size the domain's page count bounds.
        let add = |a: u64, b: u64| a.checked_add(b).ok_or(LayoutError::OutOfRange);
        let up = |a: u64| add(a, PAGE - 1).map(|a| a & !(PAGE - 1));
        let v_start = image.virt_base;
        let kernel = (image.kstart, up(image.kend)?);
        let p2m = (
            kernel.1,
            up(add(
                kernel.1,
                nr_pages.checked_mul(8).ok_or(LayoutError::OutOfRange)?,
            )?)?,
        );
        let start_info = p2m.1;
        let mut next = add(start_info, PAGE)?;
        let store_console = if initial_domain {
            None
        } else {
            let s = next;
            next = add(next, 2 * PAGE)?;
            Some((s, next))
        };
        let pt_start = next;
        let mut nr_pt = 1;
        loop {
            let pt_end = add(pt_start, nr_pt * PAGE)?;
            let stack = (pt_end, add(pt_end, PAGE)?);
            let mut v_end = add(stack.1, FOUR_MB - 1)? & !(FOUR_MB - 1);
            if v_end - stack.1 < 512 << 10 {
                v_end = add(v_end, FOUR_MB)?;
            }
            if !crate::paging::is_canonical(v_end - 1) || (v_end - 1) >> 47 != v_start >> 47 {
                return Err(LayoutError::OutOfRange);
            }
            let needed = tables_needed(v_start, v_end);
            if needed <= nr_pt {
                let pages = (v_end - v_start) / PAGE;
                if pages > nr_pages {
                    return Err(LayoutError::TooSmall {
                        needed: pages,
                        available: nr_pages,
                    });
                }
                return Ok(Layout {
                    v_start,
                    kernel,
                    p2m,
                    start_info,
                    store_console,
                    page_tables: (pt_start, pt_end),
                    stack,
                    v_end,
                });
            }
            nr_pt = needed;
        }
    }

    /// Pseudo-physical frame of a virtual address in the initial region.
    pub fn pfn(&self, va: u64) -> u64 {
        (va - self.v_start) / PAGE
    }

    pub fn nr_pt_frames(&self) -> u64 {
        (self.page_tables.1 - self.page_tables.0) / PAGE
    }
}
