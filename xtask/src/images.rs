//! `cargo xtask build`: builds the shim and the guest images for the bare-metal target
//! and copies them to one documented place, `target/images/<name>`, so QEMU command
//! lines, scenarios, benchmarks and users never dig through cargo's per-profile output
//! directories. The guests are every package under `examples/`, read from the
//! directory so a new example needs no change here. The copies carry no debug info;
//! cargo's own (`target/x86_64-unknown-none/release/<name>`) do, for addr2line and gdb.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::deps;

/// Package name of the hypervisor.
pub const SHIM: &str = "hypervisor-shim";

/// The images of one build, all under `target/images/`.
pub struct Images {
    pub dir: PathBuf,
    pub shim: PathBuf,
    pub guests: Vec<(String, PathBuf)>,
}

impl Images {
    /// The image of the example `name`.
    pub fn guest(&self, name: &str) -> Result<PathBuf> {
        self.guests
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .with_context(|| format!("no image for example `{name}`"))
    }

    /// Prints where the images are.
    pub fn print(&self) {
        println!("images in {}:", self.dir.display());
        println!("  {SHIM:<16} {}", self.shim.display());
        for (name, path) in &self.guests {
            println!("  {name:<16} {}", path.display());
        }
    }
}

/// cargo's target directory: `$CARGO_TARGET_DIR` or `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                std::env::current_dir().unwrap_or_default().join(d)
            }
        }
        None => root.join("target"),
    }
}

/// The cargo that runs us (so the same toolchain builds the images).
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(crate::bindgen::workspace_root());
    cmd
}

/// The package names under `examples/`, sorted.
pub fn guest_packages(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let manifest = entry?.path().join("Cargo.toml");
        if manifest.is_file() {
            names.push(package_name(&manifest)?);
        }
    }
    names.sort();
    Ok(names)
}

/// The `name` of a manifest's `[package]` section.
fn package_name(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("name") {
                if let Some(value) = value.trim_start().strip_prefix('=') {
                    return Ok(value.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    bail!("{} has no package name", manifest.display())
}

/// Builds the shim and `guests` (release, bare-metal target) and copies the ELFs to
/// `target/images/`.
pub fn build(root: &Path, guests: &[String]) -> Result<Images> {
    deps::ensure_target()?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", deps::TARGET, "-p", SHIM]);
    for g in guests {
        cmd.args(["-p", g]);
    }
    eprintln!("==> build: {}", crate::qemu::display_command(&cmd));
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the bare-metal images failed");
    }

    let target = target_dir(root);
    let out = target.join(deps::TARGET).join("release");
    let dir = target.join("images");
    deps::ensure_binutils()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Without their debug info (2 MB or more each, of an image of a few hundred KiB
    // loaded): what a user boots or copies to a Xen host. Cargo's own output keeps it,
    // for addr2line and gdb.
    let copy = |name: &str| -> Result<PathBuf> {
        let from = out.join(name);
        let to = dir.join(name);
        let status = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&from)
            .arg(&to)
            .status()
            .context("running objcopy")?;
        if !status.success() {
            bail!(
                "objcopy --strip-debug {} {} failed",
                from.display(),
                to.display()
            );
        }
        Ok(to)
    };
    let shim = copy(SHIM)?;
    let guests = guests
        .iter()
        .map(|g| Ok((g.clone(), copy(g)?)))
        .collect::<Result<_>>()?;
    Ok(Images { dir, shim, guests })
}

/// Checks that `path` is an ELF file; returns it.
/// A kernel the user passed with `--kernel`: a PV ELF is used as it is; a Linux bzImage
/// is unwrapped to the ELF inside it (what Xen's loader does), written under `target/images/`.
pub fn prepare_kernel(root: &Path, path: &Path) -> Result<PathBuf> {
    let data = std::fs::read(path).with_context(|| format!("kernel {}", path.display()))?;
    if data.starts_with(b"\x7fELF") {
        return Ok(path.to_path_buf());
    }
    if !bzimage::is_bzimage(&data) {
        bail!(
            "kernel {} is neither an ELF file nor a Linux bzImage",
            path.display()
        );
    }
    let elf = bzimage::unwrap(&data).with_context(|| format!("kernel {}", path.display()))?;
    let name = path
        .file_name()
        .map_or("kernel".into(), |n| n.to_string_lossy());
    let dir = root.join("target/images");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("{name}.elf"));
    std::fs::write(&out, elf).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "==> {} is a bzImage: booting the ELF inside, {}",
        path.display(),
        out.display()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_the_packages_under_examples() {
        let guests = guest_packages(&crate::bindgen::workspace_root()).unwrap();
        assert!(guests.iter().any(|g| g == "hello"), "{guests:?}");
    }

    #[test]
    fn kernels_are_elf_files_or_bzimages() {
        let root = crate::bindgen::workspace_root();
        assert!(prepare_kernel(&root, &root.join("Cargo.toml")).is_err());
        assert!(prepare_kernel(&root, &root.join("no-such-file")).is_err());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(prepare_kernel(&root, &exe).unwrap(), exe);
    }
}
