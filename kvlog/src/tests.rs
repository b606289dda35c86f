//! The store over a disk in memory that can lose power: what the last flush saw
//! survives, and a write may land in part (a torn write) or out of order.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use super::*;

fn run<F: Future>(f: F) -> F::Output {
    const VT: RawWakerVTable = RawWakerVTable::new(
        |_| RawWaker::new(core::ptr::null(), &VT),
        |_| {},
        |_| {},
        |_| {},
    );
    // SAFETY: the table's functions ignore the data pointer.
    let waker = unsafe { Waker::from_raw(RawWaker::new(core::ptr::null(), &VT)) };
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the memory disk never waits"),
    }
}

/// A disk with a write cache: `durable` is what a power cut leaves.
#[derive(Default)]
struct Mem {
    data: RefCell<Vec<u8>>,
    durable: RefCell<Vec<u8>>,
    /// Writes since the last flush, for torn-write crashes.
    unflushed: RefCell<Vec<(u64, Vec<u8>)>>,
    flushes: RefCell<u32>,
}

impl Mem {
    fn new(bytes: usize) -> Mem {
        Mem {
            data: RefCell::new(vec![0; bytes]),
            durable: RefCell::new(vec![0; bytes]),
            ..Default::default()
        }
    }

    /// Power cut: what was flushed, plus the sectors of unflushed writes that
    /// `survives(write index, sector index)` keeps.
    fn crash(&self, survives: impl Fn(usize, usize) -> bool) -> Mem {
        let mut disk = self.durable.borrow().clone();
        for (w, (off, data)) in self.unflushed.borrow().iter().enumerate() {
            for (s, chunk) in data.chunks(512).enumerate() {
                if survives(w, s) {
                    let at = *off as usize + s * 512;
                    disk[at..at + chunk.len()].copy_from_slice(chunk);
                }
            }
        }
        Mem {
            data: RefCell::new(disk.clone()),
            durable: RefCell::new(disk),
            ..Default::default()
        }
    }
}

impl Storage for &Mem {
    fn size(&self) -> u64 {
        self.data.borrow().len() as u64
    }
    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let d = self.data.borrow();
        let r = offset as usize..offset as usize + buf.len();
        buf.copy_from_slice(d.get(r).ok_or(IoError)?);
        Ok(())
    }
    async fn write(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let mut d = self.data.borrow_mut();
        let r = offset as usize..offset as usize + data.len();
        d.get_mut(r).ok_or(IoError)?.copy_from_slice(data);
        self.unflushed.borrow_mut().push((offset, data.to_vec()));
        Ok(())
    }
    async fn flush(&self) -> Result<(), IoError> {
        self.durable.borrow_mut().clone_from(&self.data.borrow());
        self.unflushed.borrow_mut().clear();
        *self.flushes.borrow_mut() += 1;
        Ok(())
    }
}

const DISK: usize = 4 << 20;

