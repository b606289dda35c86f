//! The `io` group of `cargo xtask bench`: block I/O from a domU (examples/blkbench
//! through blkfront -> dom0's blkback -> virtio-blk) beside Debian's Linux with fio on
//! the same virtio-blk disk and microvm, no hypervisor ([`crate::fio_guest`]).

use anyhow::Result;
use serde_json::Value;

use super::{capture, three_good, Ctx, Row, Stats};
use crate::images;
use crate::qemu::{self, Machine};

/// The jobs of examples/blkbench: its name, the row, the unit.
const BLK_JOBS: &[(&str, &str, &str)] = &[
    (
        "randread-4k-qd1",
        "block: 4 KiB random read, queue depth 1",
        "IOPS",
    ),
    (
        "randread-4k-qd32",
        "block: 4 KiB random read, queue depth 32",
        "IOPS",
    ),
    (
        "randwrite-4k-qd1",
        "block: 4 KiB random write, queue depth 1",
        "IOPS",
    ),
    (
        "randwrite-4k-qd32",
        "block: 4 KiB random write, queue depth 32",
        "IOPS",
    ),
    ("seqread-1m", "block: 1 MiB sequential read", "MB/s"),
    (
        "seqwrite-1m",
        "block: 1 MiB sequential write (then a flush)",
        "MB/s",
    ),
];

/// A `blkbench JOB: N ops, B bytes in T ns` line as IOPS or MB/s.
fn blk_rate(lines: &[qemu::Line], job: &str, unit: &str) -> Option<f64> {
    let line = lines
        .iter()
        .find(|l| l.text.contains(&format!("blkbench {job}: ")))?;
    let words: Vec<&str> = line.text.split_whitespace().collect();
    let after = |w: &str| {
        words
            .iter()
            .position(|x| *x == w)
            .and_then(|i| words.get(i.checked_sub(1)?))
    };
    let ops: f64 = after("ops,")?.parse().ok()?;
    let bytes: f64 = after("bytes")?.parse().ok()?;
    let ns: f64 = after("ns")?.parse().ok()?;
    if ns <= 0.0 {
        return None;
    }
    Some(if unit == "IOPS" {
        ops / (ns / 1e9)
    } else {
        bytes / 1e6 / (ns / 1e9)
    })
}

/// dom0 and examples/blkbench on a fresh 64 MiB image, booted on the shim.
fn blkbench_machine(ctx: &Ctx) -> Result<Machine> {
    use crate::bundle::{ImageRef, Manifest, Role};
    let image = ctx.images.shim.with_file_name("blkbench.img");
    let _ = std::fs::remove_file(&image);
    let mut manifest = Manifest::named(vec![
        (
            ImageRef::Example("dom0".into()),
            Role::Dom0,
            32 << 10,
            String::new(),
        ),
        (
            ImageRef::Example("blkbench".into()),
            Role::DomU,
            32 << 10,
            String::new(),
        ),
    ])?;
    manifest.domains[0].backends = true;
    let spec = format!("vdev=xvda,access=rw,size=64M,target={}", image.display());
    manifest.domains[1]
        .disks
        .push(crate::disks::DiskSpec::parse(&spec, ctx.root).map_err(anyhow::Error::msg)?);
    manifest.check()?;
    let files = manifest.image_files(ctx.root, |example| ctx.images.guest(example))?;
    let out = ctx.images.shim.with_file_name("blkbench.bundle");
    manifest.write_files(&files, &out)?;
    let disks = manifest.disks();
    crate::disks::ensure_images(&disks)?;
    Ok(Machine::shim(&ctx.images.shim, out, "")
        .memory("256M")
        .disks(disks))
}

/// Debian's Linux with fio on a fresh 64 MiB image through virtio-blk, on the same
/// microvm, no hypervisor ([`crate::fio_guest`]).
fn fio_machine(ctx: &Ctx) -> Result<Machine> {
    let target = images::target_dir(ctx.root);
    let (kernel, initramfs) = crate::fio_guest::ensure(&target)?;
    let image = ctx.images.shim.with_file_name("fio.img");
    let _ = std::fs::remove_file(&image);
    let spec = format!("vdev=xvda,access=rw,size=64M,target={}", image.display());
    let disk = crate::disks::Disk {
        domid: 1,
        serial: "vbd0".into(),
        spec: crate::disks::DiskSpec::parse(&spec, ctx.root).map_err(anyhow::Error::msg)?,
    };
    crate::disks::ensure_images(std::slice::from_ref(&disk))?;
    Ok(
        Machine::shim(kernel, initramfs, crate::initramfs::kernel_cmdline())
            .memory("512M")
            .disks(vec![disk]),
    )
}

