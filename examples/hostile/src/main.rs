//! hostile: a domU that attacks dom0's xenstored and the grant tables, one attack per
//! boot (its command line names it), and reports what it was answered. The scenarios
//! run it beside a well-behaved domU (examples/xsdemo) to show that dom0 survives and
//! keeps serving everyone else.
//!
//! Attacks on xenstore (through the store ring, byte by byte where needed):
//! - `xs-foreign=N`: read and write domain N's nodes and dom0's: `EACCES`.
//! - `xs-malformed`: a request of unknown type, a path without its NUL, a path with
//!   forbidden characters, an unknown transaction: each gets its error reply, and the
//!   connection still answers a good request afterwards.
//! - `xs-oversized`: a header announcing 5000 bytes (more than `XENSTORE_PAYLOAD_MAX`):
//!   dom0 stops serving our ring and says why in its `error` field.
//! - `xs-ring-corrupt`: a request producer index 5000 bytes ahead of the consumer:
//!   likewise.
//!
//! Attacks on grants:
//! - `gnt-map-foreign=N`: map domain N's console grant (meant for dom0): refused.
//! - `gnt-unmap-twice`: map our own grant, unmap it, unmap it again: `bad_handle`.
//! - `gnt-not-owned`: grant a frame we do not own, then map it: refused.
//! - `gnt-free-mapped`: give back (decrease_reservation) our console page, which dom0
//!   has mapped, then scribble on the ring: dom0 is unaffected, and the frame is not
//!   handed to anyone while dom0 maps it (host tests check that part).
//!
//! Attacks on blkback (`blk-*`, given a disk): see `blk.rs`.
//! Attacks on netback and the bridge (`net-*`, given a vif): see `net.rs`.
//!
//! `dev-access`: what only dom0 may do with the machine's devices (beside a dom0 that
//! drives a virtio disk): map the first virtio-mmio page, map GSI 47 as a pirq, bind
//! pirq 47, EOI it. Xen answers -EPERM, -EPERM, -EPERM, -EINVAL.
#![no_std]
#![no_main]

extern crate alloc;

mod blk;
mod net;
mod store;

use alloc::format;
use alloc::vec::Vec;
use libos::hypercall::{self, GrantError};
use libos::platform::{page_at, OwnedPage};
use libos::xenbus::{self, Store, NO_TX};
use libos::{executor, grant, println, start_info, vmap};
use pv_core::byte_ring::ByteRing;
use pv_core::page::SharedPage;
use pv_core::xs_wire::{self, Framer, MsgType};
use xen_sys::{XENMEM_decrease_reservation, XENSTORE_PAYLOAD_MAX};

fn store_page() -> SharedPage<'static> {
    let si = start_info::get().raw();
    let va = libos::paging::pfn_to_virt(libos::paging::mfn_to_pfn(si.store_mfn));
    // SAFETY: our own store page, mapped in the linear region for our lifetime.
    unsafe { page_at(va) }
}

/// Sends raw bytes on the store ring and waits (polling, at most ~1 s of yields) for
/// one reply; `None` if none came.
fn raw_request(bytes: &[u8]) -> Option<xs_wire::Message> {
    let page = store_page();
    let port = start_info::get().raw().store_evtchn;
    let mut rest = bytes;
    let mut framer = Framer::new();
    for _ in 0..200_000 {
        if !rest.is_empty() {
            let n = ByteRing::STORE_REQ.write(&page, rest).ok()?;
            rest = &rest[n..];
            let _ = hypercall::evtchn_send(port);
        }
        let mut buf = [0u8; 256];
        let n = ByteRing::STORE_RSP.read(&page, &mut buf).ok()?;
        if n > 0 {
            let _ = hypercall::evtchn_send(port);
            let mut input = &buf[..n];
            if let Ok(Some(m)) = framer.feed(&mut input) {
                return Some(m);
            }
        }
        hypercall::sched_yield();
    }
    None
}

fn describe(m: Option<xs_wire::Message>) -> alloc::string::String {
    match m {
        None => "no answer".into(),
        Some(m) if m.header.ty == MsgType::Error => format!(
            "error {}",
            core::str::from_utf8(&m.payload)
                .unwrap_or("?")
                .trim_end_matches('\0')
        ),
        Some(m) => format!("{:?} reply of {} bytes", m.header.ty, m.payload.len()),
    }
}

