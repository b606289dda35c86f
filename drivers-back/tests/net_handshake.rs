//! The vif handshake end to end: netfront's and netback's xenbus sides negotiate
//! through the real xenstored, as Linux's netfront and netback do (the front end goes
//! `Connected` straight after publishing its rings), then packets flow and the vif
//! closes in order. A front end without `request-rx-copy` is refused with an `error`
//! node.

mod common;
use common::world::World;

use drivers_back::net::nodes::{self, Vif};
use drivers_back::net::{handshake, Frame};
use drivers_back::xenstore::Loopback;
use drivers_front::netfront::{self, Config};
use pv_core::netif::PacketMeta;
use pv_core::platform::SharePage;
use xenbus::transport::RingTransport;
use xenbus::{Client, Store, NO_TX};

const FRONT: &str = "/local/domain/1/device/vif/0";
const BACK: &str = "/local/domain/0/backend/vif/1/0";
const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x01, 0x02, 0x03];

fn toolstack(w: &World, dom0: &impl Store) {
    let vif = Vif {
        front: 1,
        id: 0,
        mac: MAC,
        ip: Some("10.0.2.16"),
        bridge: "xenbr0",
    };
    assert_eq!(
        (vif.front_dir().as_str(), vif.back_dir(0).as_str()),
        (FRONT, BACK)
    );
    w.toolstack(dom0, async move { nodes::create(dom0, 0, &vif).await });
}

#[test]
fn front_and_back_negotiate_and_packets_flow() {
    for cfg in [
        Config::default(),
        Config {
            sg: false,
            gso: false,
            csum: false,
            split: false,
            ..Config::default()
        },
    ] {
        let w = World::new(FRONT, BACK);
        let dom0 = Client::new(Loopback::new(&w.xs));
        let domu = Client::new(RingTransport::new(w.page.page(), &w.dom1, w.port));
        toolstack(&w, &dom0);
        let (front, back) = w.run(
            netfront::connect(&domu, &w.dom1, 0, cfg),
            handshake::connect(&dom0, &w.dom0, 1, 0),
        );
        let ((mut front, mac), mut back) = (front.unwrap(), back.unwrap());
        assert_eq!(mac, MAC);
        {
            let mut xs = w.xs.borrow_mut();
            let mut read = |p: &str| String::from_utf8(xs.read(0, p).unwrap()).unwrap();
            assert_eq!(read(&format!("{FRONT}/state")), "4");
            assert_eq!(read(&format!("{BACK}/state")), "4");
            assert_eq!(read(&format!("{FRONT}/request-rx-copy")), "1");
            assert_eq!(read(&format!("{FRONT}/feature-rx-notify")), "1");
            assert_eq!(read(&format!("{BACK}/feature-rx-copy")), "1");
            assert_eq!(read(&format!("{BACK}/feature-split-event-channels")), "1");
            assert_eq!(read(&format!("{BACK}/multi-queue-max-queues")), "4");
            let on = |b: bool| if b { "1" } else { "0" };
            assert_eq!(read(&format!("{FRONT}/feature-sg")), on(cfg.sg));
            assert_eq!(read(&format!("{FRONT}/feature-gso-tcpv4")), on(cfg.gso));
            assert_eq!(
                read(&format!("{FRONT}/feature-no-csum-offload")),
                on(!cfg.csum)
            );
        }
        // What each end concluded agrees.
        let (ff, bf) = (front.features(), back.features());
        assert_eq!(
            (ff.sg, ff.gso_tcpv4, ff.split),
            (cfg.sg, cfg.sg && cfg.gso, cfg.split)
        );
        assert_eq!(
            (bf.sg, bf.gso_tcpv4, bf.csum, bf.split),
            (cfg.sg, cfg.sg && cfg.gso, cfg.csum, cfg.split)
        );
        assert_eq!(back.ports().len(), if cfg.split { 2 } else { 1 });

        let data: Vec<u8> = (0..1514).map(|i| i as u8).collect();
        front
            .send(data.len(), PacketMeta::default(), |b| {
                b.copy_from_slice(&data)
            })
            .unwrap();
        let mut got = Vec::new();
        back.transmit(&w.dom0, &mut |f| got.push(f)).unwrap();
        assert!(got.len() == 1 && got[0].data == data);
        let mut one = Some(Frame {
            data: data.clone(),
            meta: PacketMeta::default(),
        });
        back.receive(&w.dom0, &mut || one.take()).unwrap();
        front.poll().unwrap();
        let p = front.receive().unwrap();
        assert!(p.to_vec() == data);
        front.recycle(p);

        let (f, b) = w.run(
            netfront::close(&domu, 0, front),
            handshake::follow_close(&dom0, &w.dom0, 1, 0, back),
        );
        f.unwrap();
        b.unwrap();
        let mut xs = w.xs.borrow_mut();
        assert_eq!(xs.read(0, &format!("{FRONT}/state")).unwrap(), b"6");
        assert_eq!(xs.read(0, &format!("{BACK}/state")).unwrap(), b"6");
    }
}

