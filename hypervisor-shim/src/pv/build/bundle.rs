//! Domain bundles: one boot module holding several PV guest images and a manifest
//! saying, per domain, its name, image, memory, command line and role.
//!
//! Xen itself takes one dom0 kernel per boot module and builds domUs later from a
//! toolstack; the shim has no toolstack, so `cargo xtask bundle` (and `cargo xtask run
//! hello hello hello`) packs every domain of a boot into this one file, which the
//! shim receives as its boot module. A module that is not a bundle (a bare PV ELF
//! starts with `\x7fELF`) boots alone, as before: [`parse`] answers `Ok(None)`.
//!
//! # Binary layout (version 1)
//!
//! All integers are little-endian; offsets count from the start of the module.
//!
//! | offset           | size | field                                                |
//! |------------------|------|------------------------------------------------------|
//! | 0                | 8    | magic, [`MAGIC`] = `"XPVBUNDL"`                      |
//! | 8                | 4    | version, [`VERSION`] = 1                             |
//! | 12               | 4    | domain count `n`, 1 ..= [`MAX_DOMAINS`]              |
//! | 16               | 8    | total size of the bundle in bytes (the module may be longer: padding) |
//! | 24               | 48·n | the domain entries, in manifest order                |
//! | 24 + 48·n        | ...  | data: names, command lines, images                   |
//!
//! A domain entry ([`ENTRY_SIZE`] bytes):
//!
//! | offset | size | field                                                         |
//! |--------|------|---------------------------------------------------------------|
//! | 0      | 8    | image offset (a multiple of 8, so the ELF headers are aligned) |
//! | 8      | 8    | image size (non-zero; the image starts with `\x7fELF`)        |
//! | 16     | 8    | memory in KiB: a non-zero multiple of 4 (whole pages), at most [`MAX_MEMORY_KIB`] |
//! | 24     | 4    | name offset                                                   |
//! | 28     | 4    | name length, 1 ..= [`MAX_NAME_LEN`]                           |
//! | 32     | 4    | command line offset                                           |
//! | 36     | 4    | command line length, 0 ..= [`MAX_CMDLINE_LEN`]                |
//! | 40     | 4    | role: [`ROLE_DOMU`] = 0, [`ROLE_DOM0`] = 1                    |
//! | 44     | 4    | flags: [`FLAG_BACKENDS`] (bit 0); other bits must be 0        |
//!
//! Every name, command line and image lies in the data area (after the entries,
//! before the total size). They may overlap: the writer stores an image shared by
//! several domains once. Names are UTF-8 made of printable ASCII without spaces
//! (`!` ..= `~`), unique within the bundle; command lines are UTF-8 without NUL
//! (the shim copies them into `start_info.cmd_line`, a C string of
//! `MAX_GUEST_CMDLINE` bytes). At most one domain is dom0.
//!
//! [`FLAG_BACKENDS`] may be set on the dom0 entry only: that dom0 runs xenstored and
//! the console back-end. The shim then gives every domU unbound event channels for
//! its xenstore and console rings (for domain 0) and builds it paused, to be unpaused
//! by the dom0 once it has introduced it (see `Hypervisor::create_domain`).
//!
//! # Domain ids
//!
//! The shim gives the dom0 domain id 0 and the domUs 1, 2, ... in manifest order
//! ([`Bundle::domid_of`]), whether the dom0 comes first or not. A bundle without a
//! dom0 leaves id 0 unused.
//!
//! The module is untrusted input: [`parse`] checks every offset and length against
//! the module with overflow-checked arithmetic and never panics.

use alloc::vec::Vec;
use core::fmt;

