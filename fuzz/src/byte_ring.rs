//! Byte rings (`pv_core::byte_ring`) against a hostile peer: the input is a program of
//! peer and local operations on one shared page.
//!
//! Input: one byte choosing the ring (console in/out, store req/rsp), then operations,
//! each a byte `op % 5` and its arguments: 0 the peer sets `cons` (u32), 1 the peer sets
//! `prod` (u32), 2 the peer writes bytes anywhere in the page (u16 offset, u8 length,
//! bytes), 3 we read (u16 length), 4 we write (u16 length; bytes of a counter).
//!
//! Properties: no operation panics; each one is checked against a model of the page:
//! `Corrupt` exactly when `prod - cons` (wrapping) exceeds the ring size, and then nothing
//! changes; otherwise a read returns the bytes at the masked `cons` and advances `cons`
//! by what it returned, a write stores its bytes at the masked `prod` and advances
//! `prod`, and no other byte of the page changes.

use core::mem::offset_of;
use core::sync::atomic::AtomicU32;

use pv_core::byte_ring::{ByteRing, Corrupt};
use pv_core::page::{SharedPage, PAGE_SIZE, PAGE_WORDS};
use xen_sys::{xencons_interface as Cons, xenstore_domain_interface as Store};

use crate::Bytes;

/// A ring and where its parts are (ByteRing keeps them private).
struct Layout {
    ring: ByteRing,
    data: usize,
    cons: usize,
    prod: usize,
}

fn layout(which: u8) -> Layout {
    let (ring, data, cons, prod) = match which % 4 {
        0 => (
            ByteRing::CONSOLE_IN,
            offset_of!(Cons, in_),
            offset_of!(Cons, in_cons),
            offset_of!(Cons, in_prod),
        ),
        1 => (
            ByteRing::CONSOLE_OUT,
            offset_of!(Cons, out),
            offset_of!(Cons, out_cons),
            offset_of!(Cons, out_prod),
        ),
        2 => (
            ByteRing::STORE_REQ,
            offset_of!(Store, req),
            offset_of!(Store, req_cons),
            offset_of!(Store, req_prod),
        ),
        _ => (
            ByteRing::STORE_RSP,
            offset_of!(Store, rsp),
            offset_of!(Store, rsp_cons),
            offset_of!(Store, rsp_prod),
        ),
    };
    Layout {
        ring,
        data,
        cons,
        prod,
    }
}

fn snapshot(page: &SharedPage<'_>) -> Vec<u8> {
    let mut b = vec![0; PAGE_SIZE];
    page.read(0, &mut b);
    b
}

fn word(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

fn set_word(bytes: &mut [u8], off: usize, v: u32) {
    bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn check(data: &[u8]) {
    let mut input = Bytes::new(data);
    let l = layout(input.u8());
    let words: Box<[AtomicU32; PAGE_WORDS]> = Box::new(core::array::from_fn(|_| AtomicU32::new(0)));
    let page = SharedPage::new(&words);
    let size = l.ring.size();
    let mask = size - 1;
    let mut counter = 0u8;
    while !input.is_empty() {
        let before = snapshot(&page);
        let (cons, prod) = (word(&before, l.cons), word(&before, l.prod));
        let used = prod.wrapping_sub(cons) as usize;
        let corrupt = used > size;
        let mut expect = before.clone();
        match input.u8() % 5 {
            0 => {
                let v = input.u32();
                page.store_u32(l.cons, v);
                set_word(&mut expect, l.cons, v);
            }
            1 => {
                let v = input.u32();
                page.store_u32(l.prod, v);
                set_word(&mut expect, l.prod, v);
            }
            2 => {
                let off = input.u16() as usize % PAGE_SIZE;
                let len = input.u8() as usize;
                let bytes = input.take(len.min(PAGE_SIZE - off));
                page.write(off, bytes);
                expect[off..off + bytes.len()].copy_from_slice(bytes);
            }
            3 => {
                let mut buf = vec![0xa5; input.u16() as usize % (2 * PAGE_SIZE)];
                assert_eq!(l.ring.available(&page).is_err(), corrupt);
                let got = l.ring.read(&page, &mut buf);
                if corrupt {
                    assert_eq!(got, Err(Corrupt));
                } else {
                    let n = got.expect("valid indices");
                    assert_eq!(n, buf.len().min(used));
                    for (i, b) in buf[..n].iter().enumerate() {
                        let at = l.data + ((cons as usize + i) & mask);
                        assert_eq!(*b, before[at], "byte {i} of a read");
                    }
                    assert!(buf[n..].iter().all(|&b| b == 0xa5), "read past n");
                    set_word(&mut expect, l.cons, cons.wrapping_add(n as u32));
                }
            }
            _ => {
                let len = input.u16() as usize % (2 * PAGE_SIZE);
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        counter = counter.wrapping_add(1);
                        counter
                    })
                    .collect();
                assert_eq!(l.ring.space(&page).is_err(), corrupt);
                let got = l.ring.write(&page, &bytes);
                if corrupt {
                    assert_eq!(got, Err(Corrupt));
                } else {
                    let n = got.expect("valid indices");
                    assert_eq!(n, len.min(size - used));
                    for (i, b) in bytes[..n].iter().enumerate() {
                        expect[l.data + ((prod as usize + i) & mask)] = *b;
                    }
                    set_word(&mut expect, l.prod, prod.wrapping_add(n as u32));
                }
            }
        }
        assert!(snapshot(&page) == expect, "page differs from the model");
    }
}
