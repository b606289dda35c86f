//! Virtual disks end to end (issue 13): the kvstore appliance on a vbd that dom0's
//! blkback serves from a QEMU virtio-blk disk image. Images live in
//! `target/scenario-disks` and each scenario starts from fresh ones.

use std::time::Duration;

use super::dom0::dom0;
use super::expected::dom0::FAIL;
use super::harness::{
    check, check_typing, machine, scenario_disks, Boot, BundleGuest, Check, Ctx, End, Failure,
    Pass, Scenario, TAIL,
};
use crate::bundle::Role;
use crate::qemu::{self, Control, Outcome};

pub fn all() -> Vec<Scenario> {
    vec![
        Scenario::new("blk-kvstore", "kvstore writes 10,000 keys to its vbd (dom0: blkback over virtio-blk), QEMU is killed without warning after a random number of acknowledged commits, the machine boots again on the same image: every acknowledged key reads back intact, and what survived is a prefix of what was written", blk_kvstore),
        Scenario::new("blk-two-domus", "two kvstore domUs with a disk each fill 5,000 keys at once (different values; the second acknowledges writes while the first still fills), then verify: both complete, each reads back only its own data; dom0 (`dma-exchange`) gets its multi-page DMA blocks through XENMEM_exchange and checks one (contiguous, zeroed, usable)", blk_two_domus),
        Scenario::new("blk-features", "what a vbd negotiates, as xenstore has it (two queues of 4-page rings, persistent grants, flush, barrier, discard, 256 indirect segments, 512-byte sectors), indirect requests served and both queues used, and a discard that reaches the device: the image's allocated blocks shrink", blk_features),
        Scenario::new("blk-readonly", "a disk given read-only (access=ro: QEMU read-only, vbd mode r): kvstore replays the keys written earlier, refuses changes, and a raw write to the disk is refused", blk_readonly),
    ]
}

fn kvstore<'a>(cmdline: &'a str, disks: &'a [&'a str]) -> BundleGuest<'a> {
    BundleGuest {
        example: "kvstore",
        role: Role::DomU,
        memory_mib: 32,
        cmdline,
        backends: false,
        disks,
    }
}

/// Removes images a previous run left, so the scenario starts from blank disks.
fn fresh(ctx: &Ctx, names: &[&str]) -> Result<(), Failure> {
    for name in names {
        let path = scenario_disks(ctx).join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("removing {}: {e}", path.display()).into()),
        }
    }
    Ok(())
}

fn failure(reason: String, captured: &qemu::Captured) -> Failure {
    Failure {
        reason,
        log: captured.tail(TAIL).map(str::to_owned).collect(),
    }
}

/// A seed for the moment of the kill, from the clock (printed, so a failing run can
/// be told apart).
fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

const KEYS: u64 = 10_000;

