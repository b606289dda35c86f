//! Upstream Xen 4.17, the reference: our guests are real PV guests and must boot on
//! it unmodified (scenario `xen-hello`), and benchmarks compare against it. Debian's
//! `xen-hypervisor-4.17-amd64` is fetched with `apt-get download` and unpacked under
//! `target/xen/` (never installed: that would change the host's boot set-up), and
//! cached there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

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
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for tool in ["apt-get", "dpkg-deb", "gzip"] {
        if deps::find_in_path(tool).is_none() {
            bail!("cannot fetch Xen 4.17: `{tool}` not found (needs Debian's apt-get, dpkg-deb, gzip)");
        }
    }

    let deb = match find_deb(&dir)? {
        Some(deb) => deb,
        None => download(&dir)?,
    };

    let unpacked = dir.join("pkg");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed", deb.display());
    }
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

fn download(dir: &Path) -> Result<PathBuf> {
    eprintln!("fetching Debian's {PACKAGE} with apt-get download");
    let try_download = || -> Result<()> {
        let out = Command::new("apt-get")
            .args(["download", "-qq", PACKAGE])
            .current_dir(dir)
            .output()
            .context("running apt-get download")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!("{last}");
        }
        Ok(())
    };
    if let Err(first) = try_download() {
        // Fresh machines have no package lists: update them once and retry.
        if deps::apt(&["update", "-qq"]).is_err() || try_download().is_err() {
            bail!(
                "cannot fetch Xen 4.17: `apt-get download {PACKAGE}` failed ({first:#}); \
                 needs network access to a Debian bookworm mirror"
            );
        }
    }
    find_deb(dir)?.with_context(|| {
        format!(
            "apt-get download left no {PACKAGE} .deb in {}",
            dir.display()
        )
    })
}

fn find_deb(dir: &Path) -> Result<Option<PathBuf>> {
    let prefix = format!("{PACKAGE}_");
    Ok(read_dir(dir)?
        .into_iter()
        .find(|p| name_of(p).starts_with(&prefix) && name_of(p).ends_with(".deb")))
}

/// `boot/xen-<version>.gz` (the version may be longer than `4.17-amd64`).
fn find_gz(boot: &Path) -> Result<PathBuf> {
    read_dir(boot)?
        .into_iter()
        .find(|p| name_of(p).starts_with("xen-") && name_of(p).ends_with(".gz"))
        .with_context(|| format!("no xen-*.gz in {}", boot.display()))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}
