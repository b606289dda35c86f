//! x86_64 4-level paging entries (architectural, not Xen-specific).

/// A machine frame number.
pub type Mfn = u64;

pub const PRESENT: u64 = 1 << 0;
pub const WRITABLE: u64 = 1 << 1;
pub const USER: u64 = 1 << 2;
pub const ACCESSED: u64 = 1 << 5;
pub const DIRTY: u64 = 1 << 6;
pub const HUGE: u64 = 1 << 7;
pub const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Entries per table.
pub const ENTRIES: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pte(pub u64);

impl Pte {
    pub fn new(mfn: Mfn, flags: u64) -> Self {
        Pte(((mfn << 12) & ADDR_MASK) | flags)
    }
    pub fn present(self) -> bool {
        self.0 & PRESENT != 0
    }
    pub fn writable(self) -> bool {
        self.0 & WRITABLE != 0
    }
    pub fn user(self) -> bool {
        self.0 & USER != 0
    }
    pub fn huge(self) -> bool {
        self.0 & HUGE != 0
    }
    pub fn mfn(self) -> Mfn {
        (self.0 & ADDR_MASK) >> 12
    }
}

/// Index of `va` in its level-`level` table (1 = L1 ... 4 = L4).
pub fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

pub fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}
