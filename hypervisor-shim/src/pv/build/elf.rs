//! Loading a PV kernel: the ELF image and the Xen notes that tell the domain builder
//! where it goes (`xen/include/public/elfnote.h`), or the legacy `__xen_guest` section.
//!
//! Addresses follow libelf's rules: without `VIRT_BASE` the base is 0, without
//! `PADDR_OFFSET` it equals the base, and each segment lands at
//! `p_paddr + (virt_base - paddr_offset)`.

use alloc::vec::Vec;
use core::fmt;

use object::elf::{FileHeader64, ELFCLASS32, EM_X86_64, PT_LOAD, PT_NOTE, SHT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::LittleEndian as LE;
use xen_sys::{
    XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_HYPERCALL_PAGE,
    XEN_ELFNOTE_LOADER, XEN_ELFNOTE_PADDR_OFFSET, XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
};

/// One `PT_LOAD` segment, at its guest virtual address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub file_offset: usize,
    pub filesz: usize,
    pub memsz: u64,
}

/// A parsed and checked PV kernel image.
#[derive(Clone, Debug)]
pub struct XenImage<'a> {
    pub data: &'a [u8],
    pub entry: u64,
    pub virt_base: u64,
    /// First and one-past-last virtual address of the loaded image.
    pub kstart: u64,
    pub kend: u64,
    pub hypercall_page: Option<u64>,
    pub guest_os: Option<&'a str>,
    pub xen_version: Option<&'a str>,
    pub loader: Option<&'a str>,
    pub features: Option<&'a str>,
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file, truncated, or malformed headers.
    Malformed(&'static str),
    /// An ELF, but not a 64-bit x86 one.
    NotX86_64,
    /// Neither Xen ELF notes nor a `__xen_guest` section: not a PV kernel.
    NotXen,
    /// The notes or segments put the kernel somewhere a PV guest cannot be.
    BadLayout(&'static str),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ElfError::Malformed(why) => write!(f, "malformed ELF: {why}"),
            ElfError::NotX86_64 => {
                write!(f, "not an x86_64 ELF (32-bit PV guests are not supported)")
            }
            ElfError::NotXen => write!(
                f,
                "no Xen ELF notes or __xen_guest section: not a PV kernel"
            ),
            ElfError::BadLayout(why) => write!(f, "unusable kernel layout: {why}"),
        }
    }
}

use xen_sys::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};
/// Largest kernel image we load (the initial mapping must fit in the domain anyway).
const MAX_IMAGE: u64 = 1 << 30;

#[derive(Default)]
struct Notes<'a> {
    entry: Option<u64>,
    virt_base: Option<u64>,
    paddr_offset: Option<u64>,
    hypercall_page: Option<u64>,
    guest_os: Option<&'a str>,
    xen_version: Option<&'a str>,
    loader: Option<&'a str>,
    features: Option<&'a str>,
    found: bool,
}

fn note_uint(desc: &[u8]) -> Option<u64> {
    match desc.len() {
        1 => Some(desc[0] as u64),
        2 => Some(u16::from_le_bytes(desc.try_into().ok()?) as u64),
        4 => Some(u32::from_le_bytes(desc.try_into().ok()?) as u64),
        8 => Some(u64::from_le_bytes(desc.try_into().ok()?)),
        _ => None,
    }
}

fn note_str(desc: &[u8]) -> Option<&str> {
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    core::str::from_utf8(&desc[..end]).ok()
}

impl<'a> Notes<'a> {
    fn add(&mut self, name: &[u8], kind: u32, desc: &'a [u8]) {
        if name != b"Xen" {
            return;
        }
        self.found = true;
        match kind {
            XEN_ELFNOTE_ENTRY => self.entry = note_uint(desc),
            XEN_ELFNOTE_HYPERCALL_PAGE => self.hypercall_page = note_uint(desc),
            XEN_ELFNOTE_VIRT_BASE => self.virt_base = note_uint(desc),
            XEN_ELFNOTE_PADDR_OFFSET => self.paddr_offset = note_uint(desc),
            XEN_ELFNOTE_XEN_VERSION => self.xen_version = note_str(desc),
            XEN_ELFNOTE_GUEST_OS => self.guest_os = note_str(desc),
            XEN_ELFNOTE_LOADER => self.loader = note_str(desc),
            XEN_ELFNOTE_FEATURES => self.features = note_str(desc),
            _ => {}
        }
    }

