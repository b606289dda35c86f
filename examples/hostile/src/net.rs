//! Attacks on dom0's netback and bridge, each from a vif front end of our own that
//! does the xenbus handshake by hand (`tx-ring-ref`, `rx-ring-ref`, `event-channel`,
//! `request-rx-copy`, `Connected`) and then breaks `io/netif.h` one way. What netback
//! must do is what Linux's netback does: drop the packet (every slot answered
//! `NETIF_RSP_ERROR`, the vif goes on: a valid packet after it is answered
//! `NETIF_RSP_OKAY`), or disconnect the vif (state `Closing`, an `error` node saying
//! why, every grant of ours unmapped). Nobody else may notice.
//!
//! - `net-cross-page`: a slot whose data runs past its page (offset 4000, 200 bytes):
//!   disconnect.
//! - `net-zero-length`: a packet of 0 bytes: drop.
//! - `net-oversized`: a fragment larger than what is left of the packet: drop.
//! - `net-too-many-slots`: a packet of 1 + 21 slots: disconnect.
//! - `net-bad-grant`: a slot naming a grant we never made: drop.
//! - `net-gso-zero`: a GSO extra-info of size 0: disconnect.
//! - `net-bad-extra`: an extra-info of type 7: disconnect.
//! - `net-ring-corrupt`: tx `req_prod` a thousand requests ahead: disconnect.
//! - `net-rx-flood`: rx `req_prod` a thousand buffers ahead: disconnect.
//! - `net-spoof`: ten frames from another vif's MAC, and ten from our MAC claiming its
//!   IP (ARP replies): the bridge delivers none of them.
//!
//! Each prints `hostile: NAME: ...` lines the scenario checks.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use ::xenbus::State;
use libos::hypercall;
use libos::platform::OwnedPage;
use libos::{executor, grant, println, timer};

use crate::store::{read, state, wait_for, write};
use pv_core::netif::{parse_mac, ExtraInfo, Gso, GsoKind, TxFlags};
use pv_core::platform::{LocalPage, SharePage};
use pv_core::ring::{FrontRing, FrontState};
use xen_sys::{netif_rx_request, netif_rx_response, netif_tx_request, netif_tx_response};

type TxRing<'a> = FrontRing<'a, netif_tx_request, netif_tx_response>;
type RxRing<'a> = FrontRing<'a, netif_rx_request, netif_rx_response>;

/// Our address (the scenario's manifest gives it).
const MY_IP: [u8; 4] = [10, 0, 2, 30];
/// The well-behaved domU's address and MAC (the scenario's manifest gives them),
/// whose frames we forge in `net-spoof`.
const VICTIM_IP: [u8; 4] = [10, 0, 2, 20];
const VICTIM_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x00, 0x00, 0x20];

/// A vif connected by hand.
struct Vif {
    fe: String,
    be: String,
    mac: [u8; 6],
    tx_page: OwnedPage,
    rx_page: OwnedPage,
    tx: FrontState,
    rx: FrontState,
    port: u32,
    grants: Vec<u32>,
    /// Granted data pages, kept until the end (dom0 copies from them).
    pages: Vec<OwnedPage>,
}

