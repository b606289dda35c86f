//! Initramfs images for the Linux reference guests of `cargo xtask bench` (fio on
//! virtio-blk, [`crate::fio_guest`]; lighttpd on virtio-net, [`crate::lighttpd_guest`]):
//! Debian's packages fetched and unpacked (never installed), a program copied in with
//! the shared libraries it needs (found by following the ELF `NEEDED` entries through
//! the unpacked packages), busybox for `/init`, the kernel's modules, and a newc cpio
//! archive written here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::debian::{self, name_of, read_dir};

/// How much of a package's dependencies [`fetch_closure`] fetches.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Closure {
    /// Everything it depends on, recursively.
    Recursive,
    /// Its own `Depends` only ([`Files::program`] names a library that is then missing).
    Direct,
}

/// Downloads and unpacks `package` and what it depends on (no recommends); the
/// unpacked roots. `what` names the guest in the progress lines.
fn fetch_closure(dir: &Path, package: &str, closure: Closure, what: &str) -> Result<Vec<PathBuf>> {
    let mut cmd = Command::new("apt-cache");
    cmd.arg("depends");
    if closure == Closure::Recursive {
        cmd.arg("--recurse");
    }
    let out = cmd
        .args([
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            package,
        ])
        .output()
        .context("running apt-cache depends (needs Debian's apt)")?;
    if !out.status.success() {
        bail!("apt-cache depends {package} failed");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let names: BTreeSet<String> = match closure {
        // One package per unindented line; virtual packages in <>.
        Closure::Recursive => text
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('<') && !l.is_empty())
            .map(str::to_owned)
            .collect(),
        // `package`, then `  Depends: NAME` (`|Depends:` before an alternative).
        Closure::Direct => std::iter::once(package.to_owned())
            .chain(text.lines().filter_map(|l| {
                let name = l.trim().trim_start_matches('|').strip_prefix("Depends:")?;
                let name = name.trim();
                (!name.starts_with('<')).then(|| name.to_owned())
            }))
            .collect(),
    };
    let mut roots = Vec::new();
    for (i, name) in names.iter().enumerate() {
        eprintln!("{what}: package {}/{}: {name}", i + 1, names.len());
        roots.push(debian::fetch_unpacked(&dir.join(name), name)?);
    }
    Ok(roots)
}

/// Every shared object of the unpacked packages, by file name (symlinks resolved).
fn library_index(roots: &[PathBuf]) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    for root in roots {
        for dir in [
            "lib/x86_64-linux-gnu",
            "usr/lib/x86_64-linux-gnu",
            "usr/lib/x86_64-linux-gnu/ceph",
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.contains(".so") {
                    continue;
                }
                if let Ok(real) = std::fs::canonicalize(e.path()) {
                    if real.is_file() {
                        index.entry(name).or_insert(real);
                    }
                }
            }
        }
    }
    Ok(index)
}

/// The `NEEDED` entries of an ELF file (`readelf -d`).
fn needed(elf: &Path) -> Result<Vec<String>> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(elf)
        .output()
        .context("running readelf (binutils)")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_owned()))
        .collect())
}

/// The kernel package's `lib/modules/VERSION/` (of [`crate::linux::ensure`]).
fn kernel_modules(target_dir: &Path) -> Result<PathBuf> {
    read_dir(&target_dir.join("linux/kernel/pkg/lib/modules"))?
        .into_iter()
        .next()
        .context("the kernel package has no lib/modules")
}

/// The kernel (bzImage) of [`crate::linux::ensure`], fetched if missing.
fn vmlinuz(target_dir: &Path) -> Result<PathBuf> {
    crate::linux::ensure(target_dir)?;
    read_dir(&target_dir.join("linux/kernel/pkg/boot"))?
        .into_iter()
        .find(|p| name_of(p).starts_with("vmlinuz-"))
        .context("the kernel package has no boot/vmlinuz-*")
}

