//! dom0's network: netback for every vif the manifest gave a domU, and the L2 bridge
//! between them and the machine's NIC (`drivers_back::net`: `nodes::create`,
//! `handshake::connect`, `NetBack::transmit`/`receive`, `bridge::Bridge`).
//!
//! Each vif is one of dom0's tasks (`tasks`): it moves what its front end sent into the
//! bridge (filtered by its MAC and IP there) and what the bridge queued for it into
//! the front end's rx buffers. dom0's loop pumps the NIC: received frames into the
//! bridge as the uplink port, the uplink's queue out to the NIC.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Poll;

use drivers_back::net::bridge::{Bridge, Offloads, PortConfig, PortId};
use drivers_back::net::handshake;
use drivers_back::net::nodes::{self, Vif};
use libos::events;
use libos::platform::Xen;
use libos::println;
use pv_core::netif::{format_mac, parse_mac};
use xenbus::device::read_state;
use xenbus::{State, Store};

use crate::tasks::{now, yield_now, Tasks};
use crate::vbd::Dom0Store;
use crate::virtio_net::VirtioNic;

/// A frame entered the bridge since the loop last asked ([`forwarded`]).
static FORWARDED: AtomicBool = AtomicBool::new(false);

/// Whether a frame entered the bridge since the last call: its destination's task
/// may have been polled before it came, so dom0's loop goes round once more.
pub fn forwarded() -> bool {
    FORWARDED.swap(false, Ordering::Relaxed)
}

/// Copies of one domU's frames for the NIC (`mirror=DOMID`), so that the NIC's pcap
/// (`cargo xtask run --pcap`) shows that vif's traffic too: each copy carries an 802.1Q
/// tag of VLAN [`MIRROR_VLAN`] + the domain id, which QEMU's user network ignores and
/// Wireshark shows (`vlan.id == 101`).
pub struct Mirror {
    domid: u16,
    queue: RefCell<VecDeque<Vec<u8>>>,
    dropped: core::cell::Cell<u64>,
}

/// The VLAN of domain 0's mirror; domain N's is this + N.
pub const MIRROR_VLAN: u16 = 100;
/// Copies waiting for the NIC at most (more are dropped, counted).
const MIRROR_QUEUE: usize = 512;

impl Mirror {
    fn copy(&self, frame: &[u8]) {
        if frame.len() < 14 {
            return;
        }
        let mut q = self.queue.borrow_mut();
        if q.len() >= MIRROR_QUEUE {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        let mut tagged = Vec::with_capacity(frame.len() + 4);
        tagged.extend_from_slice(&frame[..12]);
        tagged.extend_from_slice(&[0x81, 0x00]);
        tagged.extend_from_slice(&(MIRROR_VLAN + self.domid).to_be_bytes());
        tagged.extend_from_slice(&frame[12..]);
        q.push_back(tagged);
    }
}

/// Frames queued to one port at most.
pub const PORT_QUEUE: usize = 256;

/// What the manifest gave a domU (`vifs=DOMID|MAC|IP|GATEWAY,...`; IP, as `A.B.C.D/len`,
/// and GATEWAY may be empty: DHCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifSpec {
    pub domid: u16,
    pub id: u32,
    pub mac: [u8; 6],
    pub ip: Option<String>,
    pub gateway: Option<String>,
}

/// Parses dom0's `vifs=` list; a domU's vifs are numbered in list order.
pub fn parse_vifs(list: &str) -> Result<Vec<VifSpec>, String> {
    let mut out: Vec<VifSpec> = Vec::new();
    for entry in list.split(',').filter(|e| !e.is_empty()) {
        let f: Vec<&str> = entry.split('|').collect();
        let [domid, mac, ip, gw] = f[..] else {
            return Err(format!("vifs entry {entry:?}: want DOMID|MAC|IP|GATEWAY"));
        };
        let domid: u16 = domid
            .parse()
            .map_err(|_| format!("vifs entry {entry:?}: domain id {domid:?}"))?;
        let mac = parse_mac(mac).ok_or_else(|| format!("vifs entry {entry:?}: MAC {mac:?}"))?;
        let addr = |s: &str, what: &str| -> Result<Option<String>, String> {
            if s.is_empty() {
                return Ok(None);
            }
            let a = s.split('/').next().unwrap_or("");
            if a.split('.').count() != 4 || a.split('.').any(|o| o.parse::<u8>().is_err()) {
                return Err(format!("vifs entry {entry:?}: {what} {s:?}"));
            }
            Ok(Some(String::from(s)))
        };
        let id = out.iter().filter(|v| v.domid == domid).count() as u32;
        out.push(VifSpec {
            domid,
            id,
            mac,
            ip: addr(ip, "IP")?,
            gateway: addr(gw, "gateway")?,
        });
    }
    Ok(out)
}

