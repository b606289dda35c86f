//! Our own grant table, version 1 (`xen/include/public/grant_table.h`): we let other
//! domains map or copy our pages by filling `grant_entry_v1` entries in table frames
//! we share with the hypervisor.
//!
//! The protocol of an entry (grant_table.h, "Grant table entry flags"): write `frame`
//! and `domid` first, then, after a write barrier, `flags` = `GTF_permit_access` (plus
//! `GTF_readonly`). To revoke, clear `flags` with a compare-and-exchange that fails if
//! the hypervisor has set `GTF_reading`/`GTF_writing`: the grantee still has it
//! mapped, and the page must not be reused until it lets go.
//!
//! Entries below `GNTTAB_NR_RESERVED_ENTRIES` (8) are the toolstack's (the console
//! and xenstore rings, `GNTTAB_RESERVED_CONSOLE`/`_XENSTORE`) and never handed out.

use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};

use spin::Mutex;
use xen_sys::{
    domid_t, grant_entry_v1, grant_ref_t, GTF_permit_access, GTF_reading, GTF_readonly,
    GTF_writing, GNTTAB_NR_RESERVED_ENTRIES,
};

use crate::hypercall::{self, GrantError};
use crate::paging::PAGE_SIZE;
use crate::vmap;

/// Table frames we ask for (512 entries each).
pub const FRAMES: usize = 4;
const PER_FRAME: usize = PAGE_SIZE as usize / core::mem::size_of::<grant_entry_v1>();

/// Why a grant could not be made or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Setting the table up failed.
    Setup(GrantError),
    /// Mapping a table frame failed.
    Map(hypercall::XenError),
    /// Every entry is in use.
    Full,
    /// The grantee still has the page mapped (`GTF_reading`/`GTF_writing`).
    InUse,
    /// Not a reference [`grant`] handed out.
    BadRef,
}

const ENTRIES: usize = FRAMES * PER_FRAME;

struct Table {
    /// Where each table frame is mapped.
    frames: Vec<u64>,
    free: Vec<grant_ref_t>,
    /// One bit per entry handed out: [`end_grant`] checks a reference in O(1) (a
    /// search of `free` was one per packet a front end sends or receives).
    granted: [u64; ENTRIES / 64],
}

impl Table {
    fn is_granted(&self, gref: grant_ref_t) -> bool {
        let i = gref as usize;
        i < ENTRIES && self.granted[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_granted(&mut self, gref: grant_ref_t, on: bool) {
        let (w, bit) = (gref as usize / 64, 1u64 << (gref as usize % 64));
        if on {
            self.granted[w] |= bit;
        } else {
            self.granted[w] &= !bit;
        }
    }
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with_table<R>(f: impl FnOnce(&mut Table) -> Result<R, Error>) -> Result<R, Error> {
    let mut guard = TABLE.lock();
    if guard.is_none() {
        let mut mfns = [0; FRAMES];
        hypercall::setup_table(&mut mfns).map_err(Error::Setup)?;
        let mut frames = Vec::with_capacity(FRAMES);
        for mfn in mfns {
            frames.push(vmap::map_mfn(mfn, true).map_err(Error::Map)?);
        }
        let free = (GNTTAB_NR_RESERVED_ENTRIES..ENTRIES as u32).rev().collect();
        *guard = Some(Table {
            frames,
            free,
            granted: [0; ENTRIES / 64],
        });
    }
    f(guard.as_mut().expect("set up above"))
}

/// The entry's three fields, as atomics (the hypervisor writes `flags` too).
fn entry(t: &Table, gref: grant_ref_t) -> Option<(&AtomicU16, &AtomicU16, &AtomicU32)> {
    let frame = *t.frames.get(gref as usize / PER_FRAME)?;
    let va = frame + (gref as usize % PER_FRAME * core::mem::size_of::<grant_entry_v1>()) as u64;
    // SAFETY: `va` is an 8-byte entry inside a table frame mapped writable for as long
    // as the domain lives; its fields are naturally aligned (flags u16 at 0, domid u16
    // at 2, frame u32 at 4, grant_entry_v1's layout), and are only accessed atomically.
    unsafe {
        Some((
            AtomicU16::from_ptr(va as *mut u16),
            AtomicU16::from_ptr((va + 2) as *mut u16),
            AtomicU32::from_ptr((va + 4) as *mut u32),
        ))
    }
}

/// Lets domain `to` map or copy machine frame `mfn` (read-only if `readonly`).
pub fn grant(to: domid_t, mfn: u64, readonly: bool) -> Result<grant_ref_t, Error> {
    with_table(|t| {
        let gref = t.free.pop().ok_or(Error::Full)?;
        let (flags, domid, frame) = entry(t, gref).ok_or(Error::BadRef)?;
        frame.store(mfn as u32, Ordering::Relaxed);
        domid.store(to, Ordering::Relaxed);
        fence(Ordering::Release);
        let ro = if readonly { GTF_readonly as u16 } else { 0 };
        flags.store(GTF_permit_access as u16 | ro, Ordering::Release);
        t.set_granted(gref, true);
        Ok(gref)
    })
}

/// Revokes `gref`. Fails with [`Error::InUse`] (the entry stays granted) while the
/// grantee has the page mapped.
pub fn end_grant(gref: grant_ref_t) -> Result<(), Error> {
    with_table(|t| {
        if !t.is_granted(gref) {
            return Err(Error::BadRef);
        }
        let (flags, _, _) = entry(t, gref).ok_or(Error::BadRef)?;
        let mut cur = flags.load(Ordering::Acquire);
        loop {
            if cur & (GTF_reading | GTF_writing) as u16 != 0 {
                return Err(Error::InUse);
            }
            match flags.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        t.set_granted(gref, false);
        t.free.push(gref);
        Ok(())
    })
}