/// A job's rate from the JSON fio printed between the markers: IOPS, or MB/s.
fn fio_rate(lines: &[qemu::Line], job: &str, unit: &str) -> Option<f64> {
    let begin = format!("{}{job}", crate::fio_guest::BEGIN);
    // (A progress line may share the marker's line.)
    let start = lines
        .iter()
        .position(|l| l.text.trim_end().ends_with(&begin))?;
    // The JSON object only: a kernel message may land on the serial line meanwhile.
    let json: String = lines[start + 1..]
        .iter()
        .take_while(|l| l.text.trim() != crate::fio_guest::END)
        .map(|l| l.text.as_str())
        .skip_while(|t| !t.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n");
    let v: Value = serde_json::from_str(&json).ok()?;
    let j = &v["jobs"][0];
    let side = if job.contains("write") {
        "write"
    } else {
        "read"
    };
    if unit == "IOPS" {
        j[side]["iops"].as_f64()
    } else {
        j[side]["bw_bytes"].as_f64().map(|b| b / 1e6)
    }
}

pub(super) fn io(ctx: &Ctx) -> Vec<Row> {
    let mut rows: Vec<Row> = BLK_JOBS
        .iter()
        .map(|&(_, name, unit)| Row {
            higher_is_better: true,
            ..Row::new("io", name, unit)
        })
        .collect();
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); BLK_JOBS.len()];
    let mut failure = None;
    for _ in 0..3 {
        match blkbench_machine(ctx).and_then(|m| capture(m, "blkbench: done")) {
            Ok(c) => {
                for (&(job, _, unit), r) in BLK_JOBS.iter().zip(&mut runs) {
                    if let Some(x) = blk_rate(&c.lines, job, unit) {
                        r.push(x);
                    }
                }
            }
            Err(e) => failure = Some(e),
        }
    }
    let mut refs: Vec<Vec<f64>> = vec![Vec::new(); BLK_JOBS.len()];
    let (boots, ref_failure) =
        three_good(|| fio_machine(ctx).and_then(|m| capture(m, crate::fio_guest::DONE)));
    for c in boots {
        for (&(job, _, unit), r) in BLK_JOBS.iter().zip(&mut refs) {
            if let Some(x) = fio_rate(&c.lines, job, unit) {
                r.push(x);
            }
        }
    }
    for ((row, r), f) in rows.iter_mut().zip(runs).zip(refs) {
        row.ours = Stats::of(r);
        row.reference = Stats::of(f);
        let mut notes = vec![String::from(
            "ours: domU blkfront -> dom0 blkback -> virtio-blk; reference: Debian's Linux \
             6.1 with fio (libaio, direct) on virtio-blk, no hypervisor; TCG",
        )];
        if let Some(e) = &failure {
            notes.push(format!("a run of ours failed: {e:#}"));
        }
        if let Some(e) = &ref_failure {
            notes.push(format!("the reference failed: {e}"));
        }
        row.note = notes.join("; ");
    }
    rows.push(Row::not_yet(
        "io",
        "save/restore and migration",
        "not built yet",
    ));
    rows
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn blkbench_lines_give_iops_and_megabytes_per_second() {
        let lines = [qemu::Line {
            at: Duration::ZERO,
            text: "blkbench| blkbench randread-4k-qd1: 2000 ops, 8192000 bytes in 1000000000 ns (0 failed)"
                .into(),
        }];
        assert_eq!(blk_rate(&lines, "randread-4k-qd1", "IOPS"), Some(2000.0));
        assert_eq!(blk_rate(&lines, "randread-4k-qd1", "MB/s"), Some(8.192));
        assert_eq!(blk_rate(&lines, "seqread-1m", "MB/s"), None);
        let mut r = Row::new("io", "x", "IOPS");
        r.higher_is_better = true;
        r.ours = Stats::of(vec![50.0]);
        r.reference = Stats::of(vec![100.0]);
        assert_eq!(r.ratio(), Some(0.5), "half the reference's rate");
    }
}
