//! blkfront against blkback over the in-memory platform: data of every size (direct
//! and indirect requests, one- and multi-page rings) comes back as written, a flush
//! makes writes durable, refusals are local or answered, and a back end that answers
//! what was never asked breaks the vbd on the front end's side.

mod common;
use common::ALL_FEATURES as INFO;

use drivers_back::blk::{BlkBack, MemDisk};
use drivers_front::blkfront::{Blkfront, Broken, Offer, Op, Refused, Status};
use pv_core::blkif::{Disk, RawRequest};
use pv_core::mem_platform::{MemDomain, MemWorld};
use pv_core::page::SharedPage;
use pv_core::platform::{GrantTable, SharePage};
use pv_core::ring::BackRing;
use xen_sys::{blkif_response, BLKIF_OP_READ};

const SECTORS: u64 = 8192;

fn offer(sectors: u64) -> Offer {
    Offer { sectors, ..INFO }
}

struct Vbd {
    dom0: MemDomain,
    front: Blkfront<MemDomain>,
    back: BlkBack<MemDomain, MemDisk>,
}

fn vbd(ring_pages: usize, pool: usize, info: Disk) -> Vbd {
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let mut front = Blkfront::new(w.domain(1), 0, ring_pages, pool).unwrap();
    let back = BlkBack::connect(
        &dom0,
        1,
        front.ring_refs(),
        front.port(),
        MemDisk::new(SECTORS),
        info,
    )
    .unwrap();
    front.connected(Offer {
        readonly: info.readonly,
        ..offer(SECTORS)
    });
    Vbd { dom0, front, back }
}

impl Vbd {
    /// Runs `ops` as one batch and returns each one's status and data.
    fn batch(&mut self, ops: &[Op]) -> Vec<(Status, Vec<u8>)> {
        let tickets: Vec<_> = ops
            .iter()
            .map(|op| self.front.submit(*op).unwrap())
            .collect();
        self.front.kick();
        self.back.service(&self.dom0).unwrap();
        assert_eq!(self.front.poll().unwrap() as usize, ops.len());
        tickets
            .into_iter()
            .zip(ops)
            .map(|(t, op)| {
                let len = match op {
                    Op::Read { sectors, .. } => (*sectors as usize) << 9,
                    _ => 0,
                };
                let mut buf = vec![0; len];
                let st = self.front.take(t, &mut buf).unwrap();
                (st, buf)
            })
            .collect()
    }

