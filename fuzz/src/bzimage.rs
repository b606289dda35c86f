//! bzImage unwrapping (the `bzimage` crate, used by `cargo xtask run --kernel`): the input
//! is the kernel file.
//!
//! Properties: only a file with the `HdrS` header has a payload; the payload lies inside
//! the file; a successful unwrap is an ELF.

use crate::lies_within;

pub fn check(data: &[u8]) {
    match bzimage::payload(data) {
        Ok(p) => {
            assert!(bzimage::is_bzimage(data));
            assert!(lies_within(data, p));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(elf) = bzimage::unwrap(data) {
        assert!(elf.starts_with(b"\x7fELF"));
    }
}
