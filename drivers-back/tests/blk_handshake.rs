//! The vbd handshake end to end: blkfront's and blkback's xenbus sides negotiate
//! through the real xenstored (the domU over its store ring on the in-memory
//! platform, dom0 over the loopback), then I/O flows over the ring they agreed on.
//! A front end that publishes nonsense gets the vbd closed with an `error` node.

mod common;
use common::world::World;
use common::ALL_FEATURES as INFO;

use drivers_back::blk::handshake;
use drivers_back::blk::nodes::{self, Vbd};
use drivers_back::blk::{BlockDevice, MemDisk};
use drivers_back::xenstore::Loopback;
use drivers_front::blkfront::{self, Op, Status};
use pv_core::platform::{EventChannel, ForeignMemory, GrantTable, SharePage};
use xenbus::transport::RingTransport;
use xenbus::{Client, State, Store, NO_TX};

const FRONT: &str = "/local/domain/1/device/vbd/51712";
const BACK: &str = "/local/domain/0/backend/vbd/1/51712";

/// The toolstack's nodes for vbd 51712 of domain 1, as xl writes them.
fn toolstack(w: &World, dom0: &impl Store) {
    let vbd = Vbd {
        front: 1,
        id: 51712,
        vdev: "xvda",
        readonly: false,
        params: "memory",
    };
    assert_eq!(
        (vbd.front_dir().as_str(), vbd.back_dir(0).as_str()),
        (FRONT, BACK)
    );
    w.toolstack(dom0, async move { nodes::create(dom0, 0, &vbd).await });
}

#[test]
fn front_and_back_negotiate_and_io_flows() {
    let w = World::new(FRONT, BACK);
    let dom0 = Client::new(Loopback::new(&w.xs));
    let domu = Client::new(RingTransport::new(w.page.page(), &w.dom1, w.port));
    toolstack(&w, &dom0);
    let (front, back) = w.run(
        blkfront::connect(&domu, &w.dom1, 51712, 64),
        handshake::connect(&dom0, &w.dom0, 1, 51712, MemDisk::new(4096), INFO),
    );
    let (mut front, mut back) = (front.unwrap(), back.unwrap());
    let mut xs = w.xs.borrow_mut();
    assert_eq!(xs.read(0, &format!("{FRONT}/state")).unwrap(), b"4");
    assert_eq!(xs.read(0, &format!("{BACK}/state")).unwrap(), b"4");
    // Both offered four ring pages or more: four, in ring-ref0..3.
    assert_eq!(
        xs.read(0, &format!("{FRONT}/ring-page-order")).unwrap(),
        b"2"
    );
    assert!(xs.read(0, &format!("{FRONT}/ring-ref3")).is_ok());
    assert_eq!(
        xs.read(0, &format!("{FRONT}/protocol")).unwrap(),
        b"x86_64-abi"
    );
    drop(xs);
    let o = front.offer();
    assert_eq!(
        (
            o.sectors,
            o.flush,
            o.barrier,
            o.discard,
            o.max_indirect_segments
        ),
        (4096, true, true, true, 256)
    );
    let data = vec![0x5a; 64 * 1024];
    let t = front
        .submit(Op::Write {
            sector: 16,
            data: &data,
        })
        .unwrap();
    front.kick();
    back.service(&w.dom0).unwrap();
    front.poll().unwrap();
    assert_eq!(front.take(t, &mut []), Some(Status::Okay));
    assert!(back.disk().data[16 * 512..16 * 512 + data.len()] == data[..]);
    // Both wrote feature-persistent: the 16 data pages stay mapped.
    assert_eq!(back.kept_grants(), 16);
    // 16 pages are more than a direct request's 11 segments: one indirect request.
    let c = back.counters();
    assert_eq!((c.requests, c.indirect, c.failed), (1, 1, 0));
    let t = front.submit(Op::Flush).unwrap();
    front.kick();
    back.service(&w.dom0).unwrap();
    front.poll().unwrap();
    assert_eq!(front.take(t, &mut []), Some(Status::Okay));
    assert_eq!((back.counters().requests, back.counters().flushes), (2, 1));

    // An orderly close: the front end goes Closing, the back end unmaps and follows,
    // the front end revokes its grants, both end Closed.
    let refs = front.ring_refs().to_vec();
    let (f, b) = w.run(
        blkfront::handshake::close(&domu, 51712, front),
        handshake::follow_close(&dom0, &w.dom0, 1, 51712, back),
    );
    f.unwrap();
    let disk = b.unwrap();
    assert!(disk.data[16 * 512..16 * 512 + data.len()] == data[..]);
    let mut xs = w.xs.borrow_mut();
    assert_eq!(xs.read(0, &format!("{FRONT}/state")).unwrap(), b"6");
    assert_eq!(xs.read(0, &format!("{BACK}/state")).unwrap(), b"6");
    for r in refs {
        assert_eq!(w.dom1.map_count(r), None, "ring grant {r} left");
    }
    // Past the reserved entries (the store ring, which dom0 keeps mapped).
    let first = xen_sys::GNTTAB_NR_RESERVED_ENTRIES;
    assert!(
        (first..600).all(|g| w.dom1.map_count(g) != Some(1)),
        "a page still mapped"
    );
}