fn store_error() -> u32 {
    store_page().load_u32(core::mem::offset_of!(
        xen_sys::xenstore_domain_interface,
        error
    ))
}

/// Takes the store ring from libos: its power control stops reading it, and what its
/// watch of `control/shutdown` left there (the reply, the first event) is read and
/// dropped, until the ring has been quiet for 100 ms.
fn take_store_ring() {
    libos::control::stop();
    let page = store_page();
    let port = start_info::get().raw().store_evtchn;
    let mut quiet_since = libos::time::now();
    while libos::time::now() - quiet_since < core::time::Duration::from_millis(100) {
        let mut buf = [0u8; 256];
        if ByteRing::STORE_RSP.read(&page, &mut buf).unwrap_or(0) > 0 {
            let _ = hypercall::evtchn_send(port);
            quiet_since = libos::time::now();
        }
        hypercall::sched_yield();
    }
}

fn xs_malformed() {
    take_store_ring();
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "unknown type 999",
            xs_wire::encode(MsgType::Unknown(999), 1, 0, b"x\0").unwrap(),
        ),
        (
            "path without NUL",
            xs_wire::encode(MsgType::Read, 2, 0, b"name").unwrap(),
        ),
        (
            "bad characters",
            xs_wire::encode(MsgType::Read, 3, 0, b"na*me\x01\0").unwrap(),
        ),
        (
            "unknown transaction",
            xs_wire::encode(MsgType::Read, 4, 77, b"name\0").unwrap(),
        ),
    ];
    for (what, bytes) in cases {
        println!(
            "hostile: xs-malformed: {what}: {}",
            describe(raw_request(&bytes))
        );
    }
    let good = xs_wire::encode(MsgType::Read, 5, 0, b"name\0").unwrap();
    println!(
        "hostile: xs-malformed: then a good read: {}",
        describe(raw_request(&good))
    );
}

fn xs_disconnect(mode: &str) {
    take_store_ring();
    if mode == "xs-oversized" {
        let mut hdr = xs_wire::encode(MsgType::Write, 1, 0, b"").unwrap();
        hdr[12..16].copy_from_slice(&(XENSTORE_PAYLOAD_MAX + 904).to_ne_bytes());
        println!(
            "hostile: xs-oversized: sent a header announcing {} bytes: {}",
            XENSTORE_PAYLOAD_MAX + 904,
            describe(raw_request(&hdr))
        );
    } else {
        let page = store_page();
        let prod = core::mem::offset_of!(xen_sys::xenstore_domain_interface, req_prod);
        let cons = core::mem::offset_of!(xen_sys::xenstore_domain_interface, req_cons);
        page.store_u32(prod, page.load_u32(cons).wrapping_add(5000));
        let _ = hypercall::evtchn_send(start_info::get().raw().store_evtchn);
        let good = xs_wire::encode(MsgType::Read, 9, 0, b"name\0").unwrap();
        println!(
            "hostile: xs-ring-corrupt: req_prod set 5000 ahead; a read then: {}",
            describe(raw_request(&good))
        );
    }
    // dom0 says why it stopped serving us in the ring's error field: sleep (so dom0
    // runs) until it has.
    for _ in 0..100 {
        if store_error() != 0 {
            break;
        }
        executor::block_on(libos::timer::sleep(core::time::Duration::from_millis(10)));
    }
    println!("hostile: {mode}: store error field now {}", store_error());
}

fn dev_access() {
    fn answer<T>(r: Result<T, hypercall::XenError>) -> alloc::string::String {
        match r {
            Ok(_) => "allowed".into(),
            Err(e) => format!("{e}"),
        }
    }
    let mmio = pv_core::microvm::transport(23);
    let va = vmap::alloc().expect("a window slot");
    let pte = (mmio & !0xfff) | 0x67;
    let map = hypercall::update_va_mapping(va, pte, xen_sys::UVMF_INVLPG);
    println!(
        "hostile: dev-access: map the virtio-mmio page of {mmio:#x}: {}",
        answer(map)
    );
    let map_pirq = hypercall::map_gsi_pirq(47);
    println!("hostile: dev-access: map_pirq GSI 47: {}", answer(map_pirq));
    let bind = hypercall::evtchn_bind_pirq(47);
    println!("hostile: dev-access: bind_pirq 47: {}", answer(bind));
    println!(
        "hostile: dev-access: eoi 47: {}",
        answer(hypercall::pirq_eoi(47))
    );
}