/// The first 8 bytes of a bundle.
pub const MAGIC: [u8; 8] = *b"XPVBUNDL";
/// The layout version this parser reads and [`encode`] writes.
pub const VERSION: u32 = 1;
/// Size of the fixed header (magic, version, count, total size).
pub const HEADER_SIZE: usize = 24;
/// Size of one domain entry.
pub const ENTRY_SIZE: usize = 48;
/// Most domains in one bundle.
pub const MAX_DOMAINS: usize = 64;
/// Longest domain name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest command line, in bytes: `start_info.cmd_line` holds `MAX_GUEST_CMDLINE`
/// bytes including the terminating NUL.
pub const MAX_CMDLINE_LEN: usize = xen_sys::MAX_GUEST_CMDLINE as usize - 1;
/// Most memory of one domain, in KiB (4 TiB: far beyond any machine the shim runs on,
/// small enough that byte and page counts never overflow).
pub const MAX_MEMORY_KIB: u64 = 1 << 32;
/// Role code of a domU.
pub const ROLE_DOMU: u32 = 0;
/// Role code of the dom0.
pub const ROLE_DOM0: u32 = 1;
/// Entry flag: this dom0 runs xenstored and the console back-end (dom0 entry only).
pub const FLAG_BACKENDS: u32 = 1 << 0;
/// Images start at multiples of this.
pub const IMAGE_ALIGN: usize = 8;

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// What a domain is to the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The privileged domain (domain id 0).
    Dom0,
    /// An unprivileged domain.
    DomU,
}

/// One domain of a bundle, borrowing from the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleDomain<'a> {
    pub name: &'a str,
    /// A PV ELF image.
    pub image: &'a [u8],
    pub memory_kib: u64,
    pub cmdline: &'a str,
    pub role: Role,
    /// [`FLAG_BACKENDS`]: this dom0 hosts xenstored and the console back-end.
    pub backends: bool,
}

impl BundleDomain<'_> {
    /// The domain's memory in 4 KiB pages.
    pub fn memory_pages(&self) -> u64 {
        self.memory_kib / 4
    }
}

/// A parsed, checked bundle: the domains in manifest order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub domains: Vec<BundleDomain<'a>>,
}

impl<'a> Bundle<'a> {
    /// The domain id the shim gives `domains[index]`: 0 for the dom0, 1, 2, ... for
    /// the domUs in manifest order. `None` if `index` is out of range.
    pub fn domid_of(&self, index: usize) -> Option<xen_sys::domid_t> {
        let d = self.domains.get(index)?;
        Some(match d.role {
            Role::Dom0 => 0,
            Role::DomU => {
                let before = self.domains[..index]
                    .iter()
                    .filter(|d| d.role == Role::DomU)
                    .count();
                // At most MAX_DOMAINS domains: the id fits.
                before as xen_sys::domid_t + 1
            }
        })
    }

    /// The dom0, if the bundle has one.
    pub fn dom0(&self) -> Option<&BundleDomain<'a>> {
        self.domains.iter().find(|d| d.role == Role::Dom0)
    }
}

