//! What the shim knows about one machine frame: its owner, its page type, and the two
//! reference counts of Xen's `struct page_info` (`xen/arch/x86/include/asm/mm.h`):
//! the general count (`count_info`, every mapping and every user of the frame) and the
//! type count (`type_info`, every user that needs the frame to stay of this type).

/// Who a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// In the frame allocator.
    Free,
    /// The shim's own memory (image, heap, M2P page tables, firmware): never mappable.
    Shim,
    /// A frame of the M2P table, shared read-only with every guest (Xen's `dom_xen`
    /// read-only pages).
    M2pShared,
    /// A domain's frame.
    Domain(u16),
}

/// Xen's `PGT_*` types. A frame has one type at a time; it may change only while its
/// type count is zero, which is what makes "page table or writable, never both" hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageType {
    None,
    Writable,
    L1,
    L2,
    L3,
    L4,
    /// A GDT/LDT frame (`PGT_seg_desc_page`).
    SegDesc,
}

impl PageType {
    /// The page-table type of level `level` (1..=4).
    pub fn table(level: u32) -> PageType {
        match level {
            1 => PageType::L1,
            2 => PageType::L2,
            3 => PageType::L3,
            _ => PageType::L4,
        }
    }

    /// 1..=4 for page-table types.
    pub fn level(self) -> Option<u32> {
        match self {
            PageType::L1 => Some(1),
            PageType::L2 => Some(2),
            PageType::L3 => Some(3),
            PageType::L4 => Some(4),
            _ => None,
        }
    }

    /// Types whose contents are checked before the type is granted.
    pub fn needs_validation(self) -> bool {
        self.level().is_some() || self == PageType::SegDesc
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    pub owner: Owner,
    pub ty: PageType,
    /// Users that rely on the type (`PGT_count_mask`).
    pub type_count: u32,
    /// General references (`PGC_count_mask`), including the allocation reference.
    pub refs: u32,
    /// The allocation reference (`PGC_allocated`) is held: the frame is in the
    /// domain's reservation. When it is dropped and `refs` reaches zero, the frame is
    /// freed.
    pub allocated: bool,
    /// Pinned by `MMUEXT_PIN_L*_TABLE` (`PGT_pinned`); the pin holds one type and one
    /// general reference.
    pub pinned: bool,
    /// Contents checked for the current type (`PGT_validated`).
    pub validated: bool,
    /// Not part of the reservation (the shared_info page: Xen's xenheap page shared
    /// with the guest); `decrease_reservation` refuses it.
    pub xenheap: bool,
}

impl PageInfo {
    pub const fn new(owner: Owner) -> Self {
        PageInfo {
            owner,
            ty: PageType::None,
            type_count: 0,
            refs: 0,
            allocated: false,
            pinned: false,
            validated: false,
            xenheap: false,
        }
    }

    /// A live page table: typed as a table, in use and validated.
    pub fn is_live_table(&self) -> bool {
        self.ty.level().is_some() && self.type_count > 0 && self.validated
    }
}