fn blk_kvstore(ctx: &Ctx) -> Result<Pass, Failure> {
    fresh(ctx, &["kvstore-crash.img"])?;
    let disk = ["vdev=xvda,access=rw,size=64M,target=kvstore-crash.img"];
    // 10,000 keys are 157 commits of 64: kill somewhere in them.
    let kill_after = 2 + seed() % 150;
    if ctx.verbose {
        println!("    killing QEMU after {kill_after} acknowledged commits");
    }
    let fill = [dom0(""), kvstore("fill=10000", &disk)];
    let cmd = machine(ctx, &Boot::Bundle { domains: &fill })?.command();
    let (mut acked, mut acks, mut formatted, mut fatal) = (None, 0, false, None);
    let captured = qemu::run_captured(cmd, Duration::from_secs(300), ctx.verbose, |line| {
        if let Some(f) = FAIL.iter().find(|f| line.contains(**f)) {
            fatal = Some(format!("saw {f:?}"));
            return Control::Stop;
        }
        formatted |= line.contains("kvstore: ready: 0 keys") && line.contains("formatted: yes");
        if let Some(k) = line.split("kvstore: acked k").nth(1) {
            acked = k.trim().parse::<u64>().ok();
            acks += 1;
            if acks >= kill_after {
                return Control::Stop;
            }
        }
        if line.contains("kvstore: fill done") {
            return Control::Stop;
        }
        Control::Continue
    })?;
    let problem = fatal
        .or_else(|| (!formatted).then(|| "the first boot did not format a blank disk".into()))
        .or_else(|| acked.is_none().then(|| "no write was acknowledged".into()))
        .or_else(|| captured.timed_out.then(|| "the fill timed out".into()));
    if let Some(p) = problem {
        return Err(failure(p, &captured));
    }
    let acked = acked.expect("checked");

    let verify = [dom0(""), kvstore("verify=10000 exit", &disk)];
    let cmd = machine(ctx, &Boot::Bundle { domains: &verify })?.command();
    let mut result = None;
    let captured = qemu::run_captured(cmd, Duration::from_secs(180), ctx.verbose, |line| {
        if let Some(v) = line.split("kvstore: verify: ").nth(1) {
            result = Some(v.to_owned());
        }
        Control::Continue
    })?;
    let Some(result) = result else {
        return Err(failure("no verify line after the reboot".into(), &captured));
    };
    // "{intact} intact, {wrong} wrong, first missing {k<i>|none}"
    let words: Vec<&str> = result.split_whitespace().collect();
    let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
    let (intact, wrong) = (number(0), number(2));
    let missing = words
        .get(6)
        .map(|w| w.trim_start_matches('k').parse::<u64>().ok());
    let ok = match (intact, wrong, missing) {
        (Some(n), Some(0), Some(first)) => n > acked && first.unwrap_or(KEYS) == n,
        _ => false,
    };
    let ended = captured.status.map(qemu::outcome) == Some(Outcome::PowerOff);
    if ok && ended {
        if ctx.verbose {
            println!("    acknowledged up to k{acked}; after the kill: {result}");
        }
        Ok(Pass {
            first_guest_line: None,
        })
    } else {
        Err(failure(
            format!(
                "acknowledged up to k{acked} before the kill (after {acks} commits); after the \
                 reboot: {result:?}{}",
                if ended {
                    ""
                } else {
                    "; the machine did not power off"
                }
            ),
            &captured,
        ))
    }
}

fn blk_two_domus(ctx: &Ctx) -> Result<Pass, Failure> {
    fresh(ctx, &["two-a.img", "two-b.img"])?;
    let (a, b) = (
        ["vdev=xvda,access=rw,size=32M,target=two-a.img"],
        ["vdev=xvda,access=rw,size=32M,target=two-b.img"],
    );
    // dom0 gets its multi-page DMA blocks through XENMEM_exchange here, as on a host
    // whose memory is not handed out in machine order, and checks one.
    let domains = [
        dom0("dma-exchange"),
        kvstore("fill=5000 verify=5000 seed=1 exit", &a),
        kvstore("fill=5000 verify=5000 seed=2 exit", &b),
    ];
    check(
        ctx,
        Check {
            boot: Boot::Bundle { domains: &domains },
            // The second acknowledges writes while the first still fills: interleaved.
            expect: &["kvstore-1| kvstore: acked k", "kvstore| kvstore: fill done"],
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(240),
            first_guest_line: None,
            anywhere: &[
                "frames exchanged for a contiguous extent",
                "contiguous true, zeroed true, written and read back true",
                "kvstore| kvstore: verify: 5000 intact, 0 wrong, first missing none",
                "kvstore-1| kvstore: verify: 5000 intact, 0 wrong, first missing none",
            ],
        },
    )
}

