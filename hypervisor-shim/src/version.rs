//! The Xen version the shim implements, as `xen_version` and CPUID leaf 0x40000001
//! report it.

/// We implement the Xen 4.17 guest interface (the pinned headers' version).
pub const VERSION: (u32, u32) = (4, 17);
/// What `XENVER_version` returns: major in the high 16 bits, minor in the low.
pub const VERSION_WORD: i64 = ((VERSION.0 << 16) | VERSION.1) as i64;