fn connect() -> Vif {
    let fe = String::from("device/vif/0");
    let be = read(&format!("{fe}/backend")).expect("hostile: the vif's back end");
    let mac = read(&format!("{fe}/mac"))
        .and_then(|m| parse_mac(m.trim()))
        .expect("hostile: our MAC");
    wait_for(&be, State::InitWait);
    let (tx_page, rx_page) = (
        OwnedPage::new().expect("a page"),
        OwnedPage::new().expect("a page"),
    );
    let tx = TxRing::init(&[tx_page.page()]).state();
    let rx = RxRing::init(&[rx_page.page()]).state();
    let tx_ref = grant::grant(0, tx_page.mfn(), false).expect("a grant entry");
    let rx_ref = grant::grant(0, rx_page.mfn(), false).expect("a grant entry");
    let port = hypercall::evtchn_alloc_unbound(xen_sys::DOMID_SELF, 0).expect("a port");
    for (n, v) in [
        ("tx-ring-ref", format!("{tx_ref}")),
        ("rx-ring-ref", format!("{rx_ref}")),
        ("event-channel", format!("{port}")),
        ("request-rx-copy", String::from("1")),
        ("feature-rx-notify", String::from("1")),
        ("feature-sg", String::from("1")),
        ("state", String::from("4")),
    ] {
        write(&format!("{fe}/{n}"), &v);
    }
    let s = wait_for(&be, State::Connected);
    if s != Some(State::Connected) {
        panic!("hostile: the back end did not connect: {s:?}");
    }
    Vif {
        fe,
        be,
        mac,
        tx_page,
        rx_page,
        tx,
        rx,
        port,
        grants: alloc::vec![tx_ref, rx_ref],
        pages: Vec::new(),
    }
}

/// An ARP message from `mac`/`ip` (who-has 10.0.2.2, or a reply telling `ip` is at
/// `mac` when `reply`), as 42 bytes.
fn arp(src_mac: [u8; 6], mac: [u8; 6], ip: [u8; 4], reply: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[
        0x08,
        0x06,
        0,
        1,
        0x08,
        0,
        6,
        4,
        0,
        if reply { 2 } else { 1 },
    ]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 0, 2, 2]);
    f
}

/// A page holding `frame` at 0, granted read-only to dom0.
fn data_page(v: &mut Vif, frame: &[u8]) -> u32 {
    let mut page = OwnedPage::new().expect("a page");
    page.with_bytes(|b| b[..frame.len()].copy_from_slice(frame));
    let gref = grant::grant(0, page.mfn(), true).expect("a grant entry");
    v.grants.push(gref);
    v.pages.push(page);
    gref
}

fn slot(id: u16, gref: u32, offset: u16, size: u16, flags: TxFlags) -> netif_tx_request {
    netif_tx_request {
        gref,
        offset,
        flags: flags.0,
        id,
        size,
    }
}

/// Pushes `slots` on the tx ring and kicks dom0.
fn send(v: &mut Vif, slots: &[netif_tx_request]) {
    let pages = [v.tx_page.page()];
    let mut ring = TxRing::resume(&pages, v.tx);
    for s in slots {
        let _ = ring.put_request(s);
    }
    ring.push_requests();
    v.tx = ring.state();
    let _ = hypercall::evtchn_send(v.port);
}

/// The tx responses that came within ~2 s (waiting for `want` of them).
fn answers(v: &mut Vif, want: usize) -> Vec<i16> {
    let mut got = Vec::new();
    for _ in 0..200 {
        let pages = [v.tx_page.page()];
        let mut ring = TxRing::resume(&pages, v.tx);
        while let Ok(Some(r)) = ring.get_response() {
            got.push(r.status);
        }
        v.tx = ring.state();
        if got.len() >= want {
            break;
        }
        executor::block_on(timer::sleep(Duration::from_millis(10)));
    }
    got
}

/// A dropped packet, then a valid one: what each was answered, and that the vif lives.
fn dropped(name: &str, v: &mut Vif, bad: &[netif_tx_request]) {
    send(v, bad);
    let first = answers(v, bad.len());
    let frame = arp(v.mac, v.mac, MY_IP, false);
    let g = data_page(v, &frame);
    send(v, &[slot(60, g, 0, frame.len() as u16, TxFlags::default())]);
    let then = answers(v, 1);
    println!(
        "hostile: {name}: answered {first:?}, then a valid packet answered {then:?}; back end {:?}",
        state(&v.be)
    );
}

/// What the back end did after a fatal slot, and whether our grants came free.
fn disconnected(name: &str, v: &Vif) {
    crate::store::report_closed(name, &v.be, &v.grants);
}

