//! dom0: the control domain of the seed system. It runs xenstored and the console
//! back-end (both from `drivers-back`) over the shim's grant tables and event channels,
//! and acts as the toolstack for the domUs the shim built from the boot bundle:
//!
//! - it learns of domains with `sysctl getdomaininfolist` at boot and on every
//!   `VIRQ_DOM_EXC`;
//! - for each new domU it finds its rings (`HVMOP_get_param`: store and console event
//!   channels), maps them through the grants the builder made
//!   (`GNTTAB_RESERVED_XENSTORE`/`_CONSOLE`), introduces it to xenstored, writes its
//!   standard nodes (`/local/domain/N/{name,domid,memory/target,console/*,control/*,
//!   device,data}`, with the toolstack's permissions), connects its console and
//!   unpauses it (the shim created it paused);
//! - when a domU dies, it releases it (its nodes go, watchers of `@releaseDomain` hear),
//!   prints the rest of its console and unmaps its rings;
//! - domU console output comes out on the serial line as `name| line`; serial input
//!   goes to one domU at a time, and Ctrl-A pressed three times moves it to the next;
//! - a store or console ring with impossible indices, or an oversized request,
//!   disconnects that domU's ring (the domU lives on, unheard); nothing else notices;
//! - it drives the machine's virtio-blk disks (`virtio_disk`) and serves each as a vbd
//!   to the domU the manifest gave it to (`vbd`: blkback, with the toolstack's nodes
//!   written at introduction);
//! - it drives the machine's NIC, QEMU's virtio-net (`virtio_net`), when told it has
//!   one (`nic`); `nic-selftest` proves it against QEMU's user network (`nic_selftest`:
//!   an ARP request to the gateway and a DHCPDISCOVER, both answered);
//! - it serves each domU's vifs (`vif`: netback, one task per vif) and bridges them with
//!   the NIC at L2 (`drivers_back::net::bridge`).
//!
//! Command line: `names=1:web,2:db` and `disks=1:xvda:w:vbd0,...` (DOMID:VDEV:MODE:
//! SERIAL, the virtio serial of the disk; both written by `cargo xtask bundle`), `stay` (keep
//! running when the last domU is gone; by default dom0 then powers off, ending the
//! machine), `poweroff-on=NODE` (when a domU writes `NODE` under its home, ask it to
//! power off through `control/shutdown`), `poweroff-after=SECONDS` (then ask every domU
//! to power off, as `xl shutdown -a` does), `mem-set=DOMID:KIB:SECONDS,...` (at each
//! time, write that domU's `memory/target`, as `xl mem-set` does), `top=SECONDS` (each domain's CPU share, `top`),
//! `nic` (the machine has a NIC, written by
//! `cargo xtask bundle` for a manifest's `nic`), `nic-selftest`, `vifs=DOMID|MAC|IP|GW,...`
//! (the domUs' vifs, written by `cargo xtask bundle`), `mirror=DOMID` (copy that domU's
//! vif traffic to the NIC, VLAN-tagged, for `cargo xtask run --pcap`), `dma-exchange`
//! (get every multi-page DMA block through `XENMEM_exchange`, as on a host whose memory
//! is not in order).
#![no_std]
#![no_main]

extern crate alloc;

mod nic_selftest;
mod tasks;
mod top;
mod vbd;
mod vif;
mod virtio_blk;
mod virtio_disk;
mod virtio_mmio;
mod virtio_net;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::time::Duration;

use drivers_back::console::Consoles;
use drivers_back::xenstore::{Access, Limits, Loopback, Perm, Xenstored};
use libos::events::{self, Port};
use libos::hypercall::{self, DomainInfo};
use libos::platform::{MappedGrant, Xen};
use libos::time::Instant;
use libos::{println, start_info};
use pv_core::byte_ring::ByteRing;
use pv_core::platform::{EventChannel, ForeignMemory, SharePage};
use xen_sys::{
    GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE, HVM_PARAM_CONSOLE_EVTCHN,
    HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN, VIRQ_CONSOLE, VIRQ_DOM_EXC,
};

const RINGIDX: u32 = xen_sys::XENSTORE_ERROR_RINGIDX;

/// A domU's connection to xenstored.
struct Store {
    ring: MappedGrant,
    port: Port,
}

