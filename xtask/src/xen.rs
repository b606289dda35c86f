//! Upstream Xen 4.17, the reference: our guests are real PV guests and must boot on
//! it unmodified (scenario `xen-hello`), and benchmarks compare against it. Debian's
//! `xen-hypervisor-4.17-amd64` is fetched with `apt-get download` and unpacked under
//! `target/xen/` (never installed: that would change the host's boot set-up), and
//! cached there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::debian::{self, name_of, read_dir};
use crate::deps;

/// Debian package holding the hypervisor.
pub const PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// The uncompressed hypervisor, under `target/xen/`.
pub const IMAGE: &str = "xen-4.17-amd64";

/// Returns the path of the Xen 4.17 hypervisor image, fetching it if needed.
pub fn ensure(target_dir: &Path) -> Result<PathBuf> {
    let dir = target_dir.join("xen");
    let image = dir.join(IMAGE);
    if image.is_file() {
        return Ok(image);
    }
    if deps::find_in_path("gzip").is_none() {
        bail!("cannot unpack Xen 4.17: `gzip` not found");
    }
    let unpacked = debian::fetch_unpacked(&dir, PACKAGE)?;
    let gz = find_gz(&unpacked.join("boot"))?;
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(&gz)
        .output()
        .context("running gzip")?;
    if !out.status.success() {
        bail!("gzip -dc {} failed", gz.display());
    }
    // Write then rename, so an interrupted run does not leave a truncated image cached.
    let tmp = dir.join(format!("{IMAGE}.tmp"));
    std::fs::write(&tmp, &out.stdout).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &image).with_context(|| format!("writing {}", image.display()))?;
    Ok(image)
}

/// `boot/xen-<version>.gz` (the version may be longer than `4.17-amd64`).
fn find_gz(boot: &Path) -> Result<PathBuf> {
    read_dir(boot)?
        .into_iter()
        .find(|p| name_of(p).starts_with("xen-") && name_of(p).ends_with(".gz"))
        .with_context(|| format!("no xen-*.gz in {}", boot.display()))
}
