//! Fetching Debian packages without installing them: `apt-get download` into a cache
//! directory under `target/`, then `dpkg-deb -x`. Used for the reference hypervisor
//! (Xen 4.17) and third-party PV kernels (GRUB's Xen image).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::deps;

/// Unpacks `package` into `dir/pkg` (downloading its .deb into `dir` unless it is
/// there) and returns `dir/pkg`.
pub fn fetch_unpacked(dir: &Path, package: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for tool in ["apt-get", "dpkg-deb"] {
        if deps::find_in_path(tool).is_none() {
            bail!(
                "cannot fetch {package}: `{tool}` not found (needs Debian's apt-get and dpkg-deb)"
            );
        }
    }
    let deb = match find_deb(dir, package)? {
        Some(deb) => deb,
        None => download(dir, package)?,
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
    Ok(unpacked)
}

fn download(dir: &Path, package: &str) -> Result<PathBuf> {
    eprintln!("fetching Debian's {package} with apt-get download");
    let try_download = || -> Result<()> {
        let out = Command::new("apt-get")
            .args(["download", "-qq", package])
            .current_dir(dir)
            .output()
            .context("running apt-get download")?;
        if !out.status.success() {
            bail!("{}", deps::last_line(&out.stderr));
        }
        Ok(())
    };
    if let Err(first) = try_download() {
        // Fresh machines have no package lists: update them once and retry.
        if deps::apt(&["update", "-qq"]).is_err() || try_download().is_err() {
            bail!(
                "cannot fetch {package}: `apt-get download {package}` failed ({first:#}); \
                 needs network access to a Debian bookworm mirror"
            );
        }
    }
    find_deb(dir, package)?.with_context(|| {
        format!(
            "apt-get download left no {package} .deb in {}",
            dir.display()
        )
    })
}

fn find_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    Ok(read_dir(dir)?
        .into_iter()
        .find(|p| name_of(p).starts_with(&prefix) && name_of(p).ends_with(".deb")))
}

pub fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    paths.sort();
    Ok(paths)
}

pub fn name_of(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}
