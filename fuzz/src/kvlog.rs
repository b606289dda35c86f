//! `kvlog::Kv::open` on a disk whose log is the input: replay must take any bytes a
//! crash (or anyone with the image) can leave. Input: byte 0 chooses whether sector 0
//! gets a valid superblock (even) or the input's next 512 bytes (odd); the rest is
//! the log from `LOG_START` on (the disk is zeros beyond it).
//!
//! Checked: open never panics; what it replays keeps every key and value within the
//! limits; a second open of the disk the first left (it zeroes behind the tail) finds
//! the same keys and no torn tail; a put committed then is there after a third open.

use core::cell::RefCell;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use kvlog::{IoError, Kv, Storage, LOG_START, MAX_BATCH, MAX_KEY, MAX_VALUE, SECTOR};

const DISK: usize = (LOG_START + 2 * MAX_BATCH) as usize;

struct Mem(RefCell<Vec<u8>>);

impl Storage for &Mem {
    fn size(&self) -> u64 {
        self.0.borrow().len() as u64
    }
    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let d = self.0.borrow();
        let r = offset as usize..offset as usize + buf.len();
        buf.copy_from_slice(d.get(r).ok_or(IoError)?);
        Ok(())
    }
    async fn write(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        let mut d = self.0.borrow_mut();
        let r = offset as usize..offset as usize + data.len();
        d.get_mut(r).ok_or(IoError)?.copy_from_slice(data);
        Ok(())
    }
    async fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
}

fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the memory disk never waits"),
    }
}

fn keys(kv: &Kv<&Mem>) -> Vec<(Vec<u8>, Vec<u8>)> {
    kv.keys()
        .map(|k| (k.to_vec(), kv.get(k).expect("listed").to_vec()))
        .collect()
}

pub fn check(data: &[u8]) {
    let mut disk = vec![0u8; DISK];
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let log = if mode % 2 == 0 {
        disk[..SECTOR as usize].copy_from_slice(&kvlog::superblock::encode());
        rest
    } else {
        let (sb, log) = rest.split_at(rest.len().min(SECTOR as usize));
        disk[..sb.len()].copy_from_slice(sb);
        log
    };
    let n = log.len().min(DISK - LOG_START as usize);
    disk[LOG_START as usize..LOG_START as usize + n].copy_from_slice(&log[..n]);
    let mem = Mem(RefCell::new(disk));
    let Ok(kv) = run(Kv::open(&mem)) else {
        return;
    };
    let first = keys(&kv);
    for (k, v) in &first {
        assert!(!k.is_empty() && k.len() <= MAX_KEY && v.len() <= MAX_VALUE);
    }
    assert!(kv.stats().log_bytes <= DISK as u64);
    drop(kv);
    let mut again = run(Kv::open(&mem)).expect("a disk the store left opens");
    assert_eq!(keys(&again), first, "a second replay differs");
    assert!(!again.stats().torn_tail, "a torn tail survived the first open");
    match again.put(b"fuzz", b"value") {
        Ok(()) => {
            run(again.commit()).expect("a commit to memory");
            drop(again);
            let third = run(Kv::open(&mem)).expect("reopens");
            assert_eq!(third.get(b"fuzz"), Some(&b"value"[..]));
        }
        Err(kvlog::Error::Full) => {}
        Err(e) => panic!("put refused: {e}"),
    }
}
