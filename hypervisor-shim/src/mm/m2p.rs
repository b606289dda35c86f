//! The machine-to-phys table: one `u64` per machine frame, the pseudo-physical frame it
//! backs in its owner (or `INVALID`), mapped read-only into every guest at
//! `MACH2PHYS_VIRT_START` (`arch-x86/xen-x86_64.h`).

use alloc::vec::Vec;

use crate::frames::FrameAllocator;
use crate::machine::{write_u64, Machine, Mfn, PAGE_SIZE};
use crate::paging::{self, Pte, ACCESSED, NX, PRESENT, USER};

/// An M2P entry for a frame no guest owns (Xen's `INVALID_M2P_ENTRY`).
pub const INVALID: u64 = !0;
const PER_FRAME: u64 = (PAGE_SIZE / 8) as u64;

/// The table is allocated in 2 MiB chunks of contiguous frames, as Xen does, so that
/// `XENMEM_machphys_mfn_list` can name each chunk by its first frame (the last chunk
/// holds only the frames the machine needs).
pub const CHUNK_ORDER: u32 = 9;
const CHUNK_FRAMES: u64 = 1 << CHUNK_ORDER;

pub struct M2p {
    frames: Vec<Mfn>,
    /// The L4 entry that maps the table (the same in every guest).
    pub l4_entry: u64,
}

impl M2p {
    /// Allocates and maps a table for machine frames `0..nr_mfns`.
    pub fn new<M: Machine>(m: &mut M, alloc: &mut FrameAllocator, nr_mfns: u64) -> Option<Self> {
        let nr = nr_mfns.div_ceil(PER_FRAME);
        // One L3 for the slot, L2s and L1s for the data; 1 GiB of M2P per L2.
        let mut frames = Vec::with_capacity(nr as usize);
        while (frames.len() as u64) < nr {
            // The last chunk only as large as needed (rounded to a power of two).
            let n = (nr - frames.len() as u64).min(CHUNK_FRAMES);
            let order = n.next_power_of_two().trailing_zeros();
            let chunk = alloc.alloc_contiguous(order)?;
            for f in chunk..chunk + (1 << order) {
                if f < chunk + n {
                    m.frame_mut(f)?.fill(0xff);
                    frames.push(f);
                } else {
                    alloc.free(f);
                }
            }
        }
        let mut new_frame = |m: &mut M, fill: u8| {
            let f = alloc.alloc()?;
            m.frame_mut(f)?.fill(fill);
            Some(f)
        };
        let l3 = new_frame(m, 0)?;
        let table = PRESENT | USER | ACCESSED;
        let base = xen_sys::MACH2PHYS_VIRT_START;
        let (mut l2, mut l1) = (None, None);
        for (i, &f) in frames.iter().enumerate() {
            let va = base + (i * PAGE_SIZE) as u64;
            let new_l2 = paging::index(va, 2) == 0 && paging::index(va, 1) == 0;
            if new_l2 || l2.is_none() {
                let t = new_frame(m, 0)?;
                write_u64(m, l3, paging::index(va, 3) * 8, Pte::new(t, table).0);
                l2 = Some(t);
            }
            if paging::index(va, 1) == 0 || l1.is_none() {
                let t = new_frame(m, 0)?;
                write_u64(m, l2?, paging::index(va, 2) * 8, Pte::new(t, table).0);
                l1 = Some(t);
            }
            write_u64(
                m,
                l1?,
                paging::index(va, 1) * 8,
                Pte::new(f, PRESENT | USER | ACCESSED | NX).0,
            );
        }
        Some(M2p {
            frames,
            l4_entry: Pte::new(l3, table).0,
        })
    }

    pub fn set<M: Machine + ?Sized>(&self, m: &mut M, mfn: Mfn, pfn: u64) {
        let frame = (mfn / PER_FRAME) as usize;
        if let Some(&f) = self.frames.get(frame) {
            write_u64(m, f, ((mfn % PER_FRAME) * 8) as usize, pfn);
        }
    }

    /// The entry of `mfn` (INVALID where the table has none).
    pub fn get<M: Machine + ?Sized>(&self, m: &M, mfn: Mfn) -> u64 {
        let frame = (mfn / PER_FRAME) as usize;
        self.frames
            .get(frame)
            .and_then(|&f| m.frame(f))
            .map_or(INVALID, |f| {
                crate::machine::read_u64(f, (mfn % PER_FRAME) as usize)
            })
    }

    /// The frames holding the table (shared read-only with every guest).
    pub fn frames(&self) -> &[Mfn] {
        &self.frames
    }

    /// The first frame of each 2 MiB chunk of the table (`XENMEM_machphys_mfn_list`).
    pub fn chunks(&self) -> impl Iterator<Item = Mfn> + '_ {
        self.frames.iter().step_by(CHUNK_FRAMES as usize).copied()
    }

    /// Bytes of the table that are mapped (one entry per machine frame, whole pages).
    pub fn mapped_bytes(&self) -> u64 {
        self.frames.len() as u64 * PAGE_SIZE as u64
    }

    /// The L4 slot of `MACH2PHYS_VIRT_START`.
    pub fn l4_slot() -> usize {
        paging::index(xen_sys::MACH2PHYS_VIRT_START, 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::GuestMemory;
    use crate::testing::TestMachine;

    #[test]
    fn guests_read_it_and_cannot_write_it() {
        let mut m = TestMachine::new(0, 2048);
        let mut alloc = FrameAllocator::new();
        alloc.add(16, 2048);
        let m2p = M2p::new(&mut m, &mut alloc, 2048).unwrap();
        m2p.set(&mut m, 700, 5);
        let l4 = alloc.alloc().unwrap();
        m.zero_frame(l4);
        write_u64(&mut m, l4, M2p::l4_slot() * 8, m2p.l4_entry);
        let mut g = GuestMemory {
            machine: &mut m,
            l4,
        };
        let mut b = [0u8; 8];
        g.read(xen_sys::MACH2PHYS_VIRT_START + 700 * 8, &mut b)
            .unwrap();
        assert_eq!(u64::from_le_bytes(b), 5);
        g.read(xen_sys::MACH2PHYS_VIRT_START + 701 * 8, &mut b)
            .unwrap();
        assert_eq!(u64::from_le_bytes(b), INVALID);
        assert!(g.write(xen_sys::MACH2PHYS_VIRT_START, &[0]).is_err());
        assert!(g
            .read(xen_sys::MACH2PHYS_VIRT_START + 2048 * 8, &mut b)
            .is_err());
    }
}
