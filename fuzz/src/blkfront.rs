//! Responses from a hostile back end (`drivers_front::blkfront`), written into the
//! ring page it shares with the front end.
//!
//! Input: a program; each byte `op % 5` and its arguments:
//! 0 the front end submits an operation (a kind byte: read, write, flush, discard;
//!   u16 sector; u8 sectors),
//! 1 the back end writes a response into a ring slot (u8 slot, u8 id selector: below
//!   128 the id of the n-th operation in flight, else a raw u16 id; u8 operation;
//!   u16 status),
//! 2 the back end sets `rsp_prod` (u32),
//! 3 the front end polls and takes every operation that has its answer,
//! 4 the front end gives up on the oldest operation in flight (its caller went away).
//!
//! Properties: nothing panics; a poll completes at most what is in flight; once
//! broken the vbd stays broken and refuses everything; an operation is taken once,
//! and only after its answer; an abandoned one is never taken and its slot comes
//! free once answered; at most a ring of operations is in flight; at the end
//! `close` revokes every grant the back end does not hold.

use core::mem::offset_of;

use drivers_front::blkfront::{Blkfront, Offer, Op, Refused, Ticket};
use pv_core::mem_platform::MemWorld;
use pv_core::platform::{ForeignMemory, SharePage};
use xen_sys::{blkif_response, blkif_sring};

use crate::Bytes;

/// Where slot `i`'s response goes: the entries follow the header (io/ring.h).
fn slot_offset(i: usize) -> usize {
    offset_of!(blkif_sring, ring) + i * 112
}

pub fn check(data: &[u8]) {
    let w = MemWorld::new();
    let (dom0, dom1) = (w.domain(0), w.domain(1));
    let mut front = Blkfront::new(&dom1, 0, 1, 16).expect("a fresh front end");
    front.connected(Offer {
        sectors: 4096,
        readonly: false,
        flush: true,
        barrier: false,
        discard: true,
        max_indirect_segments: 256,
    });
    let ring = dom0
        .map(1, front.ring_refs()[0], false)
        .expect("the ring is granted to dom0");
    let page = ring.page();
    let size = 32;
    let mut in_flight: Vec<Ticket> = Vec::new();
    let mut input = Bytes::new(data);
    let payload = [0x5au8; 255 * 512];
    let mut buf = vec![0u8; 255 * 512];
    while !input.is_empty() {
        match input.u8() % 5 {
            0 => {
                let kind = input.u8();
                let sector = u64::from(input.u16());
                let sectors = u64::from(input.u8());
                let op = match kind % 4 {
                    0 => Op::Read { sector, sectors },
                    1 => Op::Write {
                        sector,
                        data: &payload[..(sectors as usize) * 512],
                    },
                    2 => Op::Flush,
                    _ => Op::Discard { sector, sectors },
                };
                match front.submit(op) {
                    Ok(t) => in_flight.push(t),
                    Err(Refused::Broken) => assert!(front.broken().is_some()),
                    Err(_) => {}
                }
                assert!(front.in_flight() <= size);
                front.kick();
            }
            1 => {
                let slot = usize::from(input.u8()) % size;
                let sel = input.u8();
                let id = if sel < 128 && !in_flight.is_empty() {
                    // The ids are slot numbers: the ticket's own is not visible, so
                    // any small number names some request.
                    u64::from(sel) % size as u64
                } else {
                    u64::from(input.u16())
                };
                let rsp = blkif_response {
                    id,
                    operation: input.u8(),
                    status: input.u16() as i16,
                };
                let mut b = [0u8; core::mem::size_of::<blkif_response>()];
                pv_core::abi::ToGuest::encode(&rsp, &mut b);
                page.write(slot_offset(slot), &b);
            }
            2 => page.store_u32(offset_of!(blkif_sring, rsp_prod), input.u32()),
            4 => {
                if !in_flight.is_empty() {
                    let t = in_flight.remove(0);
                    front.abandon(t);
                    assert!(!front.is_done(t));
                    assert!(front.take(t, &mut buf).is_none(), "an abandoned operation taken");
                }
            }
            _ => {
                let before = front.in_flight();
                let was_broken = front.broken();
                match front.poll() {
                    Ok(n) => {
                        assert!(was_broken.is_none());
                        assert!(n as usize <= before, "{n} answers for {before} requests");
                    }
                    Err(b) => {
                        assert_eq!(front.broken(), Some(b));
                        if let Some(old) = was_broken {
                            assert_eq!(old, b, "a broken vbd changed its reason");
                        }
                    }
                }
                in_flight.retain(|&t| {
                    if front.is_done(t) {
                        assert!(front.take(t, &mut buf).is_some());
                        assert!(front.take(t, &mut buf).is_none(), "taken twice");
                        false
                    } else {
                        assert!(front.take(t, &mut buf).is_none());
                        true
                    }
                });
            }
        }
        if front.broken().is_some() {
            assert_eq!(front.submit(Op::Flush), Err(Refused::Broken));
        }
    }
    let refs = front.ring_refs().to_vec();
    dom0.unmap(ring).expect("unmap the ring");
    front.close();
    for r in refs {
        assert_eq!(dom1.map_count(r), None, "grant {r} left after close");
    }
}