/// Why a module is not a valid bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Shorter than the header, the entry table or its declared total size.
    Truncated { need: u64, have: usize },
    /// A version this shim does not read.
    Version(u32),
    /// No domains, or more than [`MAX_DOMAINS`].
    DomainCount(u32),
    /// The declared total size is smaller than the header and entries.
    TotalSize(u64),
    /// Domain `index`: `what` (name, command line, image) lies outside the data area.
    OutOfBounds { index: usize, what: &'static str },
    /// Domain `index`: the image offset is not a multiple of [`IMAGE_ALIGN`].
    Misaligned { index: usize, offset: u64 },
    /// Domain `index`: the image does not start with the ELF magic.
    NotElf { index: usize },
    /// Domain `index`: empty name, or longer than [`MAX_NAME_LEN`].
    NameLength { index: usize, len: u32 },
    /// Domain `index`: the name has a byte outside printable ASCII.
    NameChars { index: usize },
    /// Domains `first` and `second` have the same name.
    DuplicateName { first: usize, second: usize },
    /// Domain `index`: the command line is longer than [`MAX_CMDLINE_LEN`].
    CmdlineLength { index: usize, len: u32 },
    /// Domain `index`: the command line is not UTF-8 or contains a NUL.
    CmdlineChars { index: usize },
    /// Domain `index`: memory is 0, not whole pages, or above [`MAX_MEMORY_KIB`].
    Memory { index: usize, kib: u64 },
    /// Domain `index`: an unknown role code.
    Role { index: usize, code: u32 },
    /// Domain `index`: flag bits this shim does not know are set.
    Flags { index: usize, value: u32 },
    /// Domain `index`: [`FLAG_BACKENDS`] on a domain that is not the dom0.
    BackendsNotDom0 { index: usize },
    /// Domains `first` and `second` are both dom0.
    TwoDom0 { first: usize, second: usize },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BundleError::*;
        match *self {
            Truncated { need, have } => {
                write!(f, "bundle truncated: needs {need} bytes, module has {have}")
            }
            Version(v) => write!(f, "bundle version {v} not supported (this shim reads {VERSION})"),
            DomainCount(n) => write!(f, "bundle has {n} domains (1 to {MAX_DOMAINS} allowed)"),
            TotalSize(s) => write!(f, "bundle total size {s} is smaller than its header and entries"),
            OutOfBounds { index, what } => {
                write!(f, "bundle domain {index}: {what} lies outside the bundle's data")
            }
            Misaligned { index, offset } => write!(
                f,
                "bundle domain {index}: image offset {offset:#x} is not a multiple of {IMAGE_ALIGN}"
            ),
            NotElf { index } => write!(f, "bundle domain {index}: image is not an ELF file"),
            NameLength { index, len } => write!(
                f,
                "bundle domain {index}: name length {len} (1 to {MAX_NAME_LEN} bytes allowed)"
            ),
            NameChars { index } => write!(
                f,
                "bundle domain {index}: name must be printable ASCII without spaces"
            ),
            DuplicateName { first, second } => {
                write!(f, "bundle domains {first} and {second} have the same name")
            }
            CmdlineLength { index, len } => write!(
                f,
                "bundle domain {index}: command line of {len} bytes (at most {MAX_CMDLINE_LEN})"
            ),
            CmdlineChars { index } => write!(
                f,
                "bundle domain {index}: command line is not UTF-8 or contains a NUL"
            ),
            Memory { index, kib } => write!(
                f,
                "bundle domain {index}: memory {kib} KiB (a non-zero multiple of 4 KiB up to {MAX_MEMORY_KIB} KiB)"
            ),
            Role { index, code } => write!(f, "bundle domain {index}: unknown role code {code}"),
            Flags { index, value } => write!(
                f,
                "bundle domain {index}: unknown flags {value:#x} (only FLAG_BACKENDS = {FLAG_BACKENDS:#x} exists)"
            ),
            BackendsNotDom0 { index } => write!(
                f,
                "bundle domain {index}: only the dom0 may run the back-ends (FLAG_BACKENDS)"
            ),
            TwoDom0 { first, second } => {
                write!(f, "bundle domains {first} and {second} are both dom0 (at most one)")
            }
        }
    }
}

/// Reads a little-endian integer of `N` bytes at `off`; the caller has checked bounds.
fn le<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(le(b, off))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(le(b, off))
}

/// The bytes `[off, off + len)` of `data`, where `data` is the bundle's first
/// `total` bytes and the range must start at or after `data_start`.
fn range(data: &[u8], data_start: usize, off: u64, len: u64) -> Option<&[u8]> {
    let end = off.checked_add(len)?;
    if off < data_start as u64 || end > data.len() as u64 {
        return None;
    }
    // Both fit in usize: they are at most data.len().
    data.get(off as usize..end as usize)
}

