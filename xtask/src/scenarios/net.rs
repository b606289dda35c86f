//! The network (issue 14): dom0 drives the machine's NIC (QEMU's virtio-net) and
//! proves it against QEMU's user-mode network (`bundles/nic.toml`); the default
//! appliance, httpd on its vif through dom0's netback and bridge, answers HTTP from
//! the host through QEMU's `hostfwd`.

use std::net::SocketAddr;

use anyhow::Context as _;
use std::time::Duration;

use super::expected::dom0::{self as lines, FAIL};
use super::harness::{
    check, manifest_machine, Boot, Check, Ctx, End, Failure, Pass, Scenario, TAIL,
};
use super::http::{free_port, Conn};
use crate::bundle::Manifest;
use crate::qemu::{self, Control, Outcome};

pub fn all() -> Vec<Scenario> {
    vec![Scenario::new(
        "net-http",
        "the default appliance (bundles/default.toml): httpd on its vif (netfront, smoltcp) behind dom0's netback and bridge answers from the host through QEMU's hostfwd: the page, 100 requests on one keep-alive connection, 20 connections at once, a 404, and /stats counting them; the NIC's pcap holds httpd's vif traffic too (dom0's mirror, VLAN 101)",
        net_http,
    ), Scenario::new(
        "net-kv",
        "bundles/kv-service.toml: httpd's REST front (/kv/KEY) on the kvstore appliance (its TCP commands over a second vif, its keys on a vbd): 1,000 PUTs then 1,000 GETs from the host through hostfwd all agree, a DELETE makes the key 404, a value of two lines is 400",
        net_kv,
    ), Scenario::new(
        "net-domu-domu",
        "two nettest domUs move 64 MiB over TCP through dom0's bridge (vif to vif, netback copying both ways), CRC-32 equal at both ends; then again with front ends that ask for no offload (no feature-sg, no GSO, feature-no-csum-offload)",
        net_domu_domu,
    ), Scenario::new(
        "net-dhcp",
        "a nettest domU without an address gets one from QEMU's user network by DHCP (smoltcp's DHCPv4 client through netfront, the bridge and the NIC), then reaches a TCP server on the host (10.0.2.2 is the host's loopback) and sends it 1 MiB, which the host checks",
        net_dhcp,
    ), Scenario::new(
        "net-nic",
        "bundles/nic.toml: dom0 finds the virtio-net device of QEMU's user network (`nic = \"user\"`), sends an ARP request for the gateway and a DHCPDISCOVER, and prints the ARP reply and the DHCP offer; a 1514-byte ping comes back intact; a burst of 2,000 ARP requests (transmit buffers refused and retried on the interrupt) gets 2,000 replies; the hello domU runs meanwhile and dom0 powers off",
        net_nic,
    )]
}

fn failure(reason: String, captured: Option<&qemu::Captured>) -> Failure {
    Failure {
        reason,
        log: captured
            .map(|c| c.tail(TAIL).map(str::to_owned).collect())
            .unwrap_or_default(),
    }
}

/// The default manifest with its forwarded port moved to a free one of this host.
fn default_appliance() -> anyhow::Result<(Manifest, u16)> {
    let root = crate::bindgen::workspace_root();
    let mut m = Manifest::load(&root.join("bundles/default.toml"))?;
    let port = free_port()?;
    m.forward_host_port(port)?;
    // The NIC's traffic, with httpd's vif mirrored into it (checked after the run, and
    // kept for a failure's post-mortem).
    let nic = m
        .domains
        .iter_mut()
        .find_map(|d| d.nic.as_mut())
        .ok_or_else(|| anyhow::anyhow!("bundles/default.toml has no NIC"))?;
    nic.pcap = Some(pcap_path());
    m.mirror("httpd")?;
    Ok((m, port))
}

fn pcap_path() -> std::path::PathBuf {
    crate::bindgen::workspace_root().join("target/net-http.pcap")
}

