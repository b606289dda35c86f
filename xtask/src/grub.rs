//! A third-party PV kernel for the `third-party-grub` scenario: GRUB's Xen PV image
//! (`grub-x86_64-xen.bin` from Debian's `grub-xen-host`), fetched with
//! `apt-get download` and unpacked under `target/grub-xen/`, never installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const PACKAGE: &str = "grub-xen-host";
const IMAGE: &str = "usr/lib/grub-xen/grub-x86_64-xen.bin";

/// Returns the path of GRUB's x86_64 PV image, fetching it if needed.
pub fn ensure(target_dir: &Path) -> Result<PathBuf> {
    let dir = target_dir.join("grub-xen");
    let image = dir.join("pkg").join(IMAGE);
    if image.is_file() {
        return Ok(image);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!("fetching Debian's {PACKAGE} with apt-get download");
    let mut ok = Command::new("apt-get")
        .args(["download", "-qq", PACKAGE])
        .current_dir(&dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        // Fresh machines have no package lists: update them once and retry.
        ok = crate::deps::apt(&["update", "-qq"]).is_ok()
            && Command::new("apt-get")
                .args(["download", "-qq", PACKAGE])
                .current_dir(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
    }
    if !ok {
        bail!("cannot fetch `{PACKAGE}` with apt-get download (needs a Debian bookworm mirror)");
    }
    let deb = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(dir.join("pkg"))
        .status()
        .context("running dpkg-deb")?;
    if !status.success() || !image.is_file() {
        bail!("unpacking {} did not give {IMAGE}", deb.display());
    }
    Ok(image)
}
