//! The reference of `cargo xtask bench io`: Debian's Linux on QEMU's microvm with no
//! hypervisor, running Debian's fio on a virtio-blk disk, the same jobs as
//! examples/blkbench. Everything comes from Debian's packages: the kernel (with its
//! virtio modules, `linux.rs`), busybox-static for `/init`, and fio with the shared
//! libraries it needs (found by following the ELF `NEEDED` entries through the
//! unpacked packages of fio's dependency closure). The initramfs is a newc cpio
//! archive written here, cached under `target/fio-guest/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::debian::{self, name_of, read_dir};

/// Bumped when what goes into the initramfs changes (the cache's key).
const VERSION: u32 = 2;

/// The jobs, as examples/blkbench runs them: name, fio arguments.
pub const JOBS: &[(&str, &str)] = &[
    ("seqwrite-1m", "--rw=write --bs=1M --size=64M --end_fsync=1"),
    ("seqread-1m", "--rw=read --bs=1M --size=64M"),
    (
        "randread-4k-qd1",
        "--rw=randread --bs=4k --iodepth=1 --number_ios=2000",
    ),
    (
        "randread-4k-qd32",
        "--rw=randread --bs=4k --iodepth=32 --number_ios=4000",
    ),
    (
        "randwrite-4k-qd1",
        "--rw=randwrite --bs=4k --iodepth=1 --number_ios=2000 --end_fsync=1",
    ),
    (
        "randwrite-4k-qd32",
        "--rw=randwrite --bs=4k --iodepth=32 --number_ios=4000 --end_fsync=1",
    ),
];

/// The line the guest prints before each job's JSON, and after the last.
pub const BEGIN: &str = "FIO-JSON-BEGIN ";
pub const END: &str = "FIO-JSON-END";
pub const DONE: &str = "fio-guest: done";

/// The kernel (bzImage) and the initramfs, built if missing.
pub fn ensure(target_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    crate::linux::ensure(target_dir)?;
    let kernel_pkg = target_dir.join("linux/kernel/pkg");
    let vmlinuz = read_dir(&kernel_pkg.join("boot"))?
        .into_iter()
        .find(|p| name_of(p).starts_with("vmlinuz-"))
        .context("the kernel package has no boot/vmlinuz-*")?;
    let dir = target_dir.join("fio-guest");
    let cpio = dir.join(format!("initramfs-v{VERSION}.cpio"));
    if cpio.is_file() {
        return Ok((vmlinuz, cpio));
    }
    std::fs::create_dir_all(&dir)?;
    let mut files = Files::default();
    // busybox, and /bin/sh for /init.
    let busybox = debian::fetch_unpacked(&dir.join("debs/busybox-static"), "busybox-static")?;
    files.file(
        "bin/busybox",
        std::fs::read(busybox.join("bin/busybox"))?,
        0o755,
    );
    files.symlink("bin/sh", "busybox");
    // The virtio modules, in load order.
    let modules = read_dir(&kernel_pkg.join("lib/modules"))?
        .into_iter()
        .next()
        .context("the kernel package has no lib/modules")?;
    for (m, at) in [
        ("virtio", "kernel/drivers/virtio/virtio.ko"),
        ("virtio_ring", "kernel/drivers/virtio/virtio_ring.ko"),
        ("virtio_mmio", "kernel/drivers/virtio/virtio_mmio.ko"),
        ("virtio_blk", "kernel/drivers/block/virtio_blk.ko"),
    ] {
        let data = std::fs::read(modules.join(at)).with_context(|| format!("module {at}"))?;
        files.file(&format!("lib/modules/{m}.ko"), data, 0o644);
    }
    // fio and the libraries it needs.
    let unpacked = fetch_closure(&dir.join("debs"), "fio")?;
    let libs = library_index(&unpacked)?;
    let fio = unpacked
        .iter()
        .map(|d| d.join("usr/bin/fio"))
        .find(|p| p.is_file())
        .context("fio's package has no usr/bin/fio")?;
    files.file("usr/bin/fio", std::fs::read(&fio)?, 0o755);
    let mut todo = vec![fio];
    let mut seen = BTreeSet::new();
    while let Some(elf) = todo.pop() {
        for lib in needed(&elf)? {
            if !seen.insert(lib.clone()) {
                continue;
            }
            let path = libs
                .get(&lib)
                .with_context(|| format!("no package of fio's closure has {lib}"))?;
            files.file(
                &format!("lib/x86_64-linux-gnu/{lib}"),
                std::fs::read(path)?,
                0o755,
            );
            todo.push(path.clone());
        }
    }
    let loader = libs
        .get("ld-linux-x86-64.so.2")
        .context("no dynamic loader in fio's closure (libc6)")?;
    files.file("lib64/ld-linux-x86-64.so.2", std::fs::read(loader)?, 0o755);
    files.file("init", init_script().into_bytes(), 0o755);
    eprintln!(
        "fio guest: initramfs of {} files, {} MiB",
        files.entries.len(),
        files.bytes() >> 20
    );
    let tmp = dir.join("initramfs.tmp");
    std::fs::write(&tmp, files.cpio())?;
    std::fs::rename(&tmp, &cpio)?;
    Ok((vmlinuz, cpio))
}

/// `/init`: mounts, loads the virtio modules, runs every job on `/dev/vda` and prints
/// its JSON between markers, powers off.
fn init_script() -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         b=/bin/busybox\n\
         $b mkdir -p /proc /sys /dev /tmp\n\
         $b mount -t proc proc /proc\n\
         $b mount -t sysfs sys /sys\n\
         $b mount -t devtmpfs dev /dev\n\
         for m in virtio virtio_ring virtio_mmio virtio_blk; do $b insmod /lib/modules/$m.ko; done\n\
         i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do $b sleep 0.1; i=$((i+1)); done\n\
         echo \"fio-guest: /dev/vda $($b cat /sys/block/vda/size) sectors\"\n",
    );
    for (name, args) in JOBS {
        s.push_str(&format!(
            "/usr/bin/fio --name={name} --filename=/dev/vda --direct=1 --ioengine=libaio \
             --randrepeat=0 --eta=never {args} --output-format=json --output=/tmp/out.json\n\
             echo '{BEGIN}{name}'\n$b cat /tmp/out.json\necho '{END}'\n"
        ));
    }
    s.push_str(&format!("echo '{DONE}'\n$b poweroff -f\n"));
    s
}

/// Downloads and unpacks `package` and everything it depends on (recursively, no
/// recommends); the unpacked roots.
fn fetch_closure(dir: &Path, package: &str) -> Result<Vec<PathBuf>> {
    let out = Command::new("apt-cache")
        .args([
            "depends",
            "--recurse",
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
    let names: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    let mut roots = Vec::new();
    for (i, name) in names.iter().enumerate() {
        eprintln!("fio guest: package {}/{}: {name}", i + 1, names.len());
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

/// The initramfs's contents.
#[derive(Default)]
struct Files {
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

    fn bytes(&self) -> usize {
        self.entries.values().map(|(_, d)| d.len()).sum()
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
