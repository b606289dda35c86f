//! The reference of `cargo xtask bench io`: Debian's Linux on QEMU's microvm with no
//! hypervisor, running Debian's fio on a virtio-blk disk, the same jobs as
//! examples/blkbench. Everything comes from Debian's packages: the kernel (with its
//! virtio modules, `linux.rs`), busybox-static for `/init`, and fio with the shared
//! libraries it needs ([`crate::initramfs`]), cached under `target/fio-guest/`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::initramfs::{self, Closure, Guest};

/// Bumped when what goes into the initramfs changes (the cache's key).
const VERSION: u32 = 3;

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
    initramfs::ensure(
        target_dir,
        &Guest {
            name: "fio-guest",
            version: VERSION,
            modules: &[("virtio_blk", "kernel/drivers/block/virtio_blk.ko")],
            package: "fio",
            closure: Closure::Recursive,
            program: "usr/bin/fio",
            files: &[],
            init: &init_script(),
        },
    )
}

/// `/init` (after the common start): runs every job on `/dev/vda` and prints its JSON
/// between markers, powers off.
fn init_script() -> String {
    let mut s = String::from(
        "i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do $b sleep 0.1; i=$((i+1)); done\n\
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