struct Guest {
    name: String,
    store: Option<Store>,
    /// Asked to power off already (`poweroff-on`).
    asked: bool,
}

struct Dom0 {
    xs: &'static RefCell<Xenstored>,
    /// dom0's own client of that store (the back ends' and toolstack's).
    client: &'static vbd::Dom0Store,
    /// The manifest's disks, and the devices not yet given to their domU.
    disk_specs: Vec<vbd::DiskSpec>,
    disks: Vec<virtio_disk::VirtioDisk>,
    /// The back ends' tasks (vbds, vifs).
    tasks: tasks::Tasks,
    /// The manifest's vifs; the bridge and the machine's NIC (`nic` on the command
    /// line) they reach the world through.
    vif_specs: Vec<vif::VifSpec>,
    net: vif::Net,
    consoles: Consoles<Xen>,
    guests: BTreeMap<u16, Guest>,
    names: BTreeMap<u16, String>,
    poweroff_on: Option<String>,
    /// When to ask every domU to power off (`poweroff-after`), until it is done.
    poweroff_at: Option<Instant>,
    /// `mem-set`: when, which domU, what target (KiB); removed once written.
    mem_sets: Vec<(Instant, u16, u64)>,
    /// Some domU was ever introduced (dom0 powers off when the last one is gone).
    served: bool,
}

fn out(bytes: &[u8]) {
    let _ = hypercall::console_write(bytes);
}

fn perm(access: Access, domid: u16) -> Perm {
    Perm { domid, access }
}

impl Dom0 {
    fn new() -> Dom0 {
        let cmdline = start_info::get().cmdline();
        let mut names = BTreeMap::new();
        let mut poweroff_on = None;
        let mut poweroff_at = None;
        let mut mem_sets = Vec::new();
        let mut disk_specs = Vec::new();
        let mut vif_specs = Vec::new();
        let mut mirror = None;
        for w in cmdline.split_whitespace() {
            if let Some(id) = w.strip_prefix("mirror=") {
                mirror = id.parse().ok();
            }
            if let Some(list) = w.strip_prefix("vifs=") {
                match vif::parse_vifs(list) {
                    Ok(v) => vif_specs = v,
                    Err(e) => println!("dom0: {e}: no vifs served"),
                }
            }
            if let Some(list) = w.strip_prefix("disks=") {
                match vbd::parse_disks(list) {
                    Ok(d) => disk_specs = d,
                    Err(e) => println!("dom0: {e}: no disks served"),
                }
            }
            if let Some(list) = w.strip_prefix("names=") {
                for entry in list.split(',') {
                    if let Some((id, name)) = entry.split_once(':') {
                        if let Ok(id) = id.parse() {
                            names.insert(id, String::from(name));
                        }
                    }
                }
            } else if w == "dma-exchange" {
                libos::device::always_exchange(true);
            } else if let Some(node) = w.strip_prefix("poweroff-on=") {
                poweroff_on = Some(String::from(node));
            } else if let Some(list) = w.strip_prefix("mem-set=") {
                for item in list.split(',') {
                    let mut f = item.split(':').map(|x| x.parse::<u64>().ok());
                    match (f.next().flatten(), f.next().flatten(), f.next().flatten()) {
                        (Some(id), Some(kib), Some(secs)) if id > 0 && id < 0x7ff0 => {
                            if let Some(at) = Instant::now().checked_add(Duration::from_secs(secs))
                            {
                                mem_sets.push((at, id as u16, kib));
                            }
                        }
                        _ => println!("dom0: ignoring mem-set item {item:?} (DOMID:KIB:SECONDS)"),
                    }
                }
            } else if let Some(secs) = w.strip_prefix("poweroff-after=") {
                match secs.parse::<u64>() {
                    Ok(s) => poweroff_at = Instant::now().checked_add(Duration::from_secs(s)),
                    Err(_) => println!("dom0: ignoring {w:?}: not a number of seconds"),
                }
            }
        }
        let xs: &'static RefCell<Xenstored> =
            Box::leak(Box::new(RefCell::new(Xenstored::new(Limits::default()))));
        for (path, value) in [
            ("/local/domain/0/name", "Domain-0"),
            ("/local/domain/0/domid", "0"),
        ] {
            let _ = xs.borrow_mut().write(0, path, value.as_bytes());
        }
        let client = Box::leak(Box::new(xenbus::Client::new(Loopback::new(xs))));
        if cmdline.split_whitespace().any(|w| w == "dma-exchange") {
            dma_self_test();
        }
        let disks = if disk_specs.is_empty() {
            Vec::new()
        } else {
            virtio_disk::find()
        };
        let words = || cmdline.split_whitespace();
        let nic = if words().any(|w| w == "nic" || w == "nic-selftest") {
            open_nic(words().any(|w| w == "nic-selftest"))
        } else {
            None
        };
        Dom0 {
            xs,
            client,
            disk_specs,
            disks,
            tasks: tasks::Tasks::default(),
            vif_specs,
            net: vif::Net::new(nic, mirror),
            consoles: Consoles::new(Xen),
            guests: BTreeMap::new(),
            names,
            poweroff_on,
            poweroff_at,
            mem_sets,
            served: false,
        }
    }

