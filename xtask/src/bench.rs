//! `cargo xtask bench`: the performance table. Benchmarks report, they never assert.
//!
//! TCG on a shared machine is noisy, so every figure is one of: a median (with min and
//! max) of several runs beside a reference measured in the same run (upstream Xen 4.17
//! in the same QEMU); or a count of TSC ticks under `-icount shift=0`, where QEMU's TSC
//! advances one tick per guest instruction, so the count is deterministic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::images::{self, Images};
use crate::qemu::{self, Captured, Control, Machine, Outcome};
use crate::{deps, xen};

mod io;
mod net;

/// Runs of each wall-clock measurement.
const RUNS: usize = 5;
/// The first line libos prints (its log lines start with the level in brackets).
const FIRST_GUEST_LINE: &str = "[INFO] ";
/// The first line hello's `main` prints.
const HELLO_MAIN: &str = crate::scenarios::expected::hello::GREETING;
const TIMEOUT: Duration = Duration::from_secs(120);

/// Median, min and max of a set of runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub runs: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(runs: Vec<f64>) -> Option<Stats> {
        if runs.is_empty() {
            return None;
        }
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs,
        })
    }

    fn json(&self) -> Value {
        json!({"median": self.median, "min": self.min, "max": self.max, "runs": self.runs})
    }
}

/// One row of the table: our figure, the reference's, or why there is none yet.
pub struct Row {
    pub group: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub ours: Option<Stats>,
    pub reference: Option<Stats>,
    pub note: String,
    /// A rate (IOPS, MB/s): the ratio is ours over the reference's.
    pub higher_is_better: bool,
}

impl Row {
    fn new(group: &'static str, name: impl Into<String>, unit: &'static str) -> Row {
        Row {
            group,
            name: name.into(),
            unit,
            ours: None,
            reference: None,
            note: String::new(),
            higher_is_better: false,
        }
    }

    fn not_yet(group: &'static str, name: &str, why: &str) -> Row {
        Row {
            note: format!("not measurable yet: {why}"),
            ..Row::new(group, name, "")
        }
    }

    fn failed(mut self, e: &anyhow::Error) -> Row {
        self.note = format!("failed: {e:#}");
        self
    }

    /// Reference median over ours (ours over the reference's for rates): above 1 means
    /// we are faster or smaller.
    pub fn ratio(&self) -> Option<f64> {
        match (&self.ours, &self.reference) {
            (Some(o), Some(r)) if self.higher_is_better && r.median > 0.0 => {
                Some(o.median / r.median)
            }
            (Some(o), Some(r)) if o.median > 0.0 => Some(r.median / o.median),
            _ => None,
        }
    }

    fn json(&self) -> Value {
        json!({
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "shim": self.ours.as_ref().map(Stats::json),
            "xen_4_17": self.reference.as_ref().map(Stats::json),
            "ratio_xen_over_shim": self.ratio(),
            "higher_is_better": self.higher_is_better,
            "note": self.note,
        })
    }
}

struct Ctx<'a> {
    root: &'a Path,
    images: &'a Images,
    /// Upstream Xen, or why it is missing.
    xen: std::result::Result<PathBuf, String>,
}

/// A benchmark group: its name and the rows it measures.
struct Group {
    name: &'static str,
    run: fn(&Ctx) -> Vec<Row>,
}

const GROUPS: &[Group] = &[
    Group {
        name: "boot",
        run: boot,
    },
    Group {
        name: "build",
        run: domain_build,
    },
    Group {
        name: "hypercall",
        run: hypercalls,
    },
    Group {
        name: "ring",
        run: rings,
    },
    Group {
        name: "footprint",
        run: footprint,
    },
    Group {
        name: "io",
        run: io::io,
    },
    // Matched by `bench io` too; `bench io-net` alone.
    Group {
        name: "io-net",
        run: net::net,
    },
];

