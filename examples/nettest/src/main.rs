//! nettest: TCP transfers for the network scenarios and benchmarks, on libos::net.
//!
//! Command line (any combination, run in this order):
//!
//! - `listen=PORT`: accepts one connection and reads it to its end, then prints
//!   `nettest: received N bytes crc32 X in T ms` (and answers `ok N X\n` before it
//!   closes, so the sender knows it all arrived);
//! - `connect=A.B.C.D:PORT send=N`: connects, sends N bytes of a fixed pattern
//!   (`seed=S` changes it), half-closes, waits for the receiver's answer and prints
//!   `nettest: sent N bytes crc32 X in T ms (Mbit/s M), peer said: ...`;
//! - `udp-sink=PORT`: counts the datagrams that arrive until none came for 2 s, then
//!   prints `nettest: udp received N datagrams of S bytes in T ms`;
//! - `udp-send=A.B.C.D:PORT count=N size=S`: sends N datagrams of S bytes back to
//!   back (each waiting for room in the socket), then prints `nettest: udp sent N`;
//! - `retry`: keep trying to connect for 30 s (the peer may not listen yet);
//! - `plain`: the vif asks for no offload (no `feature-sg`, no GSO, checksums
//!   computed: `feature-no-csum-offload`).
//!
//! First it prints `nettest: address A.B.C.D/len (static|DHCP)` once it has one.
//! It powers off when done.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::time::Duration;

use libos::net::{self, Addressing, TcpListener, TcpStream};
use libos::{executor, println, start_info, time, timer};

fn word(name: &str) -> Option<&'static str> {
    start_info::get()
        .cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

fn flag(name: &str) -> bool {
    start_info::get()
        .cmdline()
        .split_whitespace()
        .any(|w| w == name)
}

/// Byte `i` of the stream for `seed`.
fn pattern(i: u64, seed: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7) as u8
}

fn ms_since(t: time::Instant) -> u64 {
    (time::now().as_nanos() - t.as_nanos()) / 1_000_000
}

async fn receive(port: u16) {
    let mut l = TcpListener::bind(port).unwrap_or_else(|e| panic!("nettest: bind {port}: {e:?}"));
    println!("nettest: listening on {port}");
    let mut s = l.accept().await;
    let t = time::now();
    let mut crc = crc32fast::Hasher::new();
    let mut n = 0u64;
    let mut buf = vec![0u8; 16384];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(k) => {
                crc.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) => {
                println!("nettest: receive failed after {n} bytes: {e:?}");
                return;
            }
        }
    }
    let crc = crc.finalize();
    println!(
        "nettest: received {n} bytes crc32 {crc:08x} in {} ms",
        ms_since(t)
    );
    let _ = s.write_all(format!("ok {n} {crc:08x}\n").as_bytes()).await;
    s.close(Duration::from_secs(5)).await;
}

async fn send(to: &str, bytes: u64, seed: u64) {
    let (ip, port) = to
        .split_once(':')
        .and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?)))
        .unwrap_or_else(|| panic!("nettest: connect={to}: want A.B.C.D:PORT"));
    let deadline = time::now().as_nanos() + 30_000_000_000;
    let mut s = loop {
        match TcpStream::connect(ip, port).await {
            Ok(s) => break s,
            Err(e) if flag("retry") && time::now().as_nanos() < deadline => {
                let _ = e;
                timer::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("nettest: connect {to}: {e:?}"),
        }
    };
    let t = time::now();
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 16384];
    let mut sent = 0u64;
    while sent < bytes {
        let k = (bytes - sent).min(buf.len() as u64) as usize;
        for (i, b) in buf[..k].iter_mut().enumerate() {
            *b = pattern(sent + i as u64, seed);
        }
        crc.update(&buf[..k]);
        if let Err(e) = s.write_all(&buf[..k]).await {
            panic!("nettest: send failed after {sent} bytes: {e:?}");
        }
        sent += k as u64;
    }
    let crc = crc.finalize();
    s.shutdown();
    let mut answer = String::new();
    let mut line = [0u8; 64];
    loop {
        match s.read(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(k) => answer.push_str(&String::from_utf8_lossy(&line[..k])),
        }
    }
    let ms = ms_since(t).max(1);
    println!(
        "nettest: sent {sent} bytes crc32 {crc:08x} in {ms} ms ({} Mbit/s), peer said: {}",
        sent * 8 / 1000 / ms,
        answer.trim()
    );
    s.close(Duration::from_secs(5)).await;
}