pub fn attack(name: &str) {
    let mut v = connect();
    println!("hostile: {name}: connected to {}", v.be);
    let frame = arp(v.mac, v.mac, MY_IP, false);
    let len = frame.len() as u16;
    let more = TxFlags::MORE_DATA;
    match name {
        "net-cross-page" => {
            let g = data_page(&mut v, &frame);
            send(&mut v, &[slot(1, g, 4000, 200, TxFlags::default())]);
            disconnected(name, &v);
        }
        "net-zero-length" => {
            let g = data_page(&mut v, &frame);
            dropped(name, &mut v, &[slot(2, g, 0, 0, TxFlags::default())]);
        }
        "net-oversized" => {
            let g = data_page(&mut v, &frame);
            dropped(
                name,
                &mut v,
                &[
                    slot(3, g, 0, len, more),
                    slot(4, g, 0, 900, TxFlags::default()),
                ],
            );
        }
        "net-too-many-slots" => {
            let g = data_page(&mut v, &frame);
            let mut slots = alloc::vec![slot(5, g, 0, 22 * 2, more)];
            for i in 0..21u16 {
                let f = if i == 20 { TxFlags::default() } else { more };
                slots.push(slot(6 + i, g, 0, 2, f));
            }
            send(&mut v, &slots);
            disconnected(name, &v);
        }
        "net-bad-grant" => {
            let never = v.grants[1] + 900;
            dropped(name, &mut v, &[slot(30, never, 0, len, TxFlags::default())]);
        }
        "net-gso-zero" | "net-bad-extra" => {
            let g = data_page(&mut v, &frame);
            let mut e = ExtraInfo::gso(Gso {
                kind: GsoKind::TcpV4,
                size: 1448,
            });
            if name == "net-gso-zero" {
                e.data[0] = 0;
                e.data[1] = 0;
            } else {
                e.kind = 7;
            }
            send(
                &mut v,
                &[slot(31, g, 0, len, TxFlags::EXTRA_INFO), e.as_tx_slot()],
            );
            disconnected(name, &v);
        }
        "net-ring-corrupt" => {
            v.tx_page.page().store_u32(0, 1000);
            let _ = hypercall::evtchn_send(v.port);
            disconnected(name, &v);
        }
        "net-rx-flood" => {
            // One buffer posted honestly, then a producer index far beyond the ring.
            let pages = [v.rx_page.page()];
            let mut ring = RxRing::resume(&pages, v.rx);
            let page = OwnedPage::new().expect("a page");
            let g = grant::grant(0, page.mfn(), false).expect("a grant entry");
            v.grants.push(g);
            v.pages.push(page);
            let _ = ring.put_request(&netif_rx_request {
                id: 0,
                pad: 0,
                gref: g,
            });
            ring.push_requests();
            v.rx = ring.state();
            v.rx_page.page().store_u32(0, 1000);
            let _ = hypercall::evtchn_send(v.port);
            disconnected(name, &v);
        }
        "net-spoof" => {
            let victim = VICTIM_MAC;
            let mut slots = Vec::new();
            for i in 0..10u16 {
                // The victim's MAC as source; then our MAC, the victim's IP.
                let f = arp(victim, victim, VICTIM_IP, true);
                let g = data_page(&mut v, &f);
                slots.push(slot(40 + i, g, 0, f.len() as u16, TxFlags::default()));
                let f = arp(v.mac, v.mac, VICTIM_IP, true);
                let g = data_page(&mut v, &f);
                slots.push(slot(50 + i, g, 0, f.len() as u16, TxFlags::default()));
            }
            send(&mut v, &slots);
            let got = answers(&mut v, 20);
            println!(
                "hostile: net-spoof: sent 20 forged frames, answered {}: all taken by netback",
                got.len()
            );
        }
        _ => panic!("hostile: unknown attack {name:?}"),
    }
    write(&format!("{}/state", v.fe), "6");
}