/// The reference guests' kernel command line. `tsc_early_khz`: under TCG the guest's
/// TSC is the host's, and Linux's PIT calibration of it fails when the host is busy
/// ("tsc: Unable to calibrate against PIT"), after which its boot hangs with no line
/// on the console; the host's own figure (`cpu MHz` in `/proc/cpuinfo`) skips it.
pub fn kernel_cmdline() -> String {
    let khz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("cpu MHz"))?;
            let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
            Some((mhz * 1000.0) as u64)
        });
    let mut cmdline = String::from("console=ttyS0 quiet panic=-1");
    if let Some(khz) = khz {
        cmdline.push_str(&format!(" tsc_early_khz={khz}"));
    }
    cmdline
}

/// A reference guest: what differs between one and another. The rest is common:
/// busybox for `/init`, the virtio core modules, the mounts.
pub struct Guest<'a> {
    /// Its directory under `target/` (`fio-guest`), also the name in progress lines.
    pub name: &'a str,
    /// Bumped when what goes into its initramfs changes (the cache's key).
    pub version: u32,
    /// Kernel modules loaded after virtio's core ones, in load order: name, path under
    /// `lib/modules/VERSION/`.
    pub modules: &'a [(&'a str, &'a str)],
    /// The Debian package of its program, how much of its dependencies to fetch, and
    /// the program's path (in the package and in the image).
    pub package: &'a str,
    pub closure: Closure,
    pub program: &'a str,
    /// Further files: path, contents.
    pub files: &'a [(&'a str, &'a [u8])],
    /// `/init` after the common start (busybox as `$b`, /proc, /sys, /dev and /tmp
    /// mounted or made, every module loaded).
    pub init: &'a str,
}

/// virtio's core modules, which every device driver module needs, in load order.
const VIRTIO: &[(&str, &str)] = &[
    ("virtio", "kernel/drivers/virtio/virtio.ko"),
    ("virtio_ring", "kernel/drivers/virtio/virtio_ring.ko"),
    ("virtio_mmio", "kernel/drivers/virtio/virtio_mmio.ko"),
];

/// `guest`'s kernel (bzImage) and initramfs, the initramfs built if missing (cached
/// under `target/NAME/`, keyed by its version).
pub fn ensure(target_dir: &Path, guest: &Guest) -> Result<(PathBuf, PathBuf)> {
    let vmlinuz = vmlinuz(target_dir)?;
    let dir = target_dir.join(guest.name);
    let cpio = dir.join(format!("initramfs-v{}.cpio", guest.version));
    if cpio.is_file() {
        return Ok((vmlinuz, cpio));
    }
    std::fs::create_dir_all(&dir)?;
    let debs = dir.join("debs");
    let mut files = Files::default();
    files.busybox(&debs)?;
    let modules: Vec<(&str, &str)> = VIRTIO.iter().chain(guest.modules).copied().collect();
    files.modules(target_dir, &modules)?;
    let unpacked = fetch_closure(&debs, guest.package, guest.closure, guest.name)?;
    let libs = library_index(&unpacked)?;
    let program = unpacked
        .iter()
        .map(|d| d.join(guest.program))
        .find(|p| p.is_file())
        .with_context(|| format!("{}'s package has no {}", guest.package, guest.program))?;
    files.program(guest.program, &program, &libs)?;
    for (path, data) in guest.files {
        files.file(path, data.to_vec(), 0o644);
    }
    let names: Vec<&str> = modules.iter().map(|(m, _)| *m).collect();
    let init = format!(
        "#!/bin/sh\n\
         b=/bin/busybox\n\
         $b mkdir -p /proc /sys /dev /tmp\n\
         $b mount -t proc proc /proc\n\
         $b mount -t sysfs sys /sys\n\
         $b mount -t devtmpfs dev /dev\n\
         for m in {}; do $b insmod /lib/modules/$m.ko; done\n{}",
        names.join(" "),
        guest.init
    );
    files.file("init", init.into_bytes(), 0o755);
    files.write(&cpio, guest.name)?;
    Ok((vmlinuz, cpio))
}

/// The initramfs's contents.
#[derive(Default)]
pub struct Files {
    entries: BTreeMap<String, (u32, Vec<u8>)>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

impl Files {
    fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.parents(path);
        self.entries.insert(path.into(), (S_IFREG | mode, data));
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entries
            .insert(path.into(), (S_IFLNK | 0o777, target.as_bytes().to_vec()));
    }