async fn udp_sink(port: u16) {
    let s = net::UdpSocket::bind(port).unwrap_or_else(|e| panic!("nettest: bind {port}: {e:?}"));
    println!("nettest: udp listening on {port}");
    let mut buf = vec![0u8; 2048];
    let (mut n, mut size) = (0u64, 0usize);
    let mut first = None;
    let mut last = time::now();
    loop {
        let r = executor::with_timeout(Duration::from_secs(2), s.recv_from(&mut buf)).await;
        match r {
            Ok(Ok((len, _))) => {
                first.get_or_insert_with(time::now);
                last = time::now();
                n += 1;
                size = len;
            }
            Ok(Err(e)) => panic!("nettest: udp receive: {e:?}"),
            Err(_) if first.is_some() => break,
            Err(_) => {}
        }
    }
    let ms = (last.as_nanos() - first.map_or(0, |f| f.as_nanos())) / 1_000_000;
    println!("nettest: udp received {n} datagrams of {size} bytes in {ms} ms");
}

async fn udp_send(to: &str, count: u64, size: usize) {
    let (ip, port): (net::Ipv4Address, u16) = to
        .split_once(':')
        .and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?)))
        .unwrap_or_else(|| panic!("nettest: udp-send={to}: want A.B.C.D:PORT"));
    let s = net::UdpSocket::bind(40000).unwrap_or_else(|e| panic!("nettest: bind: {e:?}"));
    let data = vec![0x5au8; size];
    let to = net::IpEndpoint::new(ip.into(), port);
    for _ in 0..count {
        if let Err(e) = s.send_to(&data, to).await {
            panic!("nettest: udp send: {e:?}");
        }
    }
    // Let the last ones leave before powering off.
    timer::sleep(Duration::from_millis(500)).await;
    println!("nettest: udp sent {count}");
}

fn main() {
    executor::block_on(async {
        let cfg = if flag("plain") {
            net::FrontConfig {
                sg: false,
                gso: false,
                csum: false,
                ..net::FrontConfig::default()
            }
        } else {
            net::FrontConfig::default()
        };
        let (_, how) = net::up_with(cfg)
            .await
            .unwrap_or_else(|e| panic!("nettest: no network: {e:?}"));
        let Some(a) = net::wait_address(Duration::from_secs(30)).await else {
            panic!("nettest: no address after 30 s");
        };
        println!(
            "nettest: address {a} ({})",
            match how {
                Addressing::Static(_) => "static",
                Addressing::Dhcp => "DHCP",
            }
        );
        if let Some(p) = word("listen").and_then(|p| p.parse().ok()) {
            receive(p).await;
        }
        if let Some(p) = word("udp-sink").and_then(|p| p.parse().ok()) {
            udp_sink(p).await;
        }
        if let Some(to) = word("udp-send") {
            let n = word("count").and_then(|n| n.parse().ok()).unwrap_or(10_000);
            let size = word("size").and_then(|n| n.parse().ok()).unwrap_or(64);
            udp_send(to, n, size).await;
        }
        if let Some(to) = word("connect") {
            let n = word("send").and_then(|n| n.parse().ok()).unwrap_or(1 << 20);
            let seed = word("seed").and_then(|n| n.parse().ok()).unwrap_or(0);
            send(to, n, seed).await;
        }
    });
}

libos::main!(main);