fn gnt_result<T>(r: Result<T, GrantError>) -> alloc::string::String {
    match r {
        Ok(_) => "okay".into(),
        Err(e) => format!("{e}"),
    }
}

fn xs() -> &'static xenbus::Client<xenbus::GuestRing> {
    xenbus::store().expect("hostile: a store ring")
}

fn my_domid() -> u16 {
    executor::block_on(xs().read_string(NO_TX, "domid"))
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("hostile: domid from xenstore")
}

fn main() {
    let cmdline = start_info::get().cmdline();
    let mode = cmdline.split_whitespace().next().unwrap_or("");
    let (name, arg) = mode.split_once('=').unwrap_or((mode, ""));
    let n: u16 = arg.parse().unwrap_or(0);
    match name {
        "xs-foreign" => {
            for path in [
                format!("/local/domain/{n}/name"),
                format!("/local/domain/{n}/data/greeting"),
                "/local/domain/0/name".into(),
            ] {
                let r = executor::block_on(xs().read(NO_TX, &path));
                let w = executor::block_on(xs().write(NO_TX, &path, b"owned"));
                println!(
                    "hostile: xs-foreign: read {path}: {:?}; write: {:?}",
                    r.err(),
                    w.err()
                );
            }
            let own = executor::block_on(xs().write(NO_TX, "data/still-served", b"yes"));
            println!("hostile: xs-foreign: our own write afterwards: {own:?}");
        }
        "xs-malformed" => xs_malformed(),
        "xs-oversized" | "xs-ring-corrupt" => xs_disconnect(name),
        "gnt-map-foreign" => {
            let va = vmap::alloc().expect("a window slot");
            let r = hypercall::map_grant_ref(va, n, xen_sys::GNTTAB_RESERVED_CONSOLE, false);
            println!(
                "hostile: gnt-map-foreign: map d{n}'s console grant: {}",
                gnt_result(r)
            );
        }
        "gnt-unmap-twice" => {
            let me = my_domid();
            let page = OwnedPage::new().expect("a page");
            let gref = grant::grant(me, page.mfn(), false).expect("a grant entry");
            let va = vmap::alloc().expect("a window slot");
            let m = hypercall::map_grant_ref(va, me, gref, false);
            println!("hostile: gnt-unmap-twice: map own grant: {}", gnt_result(m));
            if let Ok(m) = m {
                let u1 = hypercall::unmap_grant_ref(va, m.handle);
                let u2 = hypercall::unmap_grant_ref(va, m.handle);
                println!(
                    "hostile: gnt-unmap-twice: first unmap: {}; second: {}",
                    gnt_result(u1),
                    gnt_result(u2)
                );
            }
        }
        "gnt-not-owned" => {
            let me = my_domid();
            // Machine frame 1 lies in low memory, which the hypervisor keeps.
            let foreign = 1;
            let gref = grant::grant(me, foreign, false).expect("a grant entry");
            let va = vmap::alloc().expect("a window slot");
            let r = hypercall::map_grant_ref(va, me, gref, false);
            println!(
                "hostile: gnt-not-owned: map a grant of frame {:#x}: {}",
                foreign,
                gnt_result(r)
            );
        }
        "gnt-free-mapped" => {
            // SAFETY: `console` is a union whose `domU` member is a PV guest's view.
            let mfn = unsafe { start_info::get().raw().console.domU.mfn };
            let mut frames = [mfn];
            let r = hypercall::reservation(XENMEM_decrease_reservation, &mut frames, 1, 0);
            let _ = hypercall::console_write(
                format!(
                    "hostile: gnt-free-mapped: decrease_reservation of the console frame: {r:?}\n"
                )
                .as_bytes(),
            );
            let va = libos::paging::pfn_to_virt(libos::paging::mfn_to_pfn(mfn));
            if libos::paging::is_mapped(va) {
                // SAFETY: still mapped in our linear region (checked just above).
                let page = unsafe { page_at(va) };
                page.store_u32(
                    core::mem::offset_of!(xen_sys::xencons_interface, out_prod),
                    u32::MAX,
                );
            }
            let _ = hypercall::console_write(b"hostile: gnt-free-mapped: scribbled on the ring\n");
        }
        _ if name.starts_with("blk-") => blk::attack(name, my_domid()),
        _ if name.starts_with("net-") => net::attack(name),
        "dev-access" => dev_access(),
        _ => panic!("hostile: unknown attack {mode:?}"),
    }
    println!("hostile: done");
}

libos::main!(main);
