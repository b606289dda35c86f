//! The network rows of `cargo xtask bench io`: domU to domU through dom0's netback and
//! bridge (examples/nettest: a TCP stream, a flood of small UDP datagrams), and HTTP
//! from the host to the default appliance (examples/httpd) through QEMU's user network
//! and `hostfwd`, loaded by Debian's wrk on 127.0.0.1 only, bounded in time.
//!
//! The HTTP rows' reference: Debian's Linux serving the same files with lighttpd
//! through virtio-net in the same QEMU ([`crate::lighttpd_guest`]).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{capture, three_good, Ctx, Row, Stats};
use crate::bundle::Manifest;
use crate::qemu::{self, Control, Machine};

/// The machine of `text` (a manifest of examples).
fn machine(ctx: &Ctx, text: &str) -> Result<(Machine, Manifest)> {
    let m = Manifest::parse(text, ctx.root)?;
    Ok((manifest_machine(ctx, &m)?, m))
}

/// The machine of a parsed manifest, its bundle beside the shim's image.
fn manifest_machine(ctx: &Ctx, m: &Manifest) -> Result<Machine> {
    let files = m.image_files(ctx.root, |example| ctx.images.guest(example))?;
    let out = ctx.images.shim.with_file_name("netbench.bundle");
    m.write_files(&files, &out)?;
    Ok(Machine::shim(&ctx.images.shim, out, "")
        .memory("256M")
        .nic(m.nic()))
}

fn two_nettests(rx: &str, tx: &str) -> String {
    let dom0 = "[[domain]]\nname = \"dom0\"\nimage = \"dom0\"\nrole = \"dom0\"\nmemory = \"32M\"\nbackends = true\n";
    format!(
        "{dom0}\n[[domain]]\nname = \"rx\"\nimage = \"nettest\"\nmemory = \"32M\"\ncmdline = \"{rx}\"\nvif = [\"ip=10.0.2.20\"]\n\n[[domain]]\nname = \"tx\"\nimage = \"nettest\"\nmemory = \"32M\"\ncmdline = \"{tx}\"\nvif = [\"ip=10.0.2.21\"]\n"
    )
}

/// The number before `word` in `line`.
fn before(line: &str, word: &str) -> Option<f64> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w.iter().position(|x| *x == word)?;
    w.get(i.checked_sub(1)?)?.parse().ok()
}

/// Boots two nettest domUs with these command lines and returns the numbers before
/// `count` and before `ms` on the receiver's line containing `done`.
fn transfer(ctx: &Ctx, rx: &str, tx: &str, done: &str, count: &str) -> Result<(f64, f64)> {
    let (m, _) = machine(ctx, &two_nettests(rx, tx))?;
    let c = capture(m, done)?;
    let line = c
        .lines
        .iter()
        .find(|l| l.text.contains(done))
        .context("no receive line")?;
    let n = before(&line.text, count)
        .with_context(|| format!("no {count} in {line:?}", line = line.text))?;
    let ms = before(&line.text, "ms").context("no ms")?;
    Ok((n, ms.max(1.0) / 1e3))
}

/// Mbit/s of one 32 MiB TCP transfer vif to vif.
fn tcp_run(ctx: &Ctx) -> Result<f64> {
    let tx = "connect=10.0.2.20:5001 send=33554432 retry";
    let (bytes, s) = transfer(ctx, "listen=5001", tx, "nettest: received", "bytes")?;
    Ok(bytes * 8.0 / 1e6 / s)
}

/// Datagrams per second received of 20,000 of 64 bytes, vif to vif.
fn udp_run(ctx: &Ctx) -> Result<f64> {
    let tx = "udp-send=10.0.2.20:5002 count=20000 size=64";
    let (n, s) = transfer(
        ctx,
        "udp-sink=5002",
        tx,
        "nettest: udp received",
        "datagrams",
    )?;
    Ok(n / s)
}

/// wrk's `Requests/sec:` for `path` over `conns` connections for `secs` seconds.
fn wrk(port: u16, path: &str, conns: u32, secs: u32) -> Result<f64> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--timeout",
            "10s",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))
}

