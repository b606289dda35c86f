//! Installs the host tools the other modules need, so a fresh clone (or a fresh CI
//! machine) only needs Rust: QEMU and the Xen headers come from Debian's packages,
//! the bare-metal target from rustup. Each install prints one line saying so; when an
//! install is impossible (no root, no sudo, no network), one line says what to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The target of every bare-metal image.
pub const TARGET: &str = "x86_64-unknown-none";
/// QEMU binary; Debian's `qemu-system-x86` provides it.
pub const QEMU: &str = "qemu-system-x86_64";
/// Creates disk images; Debian's `qemu-utils` provides it (`qemu-system-x86` only
/// recommends it, and we install without recommends).
pub const QEMU_IMG: &str = "qemu-img";
/// Where Debian's `libxen-dev` puts the Xen public headers.
pub const XEN_HEADERS: &str = "/usr/include/xen";

/// Makes sure `tool` is on the PATH, installing Debian's `package` (described as
/// `what`) if needed.
fn ensure_tool(tool: &str, package: &str, what: &str) -> Result<()> {
    if find_in_path(tool).is_some() {
        return Ok(());
    }
    apt_install(&[package], what)?;
    if find_in_path(tool).is_none() {
        bail!("{tool} still not on PATH after installing {package}");
    }
    Ok(())
}

/// Makes sure `qemu-system-x86_64` is on the PATH, installing it if needed.
pub fn ensure_qemu() -> Result<()> {
    ensure_tool(QEMU, "qemu-system-x86", "qemu-system-x86 (QEMU)")
}

/// Makes sure `wrk` (Debian's HTTP load generator, for `bench`) is on the PATH.
pub fn ensure_wrk() -> Result<()> {
    ensure_tool(
        "wrk",
        "wrk",
        "wrk (an HTTP load generator, for the network bench)",
    )
}

/// Makes sure `objcopy` (binutils: the images are copied without their debug info, and
/// the reference guests' libraries are found with `readelf`) is on the PATH.
pub fn ensure_binutils() -> Result<()> {
    ensure_tool("objcopy", "binutils", "binutils (objcopy, readelf)")
}

/// Makes sure `qemu-img` is on the PATH, installing it if needed.
pub fn ensure_qemu_img() -> Result<()> {
    ensure_tool(
        QEMU_IMG,
        "qemu-utils",
        "qemu-utils (qemu-img, for disk images)",
    )
}

/// Makes an ext2 filesystem image of `size` at `image` holding the files of `tree`
/// (Debian's e2fsprogs: `mke2fs -d`), installing e2fsprogs when it is missing.
pub fn make_ext2(image: &Path, tree: &Path, size: &str) -> Result<()> {
    // In /usr/sbin, which a user's PATH may lack.
    let find = || {
        find_in_path("mke2fs").or_else(|| {
            ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
                .map(PathBuf::from)
                .into_iter()
                .find(|p| p.is_file())
        })
    };
    if find().is_none() {
        apt_install(&["e2fsprogs"], "e2fsprogs (mke2fs, for filesystem images)")?;
    }
    let mke2fs = find().context("mke2fs not found after installing e2fsprogs")?;
    let status = Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext2", "-d"])
        .arg(tree)
        .arg(image)
        .arg(size)
        .stdout(Stdio::null())
        .status()
        .context("running mke2fs (is e2fsprogs installed?)")?;
    if !status.success() {
        bail!("mke2fs {} failed: {status}", image.display());
    }
    Ok(())
}

/// Makes sure the Rust target `x86_64-unknown-none` is installed.
pub fn ensure_target() -> Result<()> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
    else {
        // No rustup: a toolchain managed otherwise. Let cargo report a missing target.
        return Ok(());
    };
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("installing the Rust target {TARGET} with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("could not install the Rust target: run `rustup target add {TARGET}`");
    }
    Ok(())
}

/// Makes sure libclang (for bindgen) and the Xen public headers are present.
pub fn ensure_bindgen_deps() -> Result<()> {
    if find_libclang().is_none() {
        apt_install(&["libclang-dev"], "libclang-dev (libclang, for bindgen)")?;
        if find_libclang().is_none() {
            bail!("libclang not found after installing libclang-dev (set LIBCLANG_PATH)");
        }
    }
    let xen_h = Path::new(XEN_HEADERS).join("xen.h");
    if !xen_h.is_file() {
        apt_install(&["libxen-dev"], "libxen-dev (Xen public headers)")?;
        if !xen_h.is_file() {
            bail!("{} missing after installing libxen-dev", xen_h.display());
        }
    }
    Ok(())
}

/// Where libclang is, looking where clang-sys (bindgen's loader) looks.
fn find_libclang() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("LIBCLANG_PATH") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        dirs.push(p);
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("llvm") {
                dirs.push(e.path().join("lib"));
            }
        }
    }
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ] {
        dirs.push(d.into());
    }
    dirs.into_iter().find_map(|d| {
        std::fs::read_dir(&d).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_libclang = (name.starts_with("libclang.so") || name.starts_with("libclang-"))
                && name.contains(".so")
                && !name.starts_with("libclang-cpp");
            is_libclang.then(|| e.path())
        })
    })
}

/// The first `name` on the PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Installs Debian packages with apt-get (through `sudo -n` when not root), running
/// `apt-get update` once if the first attempt fails (fresh machines have no lists).
pub fn apt_install(packages: &[&str], what: &str) -> Result<()> {
    let manual = format!("sudo apt-get install -y {}", packages.join(" "));
    if find_in_path("apt-get").is_none() {
        bail!("{what} is missing and apt-get is not available: install it (Debian: `{manual}`)");
    }
    eprintln!("installing {what} with apt-get");
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    if apt(&args).is_ok() {
        return Ok(());
    }
    if apt(&["update", "-qq"]).is_ok() && apt(&args).is_ok() {
        return Ok(());
    }
    bail!("could not install {what}: run `{manual}`")
}

/// Runs apt-get as root (directly or with `sudo -n`), output hidden unless it fails.
pub fn apt(args: &[&str]) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        // sudo resets the environment; pass the frontend through env(1).
        c.args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        c
    };
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let out = cmd.output().context("running apt-get")?;
    if !out.status.success() {
        bail!(
            "apt-get {} failed: {}",
            args.join(" "),
            last_line(&out.stderr)
        );
    }
    Ok(())
}

/// Whether we run as root (so apt-get needs no sudo).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The last non-empty line of a command's error output (what apt-get says went wrong).
pub fn last_line(stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    err.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}