pub fn run(root: &Path, filter: Option<&str>) -> Result<()> {
    let groups: Vec<&Group> = GROUPS
        .iter()
        .filter(|g| filter.is_none_or(|f| g.name.contains(f)))
        .collect();
    if groups.is_empty() {
        let names: Vec<_> = GROUPS.iter().map(|g| g.name).collect();
        bail!("no benchmark group matches (groups: {})", names.join(", "));
    }
    deps::ensure_qemu()?;
    let guests = images::guest_packages(root)?;
    let images = images::build(root, &guests)?;
    let target = images::target_dir(root);
    let ctx = Ctx {
        root,
        images: &images,
        xen: xen::ensure(&target).map_err(|e| format!("{e:#}")),
    };
    let mut rows = Vec::new();
    for g in groups {
        eprintln!("==> bench {}", g.name);
        rows.extend((g.run)(&ctx));
    }
    print_table(&rows);
    let out = write_json(&target, &rows)?;
    let svg = write_chart(&target, &rows)?;
    println!("\nwritten to {} and {}", out.display(), svg.display());
    Ok(())
}

fn print_table(rows: &[Row]) {
    let fmt = |s: &Option<Stats>| match s {
        Some(s) => format!("{} ({}..{})", num(s.median), num(s.min), num(s.max)),
        None => "-".into(),
    };
    println!(
        "\n| group | measurement | unit | shim: median (min..max) | reference (Xen 4.17; Linux for io): median (min..max) | ratio (above 1: shim faster or smaller) | note |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.group,
            r.name,
            r.unit,
            fmt(&r.ours),
            fmt(&r.reference),
            r.ratio().map_or("-".into(), |x| format!("{x:.2}")),
            r.note
        );
    }
}

