//! dom0's block back end: one task per vbd, from the toolstack's nodes to the orderly
//! close (`drivers_back::blk`: `nodes::create`, `handshake::connect`, `BlkBack::service`,
//! `handshake::follow_close`, `handshake::fail`), over dom0's own xenstore client.
//! Each is one of dom0's tasks (`tasks`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;

use drivers_back::blk::handshake;
use drivers_back::blk::nodes::{self, Vbd};
use drivers_back::xenstore::Loopback;
use libos::events;
use libos::platform::Xen;
use libos::println;
use pv_core::blkif::Disk;
use xenbus::device::read_state;
use xenbus::{Client, State, Store};

use crate::tasks::{now, yield_now, Tasks};
use crate::virtio_disk::VirtioDisk;

pub type Dom0Store = Client<Loopback<'static>>;

/// What the manifest gave a domU (`disks=DOMID:VDEV:MODE:SERIAL,...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    pub domid: u16,
    pub vdev: String,
    pub id: u32,
    pub readonly: bool,
    pub serial: String,
}

impl DiskSpec {
    /// The vbd as the toolstack's nodes describe it.
    fn vbd(&self) -> Vbd<'_> {
        Vbd {
            front: self.domid,
            id: self.id,
            vdev: &self.vdev,
            readonly: self.readonly,
            params: &self.serial,
        }
    }
}

/// Parses dom0's `disks=` list.
pub fn parse_disks(list: &str) -> Result<Vec<DiskSpec>, String> {
    let mut out = Vec::new();
    for entry in list.split(',').filter(|e| !e.is_empty()) {
        let f: Vec<&str> = entry.split(':').collect();
        let [domid, vdev, mode, serial] = f[..] else {
            return Err(format!(
                "disks entry {entry:?}: want DOMID:VDEV:MODE:SERIAL"
            ));
        };
        let domid = domid
            .parse()
            .map_err(|_| format!("disks entry {entry:?}: domain id {domid:?}"))?;
        let id = xenbus::vdev::parse(vdev).map_err(|e| format!("disks entry {entry:?}: {e}"))?;
        let readonly = match mode {
            "r" => true,
            "w" => false,
            _ => return Err(format!("disks entry {entry:?}: mode {mode:?} (r or w)")),
        };
        out.push(DiskSpec {
            domid,
            vdev: String::from(vdev),
            id,
            readonly,
            serial: String::from(serial),
        });
    }
    Ok(out)
}

/// Creates vbd `spec` (its nodes) and starts serving it from `disk`, as a task.
pub fn start(tasks: &mut Tasks, store: &'static Dom0Store, spec: &DiskSpec, disk: VirtioDisk) {
    match now(nodes::create(store, 0, &spec.vbd())) {
        Some(Ok(())) => {}
        other => {
            println!(
                "dom0: d{} vbd {}: nodes not written: {other:?}",
                spec.domid, spec.vdev
            );
            return;
        }
    }
    let info = Disk {
        sectors: 0,
        readonly: spec.readonly || disk.readonly(),
        flush: true,
        barrier: true,
        discard: disk.discards(),
        max_indirect_segments: 256,
    };
    let (front, id, vdev) = (spec.domid, spec.id, spec.vdev.clone());
    tasks.spawn(serve(store, front, id, vdev, disk, info));
}

/// Removes the nodes of a domU's vbds (it is gone): their tasks see the front end
/// vanish and close.
pub fn remove_nodes(store: &'static Dom0Store, specs: &[DiskSpec], domid: u16) {
    for s in specs.iter().filter(|s| s.domid == domid) {
        let _ = now(nodes::remove(store, 0, &s.vbd()));
    }
}

enum Wake {
    Ring,
    FrontState,
}

/// One vbd's life: connect, serve until the front end closes (or breaks the protocol),
/// follow it to `Closed`.
async fn serve(
    store: &'static Dom0Store,
    front: u16,
    id: u32,
    vdev: String,
    disk: VirtioDisk,
    info: Disk,
) {
    let name = format!("d{front} vbd {id} ({vdev}, {})", disk.serial);
    let mut back = match handshake::connect(store, &Xen, front, id, disk, info).await {
        Ok(b) => b,
        Err(e) => {
            println!("dom0: {name}: not connected: {e:?}");
            return;
        }
    };
    let (pages, kept, offer) = back.negotiated();
    println!(
        "dom0: {name} connected{}: {} queue(s) of {pages}-page rings, persistent grants {}, \
         indirect {}, flush {}, barrier {}, discard {}",
        if info.readonly { " (read-only)" } else { "" },
        back.queues(),
        if kept > 0 { "yes" } else { "no" },
        offer.max_indirect_segments,
        offer.flush,
        offer.barrier,
        offer.discard,
    );
    let fe = format!("/local/domain/{front}/device/vbd/{id}");
    let mut watch = match store.watch(&format!("{fe}/state")).await {
        Ok(w) => w,
        Err(e) => {
            println!("dom0: {name}: cannot watch the front end: {e:?}");
            let _ = back.disconnect(&Xen);
            return;
        }
    };
    let ports = back.ports();
    let mut wake = Wake::Ring;
    loop {
        match wake {
            Wake::Ring => {
                yield_now().await;
                let r = back.service(&Xen);
                if let Err(why) = r {
                    println!("dom0: {name}: {why}: disconnected");
                    let _ = watch.unwatch().await;
                    handshake::fail(store, &Xen, front, id, back, &why).await;
                    return;
                }
            }
            // The front end may still be on its way to Connected; it leaves by
            // Closing or Closed, or by vanishing.
            Wake::FrontState => match read_state(store, &fe).await {
                Ok(Some(State::Closing | State::Closed) | None) | Err(_) => break,
                Ok(Some(_)) => {}
            },
        }
        wake = {
            let mut next = pin!(watch.next());
            poll_fn(|cx| {
                // Every queue's latch consumed: one service looks at every ring.
                let mut rang = false;
                for &port in &ports {
                    rang |= events::take_latched(port);
                }
                if rang {
                    return Poll::Ready(Wake::Ring);
                }
                match next.as_mut().poll(cx) {
                    Poll::Ready(_) => Poll::Ready(Wake::FrontState),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
    }
    let _ = watch.unwatch().await;
    let c = back.counters();
    println!(
        "dom0: {name}: served {} requests (indirect {}, flush {}, barrier {}, discard {}, failed {}; per queue {:?})",
        c.requests, c.indirect, c.flushes, c.barriers, c.discards, c.failed, back.served_per_queue()
    );
    if let Ok(None) | Err(_) = read_state(store, &fe).await {
        // The front end's domain is gone (its nodes with it): nothing to follow.
        let _ = back.disconnect(&Xen);
        println!("dom0: {name}: front end gone: disconnected");
        return;
    }
    match handshake::follow_close(store, &Xen, front, id, back).await {
        Ok(_disk) => println!("dom0: {name} closed"),
        Err(e) => println!("dom0: {name}: close: {e:?}"),
    }
}