    /// Brings in new domUs and releases dead ones.
    fn scan(&mut self) {
        let list = match hypercall::list_domains() {
            Ok(l) => l,
            Err(e) => {
                println!("dom0: getdomaininfolist failed: {e}");
                return;
            }
        };
        let gone: Vec<u16> = self
            .guests
            .keys()
            .copied()
            .filter(|id| {
                !list
                    .iter()
                    .any(|d| d.domid == *id && !d.dying && d.shutdown_reason.is_none())
            })
            .collect();
        for id in gone {
            self.release(id);
        }
        for d in &list {
            if d.domid != 0
                && !d.dying
                && d.shutdown_reason.is_none()
                && !self.guests.contains_key(&d.domid)
            {
                self.introduce(d);
            }
        }
    }

    fn introduce(&mut self, d: &DomainInfo) {
        let id = d.domid;
        let name = self
            .names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("d{id}"));
        let param = |p| hypercall::hvm_get_param(id, p).unwrap_or(0) as u32;
        let (store_port, console_port) = (
            param(HVM_PARAM_STORE_EVTCHN),
            param(HVM_PARAM_CONSOLE_EVTCHN),
        );
        let mut guest = Guest {
            name: name.clone(),
            store: None,
            asked: false,
        };
        if store_port == 0 {
            println!("dom0: d{id} ({name}) has no xenstore ring: left alone");
            self.guests.insert(id, guest);
            return;
        }
        match (
            Xen.map(id, GNTTAB_RESERVED_XENSTORE, false),
            Xen.bind_interdomain(id, store_port),
        ) {
            (Ok(ring), Ok(port)) => guest.store = Some(Store { ring, port }),
            (r, p) => println!(
                "dom0: d{id} ({name}): cannot reach its store ring: map {:?}, bind {:?}",
                r.err(),
                p.err()
            ),
        }
        if let Err(e) = self.xs.borrow_mut().introduce(id) {
            println!("dom0: xenstored refused d{id}: {e}");
        }
        self.write_nodes(d, &name, console_port);
        if console_port != 0 {
            if let Err(e) = self
                .consoles
                .connect(id, &name, GNTTAB_RESERVED_CONSOLE, console_port)
            {
                println!("dom0: d{id} ({name}): console not connected: {e:?}");
            }
        }
        self.start_vbds(id);
        for spec in self.vif_specs.iter().filter(|s| s.domid == id) {
            self.net.start(&mut self.tasks, self.client, spec);
        }
        self.tasks.poll();
        self.guests.insert(id, guest);
        self.served = true;
        match hypercall::unpause_domain(id) {
            Ok(()) => println!("dom0: d{id} ({name}) introduced, console connected, unpaused"),
            Err(e) => println!("dom0: d{id} ({name}) introduced; unpause failed: {e}"),
        }
    }

    /// The nodes a toolstack writes for a new domain (libxl's `libxl__domain_make` and
    /// `libxl__build_post`): the home readable by the domain, the subtrees it may
    /// write (`device`, `data`, `control/shutdown`, ...) owned by it.
    fn write_nodes(&mut self, d: &DomainInfo, name: &str, console_port: u32) {
        let id = d.domid;
        let home = format!("/local/domain/{id}");
        let ro = [perm(Access::None, 0), perm(Access::Read, id)];
        let rw = [perm(Access::None, id)];
        // New nodes take their parent's permissions: the home's come first.
        let mut xs = self.xs.borrow_mut();
        let _ = xs.write(0, &home, b"");
        let _ = xs.set_perms(0, &home, &ro);
        let mut w = |path: &str, value: &str| {
            if let Err(e) = xs.write(0, &format!("{home}{path}"), value.as_bytes()) {
                println!("dom0: writing {home}{path}: {e}");
            }
        };
        w("/name", name);
        w("/domid", &format!("{id}"));
        w("/memory/target", &format!("{}", d.tot_pages * 4));
        w("/console/ring-ref", &format!("{GNTTAB_RESERVED_CONSOLE}"));
        w("/console/port", &format!("{console_port}"));
        w("/console/type", "xenconsoled");
        w("/console/output", "serial");
        w("/store/ring-ref", &format!("{GNTTAB_RESERVED_XENSTORE}"));
        let store_pfn = hypercall::hvm_get_param(id, HVM_PARAM_STORE_PFN).unwrap_or(0);
        w("/store/pfn", &format!("{store_pfn}"));
        for sub in [
            "/device",
            "/data",
            "/control/shutdown",
            "/drivers",
            "/feature",
            "/attr",
            "/error",
        ] {
            let path = format!("{home}{sub}");
            let _ = xs.write(0, &path, b"");
            let _ = xs.set_perms(0, &path, &rw);
        }
        let _ = xs.mkdir(0, &format!("/local/domain/0/backend/console/{id}"));
    }

    /// Gives domU `id` the disks the manifest names for it.
    fn start_vbds(&mut self, id: u16) {
        for spec in self.disk_specs.iter().filter(|s| s.domid == id) {
            let Some(i) = self.disks.iter().position(|d| d.serial == spec.serial) else {
                println!(
                    "dom0: d{id} {}: no virtio disk with serial {} (is it in QEMU's command line?)",
                    spec.vdev, spec.serial
                );
                continue;
            };
            let disk = self.disks.swap_remove(i);
            vbd::start(&mut self.tasks, self.client, spec, disk);
        }
        self.tasks.poll();
    }

    fn release(&mut self, id: u16) {
        let Some(g) = self.guests.remove(&id) else {
            return;
        };
        if self.consoles.is_connected(id) {
            // Prints what is left in its ring, then unmaps it.
            let _ = self.consoles.disconnect(id, &mut |b| out(b));
        }
        if let Some(s) = g.store {
            Xen.close(s.port);
            if let Err(e) = Xen.unmap(s.ring) {
                println!("dom0: unmapping d{id}'s store ring: {e:?}");
            }
        }
        vbd::remove_nodes(self.client, &self.disk_specs, id);
        vif::Net::remove_nodes(self.client, &self.vif_specs, id);
        {
            let mut xs = self.xs.borrow_mut();
            xs.release(id);
            let _ = xs.rm(0, &format!("/local/domain/{id}"));
            let _ = xs.rm(0, &format!("/local/domain/0/backend/console/{id}"));
        }
        self.client.pump();
        self.tasks.poll();
        println!("dom0: d{id} ({}) is gone: released", g.name);
    }

    /// Moves bytes between each domU's store ring and xenstored. Returns whether
    /// anything moved.
    fn pump_stores(&mut self) -> bool {
        let mut moved = false;
        let mut xs = self.xs.borrow_mut();
        let mut broken = Vec::new();
        for (&id, g) in self.guests.iter_mut() {
            let Some(s) = g.store.as_ref() else { continue };
            let page = s.ring.page();
            let mut notify = false;
            let mut buf = [0u8; 1024];
            if xs.wants_input(id) {
                match ByteRing::STORE_REQ.read(&page, &mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        notify = true;
                        if let Err(e) = xs.receive(id, &buf[..n]) {
                            broken.push((id, format!("{e}"), xen_sys::XENSTORE_ERROR_PROTO));
                            continue;
                        }
                    }
                    Err(_) => {
                        broken.push((
                            id,
                            String::from("request ring indices are corrupt"),
                            RINGIDX,
                        ));
                        continue;
                    }
                }
            }
            match ByteRing::STORE_RSP.space(&page) {
                Ok(space) if space > 0 && xs.pending_output(id) > 0 => {
                    let bytes = xs.take_output(id, space);
                    match ByteRing::STORE_RSP.write(&page, &bytes) {
                        Ok(_) => notify = true,
                        Err(_) => broken.push((
                            id,
                            String::from("reply ring indices are corrupt"),
                            RINGIDX,
                        )),
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    broken.push((id, String::from("reply ring indices are corrupt"), RINGIDX))
                }
            }
            if notify {
                Xen.notify(s.port);
                moved = true;
            }
        }
        drop(xs);
        for (id, why, code) in broken {
            self.disconnect_store(id, &why, code);
        }
        moved
    }

    /// Stops serving a domU's store ring (C xenstored's `ignore_connection`): tells it
    /// why in the ring's `error` field, and unmaps the ring.
    fn disconnect_store(&mut self, id: u16, why: &str, code: u32) {
        let Some(g) = self.guests.get_mut(&id) else {
            return;
        };
        println!(
            "dom0: d{id} ({}): {why}: xenstore connection closed",
            g.name
        );
        if let Some(s) = g.store.take() {
            let error = core::mem::offset_of!(xen_sys::xenstore_domain_interface, error);
            s.ring.page().store_u32(error, code);
            Xen.close(s.port);
            let _ = Xen.unmap(s.ring);
        }
        self.xs.borrow_mut().release(id);
    }

    /// `poweroff-on`: asks domUs that wrote the node to power off.
    fn requests(&mut self) {
        let Some(node) = self.poweroff_on.clone() else {
            return;
        };
        for (&id, g) in self.guests.iter_mut() {
            if g.asked || g.store.is_none() {
                continue;
            }
            if self
                .xs
                .borrow_mut()
                .read(0, &format!("/local/domain/{id}/{node}"))
                .is_ok()
            {
                ask_poweroff(self.xs, id, g);
            }
        }
    }

    /// `poweroff-after`: once it is time, asks every domU (not asked yet) to power off.
    /// Returns the deadline still ahead, if any.
    fn timed_requests(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let xs = self.xs;
        self.mem_sets.retain(|&(at, id, kib)| {
            if now < at {
                return true;
            }
            let path = format!("/local/domain/{id}/memory/target");
            match xs.borrow_mut().write(0, &path, format!("{kib}").as_bytes()) {
                Ok(()) => println!("dom0: d{id} memory/target set to {kib} KiB"),
                Err(e) => println!("dom0: d{id}: writing {path}: {e}"),
            }
            false
        });
        let next_mem = self.mem_sets.iter().map(|&(at, _, _)| at).min();
        let Some(at) = self.poweroff_at else {
            return next_mem;
        };
        if now < at {
            return Some(next_mem.map_or(at, |m| m.min(at)));
        }
        self.poweroff_at = None;
        for (&id, g) in self.guests.iter_mut() {
            if g.asked || g.store.is_none() {
                continue;
            }
            ask_poweroff(self.xs, id, g);
        }
        next_mem
    }

    fn console_input(&mut self) {
        let mut buf = [0u8; 256];
        loop {
            let n = hypercall::console_read(&mut buf).unwrap_or(0);
            if n == 0 {
                return;
            }
            self.consoles.input(&buf[..n], &mut |b| out(b));
        }
    }
}

