//! A third-party PV kernel for the `third-party-grub` scenario: GRUB's Xen PV image
//! (`grub-x86_64-xen.bin` from Debian's `grub-xen-host`), fetched with
//! `apt-get download` and unpacked under `target/grub-xen/`, never installed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

const PACKAGE: &str = "grub-xen-host";
const IMAGE: &str = "usr/lib/grub-xen/grub-x86_64-xen.bin";

/// Returns the path of GRUB's x86_64 PV image, fetching it if needed.
pub fn ensure(target_dir: &Path) -> Result<PathBuf> {
    let dir = target_dir.join("grub-xen");
    let image = dir.join("pkg").join(IMAGE);
    if !image.is_file() {
        crate::debian::fetch_unpacked(&dir, PACKAGE)?;
    }
    if !image.is_file() {
        bail!("{PACKAGE} did not contain {IMAGE}");
    }
    Ok(image)
}
