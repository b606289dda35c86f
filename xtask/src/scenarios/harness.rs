//! The harness of the QEMU scenarios: what a scenario is ([`Scenario`], run with a
//! [`Ctx`], ending in a [`Pass`] or a [`Failure`] with the end of the serial log), what
//! it boots ([`Boot`], bundles of examples included) and the one check most of them are
//! ([`check`]: given lines in order, others anywhere, none of the fatal ones, and the
//! expected end). Which scenarios exist is the catalog's business (`scenarios/mod.rs`).

use std::path::PathBuf;
use std::time::Duration;

use crate::bundle::{self, Role};
use crate::images::Images;
use crate::qemu::{self, Accel, Control, Machine, Outcome};
use crate::xen;

/// Lines kept in a failure report.
pub const TAIL: usize = 30;

/// What scenarios run with.
pub struct Ctx<'a> {
    pub images: &'a Images,
    pub target_dir: PathBuf,
    pub accel: Accel,
    pub verbose: bool,
}

/// What a scenario runs.
pub type RunFn = dyn Fn(&Ctx) -> Result<Pass, Failure>;

/// One scenario.
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub run: Box<RunFn>,
}

impl Scenario {
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        run: impl Fn(&Ctx) -> Result<Pass, Failure> + 'static,
    ) -> Scenario {
        Scenario {
            name: name.into(),
            description: description.into(),
            run: Box::new(run),
        }
    }
}

/// A passed scenario, with what it measured (reported, never asserted).
pub struct Pass {
    /// Wall time from QEMU start to the guest's first line, when the scenario knows
    /// which line that is.
    pub first_guest_line: Option<Duration>,
}

/// A failed scenario: why, and the end of the serial log.
pub struct Failure {
    pub reason: String,
    pub log: Vec<String>,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            reason: format!("{e:#}"),
            log: Vec::new(),
        }
    }
}

/// The hypervisor a guest runs on: ours, or the reference it must behave like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    Shim,
    /// Upstream Xen 4.17 ([`crate::xen`]), in QEMU on q35.
    Xen,
}

impl Hypervisor {
    #[cfg(test)]
    pub const BOTH: [Hypervisor; 2] = [Hypervisor::Shim, Hypervisor::Xen];

    /// The name of the scenario of `name` run on this hypervisor: `NAME` on the shim,
    /// `xen-NAME` on Xen.
    pub fn scenario_name(self, name: &str) -> String {
        match self {
            Hypervisor::Shim => name.to_owned(),
            Hypervisor::Xen => format!("xen-{name}"),
        }
    }
}

/// What to boot.
pub enum Boot<'a> {
    /// The example `guest` as the only, privileged domain (dom0) of the shim or of
    /// upstream Xen 4.17.
    Guest {
        on: Hypervisor,
        guest: &'a str,
        guest_cmdline: &'a str,
    },
    /// The shim with GRUB's Xen PV image (built by others) as its only domain.
    ShimGrub,
    /// The shim with Debian's Linux kernel as its only, privileged domain, with this
    /// kernel command line.
    ShimLinux { cmdline: &'a str },
    /// The shim with a domain bundle of examples, named after them as `cargo xtask run
    /// hello hello` names them (`hello`, `hello-1`, ...); dom0 gets domain id 0, the
    /// domUs 1, 2, ... in this order.
    Bundle { domains: &'a [BundleGuest<'a>] },
    /// The shim with the domain bundle of a manifest (a path from the workspace root,
    /// e.g. `bundles/hello3.toml`).
    Manifest { path: &'a str },
}

/// One domain of a [`Boot::Bundle`].
pub struct BundleGuest<'a> {
    /// The example under `examples/`.
    pub example: &'a str,
    pub role: Role,
    pub memory_mib: u64,
    pub cmdline: &'a str,
    /// The dom0 runs xenstored and the console back-end (`backends = true` in a
    /// manifest): domUs get ring event channels and start paused.
    pub backends: bool,
    /// xl disk specs (`vdev=xvda,access=rw,size=64M,target=NAME.img`), targets
    /// relative to [`scenario_disks`].
    pub disks: &'a [&'a str],
}

/// Where scenarios keep their disk images (`target/scenario-disks`).
pub fn scenario_disks(ctx: &Ctx) -> PathBuf {
    ctx.target_dir.join("scenario-disks")
}

/// The manifest of a [`Boot::Bundle`].
pub fn bundle_manifest(
    domains: &[BundleGuest],
    disk_base: &std::path::Path,
) -> anyhow::Result<bundle::Manifest> {
    let mut manifest = bundle::Manifest::named(
        domains
            .iter()
            .map(|d| {
                // An example's name, or a path (with a `/`) to a PV kernel.
                let image = bundle::ImageRef::parse(d.example, std::path::Path::new(""));
                (image, d.role, d.memory_mib << 10, d.cmdline.into())
            })
            .collect(),
    )?;
    for (spec, d) in manifest.domains.iter_mut().zip(domains) {
        spec.backends = d.backends;
        for disk in d.disks {
            let parsed = crate::disks::DiskSpec::parse(disk, disk_base)
                .map_err(|e| anyhow::anyhow!("disk {disk:?}: {e}"))?;
            spec.disks.push(parsed);
        }
    }
    manifest.check()?;
    Ok(manifest)
}

