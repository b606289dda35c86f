//! Machine frame allocator for the RAM the shim does not use itself.
//!
//! Free memory is a short sorted list of frame ranges taken from the boot memory map,
//! with the shim image, the boot modules and firmware areas carved out. Frames are
//! handed out one at a time from the lowest range; freed frames go back on a list.

use alloc::vec::Vec;

use crate::machine::Mfn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: Mfn,
    end: Mfn,
}

#[derive(Default, Debug)]
pub struct FrameAllocator {
    ranges: Vec<Range>,
    freed: Vec<Mfn>,
}

impl FrameAllocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the frames `[start, end)` as free, merging with what is already there.
    pub fn add(&mut self, start: Mfn, end: Mfn) {
        if start >= end {
            return;
        }
        self.ranges.push(Range { start, end });
        self.ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<Range> = Vec::with_capacity(self.ranges.len());
        for r in self.ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        self.ranges = merged;
    }

    /// Removes the frames `[start, end)` from the free ranges (they are in use).
    pub fn reserve(&mut self, start: Mfn, end: Mfn) {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for r in self.ranges.drain(..) {
            if end <= r.start || start >= r.end {
                out.push(r);
                continue;
            }
            if r.start < start {
                out.push(Range {
                    start: r.start,
                    end: start,
                });
            }
            if end < r.end {
                out.push(Range {
                    start: end,
                    end: r.end,
                });
            }
        }
        self.ranges = out;
        self.freed.retain(|&f| f < start || f >= end);
    }

    pub fn alloc(&mut self) -> Option<Mfn> {
        if let Some(f) = self.freed.pop() {
            return Some(f);
        }
        let r = self.ranges.first_mut()?;
        let f = r.start;
        r.start += 1;
        if r.start == r.end {
            self.ranges.remove(0);
        }
        Some(f)
    }

    /// `2^order` contiguous frames, aligned to their size (Xen's extents), or `None`.
    pub fn alloc_contiguous(&mut self, order: u32) -> Option<Mfn> {
        if order == 0 {
            return self.alloc();
        }
        let n = 1u64.checked_shl(order)?;
        let start = self.ranges.iter().find_map(|r| {
            let s = r.start.checked_add(n - 1)? & !(n - 1);
            (s.checked_add(n)? <= r.end).then_some(s)
        })?;
        self.reserve(start, start + n);
        Some(start)
    }

    /// Returns a frame for reuse. The caller has scrubbed it and dropped every mapping.
    pub fn free(&mut self, mfn: Mfn) {
        self.freed.push(mfn);
    }

    /// Every free frame (the ranges, then the freed list).
    pub fn free_list(&self) -> impl Iterator<Item = Mfn> + '_ {
        self.ranges
            .iter()
            .flat_map(|r| r.start..r.end)
            .chain(self.freed.iter().copied())
    }

    pub fn free_frames(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum::<u64>() + self.freed.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carves_reserved_ranges_out() {
        let mut a = FrameAllocator::new();
        a.add(0x100, 0x200);
        a.reserve(0x100, 0x110);
        a.reserve(0x150, 0x160);
        assert_eq!(a.free_frames(), 0x100 - 0x20);
        assert_eq!(a.alloc(), Some(0x110));
        let all: Vec<_> = core::iter::from_fn(|| a.alloc()).collect();
        assert!(all.iter().all(|f| !(0x150..0x160).contains(f)));
        assert_eq!(all.len(), 0x100 - 0x20 - 1);
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn contiguous_extents_are_aligned() {
        let mut a = FrameAllocator::new();
        a.add(3, 40);
        assert_eq!(a.alloc_contiguous(3), Some(8));
        assert_eq!(a.alloc_contiguous(4), Some(16));
        assert_eq!(a.alloc_contiguous(5), None);
        assert_eq!(a.free_frames(), 37 - 24);
        assert_eq!(a.alloc_contiguous(64), None);
    }

    #[test]
    fn merges_and_reuses_freed_frames() {
        let mut a = FrameAllocator::new();
        a.add(10, 20);
        a.add(15, 30);
        assert_eq!(a.free_frames(), 20);
        let f = a.alloc().unwrap();
        a.free(f);
        assert_eq!(a.alloc(), Some(f));
        a.free(f);
        a.reserve(f, f + 1);
        assert_ne!(a.alloc(), Some(f));
    }
}