fn blk_readonly(ctx: &Ctx) -> Result<Pass, Failure> {
    fresh(ctx, &["readonly.img"])?;
    let rw = ["vdev=xvda,access=rw,size=16M,target=readonly.img"];
    let ro = ["vdev=xvda,access=ro,target=readonly.img"];
    let write = [dom0(""), kvstore("fill=100 exit", &rw)];
    check(
        ctx,
        Check {
            boot: Boot::Bundle { domains: &write },
            expect: &["kvstore: fill done"],
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[],
        },
    )?;
    let read = [dom0(""), kvstore("verify=100", &ro)];
    check_typing(
        ctx,
        Check {
            boot: Boot::Bundle { domains: &read },
            expect: &[
                "(read-only)",
                "kvstore: disk 51712 of 16 MiB, read-only",
                "kvstore: ready: 100 keys",
                "kvstore: verify: 100 intact, 0 wrong, first missing none",
                "kvstore: error: the store is read-only",
                "kvstore: write-test: refused",
            ],
            fail_on: FAIL,
            end: End::StopWhenSeen,
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere: &[],
        },
        &[("kvstore: verify: 100", b"put x y\rwrite-test\r")],
    )
}

/// The features lines kvstore prints for a vbd served by our dom0.
const FEATURES: [&str; 2] = [
    "kvstore: features: front ring-page-order=2 multi-queue-num-queues=2 feature-persistent=1",
    "kvstore: features: back max-ring-page-order=4 multi-queue-max-queues=4 \
     feature-persistent=1 feature-flush-cache=1 feature-barrier=1 feature-discard=1 \
     feature-max-indirect-segments=256 sector-size=512 physical-sector-size=512 mode=w",
];

/// dom0's count of `what` in its `served ...` line for the vbd.
fn served(captured: &qemu::Captured, what: &str) -> Option<u64> {
    let line = captured
        .lines
        .iter()
        .find(|l| l.text.contains(": served "))?;
    let at = line.text.find(&format!("{what} "))? + what.len() + 1;
    line.text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn allocated(path: &std::path::Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.blocks() * 512)
}

fn blk_features(ctx: &Ctx) -> Result<Pass, Failure> {
    fresh(ctx, &["features.img"])?;
    let image = scenario_disks(ctx).join("features.img");
    let disk = ["vdev=xvda,access=rw,size=32M,target=features.img"];
    let fill = [dom0(""), kvstore("fill=2000 features exit", &disk)];
    let cmd = machine(ctx, &Boot::Bundle { domains: &fill })?.command();
    let captured = qemu::run_captured(cmd, Duration::from_secs(120), ctx.verbose, |_| {
        Control::Continue
    })?;
    let features = FEATURES
        .iter()
        .all(|f| captured.lines.iter().any(|l| l.text.contains(f)));
    let indirect = served(&captured, "indirect").unwrap_or(0);
    // "per queue [a, b]": both queues carried requests.
    let queues: Vec<u64> = captured
        .lines
        .iter()
        .find_map(|l| l.text.split("per queue [").nth(1).map(str::to_owned))
        .map(|rest| {
            rest.trim_end_matches([']', ')'])
                .split(", ")
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if !features || indirect == 0 || queues.len() != 2 || queues.contains(&0) {
        return Err(failure(
            format!(
                "features line seen: {features}; indirect requests served: {indirect}; \
                 per queue: {queues:?}"
            ),
            &captured,
        ));
    }
    let before = allocated(&image)?;
    let discard = [dom0(""), kvstore("discard-test exit", &disk)];
    let cmd = machine(ctx, &Boot::Bundle { domains: &discard })?.command();
    let captured = qemu::run_captured(cmd, Duration::from_secs(120), ctx.verbose, |_| {
        Control::Continue
    })?;
    let after = allocated(&image)?;
    let discarded = captured.lines.iter().any(|l| {
        l.text
            .contains("kvstore: discard-test: discarded 4194304 bytes at 4096")
    });
    let discards = served(&captured, "discard").unwrap_or(0);
    // The 2,000 records filled about 1 MiB of the log: most of it must be a hole now.
    if discarded && discards > 0 && after + (512 << 10) <= before {
        if ctx.verbose {
            println!("    image allocation {before} -> {after} bytes after the discard");
        }
        Ok(Pass {
            first_guest_line: None,
        })
    } else {
        Err(failure(
            format!(
                "discard line seen: {discarded}; discards served: {discards}; image allocation \
                 {before} -> {after} bytes"
            ),
            &captured,
        ))
    }
}