#[test]
fn a_front_end_publishing_nonsense_gets_the_vbd_closed() {
    for (node, value) in [
        ("ring-page-order", "9"),
        ("ring-ref", "lots"),
        ("event-channel", "-1"),
        ("protocol", "x86_32-abi"),
    ] {
        let w = World::new(FRONT, BACK);
        let dom0 = Client::new(Loopback::new(&w.xs));
        let domu = Client::new(RingTransport::new(w.page.page(), &w.dom1, w.port));
        toolstack(&w, &dom0);
        // A hand-made front end: one ring page, then the bad node, then Initialised.
        let ring = w.dom1.alloc_page().unwrap();
        let gref = w.dom1.grant(0, &ring, false).unwrap();
        let port = w.dom1.alloc_unbound(0).unwrap();
        let front = async {
            for (n, v) in [
                ("ring-ref", format!("{gref}")),
                ("event-channel", format!("{port}")),
                (node, String::from(value)),
                ("state", String::from("3")),
            ] {
                domu.write_str(NO_TX, &format!("{FRONT}/{n}"), &v).await?;
            }
            Ok::<(), xenbus::XsError>(())
        };
        let (f, b) = w.run(
            front,
            handshake::connect(&dom0, &w.dom0, 1, 51712, MemDisk::new(64), INFO),
        );
        f.unwrap();
        assert!(b.is_err(), "{node}={value} accepted");
        let mut xs = w.xs.borrow_mut();
        let state = xs.read(0, &format!("{BACK}/state")).unwrap();
        assert_eq!(State::parse(&state), Some(State::Closing), "{node}");
        assert!(xs.read(0, &format!("{BACK}/error")).is_ok());
        assert_eq!(w.dom1.map_count(gref), Some(0), "{node}: ring left mapped");
    }
}

#[test]
fn a_front_end_that_breaks_the_ring_is_disconnected_and_told_why() {
    let w = World::new(FRONT, BACK);
    let dom0 = Client::new(Loopback::new(&w.xs));
    let domu = Client::new(RingTransport::new(w.page.page(), &w.dom1, w.port));
    toolstack(&w, &dom0);
    let (front, back) = w.run(
        blkfront::connect(&domu, &w.dom1, 51712, 64),
        handshake::connect(&dom0, &w.dom0, 1, 51712, MemDisk::new(4096), INFO),
    );
    let (front, mut back) = (front.unwrap(), back.unwrap());
    // The front end claims a million requests: `req_prod`, the shared ring's first
    // word, far beyond what the ring holds.
    let sring = w.dom0.map(1, front.ring_refs()[0], true).unwrap();
    sring.page().store_u32(0, 1_000_000);
    w.dom1.notify(front.port());
    let why = back.service(&w.dom0).unwrap_err();
    let (_, disk) = w.run(
        async {},
        handshake::fail(&dom0, &w.dom0, 1, 51712, back, &why),
    );
    assert_eq!(disk.sectors(), 4096, "the device comes back");
    let _ = w.dom0.unmap(sring);
    let mut xs = w.xs.borrow_mut();
    let state = xs.read(0, &format!("{BACK}/state")).unwrap();
    assert_eq!(State::parse(&state), Some(State::Closing));
    let error = xs.read(0, &format!("{BACK}/error")).unwrap();
    assert_eq!(String::from_utf8(error).unwrap(), format!("{why}"));
    for r in front.ring_refs() {
        assert_eq!(w.dom1.map_count(*r), Some(0), "ring grant {r} left mapped");
    }
}

#[test]
fn two_queues_negotiate_and_each_serves_its_requests() {
    let w = World::new(FRONT, BACK);
    let dom0 = Client::new(Loopback::new(&w.xs));
    let domu = Client::new(RingTransport::new(w.page.page(), &w.dom1, w.port));
    toolstack(&w, &dom0);
    let (fronts, back) = w.run(
        blkfront::connect_queues(&domu, &w.dom1, 51712, 64, 2),
        handshake::connect(&dom0, &w.dom0, 1, 51712, MemDisk::new(4096), INFO),
    );
    let (mut fronts, mut back) = (fronts.unwrap(), back.unwrap());
    assert_eq!((fronts.len(), back.queues()), (2, 2));
    {
        let mut xs = w.xs.borrow_mut();
        assert_eq!(
            xs.read(0, &format!("{BACK}/multi-queue-max-queues"))
                .unwrap(),
            b"4"
        );
        assert_eq!(
            xs.read(0, &format!("{FRONT}/multi-queue-num-queues"))
                .unwrap(),
            b"2"
        );
        for q in 0..2 {
            assert!(xs.read(0, &format!("{FRONT}/queue-{q}/ring-ref3")).is_ok());
            assert!(xs
                .read(0, &format!("{FRONT}/queue-{q}/event-channel"))
                .is_ok());
        }
        assert!(
            xs.read(0, &format!("{FRONT}/ring-ref0")).is_err(),
            "no top-level ring"
        );
    }
    // A write on each queue, both served by the one back end, onto the one disk.
    let data = [vec![0x11u8; 4096], vec![0x22u8; 4096]];
    let tickets: Vec<_> = fronts
        .iter_mut()
        .enumerate()
        .map(|(q, f)| {
            let t = f
                .submit(Op::Write {
                    sector: 8 * q as u64,
                    data: &data[q],
                })
                .unwrap();
            f.kick();
            t
        })
        .collect();
    assert_eq!(back.service(&w.dom0).unwrap(), 2);
    for (f, t) in fronts.iter_mut().zip(tickets) {
        f.poll().unwrap();
        assert_eq!(f.take(t, &mut []), Some(Status::Okay));
    }
    assert!(back.disk().data[..4096] == data[0][..]);
    assert!(back.disk().data[4096..8192] == data[1][..]);
    let refs: Vec<u32> = fronts.iter().flat_map(|f| f.ring_refs().to_vec()).collect();
    let (f, b) = w.run(
        blkfront::handshake::close_queues(&domu, 51712, fronts),
        handshake::follow_close(&dom0, &w.dom0, 1, 51712, back),
    );
    f.unwrap();
    b.unwrap();
    for r in refs {
        assert_eq!(w.dom1.map_count(r), None, "ring grant {r} left");
    }
}