impl VifSpec {
    fn vif(&self) -> Vif<'_> {
        Vif {
            front: self.domid,
            id: self.id,
            mac: self.mac,
            ip: self.ip.as_deref(),
            bridge: "xenbr0",
        }
    }

    /// The IPv4 address the bridge pins this vif to.
    fn ipv4(&self) -> Option<[u8; 4]> {
        let ip = self.ip.as_deref()?.split('/').next()?;
        let mut out = [0u8; 4];
        for (o, s) in out.iter_mut().zip(ip.split('.')) {
            *o = s.parse().ok()?;
        }
        Some(out)
    }
}

/// The bridge, the NIC and the vif tasks' shared state.
pub struct Net {
    pub bridge: &'static RefCell<Bridge>,
    mirror: Option<&'static Mirror>,
    nic: Option<(VirtioNic, PortId)>,
    /// A frame for the NIC that did not fit its queue.
    nic_held: Option<drivers_back::net::Frame>,
}

impl Net {
    /// The bridge, with the NIC as its uplink if there is one, mirroring domain
    /// `mirror`'s vifs to the NIC if asked.
    pub fn new(nic: Option<VirtioNic>, mirror: Option<u16>) -> Net {
        let bridge: &'static RefCell<Bridge> =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(RefCell::new(Bridge::new())));
        let nic = nic.map(|n| {
            let port = bridge.borrow_mut().add_port(PortConfig {
                mac: None,
                ip: None,
                accepts: Offloads::default(),
                queue: PORT_QUEUE,
            });
            (n, port)
        });
        let mirror = mirror.map(|domid| {
            &*alloc::boxed::Box::leak(alloc::boxed::Box::new(Mirror {
                domid,
                queue: RefCell::new(VecDeque::new()),
                dropped: core::cell::Cell::new(0),
            }))
        });
        Net {
            bridge,
            mirror,
            nic,
            nic_held: None,
        }
    }

    /// Creates vif `spec` (its nodes, and `gateway`, our extension) and starts serving
    /// it as a task.
    pub fn start(&self, tasks: &mut Tasks, store: &'static Dom0Store, spec: &VifSpec) {
        let vif = spec.vif();
        let r = now(async {
            nodes::create(store, 0, &vif).await?;
            if let Some(gw) = &spec.gateway {
                let path = format!("{}/gateway", vif.back_dir(0));
                store.write_str(xenbus::NO_TX, &path, gw).await?;
            }
            Ok::<(), xenbus::XsError>(())
        });
        if !matches!(r, Some(Ok(()))) {
            println!(
                "dom0: d{} vif {}: nodes not written: {r:?}",
                spec.domid, spec.id
            );
            return;
        }
        let mirror = self.mirror.filter(|m| m.domid == spec.domid);
        tasks.spawn(serve(store, self.bridge, mirror, spec.clone()));
    }

    /// Moves frames between the NIC and the bridge; returns whether it moved any.
    pub fn pump_nic(&mut self) -> bool {
        let Some((nic, port)) = self.nic.as_mut() else {
            return false;
        };
        let port = *port;
        if events::take_latched(nic.port()) {
            nic.ack();
        }
        let bridge = self.bridge;
        let got = nic.receive(|frame| {
            let _ = bridge.borrow_mut().input(
                port,
                drivers_back::net::Frame {
                    data: frame.to_vec(),
                    meta: Default::default(),
                },
            );
        });
        let mut sent = 0;
        loop {
            let f = match self.nic_held.take() {
                Some(f) => f,
                None => match bridge.borrow_mut().pop(port) {
                    Some(f) => f,
                    None => break,
                },
            };
            if nic.transmit(&f.data).is_err() {
                self.nic_held = Some(f);
                break;
            }
            sent += 1;
        }
        if let Some(m) = self.mirror {
            while let Some(f) = m.queue.borrow_mut().pop_front() {
                if nic.transmit(&f).is_err() {
                    m.dropped.set(m.dropped.get() + 1);
                    break;
                }
                sent += 1;
            }
        }
        if sent > 0 {
            nic.flush();
        }
        got > 0 || sent > 0
    }

    /// Removes the nodes of a domU's vifs (it is gone): their tasks see the front end
    /// vanish and close.
    pub fn remove_nodes(store: &'static Dom0Store, specs: &[VifSpec], domid: u16) {
        for s in specs.iter().filter(|s| s.domid == domid) {
            let _ = now(nodes::remove(store, 0, &s.vif()));
        }
    }
}

enum Wake {
    Work,
    FrontState,
}

