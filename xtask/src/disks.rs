//! Virtual disks: a manifest's disk specs, written as xl.cfg writes them (Xen's
//! `docs/man/xl-disk-configuration.5.pod`), and the image files behind them, which
//! xtask creates with `qemu-img` when they are missing and never overwrites.
//!
//! A spec is `key=value` pairs separated by commas:
//!
//! ```text
//! vdev=xvda, access=rw, size=64M, target=images/kv.img
//! ```
//!
//! - `target=`: the image file, relative to the manifest's directory. It must come
//!   last: everything after `target=` is the path, commas included (xl's rule).
//! - `vdev=` (required): the name the domU sees, `xvda`, `xvdb1`, `sda`, `hda`, `d0p1`
//!   or a device number (`xenbus::vdev`, Xen's `vbd-interface.pandoc`).
//! - `access=`: `rw` or `w` (the default), `ro` or `r`.
//! - `format=raw` and `devtype=disk`: accepted, the only values we have.
//! - `size=` (ours, not xl's): the size of the image xtask creates when the file is
//!   missing: `64M`, `1G`, `512K`, `2T`, a byte count `4096B`, or a bare number of MiB
//!   (as `memory` reads it); a whole number of 512-byte sectors.
//!
//! xl's positional form `PATH,raw,xvda,rw` (target, format, vdev, access, each may be
//! left empty) is read too; its path cannot hold a comma.
//!
//! On the machine, each disk is a virtio-blk device of QEMU whose serial (`vbd0`,
//! `vbd1`, ... in manifest order) lets dom0 tell them apart (`qemu.rs`); dom0 serves
//! each to its domU as a Xen vbd.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::deps;

/// Disks in a whole manifest at most. Each disk is one virtio-mmio transport of
/// QEMU's microvm, and microvm has a fixed set of them (QEMU 7.2: 24 with its second
/// IO-APIC, 8 without, none added on demand); 16 keeps some for other virtio devices
/// (network, entropy) rather than letting disks take every one.
pub const MAX_DISKS: usize = 16;

/// The unit of a disk's size: virtio-blk and blkif count in 512-byte sectors.
pub const SECTOR: u64 = 512;

/// Who may write a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

impl Access {
    /// The mode as xenstore's vbd `mode` node and dom0's `disks=` write it.
    pub fn mode(self) -> &'static str {
        match self {
            Access::ReadWrite => "w",
            Access::ReadOnly => "r",
        }
    }
}

/// One disk of a domain, as its manifest spec says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// The image file (relative paths already taken from the manifest's directory).
    pub target: PathBuf,
    /// The vdev as written (`xvda`): dom0 is told this text.
    pub vdev: String,
    /// Its xenstore device number (`xvda`: 51712).
    pub devid: u32,
    pub access: Access,
    /// Size in bytes of the image to create if it is missing.
    pub size: Option<u64>,
}

/// A disk placed on the machine: whose it is and the serial QEMU gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// The domU's domain id (1, 2, ... as the shim numbers them).
    pub domid: u16,
    /// `vbd<index>`, the index counting the manifest's disks from 0 in order: QEMU's
    /// drive id and virtio serial, and the name dom0 finds the device by.
    pub serial: String,
    pub spec: DiskSpec,
}

impl DiskSpec {
    /// Parses an xl disk spec; a relative `target` is taken from `base`.
    pub fn parse(spec: &str, base: &Path) -> Result<DiskSpec, String> {
        let mut target: Option<&str> = None;
        let mut format: Option<&str> = None;
        let mut vdev: Option<&str> = None;
        let mut access: Option<&str> = None;
        let mut devtype: Option<&str> = None;
        let mut size: Option<&str> = None;
        fn set<'a>(slot: &mut Option<&'a str>, key: &str, value: &'a str) -> Result<(), String> {
            if slot.replace(value).is_some() {
                return Err(format!("`{key}` given twice"));
            }
            Ok(())
        }
        let mut positional = 0;
        let mut rest = spec;
        loop {
            if let Some(path) = rest.trim_start().strip_prefix("target=") {
                // The rest is the path, commas and all.
                set(&mut target, "target", path)?;
                break;
            }
            let (item, next) = match rest.split_once(',') {
                Some((item, next)) => (item.trim(), Some(next)),
                None => (rest.trim(), None),
            };
            match item.split_once('=') {
                Some((key, value)) => {
                    let value = value.trim();
                    let slot = match key.trim() {
                        "vdev" => &mut vdev,
                        "access" => &mut access,
                        "format" => &mut format,
                        "devtype" => &mut devtype,
                        "size" => &mut size,
                        other => {
                            return Err(format!(
                                "unknown key `{other}` (known: target, vdev, access, format, \
                                 devtype, size)"
                            ))
                        }
                    };
                    set(slot, key.trim(), value)?;
                }
                None => {
                    let (slot, key) = match positional {
                        0 => (&mut target, "target"),
                        1 => (&mut format, "format"),
                        2 => (&mut vdev, "vdev"),
                        3 => (&mut access, "access"),
                        _ => {
                            return Err(format!(
                                "positional parameter {item:?} after target, format, vdev \
                                 and access"
                            ))
                        }
                    };
                    positional += 1;
                    // An empty positional parameter leaves the default, as in xl.
                    if !item.is_empty() {
                        set(slot, key, item)?;
                    }
                }
            }
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }

        let target = match target {
            Some(t) if !t.is_empty() => t,
            _ => return Err("no target (the image file: `target=PATH`, last)".into()),
        };
        let Some(vdev) = vdev else {
            if target.contains("vdev=") {
                return Err(format!(
                    "no vdev: `target=` must be the last key, everything after it is the \
                     path (here {target:?})"
                ));
            }
            return Err("no vdev (the device the domU sees, e.g. `vdev=xvda`)".into());
        };
        let devid = xenbus::vdev::parse(vdev).map_err(|e| e.to_string())?;
        let access = match access.unwrap_or("rw") {
            "rw" | "w" => Access::ReadWrite,
            "ro" | "r" => Access::ReadOnly,
            other => return Err(format!("access {other:?}: expected rw (w) or ro (r)")),
        };
        if let Some(f) = format.filter(|f| *f != "raw") {
            return Err(format!(
                "format {f:?}: only raw images are supported (QEMU serves the file as it is)"
            ));
        }
        if let Some(d) = devtype.filter(|d| *d != "disk") {
            return Err(format!("devtype {d:?}: only devtype=disk is supported"));
        }
        let size = size.map(parse_size).transpose()?;
        // Without `.` components, as image paths are.
        let path: PathBuf = Path::new(target)
            .components()
            .filter(|c| *c != std::path::Component::CurDir)
            .collect();
        Ok(DiskSpec {
            target: base.join(path),
            vdev: vdev.to_owned(),
            devid,
            access,
            size,
        })
    }
}

/// A disk size in bytes: `<n>K`, `M`, `G`, `T` (binary units), `<n>B` bytes, or a bare
/// number of MiB (as a domain's `memory`); nonzero, whole 512-byte sectors.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = match t.as_bytes().last() {
        Some(b'B' | b'b') => (&t[..t.len() - 1], 1u64),
        Some(b'K' | b'k') => (&t[..t.len() - 1], 1 << 10),
        Some(b'M' | b'm') => (&t[..t.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&t[..t.len() - 1], 1 << 30),
        Some(b'T' | b't') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1 << 20),
    };
    let n: u64 = num.parse().map_err(|_| {
        format!("size {text:?}: expected a size like \"64M\", \"1G\", \"4096B\" or a number of MiB")
    })?;
    let bytes = n
        .checked_mul(unit)
        .ok_or_else(|| format!("size {text:?} is too large"))?;
    if bytes == 0 || bytes % SECTOR != 0 {
        return Err(format!(
            "size {text:?} ({bytes} bytes): must be a nonzero multiple of {SECTOR} bytes (whole sectors)"
        ));
    }
    Ok(bytes)
}

/// What [`ensure_image`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    /// The image was missing and is now created, of the spec's size.
    Created,
    /// The image was there and is left untouched.
    Existing,
}

/// Makes sure every disk's image exists, creating the missing ones.
pub fn ensure_images(disks: &[Disk]) -> Result<()> {
    for d in disks {
        ensure_image(&d.spec.target, d.spec.size)
            .with_context(|| format!("disk {} (vdev {} of d{})", d.serial, d.spec.vdev, d.domid))?;
    }
    Ok(())
}

/// Makes sure the image `path` exists: an existing regular file is left as it is (even
/// smaller than `size`: xtask never resizes or overwrites an image, it may hold a
/// domain's data); a missing one is created, raw, of `size` bytes, with its parent
/// directories. Manifests are not trusted: anything but a regular file (a directory,
/// a device, a socket; a symlink counts as what it points to) is refused, and the file is created exclusively, so an image
/// that appears meanwhile is not truncated.
pub fn ensure_image(path: &Path, size: Option<u64>) -> Result<Image> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            if let Some(size) = size.filter(|s| m.len() < *s) {
                eprintln!(
                    "note: disk image {} is {} bytes, smaller than its size= ({size} bytes): \
                     used as it is (xtask does not resize images)",
                    path.display(),
                    m.len()
                );
            }
            return Ok(Image::Existing);
        }
        Ok(m) if m.is_dir() => bail!(
            "disk image {} is a directory, not an image file",
            path.display()
        ),
        Ok(_) => bail!(
            "disk image {} is not a regular file (a device, pipe or socket): refused",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("disk image {}", path.display())),
    }
    let Some(size) = size else {
        bail!(
            "disk image {} does not exist: add `size=` to its disk spec (e.g. size=64M) \
             for xtask to create it",
            path.display()
        );
    };
    deps::ensure_qemu_img()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Claim the name first (O_EXCL, which also refuses a dangling symlink):
    // `qemu-img create` truncates whatever is at the path.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating disk image {}", path.display()))?;
    let out = Command::new(deps::QEMU_IMG)
        .args(["create", "-q", "-f", "raw"])
        .arg(path)
        .arg(size.to_string())
        .output()
        .with_context(|| format!("running {}", deps::QEMU_IMG))?;
    if !out.status.success() {
        // Ours, and empty: do not leave it to pass for an image next time.
        let _ = std::fs::remove_file(path);
        bail!(
            "qemu-img create -f raw {} {size} failed: {}",
            path.display(),
            deps::last_line(&out.stderr)
        );
    }
    eprintln!(
        "==> created disk image {} ({size} bytes, raw)",
        path.display()
    );
    Ok(Image::Created)
}