fn key(i: u32) -> Vec<u8> {
    alloc::format!("k{i}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    alloc::format!("value of {i} ")
        .repeat(1 + i as usize % 7)
        .into_bytes()
}

#[test]
fn a_blank_disk_is_formatted_and_a_foreign_one_refused() {
    let mem = Mem::new(DISK);
    let kv = run(Kv::open(&mem)).unwrap();
    assert!(kv.stats().formatted && kv.is_empty());
    assert_eq!(&mem.durable.borrow()[..8], b"KVLOG\0\x01\0");
    let other = Mem::new(DISK);
    other.data.borrow_mut()[100] = 1;
    assert_eq!(run(Kv::open(&other)).err(), Some(Error::NotOurs));
    assert_eq!(
        run(Kv::open(&Mem::new(64 << 10))).err(),
        Some(Error::TooSmall)
    );
}

#[test]
fn committed_writes_survive_a_crash_and_replay_in_order() {
    let mem = Mem::new(DISK);
    let mut kv = run(Kv::open(&mem)).unwrap();
    for i in 0..300 {
        kv.put(&key(i), &value(i)).unwrap();
        if i % 7 == 0 {
            run(kv.commit()).unwrap();
        }
    }
    assert!(kv.del(&key(5)).unwrap());
    assert!(!kv.del(b"never").unwrap());
    kv.put(&key(6), b"again").unwrap();
    run(kv.commit()).unwrap();
    let flushes = *mem.flushes.borrow();
    // A commit is a write and a flush; nothing staged, nothing written.
    run(kv.commit()).unwrap();
    assert_eq!(*mem.flushes.borrow(), flushes);

    let after = mem.crash(|_, _| false);
    let kv2 = run(Kv::open(&after)).unwrap();
    assert!(!kv2.stats().formatted && !kv2.stats().torn_tail);
    assert_eq!(kv2.stats().replayed, 302);
    assert_eq!(kv2.get(&key(5)), None);
    assert_eq!(kv2.get(&key(6)), Some(&b"again"[..]));
    for i in (0..300).filter(|&i| i != 5 && i != 6) {
        assert_eq!(kv2.get(&key(i)), Some(&value(i)[..]), "key {i}");
    }
    assert_eq!(kv2.len(), 299);
}

#[test]
fn a_torn_commit_loses_only_what_was_not_acknowledged() {
    // Each case: which sectors of the unacknowledged commit reach the disk.
    type Survives = fn(usize, usize) -> bool;
    let cases: [(&str, Survives); 4] = [
        ("none", |_, _| false),
        ("all", |_, _| true),
        ("the first half", |_, s| s < 6),
        ("every other sector", |_, s| s % 2 == 1),
    ];
    for (name, survives) in cases {
        let mem = Mem::new(DISK);
        let mut kv = run(Kv::open(&mem)).unwrap();
        for i in 0..50 {
            kv.put(&key(i), &value(i)).unwrap();
        }
        run(kv.commit()).unwrap();
        // Not acknowledged: written, never flushed.
        for i in 50..80 {
            kv.put(&key(i), b"unacknowledged").unwrap();
        }
        kv.put(&key(3), b"overwritten, unacknowledged").unwrap();
        // The commit's write happens; the power goes before its flush.
        let tail = kv.stats().log_bytes;
        let bytes = kv.staged.clone();
        assert_eq!(bytes.len(), kv.staged_bytes());
        run((&mem).write(tail, &bytes)).unwrap();
        let after = mem.crash(survives);
        let kv2 = run(Kv::open(&after)).unwrap();
        for i in (0..50).filter(|&i| i != 3) {
            assert_eq!(kv2.get(&key(i)), Some(&value(i)[..]), "{name}: key {i}");
        }
        // Whatever survived is a prefix of the unacknowledged records, intact.
        let n = (50..80).take_while(|&i| kv2.get(&key(i)).is_some()).count() as u32;
        for i in 50 + n..80 {
            assert_eq!(kv2.get(&key(i)), None, "{name}: key {i} after a gap");
        }
        for i in 50..50 + n {
            assert_eq!(kv2.get(&key(i)), Some(&b"unacknowledged"[..]), "{name}");
        }
        assert_eq!(kv2.len() as u32, 50 + n);
        // Key 3's overwrite is the last record: there only if all before it are.
        match kv2.get(&key(3)) {
            Some(v) if v == b"overwritten, unacknowledged" => assert_eq!(n, 30, "{name}"),
            v => assert_eq!(v, Some(&value(3)[..]), "{name}"),
        }
    }
}

#[test]
fn records_left_behind_a_torn_one_never_come_back() {
    let mem = Mem::new(DISK);
    let mut kv = run(Kv::open(&mem)).unwrap();
    kv.put(b"k", b"acknowledged 1").unwrap();
    run(kv.commit()).unwrap();
    let tail = kv.stats().log_bytes;
    // An unacknowledged commit of three records whose first sector is torn but whose
    // later records landed.
    kv.put(b"a", b"lost").unwrap();
    kv.put(b"b", b"lost").unwrap();
    kv.put(b"k", b"stale: must never reappear").unwrap();
    let bytes = kv.staged.clone();
    run((&mem).write(tail, &bytes)).unwrap();
    let crashed = mem.crash(|_, s| s != 0);
    // Recovery: only the acknowledged record; then a new acknowledged write of "k"
    // and of one more key, over the torn area.
    let mut kv2 = run(Kv::open(&crashed)).unwrap();
    assert!(kv2.stats().torn_tail);
    assert_eq!(kv2.get(b"k"), Some(&b"acknowledged 1"[..]));
    assert_eq!(kv2.get(b"a"), None);
    kv2.put(b"k", b"acknowledged 2").unwrap();
    run(kv2.commit()).unwrap();
    let again = crashed.crash(|_, _| false);
    let kv3 = run(Kv::open(&again)).unwrap();
    assert_eq!(kv3.get(b"k"), Some(&b"acknowledged 2"[..]));
    assert_eq!(kv3.len(), 1);
}

#[test]
fn sizes_and_a_full_log_are_refused_without_damage() {
    let mem = Mem::new((LOG_START + MAX_BATCH) as usize + 8192);
    let mut kv = run(Kv::open(&mem)).unwrap();
    assert_eq!(kv.put(b"", b"x"), Err(Error::BadSize));
    assert_eq!(kv.put(&[b'k'; MAX_KEY + 1], b"x"), Err(Error::BadSize));
    assert_eq!(kv.put(b"k", &vec![0; MAX_VALUE + 1]), Err(Error::BadSize));
    let mut n = 0u32;
    let err = loop {
        match kv.put(&key(n), &[7; 4000]) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::Full);
    run(kv.commit()).unwrap();
    let after = mem.crash(|_, _| false);
    let kv2 = run(Kv::open(&after)).unwrap();
    assert_eq!(kv2.len() as u32, n);
}

#[test]
fn a_record_is_checked_field_by_field() {
    let mut out = Vec::new();
    Record {
        seq: 9,
        kind: Kind::Put,
        key: b"key",
        value: b"value",
    }
    .encode_into(&mut out);
    assert_eq!(out.len(), 512);
    assert!(Record::decode(&out, 9).is_some());
    assert!(Record::decode(&out, 10).is_none(), "out of sequence");
    for at in [0, 5, 9, 16, 17, 19, 24, 30] {
        let mut bad = out.clone();
        bad[at] ^= 0x40;
        assert!(Record::decode(&bad, 9).is_none(), "byte {at} flipped");
    }
    assert!(Record::decode(&out[..100], 9).is_none(), "cut short");
}

#[test]
fn read_only_opens_replay_and_write_nothing() {
    let mem = Mem::new(DISK);
    assert_eq!(run(Kv::open_readonly(&mem)).err(), Some(Error::Blank));
    let mut kv = run(Kv::open(&mem)).unwrap();
    kv.put(b"a", b"1").unwrap();
    run(kv.commit()).unwrap();
    let before = mem.data.borrow().clone();
    let flushes = *mem.flushes.borrow();
    let mut ro = run(Kv::open_readonly(&mem)).unwrap();
    assert_eq!(ro.get(b"a"), Some(&b"1"[..]));
    assert_eq!(ro.put(b"b", b"2"), Err(Error::ReadOnly));
    assert_eq!(ro.del(b"a"), Err(Error::ReadOnly));
    run(ro.commit()).unwrap();
    assert!(*mem.data.borrow() == before && *mem.flushes.borrow() == flushes);
}
