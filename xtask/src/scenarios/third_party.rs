//! Kernels built by others on the shim: GRUB's Xen PV image and Debian's Linux 6.1
//! (both from Debian's packages), as dom0 and as a domU of examples/dom0.

use std::time::Duration;

use super::dom0::dom0;
use super::expected::{dom0 as dom0_lines, third_party};
use super::harness::{
    check, check_typing, scenario_disks, Boot, BundleGuest, Check, Ctx, End, Failure, Pass,
    Scenario,
};
use crate::bundle::Role;
use crate::qemu::Outcome;

/// The third-party kernels alone, as dom0.
pub fn alone() -> Vec<Scenario> {
    vec![
        Scenario::new("third-party-grub", "GRUB's PV image (Debian) alone as dom0: notes read, grant table and PV MMU set up, then it faults for want of a console ring (dom0 has none), crash contained", grub),
        Scenario::new("third-party-linux", "Debian's Linux 6.1 PV kernel: builds, pins and switches to its own page tables and prints its first lines, gets past vcpu_op and event-channel set-up to its debug registers", linux),
    ]
}

pub fn grub_domu() -> Vec<Scenario> {
    vec![
        Scenario::new("third-party-grub-domu", "GRUB's PV image (Debian) as a domU: it reads xenstore and writes its console ring, which dom0 prints; a command typed on the serial line reaches it", grub_domu_run),
        Scenario::new("third-party-grub-disk", "GRUB's PV image (Debian) as a domU with a disk from our blkback (an ext2 image made by Debian's mke2fs, dom0 drives it as virtio-blk): GRUB's own blkfront connects, `ls` lists (xen/xvda), lists its root directory and `cat` reads a file from it", grub_disk_run),
    ]
}

/// GRUB alone as dom0: a dom0 has no console ring nor xenstore (Xen gives it none
/// either), which GRUB needs, so it faults; this checks that the shim loads a kernel
/// built by others from its notes, runs its grant-table and PV MMU set-up, and contains
/// the fault. GRUB runs properly as a domU: `third-party-grub-domu`.
fn grub(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::ShimGrub,
            expect: third_party::GRUB_ALONE,
            fail_on: &["PANIC", "fault in the shim"],
            end: End::Outcome(Outcome::Crash),
            timeout: Duration::from_secs(60),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// Debian's Linux 6.1 PV kernel: through the PV MMU part of its start (its own page
/// tables built, pinned and switched to, the bootstrap L4 unpinned, trap table, GDT,
/// segment bases, IOPL), printing its first lines through `console_io`, past `vcpu_op`
/// and its event-channel set-up, up to `get_debugreg` (not virtualised).
fn linux(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::ShimLinux {
                cmdline: "earlyprintk=xen console=hvc0",
            },
            expect: third_party::LINUX,
            fail_on: third_party::LINUX_FAIL,
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(180),
            first_guest_line: None,
            anywhere: &[],
        },
    )
}

/// dom0 and GRUB's PV image (at `grub`) as its domU, with `disks`.
fn grub_domains<'a>(grub: &'a str, disks: &'a [&'a str]) -> [BundleGuest<'a>; 2] {
    [
        dom0(""),
        BundleGuest {
            example: grub,
            role: Role::DomU,
            memory_mib: 32,
            cmdline: "",
            backends: false,
            disks,
        },
    ]
}

fn grub_domu_run(ctx: &Ctx) -> Result<Pass, Failure> {
    let grub = crate::grub::ensure(&ctx.target_dir)?;
    let grub = grub.to_string_lossy();
    check_typing(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &grub_domains(&grub, &[]),
            },
            expect: third_party::GRUB_DOMU,
            fail_on: dom0_lines::FAIL,
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[],
        },
        &[("device or file completions.", b"echo typed-into-grub\r")],
    )
}

/// The file GRUB reads from its disk.
const GRUB_FILE: &str = "hello from our blkback";

fn grub_disk_run(ctx: &Ctx) -> Result<Pass, Failure> {
    let grub = crate::grub::ensure(&ctx.target_dir)?;
    let grub = grub.to_string_lossy();
    // An ext2 filesystem holding hello.txt, made fresh by Debian's mke2fs.
    let dir = scenario_disks(ctx);
    let tree = dir.join("grub-fs");
    let image = dir.join("grub-ext2.img");
    let _ = std::fs::remove_dir_all(&tree);
    let _ = std::fs::remove_file(&image);
    let made = std::fs::create_dir_all(&tree)
        .and_then(|()| std::fs::write(tree.join("hello.txt"), format!("{GRUB_FILE}\n")));
    made.map_err(|e| anyhow::anyhow!("the filesystem's files under {}: {e}", tree.display()))?;
    crate::deps::make_ext2(&image, &tree, "8M")?;
    check_typing(
        ctx,
        Check {
            boot: Boot::Bundle {
                domains: &grub_domains(&grub, &["vdev=xvda,access=rw,target=grub-ext2.img"]),
            },
            expect: &[
                "dom0: d1 vbd 51712 (xvda, vbd0) connected",
                "grub-x86_64-xen| grub> ",
                "(xen/xvda)",
                "lost+found/ hello.txt",
                GRUB_FILE,
            ],
            fail_on: dom0_lines::FAIL,
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[],
        },
        &[
            ("device or file completions.", b"ls\r"),
            ("(xen/xvda)", b"ls (xen/xvda)/\r"),
            ("lost+found/", b"cat (xen/xvda)/hello.txt\r"),
        ],
    )
}