/// MB/s of one `/bytes/N` download of 64 MiB.
fn download(port: u16) -> Result<f64> {
    use std::io::{Read, Write};
    const N: usize = 64 << 20;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let t = Instant::now();
    s.write_all(
        format!("GET /bytes/{N} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    loop {
        match s.read(&mut buf)? {
            0 => break,
            n => got += n,
        }
    }
    if got < N {
        bail!("the download stopped after {got} bytes");
    }
    Ok(got as f64 / 1e6 / t.elapsed().as_secs_f64())
}

/// The HTTP figures of one boot of `machine`, once it prints `ready` and serves
/// `/bytes/N` on the host's `port`: 1 KiB over 4 and 32 connections, 64 KiB over 4,
/// and a 64 MiB download.
fn http_figures(machine: Machine, port: u16, ready: &str) -> Result<[f64; 4]> {
    let mut result = None;
    let c = qemu::run_captured(machine.command(), Duration::from_secs(300), false, |line| {
        if line.contains(ready) {
            result = Some((|| {
                Ok::<_, anyhow::Error>([
                    wrk(port, "/bytes/1024", 4, 5)?,
                    wrk(port, "/bytes/1024", 32, 5)?,
                    wrk(port, "/bytes/65536", 4, 5)?,
                    download(port)?,
                ])
            })());
            return Control::Stop;
        }
        Control::Continue
    })?;
    match result {
        Some(r) => r,
        None => bail!(
            "never served ({ready:?}); last line: {:?}",
            c.tail(1).next()
        ),
    }
}

/// The HTTP figures of the default appliance.
fn http_run(ctx: &Ctx) -> Result<[f64; 4]> {
    let mut m = Manifest::load(&ctx.root.join("bundles/default.toml"))?;
    let port = crate::scenarios::free_port()?;
    m.forward_host_port(port)?;
    http_figures(manifest_machine(ctx, &m)?, port, "httpd: serving")
}

/// The same figures of the reference: Debian's Linux with lighttpd on virtio-net, no
/// hypervisor, in the same QEMU ([`crate::lighttpd_guest`]).
fn lighttpd_run(ctx: &Ctx) -> Result<[f64; 4]> {
    use crate::lighttpd_guest as guest;
    let (kernel, initramfs) = guest::ensure(&crate::images::target_dir(ctx.root))?;
    let port = crate::scenarios::free_port()?;
    let nic = qemu::Nic {
        backend: qemu::NicBackend::User {
            hostfwd: vec![qemu::HostFwd {
                host_port: port,
                guest: guest::ADDRESS,
                guest_port: 80,
            }],
        },
        pcap: None,
    };
    let machine = Machine::shim(kernel, initramfs, crate::initramfs::kernel_cmdline())
        .memory("512M")
        .nic(Some(nic));
    http_figures(machine, port, guest::READY)
}

/// The four figures of each run, as one list per figure.
fn columns(runs: Vec<[f64; 4]>) -> Vec<Vec<f64>> {
    (0..4)
        .map(|i| runs.iter().map(|r| r[i]).collect())
        .collect()
}

pub(super) fn net(ctx: &Ctx) -> Vec<Row> {
    let row = |name: &str, unit| Row {
        higher_is_better: true,
        ..Row::new("io", name, unit)
    };
    let mut rows = vec![
        row("network: TCP domU to domU, 32 MiB (nettest)", "Mbit/s"),
        row("network: UDP 64-byte datagrams domU to domU", "packets/s"),
        row(
            "network: HTTP 1 KiB from the host, 4 connections (wrk)",
            "req/s",
        ),
        row(
            "network: HTTP 1 KiB from the host, 32 connections (wrk)",
            "req/s",
        ),
        row(
            "network: HTTP 64 KiB from the host, 4 connections (wrk)",
            "req/s",
        ),
        row("network: HTTP 64 MiB download from the host", "MB/s"),
    ];
    let mut errors = Vec::new();
    let (mut tcp, mut udp, mut http) = (Vec::new(), Vec::new(), vec![Vec::new(); 4]);
    for _ in 0..3 {
        match tcp_run(ctx) {
            Ok(x) => tcp.push(x),
            Err(e) => errors.push(format!("tcp: {e:#}")),
        }
        match udp_run(ctx) {
            Ok(x) => udp.push(x),
            Err(e) => errors.push(format!("udp: {e:#}")),
        }
    }
    let mut reference = vec![Vec::new(); 4];
    match crate::deps::ensure_wrk() {
        Ok(()) => {
            let (runs, failure) = three_good(|| http_run(ctx));
            http = columns(runs);
            errors.extend(failure.map(|e| format!("http: {e}")));
            let (runs, failure) = three_good(|| lighttpd_run(ctx));
            reference = columns(runs);
            errors.extend(failure.map(|e| format!("lighttpd: {e}")));
        }
        Err(e) => errors.push(format!("wrk: {e:#}")),
    }
    let figures = [tcp, udp].into_iter().chain(http);
    let references = [Vec::new(), Vec::new()].into_iter().chain(reference);
    for ((row, runs), refs) in rows.iter_mut().zip(figures).zip(references) {
        row.ours = Stats::of(runs);
        row.reference = Stats::of(refs);
        let mut notes = vec![String::from(
            "ours: netfront (smoltcp) -> dom0 netback and bridge (grant copies) -> netfront, \
             or -> dom0's virtio-net -> QEMU's user network -> the host; reference (HTTP): \
             Debian's Linux 6.1 with lighttpd on virtio-net, no hypervisor; TCG",
        )];
        notes.extend(errors.iter().cloned());
        row.note = notes.join("; ");
    }
    rows
}