/// Asks domU `id` to power off through its `control/shutdown`, as xl does.
fn ask_poweroff(xs: &RefCell<Xenstored>, id: u16, g: &mut Guest) {
    g.asked = true;
    println!("dom0: asking d{id} ({}) to power off", g.name);
    let _ = xs.borrow_mut().write(
        0,
        &format!("/local/domain/{id}/control/shutdown"),
        b"poweroff",
    );
}

/// The machine's NIC, announced (and self-tested when asked).
fn open_nic(selftest: bool) -> Option<virtio_net::VirtioNic> {
    let Some(mut nic) = virtio_net::VirtioNic::find() else {
        println!("dom0: nic: no virtio-net device (is it in QEMU's command line?)");
        return None;
    };
    println!(
        "dom0: nic: virtio-net {}, {} rx buffers, features {:?}",
        virtio_net::Mac(nic.mac()),
        nic.rx_buffers(),
        nic.features()
    );
    if selftest {
        nic_selftest::run(&mut nic);
    }
    Some(nic)
}

/// A 16-page DMA block through `XENMEM_exchange`: machine-contiguous, ours, usable.
fn dma_self_test() {
    let Some((maddr, p)) = libos::device::dma_alloc(16) else {
        println!("dom0: dma-exchange: FAILED: no block");
        return;
    };
    let va = p.as_ptr() as u64;
    let contiguous = libos::device::contiguous_maddr(va, 16 * 4096) == Some(maddr);
    // SAFETY: the block is 16 pages of ours, mapped writable, used by nothing else.
    let block = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), 16 * 4096) };
    let zeroed = block.iter().all(|&b| b == 0);
    for (i, b) in block.iter_mut().enumerate() {
        *b = i as u8;
    }
    let kept = block.iter().enumerate().all(|(i, &b)| b == i as u8);
    println!(
        "dom0: dma-exchange: 16 pages at {maddr:#x}: contiguous {contiguous}, zeroed {zeroed}, \
         written and read back {kept}"
    );
    // SAFETY: from dma_alloc(16), not used after.
    unsafe { libos::device::dma_free(p, 16) };
}