    /// The legacy `__xen_guest` string: `KEY=VALUE,...`; `HYPERCALL_PAGE` is a page
    /// number relative to `VIRT_BASE` there.
    fn add_legacy(&mut self, s: &'a str) -> Result<(), ElfError> {
        self.found = true;
        let mut hypercall_pfn = None;
        for item in s.split(',') {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            let num = || {
                let v = v.trim();
                let (digits, radix) = v.strip_prefix("0x").map(|h| (h, 16)).unwrap_or((v, 10));
                u64::from_str_radix(digits, radix)
                    .map_err(|_| ElfError::Malformed("bad number in __xen_guest"))
            };
            match k {
                "GUEST_OS" => self.guest_os = Some(v),
                "XEN_VER" => self.xen_version = Some(v),
                "LOADER" => self.loader = Some(v),
                "FEATURES" => self.features = Some(v),
                "VIRT_BASE" => self.virt_base = Some(num()?),
                "ELF_PADDR_OFFSET" => self.paddr_offset = Some(num()?),
                "VIRT_ENTRY" => self.entry = Some(num()?),
                "HYPERCALL_PAGE" => hypercall_pfn = Some(num()?),
                _ => {}
            }
        }
        if let Some(pfn) = hypercall_pfn {
            let base = self.virt_base.unwrap_or(0);
            self.hypercall_page = pfn
                .checked_mul(4096)
                .and_then(|o| o.checked_add(base))
                .map(Some)
                .ok_or(ElfError::BadLayout("hypercall page out of range"))?;
        }
        Ok(())
    }
}

impl<'a> XenImage<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        if data.len() > 4 && data[4] == ELFCLASS32 && data.starts_with(b"\x7fELF") {
            return Err(ElfError::NotX86_64);
        }
        let hdr = FileHeader64::<LE>::parse(data).map_err(|_| ElfError::Malformed("header"))?;
        let e = hdr
            .endian()
            .map_err(|_| ElfError::Malformed("byte order"))?;
        if hdr.e_machine(e) != EM_X86_64 {
            return Err(ElfError::NotX86_64);
        }
        let phdrs = hdr
            .program_headers(e, data)
            .map_err(|_| ElfError::Malformed("program headers"))?;

        let mut notes = Notes::default();
        for ph in phdrs.iter().filter(|p| p.p_type(e) == PT_NOTE) {
            let Ok(Some(mut it)) = ph.notes(e, data) else {
                return Err(ElfError::Malformed("PT_NOTE"));
            };
            while let Ok(Some(n)) = it.next() {
                notes.add(n.name(), n.n_type(e), n.desc());
            }
        }
        let sections = hdr
            .sections(e, data)
            .map_err(|_| ElfError::Malformed("sections"))?;
        if !notes.found {
            for sh in sections.iter().filter(|s| s.sh_type(e) == SHT_NOTE) {
                if let Ok(Some(mut it)) = sh.notes(e, data) {
                    while let Ok(Some(n)) = it.next() {
                        notes.add(n.name(), n.n_type(e), n.desc());
                    }
                }
            }
        }
        if !notes.found {
            if let Some((_, sh)) = sections.section_by_name(e, b"__xen_guest") {
                let bytes = sh
                    .data(e, data)
                    .map_err(|_| ElfError::Malformed("__xen_guest"))?;
                let s = note_str(bytes).ok_or(ElfError::Malformed("__xen_guest not text"))?;
                notes.add_legacy(s)?;
            }
        }
        if !notes.found {
            return Err(ElfError::NotXen);
        }

        let loads: Vec<_> = phdrs.iter().filter(|p| p.p_type(e) == PT_LOAD).collect();
        if loads.is_empty() {
            return Err(ElfError::Malformed("no PT_LOAD segment"));
        }
        let pstart = loads.iter().map(|p| p.p_paddr(e)).min().unwrap_or(0);
        let mut pend = 0u64;
        for p in &loads {
            let end = p.p_paddr(e).checked_add(p.p_memsz(e));
            pend = pend.max(end.ok_or(ElfError::BadLayout("segment wraps"))?);
        }
        let virt_base = notes.virt_base.unwrap_or(0);
        let paddr_offset = notes.paddr_offset.unwrap_or(virt_base);
        let virt_offset = virt_base.wrapping_sub(paddr_offset);
        let kstart = pstart.wrapping_add(virt_offset);
        let kend = pend.wrapping_add(virt_offset);

        let mut segments = Vec::new();
        for p in &loads {
            let (off, filesz, memsz) = (p.p_offset(e), p.p_filesz(e), p.p_memsz(e));
            if filesz > memsz {
                return Err(ElfError::Malformed("segment file size exceeds memory size"));
            }
            let in_file = off
                .checked_add(filesz)
                .is_some_and(|end| end <= data.len() as u64);
            if !in_file {
                return Err(ElfError::Malformed("segment outside the file"));
            }
            segments.push(Segment {
                vaddr: p.p_paddr(e).wrapping_add(virt_offset),
                file_offset: off as usize,
                filesz: filesz as usize,
                memsz,
            });
        }

        let image = XenImage {
            data,
            entry: notes.entry.unwrap_or(hdr.e_entry(e)),
            virt_base,
            kstart,
            kend,
            hypercall_page: notes.hypercall_page,
            guest_os: notes.guest_os,
            xen_version: notes.xen_version,
            loader: notes.loader,
            features: notes.features,
            segments,
        };
        image.check()?;
        Ok(image)
    }

    fn check(&self) -> Result<(), ElfError> {
        let bad = ElfError::BadLayout;
        if self.kend <= self.kstart || self.kend - self.kstart > MAX_IMAGE {
            return Err(bad("image empty or larger than 1 GiB"));
        }
        if self.kstart < self.virt_base {
            return Err(bad("kernel starts below VIRT_BASE"));
        }
        if self.virt_base & 0xfff != 0 {
            return Err(bad("VIRT_BASE not page aligned"));
        }
        let canonical = |a: u64| crate::paging::is_canonical(a);
        if !canonical(self.kstart) || !canonical(self.kend - 1) {
            return Err(bad("kernel not at canonical addresses"));
        }
        if (self.kstart >> 47) != ((self.kend - 1) >> 47) {
            return Err(bad("kernel spans the canonical hole"));
        }
        if self.kstart < HYPERVISOR_VIRT_END && self.kend > HYPERVISOR_VIRT_START {
            return Err(bad("kernel overlaps the hypervisor's reserved range"));
        }
        if !(self.kstart..self.kend).contains(&self.entry) {
            return Err(bad("entry point outside the image"));
        }
        if let Some(hp) = self.hypercall_page {
            if hp & 0xfff != 0 || hp < self.kstart || hp + 4096 > self.kend {
                return Err(bad("hypercall page not a page inside the image"));
            }
        }
        Ok(())
    }
}

