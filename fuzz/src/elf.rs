//! PV kernel images (`hypervisor_shim::pv::build::elf`): the input is the ELF file.
//!
//! Properties of an image that parses: every `PT_LOAD` segment's file bytes lie inside
//! the input and its memory inside `[kstart, kend)`, the image is at most 1 GiB at
//! canonical addresses outside the hypervisor's range, the entry point is inside it, the
//! hypercall page is a page inside it, and the note strings borrow from the input.

use hypervisor_shim::pv::build::elf::{ElfError, XenImage};

use crate::lies_within;

pub fn check(data: &[u8]) {
    let img = match XenImage::parse(data) {
        Ok(img) => img,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if data.len() < 4 || !data.starts_with(b"\x7fELF") {
                assert!(matches!(e, ElfError::Malformed(_) | ElfError::NotX86_64));
            }
            return;
        }
    };
    assert!(img.kstart < img.kend && img.kend - img.kstart <= 1 << 30);
    assert!(img.kstart >= img.virt_base && img.virt_base.is_multiple_of(4096));
    let canonical = |a: u64| !(0x0000_8000_0000_0000..0xffff_8000_0000_0000).contains(&a);
    assert!(canonical(img.kstart) && canonical(img.kend - 1));
    assert!(
        img.kend <= xen_sys::HYPERVISOR_VIRT_START || img.kstart >= xen_sys::HYPERVISOR_VIRT_END
    );
    assert!((img.kstart..img.kend).contains(&img.entry));
    if let Some(hp) = img.hypercall_page {
        assert!(hp.is_multiple_of(4096) && hp >= img.kstart && hp + 4096 <= img.kend);
    }
    assert!(!img.segments.is_empty());
    for s in &img.segments {
        let end = s
            .file_offset
            .checked_add(s.filesz)
            .expect("file range wraps");
        assert!(
            end <= data.len(),
            "segment {s:?} outside a {}-byte file",
            data.len()
        );
        assert!(s.filesz as u64 <= s.memsz);
        let mem_end = s.vaddr.checked_add(s.memsz).expect("segment wraps");
        assert!(
            s.vaddr >= img.kstart && mem_end <= img.kend,
            "segment {s:?} outside [{:#x}, {:#x})",
            img.kstart,
            img.kend
        );
    }
    for s in [img.guest_os, img.xen_version, img.loader, img.features]
        .into_iter()
        .flatten()
    {
        assert!(lies_within(data, s.as_bytes()));
    }
}
