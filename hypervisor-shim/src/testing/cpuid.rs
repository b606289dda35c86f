//! A made-up host for CPUID policy tests.

use crate::pv::cpuid::Regs;

/// A host that claims every feature bit and a few high leaves.
pub fn greedy_host(leaf: u32, sub: u32) -> Regs {
    match leaf {
        0 => [0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69], // "GenuineIntel"
        4 if sub < 3 => [0xfc00_4121 + sub, 1, 2, 3],
        4 => [0; 4],
        0x8000_0000 => [0x8000_0021, 0, 0, 0],
        0x8000_0008 => [0x0000_3030, 0xff, 0xff, 0xff],
        _ => [u32::MAX; 4],
    }
}