/// Three significant digits, without exponent noise for the sizes we show.
fn num(x: f64) -> String {
    if x >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn qemu_version() -> String {
    Command::new(deps::QEMU)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// `target/bench/latest.svg`: every row with a figure of ours, beside its reference.
fn write_chart(target: &Path, rows: &[Row]) -> Result<PathBuf> {
    let bars: Vec<crate::chart::Bar> = rows
        .iter()
        .filter_map(|r| {
            Some(crate::chart::Bar {
                label: &r.name,
                unit: r.unit,
                ours: r.ours.as_ref()?.median,
                reference: r.reference.as_ref().map(|s| s.median),
                higher_is_better: r.higher_is_better,
            })
        })
        .collect();
    let out = target.join("bench/latest.svg");
    std::fs::write(
        &out,
        crate::chart::svg(
            "cargo xtask bench: medians, ours beside the reference",
            &bars,
        ),
    )?;
    Ok(out)
}

fn write_json(target: &Path, rows: &[Row]) -> Result<PathBuf> {
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir)?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let doc = json!({
        "unix_time": secs,
        "qemu": qemu_version(),
        "accel": "tcg",
        "host_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "icount": qemu::ICOUNT.join(" "),
        "runs_per_wall_clock_figure": RUNS,
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&doc)?;
    let out = dir.join(format!("bench-{secs}.json"));
    std::fs::write(&out, &text)?;
    std::fs::write(dir.join("latest.json"), &text)?;
    Ok(out)
}

/// Runs `machine` capturing its output until a line contains `stop_at` (or QEMU exits).
/// Three good runs of `run`, in at most five: the Linux reference guests hung now and
/// then early in their boot under TCG (no line on the console; before they were given
/// `tsc_early_khz`), and a failed boot is retried. The good runs, and the last failure.
fn three_good<T>(mut run: impl FnMut() -> Result<T>) -> (Vec<T>, Option<String>) {
    let (mut good, mut failure, mut failed) = (Vec::new(), None, 0);
    while good.len() < 3 && good.len() + failed < 5 {
        match run() {
            Ok(v) => good.push(v),
            Err(e) => {
                failed += 1;
                failure = Some(format!("{failed} failed boot(s): {e:#}"));
            }
        }
    }
    (good, failure)
}

fn capture(machine: Machine, stop_at: &str) -> Result<Captured> {
    let c = qemu::run_captured(machine.command(), TIMEOUT, false, |l| {
        if l.contains(stop_at) {
            Control::Stop
        } else {
            Control::Continue
        }
    })?;
    if c.timed_out {
        bail!("timed out; last line: {:?}", c.tail(1).next());
    }
    Ok(c)
}

fn shim(
    ctx: &Ctx,
    guest: &str,
    shim_opts: &str,
    guest_cmdline: &str,
    memory: &str,
) -> Result<Machine> {
    let cmdline = qemu::shim_cmdline(shim_opts, guest_cmdline);
    Ok(Machine::shim(&ctx.images.shim, ctx.images.guest(guest)?, cmdline).memory(memory))
}

/// `guest` as dom0 of upstream Xen, with `cmdline`.
fn xen_machine(ctx: &Ctx, guest: &str, cmdline: &str) -> Result<Machine> {
    let xen = ctx.xen.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Machine::xen(xen, ctx.images.guest(guest)?, cmdline))
}

/// Seconds from QEMU start to each pattern, over [`RUNS`] boots.
fn boot_times(mut make: impl FnMut() -> Result<Machine>, patterns: &[&str]) -> Result<Vec<Stats>> {
    let mut times = vec![Vec::new(); patterns.len()];
    let last = patterns.last().context("no pattern to wait for")?;
    for _ in 0..RUNS {
        let c = capture(make()?, last)?;
        for (p, t) in patterns.iter().zip(&mut times) {
            let at = c
                .time_to_line(p)
                .with_context(|| format!("no line containing {p:?}"))?;
            t.push(at.as_secs_f64());
        }
    }
    Ok(times.into_iter().filter_map(Stats::of).collect())
}

fn boot(ctx: &Ctx) -> Vec<Row> {
    let patterns = [FIRST_GUEST_LINE, HELLO_MAIN];
    let mut rows = vec![
        Row::new("boot", "hello: QEMU start to the guest's first line", "s"),
        Row::new("boot", "hello: QEMU start to main", "s"),
    ];
    match boot_times(|| shim(ctx, "hello", "", "", "256M"), &patterns) {
        Ok(s) => {
            for (row, s) in rows.iter_mut().zip(s) {
                row.ours = Some(s);
            }
        }
        Err(e) => return rows.into_iter().map(|r| r.failed(&e)).collect(),
    }
    match boot_times(|| xen_machine(ctx, "hello", ""), &patterns) {
        Ok(s) => {
            for (row, s) in rows.iter_mut().zip(s) {
                row.reference = Some(s);
            }
        }
        Err(e) => {
            for r in &mut rows {
                r.note = format!("Xen 4.17 failed: {e:#}");
            }
        }
    }
    rows
}

/// The shim logs `d0 built: N pages in T TSC ticks`.
fn build_ticks(c: &Captured) -> Option<f64> {
    let line = c.lines.iter().find(|l| l.text.contains("d0 built: "))?;
    let (_, rest) = line.text.split_once(" pages in ")?;
    rest.split_whitespace().next()?.parse().ok()
}

fn domain_build(ctx: &Ctx) -> Vec<Row> {
    let mut rows = Vec::new();
    // 1 MiB is below what Xen's start-of-day layout allows (the bootstrap mapping is
    // padded to 4 MiB), so 4 MiB is measured too.
    for mib in [1u64, 4, 16, 256] {
        let mut row = Row::new(
            "build",
            format!("build a {mib} MiB domain (hello)"),
            "TSC ticks (-icount: instructions)",
        );
        let measured =
            shim(ctx, "hello", &format!("dom0_mem={mib}M"), "", "512M").and_then(|machine| {
                let c = capture(machine.icount(), "d0 built: ")?;
                match build_ticks(&c) {
                    Some(t) => Ok(t),
                    None => bail!(
                        "no build line; the shim said: {}",
                        c.tail(1).next().unwrap_or("nothing")
                    ),
                }
            });
        match measured {
            Ok(t) => {
                row.ours = Stats::of(vec![t]);
                row.note = format!("{} ticks per 4 KiB page", num(t / (mib * 256) as f64));
            }
            Err(e) => row = row.failed(&e),
        }
        rows.push(row);
    }
    rows
}

/// Parses the bench guest's `bench NAME: N ops, T ticks` line into ticks per op.
pub fn per_op(lines: &[qemu::Line], name: &str) -> Option<f64> {
    let prefix = format!("bench {name}: ");
    let line = lines.iter().find_map(|l| {
        let at = l.text.find(&prefix)?;
        Some(&l.text[at + prefix.len()..])
    })?;
    let mut words = line.split([' ', ',']).filter(|w| !w.is_empty());
    let ops: f64 = words.next()?.parse().ok()?;
    let ticks: f64 = words.nth(1)?.parse().ok()?;
    (ops > 0.0).then_some(ticks / ops)
}

fn hypercalls(ctx: &Ctx) -> Vec<Row> {
    const MEASURED: &[(&str, &str)] = &[
        ("null-hypercall", "null hypercall (xen_version)"),
        ("mmu-update", "mmu_update of one L1 entry"),
        ("update-va-mapping", "update_va_mapping (UVMF_INVLPG)"),
    ];
    let run = |machine: Result<Machine>| -> Result<Vec<qemu::Line>> {
        Ok(capture(machine?.icount(), "bench: done")?.lines)
    };
    let ours = run(shim(ctx, "bench", "", "", "256M"));
    let xen = run(xen_machine(ctx, "bench", ""));
    let mut rows = Vec::new();
    for &(name, label) in MEASURED {
        let mut row = Row::new("hypercall", label, "TSC ticks per call (-icount)");
        let mut notes = Vec::new();
        for (who, run, slot) in [
            ("shim", &ours, &mut row.ours),
            ("Xen 4.17", &xen, &mut row.reference),
        ] {
            match run {
                Ok(lines) => match per_op(lines, name) {
                    Some(x) => *slot = Stats::of(vec![x]),
                    None => notes.push(format!(
                        "{who}: no result line (the guest's last words: {:?})",
                        lines.last().map_or("", |l| l.text.as_str())
                    )),
                },
                Err(e) => notes.push(format!("{who} failed: {e:#}")),
            }
        }
        row.note = notes.join("; ");
        rows.push(row);
    }
    rows.extend(events(ctx));
    rows
}

/// A bundle of examples `(example, command line)`, all domUs of 16 MiB, booted on the
/// shim.
fn shim_bundle(ctx: &Ctx, guests: &[(&str, &str)]) -> Result<Machine> {
    use crate::bundle::{ImageRef, Manifest, Role};
    let manifest = Manifest::named(
        guests
            .iter()
            .map(|(g, c)| {
                (
                    ImageRef::Example((*g).into()),
                    Role::DomU,
                    16 << 10,
                    (*c).into(),
                )
            })
            .collect(),
    )?;
    let files = manifest.image_files(ctx.root, |example| ctx.images.guest(example))?;
    let out = ctx.images.shim.with_file_name("bench.bundle");
    manifest.write_files(&files, &out)?;
    Ok(Machine::shim(&ctx.images.shim, out, ""))
}

/// The number before `unit` in the first line containing `pattern`.
fn number_before(lines: &[qemu::Line], pattern: &str, unit: &str) -> Option<f64> {
    let line = lines.iter().find(|l| l.text.contains(pattern))?;
    let at = line.text.find(unit)?;
    line.text[..at].split_whitespace().last()?.parse().ok()
}

/// Event-channel round trips and timer lateness, from examples/pingpong and
/// examples/timers under `-icount` (virtual nanoseconds are guest instructions).
fn events(ctx: &Ctx) -> Vec<Row> {
    let run = |machine: Result<Machine>, stop: &str| -> Result<Vec<qemu::Line>> {
        Ok(capture(machine?.icount(), stop)?.lines)
    };
    let unit = "ns of guest time per round trip (-icount: instructions)";
    let mut rows = Vec::new();

    let mut row = Row::new("hypercall", "event-channel round trip, two domains", unit);
    let two = run(
        shim_bundle(
            ctx,
            &[
                ("pingpong", "ping peer=2 rounds=10000"),
                ("pingpong", "pong peer=1 rounds=10000"),
            ],
        ),
        "no domains left",
    );
    match two.map(|l| {
        number_before(
            &l,
            "(d1) pingpong: ping: 10000 rounds",
            " ns per round trip",
        )
    }) {
        Ok(Some(x)) => {
            row.ours = Stats::of(vec![x]);
            row.note = "domUs 1 and 2, 10,000 rounds, each side blocking between events; Xen has no reference without a toolstack to start a domU".into();
        }
        Ok(None) => row.note = "shim: no result line".into(),
        Err(e) => row = row.failed(&e),
    }
    rows.push(row);

    let mut row = Row::new(
        "hypercall",
        "event-channel round trip, loopback in one domain",
        unit,
    );
    let pattern = "pingpong: OK: loopback";
    let ours = run(
        shim(ctx, "pingpong", "", "loopback rounds=10000", "256M"),
        pattern,
    );
    let xen = run(
        xen_machine(ctx, "pingpong", "loopback rounds=10000"),
        pattern,
    );
    fill(&mut row, &ours, &xen, |l| {
        number_before(l, pattern, " ns per round trip")
    });
    if row.note.is_empty() {
        row.note =
            "two tasks of one domain over a loopback interdomain channel, 10,000 rounds".into();
    }
    rows.push(row);

    let mut row = Row::new(
        "hypercall",
        "timer wake-up latency (median of 10 timers)",
        "us late (-icount: guest time)",
    );
    let pattern = "timers: OK";
    let lateness = |l: &[qemu::Line]| -> Option<f64> {
        let mut late: Vec<f64> = l
            .iter()
            .filter_map(|l| {
                let (before, _) = l.text.split_once(" us late)")?;
                before.rsplit(' ').next()?.parse().ok()
            })
            .collect();
        late.sort_by(f64::total_cmp);
        late.get(late.len() / 2).copied()
    };
    let ours = run(shim(ctx, "timers", "", "", "256M"), pattern);
    let xen = run(xen_machine(ctx, "timers", ""), pattern);
    fill(&mut row, &ours, &xen, lateness);
    if row.note.is_empty() {
        row.note = "sleeps and a periodic task of examples/timers; from the deadline to the task running again".into();
    }
    rows.push(row);
    rows
}

/// Sets a row's figures from the shim's and Xen's runs (or says what went wrong).
fn fill(
    row: &mut Row,
    ours: &Result<Vec<qemu::Line>>,
    xen: &Result<Vec<qemu::Line>>,
    parse: impl Fn(&[qemu::Line]) -> Option<f64>,
) {
    let mut notes = Vec::new();
    for (who, run, slot) in [
        ("shim", ours, &mut row.ours),
        ("Xen 4.17", xen, &mut row.reference),
    ] {
        match run {
            Ok(lines) => match parse(lines) {
                Some(x) => *slot = Stats::of(vec![x]),
                None => notes.push(format!("{who}: no result line")),
            },
            Err(e) => notes.push(format!("{who} failed: {e:#}")),
        }
    }
    if !notes.is_empty() {
        row.note = notes.join("; ");
    }
}

fn rings(_: &Ctx) -> Vec<Row> {
    [("single requests", 1), ("batches of 32", 32)]
        .into_iter()
        .map(|(what, batch)| {
            let mut row = Row::new(
                "ring",
                format!("io/ring.h ring between two host threads, {what}"),
                "ns per request (reference: rtrb SPSC rings)",
            );
            row.ours = Stats::of(crate::ring_bench::runs(|| crate::ring_bench::ours(batch)));
            row.reference = Stats::of(crate::ring_bench::runs(|| crate::ring_bench::spsc(batch)));
            if let Some(o) = &row.ours {
                row.note = format!(
                    "{:.1} M requests/s; the reference column is the plain SPSC ceiling, not Xen",
                    1e3 / o.median
                );
            }
            row
        })
        .collect()
}

/// Smallest `dom0_mem` (KiB, to 64 KiB) with which `guest` still powers off cleanly.
fn min_memory(ctx: &Ctx, guest: &str) -> Result<u64> {
    let boots = |kib: u64| -> Result<bool> {
        let machine = shim(ctx, guest, &format!("dom0_mem={kib}K"), "", "256M")?;
        let c = qemu::run_captured(machine.command(), TIMEOUT, false, |_| Control::Continue)?;
        Ok(c.status.map(qemu::outcome) == Some(Outcome::PowerOff))
    };
    let (mut lo, mut hi) = (64u64, 64 * 1024);
    if !boots(hi)? {
        bail!("{guest} does not power off even with {hi} KiB");
    }
    // Invariant: `hi` boots, `lo` (or anything below) has not been shown to.
    while hi - lo > 64 {
        let mid = (lo + hi) / 2 / 64 * 64;
        if boots(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// (file bytes, memory bytes) of an ELF image's loadable segments: what a domain or the
/// machine must hold, without symbols and debug information.
fn loaded_size(path: &Path) -> Result<(u64, u64)> {
    use object::{Object, ObjectSegment};
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file =
        object::File::parse(&*data).with_context(|| format!("{} is not an ELF", path.display()))?;
    Ok(file
        .segments()
        .fold((0, 0), |(f, m), s| (f + s.file_range().1, m + s.size())))
}

fn footprint(ctx: &Ctx) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut sizes = vec![("hypervisor-shim".to_owned(), ctx.images.shim.clone())];
    if let Ok(guests) = images::guest_packages(ctx.root) {
        for g in guests {
            if let Ok(p) = ctx.images.guest(&g) {
                sizes.push((g, p));
            }
        }
    }
    for (name, path) in sizes {
        let mut row = Row::new("footprint", format!("loaded size: {name}"), "KiB");
        match loaded_size(&path) {
            Ok((file, mem)) => {
                row.ours = Stats::of(vec![mem as f64 / 1024.0]);
                row.note = format!(
                    "memory of its PT_LOAD segments ({} KiB from the file); the file is {} KiB with symbols",
                    num(file as f64 / 1024.0),
                    num(std::fs::metadata(&path).map_or(0, |m| m.len()) as f64 / 1024.0)
                );
            }
            Err(e) => row = row.failed(&e),
        }
        rows.push(row);
    }
    // Examples that power off by themselves with their default command line.
    for guest in ["hello", "pagetables", "usermode", "cpu"] {
        let mut row = Row::new(
            "footprint",
            format!("memory {guest} needs to run and power off"),
            "KiB",
        );
        match min_memory(ctx, guest) {
            Ok(kib) => row.ours = Stats::of(vec![kib as f64]),
            Err(e) => row = row.failed(&e),
        }
        rows.push(row);
    }
    rows.push(domains_per_gib(ctx));
    rows
}

/// Boots the most hello domUs a bundle holds (64), each with 4 MiB (the smallest the
/// domain builder allows), and checks that all of them power off.
fn domains_per_gib(ctx: &Ctx) -> Row {
    const N: usize = 64;
    const MIB: u64 = 4;
    let mut row = Row::new("footprint", "hello domains per GiB of guest RAM", "domains");
    let measured = (|| -> Result<usize> {
        use crate::bundle::{ImageRef, Manifest, Role};
        let manifest = Manifest::named(
            (0..N)
                .map(|_| {
                    (
                        ImageRef::Example("hello".into()),
                        Role::DomU,
                        MIB << 10,
                        String::new(),
                    )
                })
                .collect(),
        )?;
        let files = manifest.image_files(ctx.root, |example| ctx.images.guest(example))?;
        let out = ctx.images.shim.with_file_name("bench-many.bundle");
        manifest.write_files(&files, &out)?;
        let c = capture(
            Machine::shim(&ctx.images.shim, out, "").memory("512M"),
            "no domains left",
        )?;
        Ok(c.lines
            .iter()
            .filter(|l| l.text.contains(") shut down: poweroff"))
            .count())
    })();
    match measured {
        Ok(n) if n == N => {
            row.ours = Stats::of(vec![(1024 / MIB) as f64]);
            row.note = format!("{N} hello domUs of {MIB} MiB booted from one bundle and all powered off; 1 GiB holds 1024/{MIB}");
        }
        Ok(n) => row.note = format!("only {n} of {N} hello domUs powered off"),
        Err(e) => row = row.failed(&e),
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_the_middle_of_sorted_runs() {
        let s = Stats::of(vec![3.0, 1.0, 2.0, 10.0, 4.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        assert_eq!(s.runs, vec![3.0, 1.0, 2.0, 10.0, 4.0]);
        assert_eq!(Stats::of(vec![1.0, 4.0]).unwrap().median, 2.5);
        assert!(Stats::of(vec![]).is_none());
    }

    #[test]
    fn ratio_is_reference_over_ours() {
        let mut r = Row::new("g", "n", "s");
        assert_eq!(r.ratio(), None);
        r.ours = Stats::of(vec![0.1]);
        r.reference = Stats::of(vec![1.0]);
        assert_eq!(r.ratio(), Some(10.0));
    }

    #[test]
    fn bench_lines_parse_to_ticks_per_op() {
        let line = |t: &str| qemu::Line {
            at: Duration::ZERO,
            text: t.into(),
        };
        let lines = [
            line("(shim) something"),
            line("bench null-hypercall: 10000 ops, 2500000 ticks"),
        ];
        assert_eq!(per_op(&lines, "null-hypercall"), Some(250.0));
        assert_eq!(per_op(&lines, "other"), None);
        assert_eq!(per_op(&[line("bench x: 0 ops, 5 ticks")], "x"), None);
    }

    #[test]
    fn build_line_gives_the_ticks() {
        let c = Captured {
            lines: vec![qemu::Line {
                at: Duration::ZERO,
                text: "(shim) d0 built: 4096 pages in 123456 TSC ticks".into(),
            }],
            status: None,
            stopped: true,
            timed_out: false,
            elapsed: Duration::ZERO,
        };
        assert_eq!(build_ticks(&c), Some(123456.0));
    }
}