    fn one(&mut self, op: Op) -> (Status, Vec<u8>) {
        self.batch(&[op]).pop().unwrap()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn data_of_every_size_comes_back_as_written() {
    for ring_pages in [1, 4] {
        let mut v = vbd(ring_pages, 512, INFO);
        // One sector, part of a page, exactly the direct limit, and indirect sizes
        // up to 1 MiB (256 segments).
        for (i, sectors) in [1u64, 3, 8, 88, 89, 200, 2048].into_iter().enumerate() {
            let data = pattern((sectors as usize) << 9, i as u8);
            let sector = 7 * i as u64;
            assert_eq!(
                v.one(Op::Write {
                    sector,
                    data: &data
                })
                .0,
                Status::Okay
            );
            let (st, back) = v.one(Op::Read { sector, sectors });
            assert_eq!(st, Status::Okay);
            assert!(back == data, "{sectors} sectors at {sector} differ");
        }
        assert_eq!(v.front.in_flight(), 0);
    }
}

#[test]
fn many_requests_in_flight_and_a_flush_makes_them_durable() {
    let mut v = vbd(1, 512, INFO);
    let datas: Vec<Vec<u8>> = (0..32).map(|i| pattern(4096, i)).collect();
    let ops: Vec<Op> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| Op::Write {
            sector: i as u64 * 8,
            data: d,
        })
        .collect();
    assert!(v.batch(&ops).iter().all(|(s, _)| *s == Status::Okay));
    assert_ne!(v.back.disk().durable[..4096], datas[0][..]);
    assert_eq!(v.one(Op::Flush).0, Status::Okay);
    let disk = v.back.disk();
    assert_eq!(disk.flushes, 1);
    for (i, d) in datas.iter().enumerate() {
        assert!(disk.durable[i * 4096..(i + 1) * 4096] == d[..]);
    }
    assert_eq!(
        v.one(Op::Discard {
            sector: 8,
            sectors: 8
        })
        .0,
        Status::Okay
    );
    assert_eq!(v.back.disk().discards, [(4096, 4096)]);
}

#[test]
fn the_ring_and_the_pool_bound_what_is_in_flight() {
    let mut v = vbd(1, 16, INFO);
    let size = 32;
    // 16 one-page reads take the pool; the next one waits.
    let tickets: Vec<_> = (0..16)
        .map(|i| {
            v.front
                .submit(Op::Read {
                    sector: i * 8,
                    sectors: 8,
                })
                .unwrap()
        })
        .collect();
    assert_eq!(
        v.front.submit(Op::Read {
            sector: 0,
            sectors: 8
        }),
        Err(Refused::Busy)
    );
    // Flushes need no pages: the ring is the bound.
    for _ in 16..size {
        v.front.submit(Op::Flush).unwrap();
    }
    assert_eq!(v.front.submit(Op::Flush), Err(Refused::Busy));
    v.front.kick();
    v.back.service(&v.dom0).unwrap();
    assert_eq!(v.front.poll(), Ok(size));
    let mut buf = vec![0; 4096];
    for t in tickets {
        assert_eq!(v.front.take(t, &mut buf), Some(Status::Okay));
    }
    assert!(v
        .front
        .submit(Op::Read {
            sector: 0,
            sectors: 8
        })
        .is_ok());
}

#[test]
fn refusals_are_local_or_answered() {
    let mut v = vbd(1, 64, INFO);
    let d = [0u8; 512];
    for bad in [
        Op::Read {
            sector: SECTORS,
            sectors: 1,
        },
        Op::Read {
            sector: 0,
            sectors: 0,
        },
        Op::Read {
            sector: u64::MAX,
            sectors: 2,
        },
        Op::Write {
            sector: 0,
            data: &d[..100],
        },
        Op::Read {
            sector: 0,
            sectors: 64 * 8 + 1,
        },
    ] {
        assert_eq!(v.front.submit(bad), Err(Refused::Invalid), "{bad:?}");
    }
    // A read-only vbd: the front end refuses writes itself...
    let mut ro = vbd(
        1,
        8,
        Disk {
            readonly: true,
            ..INFO
        },
    );
    assert_eq!(
        ro.front.submit(Op::Write {
            sector: 0,
            data: &d
        }),
        Err(Refused::ReadOnly)
    );
    // ...and a front end that does not know it gets the back end's error.
    ro.front.connected(offer(SECTORS));
    assert!(matches!(
        ro.one(Op::Write {
            sector: 0,
            data: &d
        })
        .0,
        Status::Error(_)
    ));
    // Nothing offered: flush and discard are refused locally.
    let mut bare = vbd(1, 8, INFO);
    bare.front.connected(Offer {
        flush: false,
        barrier: false,
        discard: false,
        ..offer(SECTORS)
    });
    assert_eq!(bare.front.submit(Op::Flush), Err(Refused::NotSupported));
    // Only barriers: a flush is sent as one.
    bare.front.connected(Offer {
        barrier: true,
        flush: false,
        ..offer(SECTORS)
    });
    assert_eq!(bare.one(Op::Flush).0, Status::Okay);
}

/// A back end that answers with what the test writes, through a raw ring.
fn hostile(answer: impl Fn(u64) -> blkif_response) -> Broken {
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let mut front = Blkfront::new(w.domain(1), 0, 1, 8).unwrap();
    front.connected(offer(SECTORS));
    front
        .submit(Op::Read {
            sector: 0,
            sectors: 8,
        })
        .unwrap();
    front.kick();
    let m = pv_core::platform::ForeignMemory::map(&dom0, 1, front.ring_refs()[0], false).unwrap();
    let pages: Vec<SharedPage<'_>> = vec![m.page()];
    let mut back = BackRing::<RawRequest, blkif_response>::attach(&pages).unwrap();
    let req = back.get_request().unwrap().unwrap();
    back.put_response(&answer(req.id()));
    back.push_responses();
    let broken = front.poll().unwrap_err();
    assert_eq!(front.broken(), Some(broken));
    assert_eq!(front.submit(Op::Flush), Err(Refused::Broken));
    broken
}

#[test]
fn a_back_end_answering_what_was_not_asked_breaks_the_vbd() {
    let rsp = |id, op: u32| blkif_response {
        id,
        operation: op as u8,
        status: 0,
    };
    assert_eq!(
        hostile(|id| rsp(id + 1, BLKIF_OP_READ)),
        Broken::UnknownId(1)
    );
    assert_eq!(
        hostile(|_| rsp(u64::MAX, BLKIF_OP_READ)),
        Broken::UnknownId(u64::MAX)
    );
    assert!(matches!(
        hostile(|id| rsp(id, 3)),
        Broken::WrongOperation { operation: 3, .. }
    ));
}

#[test]
fn close_revokes_every_grant() {
    let w = MemWorld::new();
    let d1 = w.domain(1);
    let front = Blkfront::new(&d1, 0, 2, 4).unwrap();
    let refs = front.ring_refs().to_vec();
    front.close();
    for r in refs {
        assert_eq!(d1.map_count(r), None, "grant {r} still there");
    }
    // Granting works afterwards: nothing was leaked into a stuck state.
    assert!(d1.grant(0, &d1.alloc_page().unwrap(), false).is_ok());
}

#[test]
fn persistent_grants_stay_mapped_until_disconnect() {
    let w = MemWorld::new();
    let (dom0, dom1) = (w.domain(0), w.domain(1));
    let mut front = Blkfront::new(&dom1, 0, 1, 8).unwrap();
    let mut back = BlkBack::connect(
        &dom0,
        1,
        front.ring_refs(),
        front.port(),
        MemDisk::new(SECTORS),
        INFO,
    )
    .unwrap();
    back.keep_grants(4);
    front.connected(offer(SECTORS));
    let data = pattern(8 * 4096, 3);
    let mut buf = vec![0; data.len()];
    for round in 0..3 {
        // 8 pages through a cache of 4: four kept, four mapped per request.
        let t = front
            .submit(Op::Write {
                sector: 0,
                data: &data,
            })
            .unwrap();
        front.kick();
        back.service(&dom0).unwrap();
        front.poll().unwrap();
        assert_eq!(front.take(t, &mut []), Some(Status::Okay));
        let t = front
            .submit(Op::Read {
                sector: 0,
                sectors: 64,
            })
            .unwrap();
        front.kick();
        back.service(&dom0).unwrap();
        front.poll().unwrap();
        assert_eq!(front.take(t, &mut buf), Some(Status::Okay));
        assert!(buf == data, "round {round}");
        assert_eq!(back.kept_grants(), 4);
    }
    let kept_now = (1..200).filter(|&g| dom1.map_count(g) == Some(1)).count();
    // The ring page, and the four kept data pages.
    assert_eq!(kept_now, 5);
    back.disconnect(&dom0);
    assert!((1..200).all(|g| dom1.map_count(g) != Some(1)));
}

/// A disk that records the batches blkback runs on it, and what ran between them.
#[derive(Default)]
struct Recording {
    disk: Option<MemDisk>,
    log: Vec<String>,
}

impl drivers_back::blk::BlockDevice for Recording {
    fn sectors(&self) -> u64 {
        self.disk.as_ref().unwrap().sectors()
    }
    fn read(&mut self, o: u64, b: &mut [u8]) -> Result<(), drivers_back::blk::IoError> {
        self.disk.as_mut().unwrap().read(o, b)
    }
    fn write(&mut self, o: u64, d: &[u8]) -> Result<(), drivers_back::blk::IoError> {
        self.disk.as_mut().unwrap().write(o, d)
    }
    fn flush(&mut self) -> Result<(), drivers_back::blk::IoError> {
        self.log.push("flush".into());
        self.disk.as_mut().unwrap().flush()
    }
    fn discard(&mut self, o: u64, l: u64) -> Result<(), drivers_back::blk::IoError> {
        self.disk.as_mut().unwrap().discard(o, l)
    }
    fn run_batch(&mut self, ops: &mut [drivers_back::blk::IoOp]) {
        self.log.push(format!("batch of {}", ops.len()));
        for op in ops {
            op.result = if op.write {
                self.write(op.offset, &op.buf)
            } else {
                self.read(op.offset, &mut op.buf)
            };
        }
    }
}

#[test]
fn reads_and_writes_go_to_the_device_together_and_a_flush_waits_for_them() {
    use drivers_back::blk::BlockDevice;
    let w = MemWorld::new();
    let dom0 = w.domain(0);
    let mut front = Blkfront::new(w.domain(1), 0, 2, 256).unwrap();
    let dev = Recording {
        disk: Some(MemDisk::new(SECTORS)),
        log: Vec::new(),
    };
    let mut back = BlkBack::connect(&dom0, 1, front.ring_refs(), front.port(), dev, INFO).unwrap();
    front.connected(offer(SECTORS));
    let data = vec![0x77u8; 4096];
    let mut tickets = Vec::new();
    for i in 0..3 {
        let op = Op::Write {
            sector: 8 * i,
            data: &data,
        };
        tickets.push(front.submit(op).unwrap());
    }
    tickets.push(front.submit(Op::Flush).unwrap());
    for i in 0..2 {
        tickets.push(
            front
                .submit(Op::Read {
                    sector: 8 * i,
                    sectors: 8,
                })
                .unwrap(),
        );
    }
    front.kick();
    back.service(&dom0).unwrap();
    assert_eq!(front.poll().unwrap(), 6);
    for t in tickets {
        let mut buf = vec![0u8; 4096];
        assert_eq!(front.take(t, &mut buf), Some(Status::Okay));
    }
    // Three writes at once, the flush after them alone, then the two reads together.
    assert_eq!(back.disk().log, ["batch of 3", "flush", "batch of 2"]);
    assert!(back.disk().disk.as_ref().unwrap().durable[..3 * 4096]
        .iter()
        .all(|&b| b == 0x77));
    assert_eq!(back.disk().sectors(), SECTORS);
}