    fn parents(&mut self, path: &str) {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            self.entries
                .entry(d.to_string_lossy().into_owned())
                .or_insert((S_IFDIR | 0o755, Vec::new()));
            p = d.parent();
        }
    }

    /// busybox-static as `/bin/busybox`, `/bin/sh` linked to it (for `/init`).
    fn busybox(&mut self, debs: &Path) -> Result<()> {
        let busybox = debian::fetch_unpacked(&debs.join("busybox-static"), "busybox-static")?;
        self.file(
            "bin/busybox",
            std::fs::read(busybox.join("bin/busybox"))?,
            0o755,
        );
        self.symlink("bin/sh", "busybox");
        Ok(())
    }

    /// The kernel's modules `(name, path under lib/modules/VERSION/)` as
    /// `lib/modules/NAME.ko`, for `/init` to insmod in order.
    fn modules(&mut self, target_dir: &Path, modules: &[(&str, &str)]) -> Result<()> {
        let dir = kernel_modules(target_dir)?;
        for (m, at) in modules {
            let data = std::fs::read(dir.join(at)).with_context(|| format!("module {at}"))?;
            self.file(&format!("lib/modules/{m}.ko"), data, 0o644);
        }
        Ok(())
    }

    /// `elf` at `path`, with every shared library it needs (recursively, from `libs`)
    /// in `lib/x86_64-linux-gnu/` and the dynamic loader in `lib64/`.
    fn program(&mut self, path: &str, elf: &Path, libs: &BTreeMap<String, PathBuf>) -> Result<()> {
        self.file(path, std::fs::read(elf)?, 0o755);
        let mut todo = vec![elf.to_owned()];
        let mut seen = BTreeSet::new();
        while let Some(elf) = todo.pop() {
            for lib in needed(&elf)? {
                if !seen.insert(lib.clone()) {
                    continue;
                }
                let at = libs
                    .get(&lib)
                    .with_context(|| format!("no fetched package has {lib} (for {path})"))?;
                self.file(
                    &format!("lib/x86_64-linux-gnu/{lib}"),
                    std::fs::read(at)?,
                    0o755,
                );
                todo.push(at.clone());
            }
        }
        let loader = libs
            .get("ld-linux-x86-64.so.2")
            .context("no dynamic loader among the fetched packages (libc6)")?;
        self.file("lib64/ld-linux-x86-64.so.2", std::fs::read(loader)?, 0o755);
        Ok(())
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn bytes(&self) -> usize {
        self.entries.values().map(|(_, d)| d.len()).sum()
    }

    /// Writes the archive to `path` (through a temporary file, so that an interrupted
    /// run leaves no truncated cache), saying its size under `what`.
    fn write(&self, path: &Path, what: &str) -> Result<()> {
        eprintln!(
            "{what}: initramfs of {} files, {} MiB",
            self.len(),
            self.bytes() >> 20
        );
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.cpio())?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// A newc ("070701") cpio archive, directories before what they hold.
    fn cpio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut entry = |ino: usize, name: &str, mode: u32, data: &[u8]| {
            let header = format!(
                "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0
            );
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        };
        // BTreeMap order puts "a" before "a/b": parents first.
        for (i, (name, (mode, data))) in self.entries.iter().enumerate() {
            entry(i + 1, name, *mode, data);
        }
        entry(0, "TRAILER!!!", 0, &[]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_newc_with_parents_first_and_a_trailer() {
        let mut f = Files::default();
        f.file("usr/bin/fio", b"elf".to_vec(), 0o755);
        f.symlink("bin/sh", "busybox");
        let a = f.cpio();
        let text = String::from_utf8_lossy(&a);
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(text.starts_with("070701"));
        assert!(at("usr\0") < at("usr/bin\0") && at("usr/bin\0") < at("usr/bin/fio\0"));
        // The trailer closes the archive: its name, NUL, padding to 4 bytes.
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"));
        assert_eq!(a.len() % 4, 0);
        // The file's mode and size in its header.
        let h = at("usr/bin/fio\0") - 110;
        assert_eq!(&text[h + 14..h + 22], format!("{:08x}", S_IFREG | 0o755));
        assert_eq!(&text[h + 54..h + 62], "00000003");
    }
}