#[test]
fn a_front_end_that_wants_page_flipping_is_refused() {
    let w = World::new(FRONT, BACK);
    let dom0 = Client::new(Loopback::new(&w.xs));
    let domu = Client::new(RingTransport::new(w.page.page(), &w.dom1, w.port));
    toolstack(&w, &dom0);
    // A front end that publishes rings but no request-rx-copy, then goes Connected.
    let rogue = async {
        for (n, v) in [
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "9"),
            ("event-channel", "5"),
            ("state", "4"),
        ] {
            domu.write_str(NO_TX, &format!("{FRONT}/{n}"), v).await?;
        }
        Ok::<(), xenbus::XsError>(())
    };
    let (r, b) = w.run(rogue, handshake::connect(&dom0, &w.dom0, 1, 0));
    r.unwrap();
    assert!(b.is_err());
    let mut xs = w.xs.borrow_mut();
    let err = String::from_utf8(xs.read(0, &format!("{BACK}/error")).unwrap()).unwrap();
    assert!(err.contains("request-rx-copy"), "{err}");
    assert_eq!(xs.read(0, &format!("{BACK}/state")).unwrap(), b"5");
}

#[test]
fn two_queues_are_negotiated_and_both_carry_packets() {
    let w = World::new(FRONT, BACK);
    let dom0 = Client::new(Loopback::new(&w.xs));
    let domu = Client::new(RingTransport::new(w.page.page(), &w.dom1, w.port));
    toolstack(&w, &dom0);
    let (front, back) = w.run(
        netfront::connect_queues(&domu, &w.dom1, 0, Config::default(), 2),
        handshake::connect(&dom0, &w.dom0, 1, 0),
    );
    let ((mut fronts, _), mut back) = (front.unwrap(), back.unwrap());
    assert_eq!((fronts.len(), back.queues()), (2, 2));
    {
        let mut xs = w.xs.borrow_mut();
        assert_eq!(
            xs.read(0, &format!("{FRONT}/multi-queue-num-queues"))
                .unwrap(),
            b"2"
        );
        for q in 0..2 {
            for n in [
                "tx-ring-ref",
                "rx-ring-ref",
                "event-channel-tx",
                "event-channel-rx",
            ] {
                assert!(
                    xs.read(0, &format!("{FRONT}/queue-{q}/{n}")).is_ok(),
                    "queue-{q}/{n}"
                );
            }
        }
    }
    // Each queue's tx ring reaches netback.
    for (i, f) in fronts.iter_mut().enumerate() {
        let data = vec![i as u8; 100];
        f.send(100, PacketMeta::default(), |b| b.copy_from_slice(&data))
            .unwrap();
    }
    let mut got = Vec::new();
    back.transmit(&w.dom0, &mut |f| got.push(f.data[0]))
        .unwrap();
    got.sort();
    assert_eq!(got, [0, 1]);
    // Packets of different flows are spread over the rx queues; each flow keeps one.
    let frame = |port: u16| {
        let mut f = vec![0u8; 64];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 2, 2]);
        f[30..34].copy_from_slice(&[10, 0, 2, 16]);
        f[34..36].copy_from_slice(&port.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        Frame {
            data: f,
            meta: PacketMeta::default(),
        }
    };
    let mut frames: Vec<Frame> = (0..32).map(|i| frame(1000 + i)).collect();
    back.receive(&w.dom0, &mut || frames.pop()).unwrap();
    let per_queue: Vec<usize> = fronts
        .iter_mut()
        .map(|f| {
            f.poll().unwrap();
            let mut n = 0;
            while let Some(p) = f.receive() {
                n += 1;
                f.recycle(p);
            }
            n
        })
        .collect();
    assert_eq!(per_queue.iter().sum::<usize>(), 32);
    assert!(per_queue.iter().all(|&n| n > 0), "{per_queue:?}");
    let (f, b) = w.run(
        netfront::close_queues(&domu, 0, fronts),
        handshake::follow_close(&dom0, &w.dom0, 1, 0, back),
    );
    f.unwrap();
    b.unwrap();
}