/// The bundle file of a [`Boot::Bundle`] or [`Boot::Manifest`] and the machine memory
/// that holds its domains. Scenarios run one at a time, so they share one file.
pub fn scenario_bundle(
    ctx: &Ctx,
    manifest: &bundle::Manifest,
) -> anyhow::Result<(PathBuf, String)> {
    let root = crate::bindgen::workspace_root();
    let files = manifest.image_files(&root, |example| ctx.images.guest(example))?;
    let out = ctx.target_dir.join("images/scenario.bundle");
    manifest.write_files(&files, &out)?;
    let memory = (manifest.total_mib() + 64).next_multiple_of(64).max(256);
    Ok((out, format!("{memory}M")))
}

/// The QEMU machine of a [`Boot`].
pub fn machine(ctx: &Ctx, boot: &Boot) -> anyhow::Result<Machine> {
    let shim = &ctx.images.shim;
    let machine = match *boot {
        Boot::Guest {
            on: Hypervisor::Shim,
            guest,
            guest_cmdline,
        } => Machine::shim(
            shim,
            ctx.images.guest(guest)?,
            qemu::shim_cmdline("", guest_cmdline),
        ),
        Boot::Guest {
            on: Hypervisor::Xen,
            guest,
            guest_cmdline,
        } => Machine::xen(
            xen::ensure(&ctx.target_dir)?,
            ctx.images.guest(guest)?,
            guest_cmdline,
        ),
        Boot::ShimGrub => Machine::shim(shim, crate::grub::ensure(&ctx.target_dir)?, ""),
        Boot::ShimLinux { cmdline } => Machine::shim(
            shim,
            crate::linux::ensure(&ctx.target_dir)?,
            qemu::shim_cmdline("dom0_mem=256M", cmdline),
        )
        .memory("512M"),
        Boot::Bundle { domains } => {
            let manifest = bundle_manifest(domains, &scenario_disks(ctx))?;
            let (module, memory) = scenario_bundle(ctx, &manifest)?;
            let disks = manifest.disks();
            crate::disks::ensure_images(&disks)?;
            Machine::shim(shim, module, "")
                .memory(memory)
                .disks(disks)
                .nic(manifest.nic())
        }
        Boot::Manifest { path } => {
            let manifest = bundle::Manifest::load(&crate::bindgen::workspace_root().join(path))?;
            return manifest_machine(ctx, &manifest);
        }
    };
    Ok(machine.accel(ctx.accel))
}

/// The QEMU machine of a parsed manifest (one a scenario loaded and changed).
pub fn manifest_machine(ctx: &Ctx, manifest: &bundle::Manifest) -> anyhow::Result<Machine> {
    let (module, memory) = scenario_bundle(ctx, manifest)?;
    let disks = manifest.disks();
    crate::disks::ensure_images(&disks)?;
    Ok(Machine::shim(&ctx.images.shim, module, "")
        .memory(memory)
        .disks(disks)
        .nic(manifest.nic())
        .accel(ctx.accel))
}

/// A domU of 16 MiB running `example` with `cmdline`.
pub fn domu<'a>(example: &'a str, cmdline: &'a str) -> BundleGuest<'a> {
    BundleGuest {
        example,
        role: Role::DomU,
        memory_mib: 16,
        cmdline,
        backends: false,
        disks: &[],
    }
}

/// A bundle scenario: `domains` boot together; `anywhere` lines must all appear (the
/// domains' output interleaves), nothing in `fail_on` may, and QEMU must end with `end`.
pub fn bundle_lines(
    ctx: &Ctx,
    domains: &[BundleGuest],
    anywhere: &[&str],
    fail_on: &[&str],
    end: Outcome,
) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Bundle { domains },
            expect: &[],
            fail_on,
            end: End::Outcome(end),
            timeout: Duration::from_secs(120),
            first_guest_line: None,
            anywhere,
        },
    )
}

/// How the run must end.
pub enum End {
    /// QEMU exits by itself with this outcome.
    Outcome(Outcome),
    /// QEMU is stopped once every expected line has been seen (for hypervisors that do
    /// not end QEMU, like Xen).
    StopWhenSeen,
}

/// A boot and what it must show.
pub struct Check<'a> {
    pub boot: Boot<'a>,
    /// Substrings that must appear, each on a line after the previous one's.
    pub expect: &'a [&'a str],
    /// Substrings that fail the scenario at once.
    pub fail_on: &'a [&'a str],
    pub end: End,
    pub timeout: Duration,
    /// The line whose arrival time is reported as "first guest line".
    pub first_guest_line: Option<&'a str>,
    /// Substrings that must each appear on some line, in any order (domains running
    /// side by side interleave their output).
    pub anywhere: &'a [&'a str],
}