/// Parses a boot module: `Ok(None)` if it is not a bundle (it does not start with
/// [`MAGIC`]: e.g. a bare PV ELF, which boots alone), `Ok(Some(bundle))` if it is a
/// valid bundle, an error if it claims to be a bundle but breaks a rule of the layout.
pub fn parse(module: &[u8]) -> Result<Option<Bundle<'_>>, BundleError> {
    if !module.starts_with(&MAGIC) {
        return Ok(None);
    }
    let truncated = |need: u64| BundleError::Truncated {
        need,
        have: module.len(),
    };
    if module.len() < HEADER_SIZE {
        return Err(truncated(HEADER_SIZE as u64));
    }
    let version = u32_at(module, 8);
    if version != VERSION {
        return Err(BundleError::Version(version));
    }
    let count = u32_at(module, 12);
    if count == 0 || count as usize > MAX_DOMAINS {
        return Err(BundleError::DomainCount(count));
    }
    let count = count as usize;
    // No overflow: count <= MAX_DOMAINS.
    let data_start = HEADER_SIZE + count * ENTRY_SIZE;
    let total = u64_at(module, 16);
    if total < data_start as u64 {
        return Err(BundleError::TotalSize(total));
    }
    if total > module.len() as u64 {
        return Err(truncated(total));
    }
    // The bundle proper; anything after it (padding by the boot loader) is ignored.
    let data = &module[..total as usize];

    let mut domains = Vec::with_capacity(count);
    let mut dom0: Option<usize> = None;
    for index in 0..count {
        let e = HEADER_SIZE + index * ENTRY_SIZE;
        let image_off = u64_at(data, e);
        let image_len = u64_at(data, e + 8);
        let memory_kib = u64_at(data, e + 16);
        let name_off = u32_at(data, e + 24);
        let name_len = u32_at(data, e + 28);
        let cmdline_off = u32_at(data, e + 32);
        let cmdline_len = u32_at(data, e + 36);
        let role = u32_at(data, e + 40);
        let flags = u32_at(data, e + 44);

        if flags & !FLAG_BACKENDS != 0 {
            return Err(BundleError::Flags {
                index,
                value: flags,
            });
        }
        let backends = flags & FLAG_BACKENDS != 0;
        let role = match role {
            ROLE_DOM0 => Role::Dom0,
            ROLE_DOMU => Role::DomU,
            code => return Err(BundleError::Role { index, code }),
        };
        if role == Role::Dom0 {
            if let Some(first) = dom0 {
                return Err(BundleError::TwoDom0 {
                    first,
                    second: index,
                });
            }
            dom0 = Some(index);
        }
        if backends && role != Role::Dom0 {
            return Err(BundleError::BackendsNotDom0 { index });
        }
        if memory_kib == 0 || !memory_kib.is_multiple_of(4) || memory_kib > MAX_MEMORY_KIB {
            return Err(BundleError::Memory {
                index,
                kib: memory_kib,
            });
        }

        if name_len == 0 || name_len as usize > MAX_NAME_LEN {
            return Err(BundleError::NameLength {
                index,
                len: name_len,
            });
        }
        let name = range(data, data_start, name_off.into(), name_len.into()).ok_or(
            BundleError::OutOfBounds {
                index,
                what: "name",
            },
        )?;
        if !name.iter().all(|b| b.is_ascii_graphic()) {
            return Err(BundleError::NameChars { index });
        }
        // Printable ASCII is UTF-8.
        let name = core::str::from_utf8(name).map_err(|_| BundleError::NameChars { index })?;
        if let Some(first) = domains.iter().position(|d: &BundleDomain| d.name == name) {
            return Err(BundleError::DuplicateName {
                first,
                second: index,
            });
        }

        if cmdline_len as usize > MAX_CMDLINE_LEN {
            return Err(BundleError::CmdlineLength {
                index,
                len: cmdline_len,
            });
        }
        let cmdline = range(data, data_start, cmdline_off.into(), cmdline_len.into()).ok_or(
            BundleError::OutOfBounds {
                index,
                what: "command line",
            },
        )?;
        if cmdline.contains(&0) {
            return Err(BundleError::CmdlineChars { index });
        }
        let cmdline =
            core::str::from_utf8(cmdline).map_err(|_| BundleError::CmdlineChars { index })?;

        if !image_off.is_multiple_of(IMAGE_ALIGN as u64) {
            return Err(BundleError::Misaligned {
                index,
                offset: image_off,
            });
        }
        let image =
            range(data, data_start, image_off, image_len).ok_or(BundleError::OutOfBounds {
                index,
                what: "image",
            })?;
        if !image.starts_with(ELF_MAGIC) {
            return Err(BundleError::NotElf { index });
        }

        domains.push(BundleDomain {
            name,
            image,
            memory_kib,
            cmdline,
            role,
            backends,
        });
    }
    Ok(Some(Bundle { domains }))
}