fn main() {
    let si = start_info::get();
    if !si.initial_domain() {
        panic!(
            "dom0: not the initial domain (start_info flags {:#x})",
            si.flags()
        );
    }
    let stay = si.cmdline().split_whitespace().any(|w| w == "stay");
    let bind = |virq| {
        hypercall::evtchn_bind_virq(virq, 0)
            .unwrap_or_else(|e| panic!("dom0: bind_virq({virq}) failed: {e}"))
    };
    let dom_exc = bind(VIRQ_DOM_EXC);
    let console = bind(VIRQ_CONSOLE);
    let mut dom0 = Dom0::new();
    let mut top = top::Top::from_cmdline(si.cmdline());
    if dom0.poweroff_at.is_some() || !dom0.mem_sets.is_empty() {
        if let Err(e) = libos::timer::init() {
            println!("dom0: poweroff-after, mem-set: no timer ({e})");
        }
    }
    // The one-shot timer's deadline, as last set (`top` and `poweroff-after` share it).
    let mut armed = None;
    println!("dom0: xenstored and the console back-end are up; Ctrl-A three times moves console input to the next domU");
    dom0.scan();
    loop {
        events::take_activity();
        if events::take_latched(dom_exc) {
            dom0.scan();
        }
        if events::take_latched(console) {
            dom0.console_input();
        }
        let mut busy = dom0.net.pump_nic();
        busy |= dom0.pump_stores();
        if busy {
            // Only a store request can have written the node `poweroff-on` waits for.
            dom0.requests();
        }
        // Watch events for dom0's own client (a front end moved), and ring events.
        if dom0.xs.borrow().pending_output(0) > 0 {
            dom0.client.pump();
        }
        busy |= dom0.tasks.poll();
        // What the vifs put in the bridge this round goes out now, and to the vifs
        // polled before the sender next round.
        busy |= dom0.net.pump_nic();
        busy |= vif::forwarded();
        let round = dom0.consoles.poll(&mut |b| out(b));
        busy |= round.more || round.output > 0 || round.input > 0;
        for id in round.disconnected {
            println!("dom0: d{id}: console ring corrupt: disconnected");
        }
        if dom0.served && dom0.guests.is_empty() && !stay {
            println!("dom0: no domU left: powering off");
            hypercall::shutdown(xen_sys::SHUTDOWN_poweroff);
        }
        let next = [top.as_mut().map(|t| t.poll()), dom0.timed_requests()]
            .into_iter()
            .flatten()
            .min();
        if let Some(t) = next.filter(|&t| Some(t) != armed) {
            // One hypercall per new deadline, not per turn of the loop.
            armed = Some(t);
            let _ = hypercall::set_timer_op(t.as_nanos().max(1));
        }
        if !busy {
            let enabled = events::disable();
            if !events::activity() {
                let _ = hypercall::sched_block();
            }
            events::restore(enabled);
        }
    }
}

libos::main!(main);