/// Boots, waits for the expected lines in order, checks how the run ended.
pub fn check(ctx: &Ctx, c: Check) -> Result<Pass, Failure> {
    check_typing(ctx, c, &[])
}

/// [`check`], typing on the serial console: after the first line containing each
/// pattern of `typing` (in order), its bytes.
pub fn check_typing(
    ctx: &Ctx,
    c: Check,
    typing: &[(&str, &'static [u8])],
) -> Result<Pass, Failure> {
    let cmd = machine(ctx, &c.boot)?.command();
    let stop_when_seen = matches!(c.end, End::StopWhenSeen);

    let mut seen = 0;
    let mut typed = 0;
    let mut found = vec![false; c.anywhere.len()];
    let mut fatal: Option<String> = None;
    let captured = qemu::run_captured(cmd, c.timeout, ctx.verbose, |line| {
        if seen < c.expect.len() && line.contains(c.expect[seen]) {
            seen += 1;
        }
        for (f, a) in found.iter_mut().zip(c.anywhere) {
            *f |= line.contains(a);
        }
        if let Some(f) = c.fail_on.iter().find(|f| line.contains(**f)) {
            fatal = Some(format!("saw {f:?}"));
            return Control::Stop;
        }
        if stop_when_seen && seen == c.expect.len() && found.iter().all(|&f| f) {
            return Control::Stop;
        }
        match typing.get(typed) {
            Some(&(pattern, bytes)) if line.contains(pattern) => {
                typed += 1;
                Control::Type(bytes)
            }
            _ => Control::Continue,
        }
    })?;

    let mut reasons = Vec::new();
    if let Some(f) = fatal {
        reasons.push(f);
    }
    if captured.timed_out {
        reasons.push(format!("timed out after {} s", c.timeout.as_secs()));
    }
    if let Some(missing) = c.expect.get(seen) {
        reasons.push(format!(
            "no line containing {missing:?} (lines are expected in order)"
        ));
    }
    for (_, missing) in found.iter().zip(c.anywhere).filter(|(f, _)| !**f) {
        reasons.push(format!("no line containing {missing:?}"));
    }
    if let (End::Outcome(want), Some(status)) = (&c.end, captured.status) {
        let got = qemu::outcome(status);
        if got != *want {
            reasons.push(format!("expected: {want}; got: {got}"));
        }
    }
    if reasons.is_empty() {
        Ok(Pass {
            first_guest_line: c.first_guest_line.and_then(|p| captured.time_to_line(p)),
        })
    } else {
        Err(Failure {
            reason: reasons.join("; "),
            log: captured.tail(TAIL).map(str::to_owned).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Boot::Bundle` becomes a bundle file of the built examples that the shim's
    /// parser reads back (with stand-in images: no bare-metal build in host tests).
    #[test]
    fn bundle_boots_write_the_examples_into_one_module() {
        let target_dir = crate::images::target_dir(&crate::bindgen::workspace_root())
            .join("xtask-tests/scenario-bundle");
        std::fs::create_dir_all(&target_dir).unwrap();
        let hello = target_dir.join("hello");
        let cpu = target_dir.join("cpu");
        std::fs::write(&hello, b"\x7fELF hello").unwrap();
        std::fs::write(&cpu, b"\x7fELF cpu").unwrap();
        let images = Images {
            dir: target_dir.clone(),
            shim: target_dir.join("shim"),
            guests: vec![("hello".into(), hello), ("cpu".into(), cpu)],
        };
        let ctx = Ctx {
            images: &images,
            target_dir,
            accel: Accel::Tcg,
            verbose: false,
        };
        let guest = |example, role, memory_mib, cmdline| BundleGuest {
            example,
            role,
            memory_mib,
            cmdline,
            backends: false,
            disks: &[],
        };
        let domains = [
            guest("hello", Role::Dom0, 64, "x"),
            guest("cpu", Role::DomU, 16, ""),
            guest("hello", Role::DomU, 300, "y z"),
        ];
        let (module, memory) = scenario_bundle(
            &ctx,
            &bundle_manifest(&domains, std::path::Path::new("/")).unwrap(),
        )
        .unwrap();
        assert_eq!(memory, "448M");
        let bytes = std::fs::read(module).unwrap();
        let b = hypervisor_shim::pv::build::bundle::parse(&bytes)
            .unwrap()
            .unwrap();
        let got: Vec<_> = b
            .domains
            .iter()
            .map(|d| (d.name, d.image, d.memory_kib >> 10, d.cmdline, d.role))
            .collect();
        assert_eq!(
            got,
            [
                ("hello", &b"\x7fELF hello"[..], 64, "x", Role::Dom0),
                ("cpu", &b"\x7fELF cpu"[..], 16, "", Role::DomU),
                ("hello-1", &b"\x7fELF hello"[..], 300, "y z", Role::DomU),
            ]
        );
    }
}