/// Frames of a pcap file (libpcap's format, as QEMU's filter-dump writes it) whose
/// 802.1Q tag is `vlan` and that carry TCP from or to port `port`.
fn vlan_tcp_frames(path: &std::path::Path, vlan: u16, port: u16) -> anyhow::Result<usize> {
    let d = std::fs::read(path)?;
    anyhow::ensure!(
        d.len() >= 24 && d[..4] == [0xd4, 0xc3, 0xb2, 0xa1],
        "not a pcap file"
    );
    let (mut at, mut n) = (24, 0);
    while at + 16 <= d.len() {
        let len = u32::from_le_bytes(d[at + 8..at + 12].try_into()?) as usize;
        let f = d.get(at + 16..at + 16 + len).unwrap_or(&[]);
        at += 16 + len;
        let be = |i: usize| f.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        if be(12) != Some(0x8100) || be(14).map(|t| t & 0xfff) != Some(vlan) {
            continue;
        }
        // The IPv4 header after the tag, then TCP's ports.
        if be(16) == Some(0x0800) && f.get(27) == Some(&6) {
            let l4 = 18 + (f[18] & 0xf) as usize * 4;
            if be(l4) == Some(port) || be(l4 + 2) == Some(port) {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// What net-http asks of httpd once it serves.
fn http_checks(addr: SocketAddr) -> anyhow::Result<String> {
    let t = Duration::from_secs(20);
    let mut c = Conn::open(addr, t)?;
    let page = c.get("/").context("the first GET /")?;
    anyhow::ensure!(page.status == 200, "GET / answered {}", page.status);
    let body = String::from_utf8_lossy(&page.body).into_owned();
    anyhow::ensure!(body.contains("Hello from httpd"), "GET / sent {body:?}");
    for i in 0..100 {
        let r = c
            .get("/")
            .with_context(|| format!("keep-alive request {i}"))?;
        anyhow::ensure!(
            r.status == 200 && r.body == page.body,
            "keep-alive request {i}: status {}, {} bytes",
            r.status,
            r.body.len()
        );
    }
    // 20 connections open at once. They are opened one by one, each with a first
    // request: QEMU's user network listens on the host with a backlog of one (`ss
    // -ltn` shows Send-Q 1 on the forwarded port), so connects racing each other lose
    // their SYNs to the host kernel and back off for seconds. Then all 20 ask at once.
    let mut conns = Vec::new();
    for i in 0..20 {
        let mut c = Conn::open(addr, t)?;
        let r = c
            .get("/stats")
            .with_context(|| format!("connection {i}'s first request"))?;
        anyhow::ensure!(r.status == 200, "connection {i}: /stats {}", r.status);
        conns.push(c);
    }
    let threads: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            std::thread::spawn(move || -> anyhow::Result<()> {
                let r = c
                    .get(&format!("/bytes/{}", 1000 + i))
                    .with_context(|| format!("connection {i}"))?;
                anyhow::ensure!(
                    r.status == 200 && r.body.len() == 1000 + i,
                    "connection {i}: status {}, {} bytes",
                    r.status,
                    r.body.len()
                );
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let r = c.get("/nope")?;
    anyhow::ensure!(r.status == 404, "GET /nope answered {}", r.status);
    let stats = String::from_utf8_lossy(&c.get("/stats")?.body).into_owned();
    let requests: u64 = stats
        .split("\"requests\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("/stats has no request count: {stats}"))?;
    // 1 + 100 + 20 * 2 + the 404 + this one.
    anyhow::ensure!(
        requests >= 143,
        "/stats counts {requests} requests: {stats}"
    );
    Ok(stats)
}

/// Boots `m`, and once every line of `ready` was seen runs `checks` against
/// 127.0.0.1:`port` (QEMU's forward to the guest), then stops QEMU. A failed check
/// reports httpd's `/stats` too, if it still answers.
fn host_checks<T>(
    ctx: &Ctx,
    m: &Manifest,
    port: u16,
    ready: &[&str],
    timeout: Duration,
    checks: impl FnOnce(SocketAddr) -> anyhow::Result<T>,
) -> Result<(T, qemu::Captured), Failure> {
    let cmd = manifest_machine(ctx, m)?.command();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut seen = vec![false; ready.len()];
    let mut checks = Some(checks);
    let mut result: Option<anyhow::Result<T>> = None;
    let mut fatal = None;
    let captured = qemu::run_captured(cmd, timeout, ctx.verbose, |line| {
        if let Some(f) = FAIL.iter().find(|f| line.contains(**f)) {
            fatal = Some(format!("saw {f:?}"));
            return Control::Stop;
        }
        for (s, r) in seen.iter_mut().zip(ready) {
            *s |= line.contains(r);
        }
        if seen.iter().all(|&s| s) {
            let r = (checks.take().expect("run once"))(addr).map_err(|e| {
                let stats = Conn::open(addr, Duration::from_secs(5))
                    .and_then(|mut c| c.get("/stats"))
                    .map(|r| String::from_utf8_lossy(&r.body).trim().to_owned());
                e.context(format!("httpd's /stats after it: {stats:?}"))
            });
            result = Some(r);
            return Control::Stop;
        }
        Control::Continue
    })?;
    match (fatal, result) {
        (Some(f), _) => Err(failure(f, Some(&captured))),
        (None, None) => Err(failure(
            format!("never saw all of {ready:?}"),
            Some(&captured),
        )),
        (None, Some(Err(e))) => Err(failure(format!("{e:#}"), Some(&captured))),
        (None, Some(Ok(v))) => Ok((v, captured)),
    }
}

fn net_http(ctx: &Ctx) -> Result<Pass, Failure> {
    let (manifest, port) = default_appliance().map_err(|e| failure(format!("{e:#}"), None))?;
    let ready = ["httpd: serving http://10.0.2.16:80/"];
    let (stats, captured) = host_checks(
        ctx,
        &manifest,
        port,
        &ready,
        Duration::from_secs(240),
        http_checks,
    )?;
    if ctx.verbose {
        println!("    /stats: {}", stats.trim());
    }
    // QEMU wrote the pcap as it went; the mirrored copies are VLAN 101 (d1).
    let mirrored = vlan_tcp_frames(&pcap_path(), 101, 80)
        .map_err(|e| failure(format!("reading {}: {e:#}", pcap_path().display()), None))?;
    if mirrored < 100 {
        return Err(failure(
            format!("only {mirrored} of httpd's TCP frames mirrored into the pcap (VLAN 101)"),
            Some(&captured),
        ));
    }
    Ok(Pass {
        first_guest_line: None,
    })
}

fn net_nic(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Manifest {
                path: "bundles/nic.toml",
            },
            expect: lines::NIC,
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(90),
            first_guest_line: None,
            anywhere: &["hello| Hello from hello"],
        },
    )
}

/// A manifest of dom0 and `domus` (name, command line, vif spec), each 32 MiB, each
/// running nettest but one named `hostile`, which runs examples/hostile.
pub fn net_manifest(domus: &[(&str, &str, &str)]) -> anyhow::Result<Manifest> {
    let mut text = String::from(
        "[[domain]]\nname = \"dom0\"\nimage = \"dom0\"\nrole = \"dom0\"\nmemory = \"32M\"\nbackends = true\n",
    );
    for (name, cmdline, vif) in domus {
        let image = if *name == "hostile" {
            "hostile"
        } else {
            "nettest"
        };
        text.push_str(&format!(
            "\n[[domain]]\nname = \"{name}\"\nimage = \"{image}\"\nmemory = \"32M\"\ncmdline = \"{cmdline}\"\nvif = [\"{vif}\"]\n"
        ));
    }
    Manifest::parse(&text, std::path::Path::new("."))
}

/// Boots `manifest`, runs `on_line` on each line until it says done (Some), and
/// wants the machine to power off after.
pub fn run_net(
    ctx: &Ctx,
    manifest: &Manifest,
    timeout: Duration,
    mut on_line: impl FnMut(&str) -> Option<Result<(), String>>,
) -> Result<qemu::Captured, Failure> {
    let cmd = manifest_machine(ctx, manifest)?.command();
    let mut verdict = None;
    let mut fatal = None;
    let captured = qemu::run_captured(cmd, timeout, ctx.verbose, |line| {
        if let Some(f) = FAIL.iter().find(|f| line.contains(**f)) {
            fatal = Some(format!("saw {f:?}"));
            return Control::Stop;
        }
        if verdict.is_none() {
            verdict = on_line(line);
            if let Some(Err(_)) = verdict {
                return Control::Stop;
            }
        }
        Control::Continue
    })?;
    let ended = captured.status.map(qemu::outcome) == Some(Outcome::PowerOff);
    let problem = fatal
        .or_else(|| match &verdict {
            None => Some("the transfer never finished".into()),
            Some(Err(e)) => Some(e.clone()),
            Some(Ok(())) => None,
        })
        .or_else(|| (!ended).then(|| "the machine did not power off".into()));
    match problem {
        Some(p) => Err(failure(p, Some(&captured))),
        None => Ok(captured),
    }
}

/// The CRC of `line`'s `crc32 X`.
pub fn crc_of(line: &str) -> Option<String> {
    Some(
        line.split("crc32 ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_owned(),
    )
}

const MIB64: u64 = 64 << 20;

fn net_domu_domu(ctx: &Ctx) -> Result<Pass, Failure> {
    for plain in ["", " plain"] {
        let rx = format!("listen=5001{plain}");
        let tx = format!("connect=10.0.2.20:5001 send={MIB64} retry{plain}");
        let m = net_manifest(&[("rx", &rx, "ip=10.0.2.20"), ("tx", &tx, "ip=10.0.2.21")])?;
        let (mut got, mut sent) = (None, None);
        let mut vifs = 0;
        run_net(ctx, &m, Duration::from_secs(300), |line| {
            if line.contains("vif 0 (") && line.contains(" connected: ") {
                let none =
                    line.contains("sg false, gso tcpv4 false tcpv6 false, csum offload false");
                if none == plain.is_empty() {
                    return Some(Err(format!("negotiated: {line}")));
                }
                vifs += 1;
            }
            if line.contains(&format!("nettest: received {MIB64} bytes")) {
                got = crc_of(line);
            }
            if line.contains(&format!("nettest: sent {MIB64} bytes")) {
                sent = crc_of(line);
                let peer = line.split("peer said: ").nth(1).unwrap_or("");
                if !peer.starts_with(&format!("ok {MIB64} ")) {
                    return Some(Err(format!("the receiver said {peer:?}")));
                }
            }
            match (&got, &sent) {
                (Some(a), Some(b)) if a == b && vifs == 2 => Some(Ok(())),
                (Some(a), Some(b)) => Some(Err(format!("CRC sent {b}, received {a}"))),
                _ => None,
            }
        })?;
    }
    Ok(Pass {
        first_guest_line: None,
    })
}

fn net_dhcp(ctx: &Ctx) -> Result<Pass, Failure> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| failure(format!("a listener on the host: {e}"), None))?;
    let port = listener
        .local_addr()
        .map_err(|e| failure(e.to_string(), None))?
        .port();
    // The host's end: one connection, read to its end, answered with what came.
    let server = std::thread::spawn(move || -> std::io::Result<(u64, u32)> {
        let (mut s, _) = listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut data = Vec::new();
        s.read_to_end(&mut data)?;
        let crc = crc32fast::hash(&data);
        s.write_all(format!("ok {} {crc:08x}\n", data.len()).as_bytes())?;
        Ok((data.len() as u64, crc))
    });
    let cmdline = format!("connect=10.0.2.2:{port} send=1048576");
    let m = net_manifest(&[("client", &cmdline, "")])?;
    let mut dhcp = false;
    run_net(ctx, &m, Duration::from_secs(180), |line| {
        dhcp |= line.contains("nettest: address 10.0.2.15/24 (DHCP)");
        if line.contains("nettest: sent 1048576 bytes") {
            let peer = line.split("peer said: ").nth(1).unwrap_or("");
            let ok = dhcp
                && peer.starts_with("ok 1048576 ")
                && crc_of(line).is_some_and(|c| peer.ends_with(&c));
            return Some(if ok {
                Ok(())
            } else {
                Err(format!("dhcp {dhcp}, line {line:?}"))
            });
        }
        None
    })?;
    match server.join() {
        Ok(Ok((1048576, _))) => Ok(Pass {
            first_guest_line: None,
        }),
        other => Err(failure(format!("the host's server: {other:?}"), None)),
    }
}

fn net_kv(ctx: &Ctx) -> Result<Pass, Failure> {
    let root = crate::bindgen::workspace_root();
    let mut m = Manifest::load(&root.join("bundles/kv-service.toml"))?;
    let port = free_port()?;
    m.forward_host_port(port)?;
    let img = super::harness::scenario_disks(ctx).join("net-kv.img");
    let _ = std::fs::remove_file(&img);
    for disk in m.domains.iter_mut().flat_map(|d| &mut d.disks) {
        disk.target = img.clone();
    }
    let ready = [
        "kvstore: listening on 10.0.2.20:7000",
        "httpd: serving http://10.0.2.16:80/",
    ];
    host_checks(ctx, &m, port, &ready, Duration::from_secs(300), kv_checks)?;
    Ok(Pass {
        first_guest_line: None,
    })
}

fn kv_checks(addr: SocketAddr) -> anyhow::Result<()> {
    let mut c = Conn::open(addr, Duration::from_secs(30))?;
    let value = |i: u32| format!("value-{i}-{}", i.wrapping_mul(2_654_435_761));
    for i in 0..1000 {
        let r = c
            .request("PUT", &format!("/kv/key{i}"), value(i).as_bytes())
            .with_context(|| format!("PUT key{i}"))?;
        anyhow::ensure!(r.status == 204, "PUT key{i}: {}", r.status);
    }
    for i in 0..1000 {
        let r = c
            .get(&format!("/kv/key{i}"))
            .with_context(|| format!("GET key{i}"))?;
        let got = String::from_utf8_lossy(&r.body);
        anyhow::ensure!(
            r.status == 200 && got.trim_end() == value(i),
            "GET key{i}: {} {got:?}",
            r.status
        );
    }
    let r = c.request("DELETE", "/kv/key7", &[])?;
    anyhow::ensure!(r.status == 204, "DELETE key7: {}", r.status);
    let r = c.get("/kv/key7")?;
    anyhow::ensure!(r.status == 404, "GET key7 after DELETE: {}", r.status);
    let r = c.request("PUT", "/kv/k", b"line\nbreak")?;
    anyhow::ensure!(r.status == 400, "PUT of a two-line value: {}", r.status);
    Ok(())
}