/// Test images, for this crate's tests and, with the `test-utils` feature, for other
/// crates' (the fuzz seeds).
#[cfg(any(test, feature = "test-utils"))]
pub mod testing {
    use super::{PT_LOAD, PT_NOTE};
    use alloc::vec;
    use alloc::vec::Vec;

    /// Builds a minimal ELF64 x86_64 executable: one PT_LOAD at `vaddr` holding `code`,
    /// and a PT_NOTE with the given Xen notes `(type, desc)`.
    pub fn make_elf(vaddr: u64, code: &[u8], memsz: u64, notes: &[(u32, Vec<u8>)]) -> Vec<u8> {
        make_elf_at(0x1000, vaddr, code, memsz, notes)
    }

    /// [`make_elf`] with the code at file offset `code_off` (right after the program
    /// headers, 176, for the smallest file).
    pub fn make_elf_at(
        code_off: u64,
        vaddr: u64,
        code: &[u8],
        memsz: u64,
        notes: &[(u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut note_bytes = Vec::new();
        for (kind, desc) in notes {
            note_bytes.extend_from_slice(&4u32.to_le_bytes());
            note_bytes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            note_bytes.extend_from_slice(&kind.to_le_bytes());
            note_bytes.extend_from_slice(b"Xen\0");
            note_bytes.extend_from_slice(desc);
            while note_bytes.len() % 4 != 0 {
                note_bytes.push(0);
            }
        }
        let phoff = 64u64;
        let note_off = code_off + code.len() as u64;
        let mut f = vec![0u8; (note_off as usize) + note_bytes.len()];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little endian
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&vaddr.to_le_bytes()); // e_entry
        f[32..40].copy_from_slice(&phoff.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph =
            |f: &mut Vec<u8>, i: usize, kind: u32, off: u64, addr: u64, filesz: u64, memsz: u64| {
                let b = phoff as usize + i * 56;
                f[b..b + 4].copy_from_slice(&kind.to_le_bytes());
                f[b + 4..b + 8].copy_from_slice(&7u32.to_le_bytes());
                f[b + 8..b + 16].copy_from_slice(&off.to_le_bytes());
                f[b + 16..b + 24].copy_from_slice(&addr.to_le_bytes());
                f[b + 24..b + 32].copy_from_slice(&addr.to_le_bytes());
                f[b + 32..b + 40].copy_from_slice(&filesz.to_le_bytes());
                f[b + 40..b + 48].copy_from_slice(&memsz.to_le_bytes());
                let align: u64 = if kind == PT_NOTE { 4 } else { 4096 };
                f[b + 48..b + 56].copy_from_slice(&align.to_le_bytes());
            };
        ph(
            &mut f,
            0,
            PT_LOAD,
            code_off,
            vaddr,
            code.len() as u64,
            memsz,
        );
        let nl = note_bytes.len() as u64;
        ph(&mut f, 1, PT_NOTE, note_off, 0, nl, nl);
        f[code_off as usize..note_off as usize].copy_from_slice(code);
        f[note_off as usize..].copy_from_slice(&note_bytes);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::testing::make_elf;
    use super::*;

    const BASE: u64 = 0xffff_ffff_8000_0000;

    #[test]
    fn reads_xen_notes() {
        let elf = make_elf(
            BASE,
            &[0x90; 0x2000],
            0x3000,
            &[
                (6, b"hello\0".to_vec()),
                (5, b"xen-3.0\0".to_vec()),
                (3, BASE.to_le_bytes().to_vec()),
                (4, BASE.to_le_bytes().to_vec()),
                (1, (BASE + 0x10).to_le_bytes().to_vec()),
                (2, (BASE + 0x1000).to_le_bytes().to_vec()),
            ],
        );
        let img = XenImage::parse(&elf).unwrap();
        assert_eq!(img.entry, BASE + 0x10);
        assert_eq!(img.virt_base, BASE);
        assert_eq!((img.kstart, img.kend), (BASE, BASE + 0x3000));
        assert_eq!(img.hypercall_page, Some(BASE + 0x1000));
        assert_eq!(img.guest_os, Some("hello"));
        assert_eq!(img.xen_version, Some("xen-3.0"));
        assert_eq!(img.segments.len(), 1);
        assert_eq!(img.segments[0].filesz, 0x2000);
    }

    #[test]
    fn paddr_offset_relocates_segments() {
        // Linux style: physical addresses in the ELF, VIRT_BASE and PADDR_OFFSET 0.
        let elf = make_elf(
            0x100_0000,
            &[0x90; 16],
            16,
            &[
                (3, BASE.to_le_bytes().to_vec()),
                (4, 0u64.to_le_bytes().to_vec()),
                (1, (BASE + 0x100_0000).to_le_bytes().to_vec()),
            ],
        );
        let img = XenImage::parse(&elf).unwrap();
        assert_eq!(img.kstart, BASE + 0x100_0000);
        assert_eq!(img.segments[0].vaddr, BASE + 0x100_0000);
    }

    #[test]
    fn refuses_what_is_not_a_pv_kernel() {
        assert!(matches!(
            XenImage::parse(b"not an elf"),
            Err(ElfError::Malformed(_))
        ));
        let plain = make_elf(0x40_0000, &[0x90; 16], 16, &[]);
        assert_eq!(XenImage::parse(&plain).unwrap_err(), ElfError::NotXen);
        let mut elf32 = plain.clone();
        elf32[4] = 1;
        assert_eq!(XenImage::parse(&elf32).unwrap_err(), ElfError::NotX86_64);
    }

    #[test]
    fn refuses_bad_layouts() {
        let in_xen = make_elf(
            0xffff_8000_0000_0000,
            &[0x90; 16],
            16,
            &[(6, b"x\0".to_vec())],
        );
        assert!(matches!(
            XenImage::parse(&in_xen),
            Err(ElfError::BadLayout(_))
        ));
        let entry_outside = make_elf(
            0x40_0000,
            &[0x90; 16],
            16,
            &[(1, 0x10u64.to_le_bytes().to_vec())],
        );
        assert!(matches!(
            XenImage::parse(&entry_outside),
            Err(ElfError::BadLayout(_))
        ));
        let hcall_unaligned = make_elf(
            0x40_0000,
            &[0x90; 0x2000],
            0x2000,
            &[(2, 0x40_0010u64.to_le_bytes().to_vec())],
        );
        assert!(matches!(
            XenImage::parse(&hcall_unaligned),
            Err(ElfError::BadLayout(_))
        ));
        let mut truncated = make_elf(0x40_0000, &[0x90; 0x100], 0x100, &[(6, b"x\0".to_vec())]);
        truncated.truncate(0x1080);
        assert!(XenImage::parse(&truncated).is_err());
    }

    #[test]
    fn reads_legacy_xen_guest_string() {
        let mut n = Notes::default();
        n.add_legacy(
            "GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE=0xffffffff80000000,HYPERCALL_PAGE=0x2",
        )
        .unwrap();
        assert_eq!(n.guest_os, Some("linux"));
        assert_eq!(n.hypercall_page, Some(BASE + 0x2000));
    }
}