/// Writes a bundle of `domains` (for `cargo xtask bundle` and tests): header, entries,
/// names and command lines, then the images, each once even if several domains share
/// it, at multiples of [`IMAGE_ALIGN`]. The result is checked with [`parse`], so a
/// bundle this returns is one the shim accepts.
pub fn encode(domains: &[BundleDomain]) -> Result<Vec<u8>, BundleError> {
    if domains.is_empty() || domains.len() > MAX_DOMAINS {
        return Err(BundleError::DomainCount(
            u32::try_from(domains.len()).unwrap_or(u32::MAX),
        ));
    }
    let data_start = HEADER_SIZE + domains.len() * ENTRY_SIZE;
    let mut out = alloc::vec![0; data_start];

    // Strings first: offsets and lengths in entries are u32, images follow.
    let mut strings = Vec::with_capacity(domains.len());
    for (index, d) in domains.iter().enumerate() {
        let name = push_string(&mut out, d.name, index, "name")?;
        let cmdline = push_string(&mut out, d.cmdline, index, "command line")?;
        strings.push((name, cmdline));
    }

    // Images, each distinct content once.
    let mut images: Vec<(&[u8], u64)> = Vec::new();
    let mut image_offs = Vec::with_capacity(domains.len());
    for d in domains {
        let off = match images.iter().find(|(img, _)| *img == d.image) {
            Some(&(_, off)) => off,
            None => {
                out.resize(out.len().next_multiple_of(IMAGE_ALIGN), 0);
                let off = out.len() as u64;
                out.extend_from_slice(d.image);
                images.push((d.image, off));
                off
            }
        };
        image_offs.push(off);
    }

    let total = out.len() as u64;
    out[..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(domains.len() as u32).to_le_bytes());
    out[16..24].copy_from_slice(&total.to_le_bytes());
    for (index, d) in domains.iter().enumerate() {
        let e = HEADER_SIZE + index * ENTRY_SIZE;
        let ((name_off, name_len), (cmd_off, cmd_len)) = strings[index];
        let role = match d.role {
            Role::Dom0 => ROLE_DOM0,
            Role::DomU => ROLE_DOMU,
        };
        let entry = &mut out[e..e + ENTRY_SIZE];
        entry[0..8].copy_from_slice(&image_offs[index].to_le_bytes());
        entry[8..16].copy_from_slice(&(d.image.len() as u64).to_le_bytes());
        entry[16..24].copy_from_slice(&d.memory_kib.to_le_bytes());
        entry[24..28].copy_from_slice(&name_off.to_le_bytes());
        entry[28..32].copy_from_slice(&name_len.to_le_bytes());
        entry[32..36].copy_from_slice(&cmd_off.to_le_bytes());
        entry[36..40].copy_from_slice(&cmd_len.to_le_bytes());
        entry[40..44].copy_from_slice(&role.to_le_bytes());
        let flags = if d.backends { FLAG_BACKENDS } else { 0 };
        entry[44..48].copy_from_slice(&flags.to_le_bytes());
    }
    parse(&out)?;
    Ok(out)
}

/// Appends `s`; returns its offset and length, or an error if either overflows u32.
fn push_string(
    out: &mut Vec<u8>,
    s: &str,
    index: usize,
    what: &'static str,
) -> Result<(u32, u32), BundleError> {
    let off = u32::try_from(out.len()).map_err(|_| BundleError::OutOfBounds { index, what })?;
    let len = u32::try_from(s.len()).map_err(|_| BundleError::OutOfBounds { index, what })?;
    out.extend_from_slice(s.as_bytes());
    Ok((off, len))
}

#[cfg(test)]
mod tests;