/// One vif's life: connect, join the bridge, serve until the front end closes (or
/// breaks the protocol), leave the bridge, follow the front end to `Closed`.
async fn serve(
    store: &'static Dom0Store,
    bridge: &'static RefCell<Bridge>,
    mirror: Option<&'static Mirror>,
    spec: VifSpec,
) {
    let (front, id) = (spec.domid, spec.id);
    let name = format!("d{front} vif {id} ({})", format_mac(&spec.mac));
    let mut back = match handshake::connect(store, &Xen, front, id).await {
        Ok(b) => b,
        Err(e) => {
            println!("dom0: {name}: not connected: {e:?}");
            return;
        }
    };
    let f = back.features();
    println!(
        "dom0: {name} connected: {} queue(s), sg {}, gso tcpv4 {} tcpv6 {}, csum offload {}, \
         ipv6 csum {}, split event channels {}, rx-notify {}",
        back.queues(),
        f.sg,
        f.gso_tcpv4,
        f.gso_tcpv6,
        f.csum,
        f.ipv6_csum,
        f.split,
        f.rx_notify
    );
    let port = bridge.borrow_mut().add_port(PortConfig {
        mac: Some(spec.mac),
        ip: spec.ipv4(),
        accepts: Offloads {
            csum_blank: f.csum,
            ipv6_csum_blank: f.ipv6_csum,
            gso_tcpv4: f.gso_tcpv4,
            gso_tcpv6: f.gso_tcpv6,
        },
        queue: PORT_QUEUE,
    });
    let fe = format!("/local/domain/{front}/device/vif/{id}");
    let mut watch = match store.watch(&format!("{fe}/state")).await {
        Ok(w) => w,
        Err(e) => {
            println!("dom0: {name}: cannot watch the front end: {e:?}");
            bridge.borrow_mut().remove_port(port);
            back.disconnect(&Xen);
            return;
        }
    };
    let ports = back.ports();
    let mut wake = Wake::Work;
    // A packet waits for rx buffers: only the front end's event moves it on.
    let mut stalled = false;
    loop {
        match wake {
            Wake::Work => {
                let r = back
                    .transmit(&Xen, &mut |frame| {
                        if let Some(m) = mirror {
                            m.copy(&frame.data);
                        }
                        let _ = bridge.borrow_mut().input(port, frame);
                        FORWARDED.store(true, Ordering::Relaxed);
                    })
                    .and_then(|more| {
                        let waiting = back.receive(&Xen, &mut || {
                            let f = bridge.borrow_mut().pop(port);
                            if let (Some(m), Some(f)) = (mirror, &f) {
                                m.copy(&f.data);
                            }
                            f
                        })?;
                        Ok((more, waiting))
                    });
                match r {
                    Ok((more, waiting)) => {
                        stalled = waiting;
                        if more {
                            // The ring holds more than one turn's budget: the others
                            // go first, then this vif again (no event will come for
                            // what is already on the ring).
                            yield_now().await;
                            wake = Wake::Work;
                            continue;
                        }
                    }
                    Err(why) => {
                        println!("dom0: {name}: {why}: disconnected");
                        bridge.borrow_mut().remove_port(port);
                        let _ = watch.unwatch().await;
                        handshake::fail(store, &Xen, front, id, back, &why).await;
                        return;
                    }
                }
            }
            Wake::FrontState => match read_state(store, &fe).await {
                Ok(Some(State::Closing | State::Closed) | None) | Err(_) => break,
                Ok(Some(_)) => {}
            },
        }
        wake = {
            let mut next = pin!(watch.next());
            poll_fn(|cx| {
                let mut rang = false;
                for &p in &ports {
                    rang |= events::take_latched(p);
                }
                if rang || (!stalled && bridge.borrow().queued(port) > 0) {
                    return Poll::Ready(Wake::Work);
                }
                match next.as_mut().poll(cx) {
                    Poll::Ready(_) => Poll::Ready(Wake::FrontState),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
    }
    let b = bridge.borrow().stats(port);
    bridge.borrow_mut().remove_port(port);
    let _ = watch.unwatch().await;
    let c = back.counters();
    println!(
        "dom0: {name}: sent {} packets ({} bytes, {} dropped, {} bad grants, {} gso), received {} ({} bytes, {} dropped); bridge: {} in, {} filtered, {} malformed; last copy error {:?}",
        c.tx_packets, c.tx_bytes, c.tx_dropped, c.tx_bad_grant, c.tx_gso, c.rx_packets, c.rx_bytes, c.rx_dropped,
        b.rx, b.rx_filtered, b.rx_malformed, c.last_copy_error
    );
    if let Some(m) = mirror {
        println!(
            "dom0: {name}: mirrored to the NIC on VLAN {} ({} copies dropped)",
            MIRROR_VLAN + m.domid,
            m.dropped.get()
        );
    }
    if let Ok(None) | Err(_) = read_state(store, &fe).await {
        back.disconnect(&Xen);
        println!("dom0: {name}: front end gone: disconnected");
        return;
    }
    match handshake::follow_close(store, &Xen, front, id, back).await {
        Ok(()) => println!("dom0: {name} closed"),
        Err(e) => println!("dom0: {name}: close: {e:?}"),
    }
}
