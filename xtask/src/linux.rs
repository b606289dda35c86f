//! A third-party PV kernel for the `third-party-linux` scenario: Debian's Linux kernel
//! (the `linux-image-amd64` metapackage's kernel, a bzImage with Xen PV support),
//! fetched with `apt-get download`, unpacked under `target/linux/` (never installed),
//! and unwrapped to its ELF as Xen's loader does ([`bzimage`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::debian::{self, name_of, read_dir};

/// The metapackage naming the current kernel package.
const META: &str = "linux-image-amd64";

/// Returns the path of the kernel's ELF, fetching and unwrapping it if needed.
pub fn ensure(target_dir: &Path) -> Result<PathBuf> {
    let dir = target_dir.join("linux");
    let elf = dir.join("vmlinux.elf");
    if elf.is_file() {
        return Ok(elf);
    }
    debian::fetch_unpacked(&dir.join("meta"), META)?;
    let deb = read_dir(&dir.join("meta"))?
        .into_iter()
        .find(|p| name_of(p).ends_with(".deb"))
        .with_context(|| format!("no {META} .deb after download"))?;
    let package = kernel_package(&deb)?;
    let unpacked = debian::fetch_unpacked(&dir.join("kernel"), &package)?;
    let vmlinuz = read_dir(&unpacked.join("boot"))?
        .into_iter()
        .find(|p| name_of(p).starts_with("vmlinuz-"))
        .with_context(|| format!("{package} has no boot/vmlinuz-*"))?;
    let data = std::fs::read(&vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let image =
        bzimage::unwrap(&data).with_context(|| format!("unwrapping {}", vmlinuz.display()))?;
    // Write then rename, so an interrupted run does not leave a truncated image cached.
    let tmp = dir.join("vmlinux.elf.tmp");
    std::fs::write(&tmp, image).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &elf).with_context(|| format!("writing {}", elf.display()))?;
    Ok(elf)
}

/// The kernel package a `linux-image-amd64` .deb depends on (`linux-image-6.1.0-N-amd64`).
fn kernel_package(meta_deb: &Path) -> Result<String> {
    let out = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(meta_deb)
        .arg("Depends")
        .output()
        .context("running dpkg-deb -f")?;
    let depends = String::from_utf8_lossy(&out.stdout);
    match depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-"))
    {
        Some(p) => Ok(p.to_owned()),
        None => bail!("{META} depends on no linux-image package ({depends:?})"),
    }
}
