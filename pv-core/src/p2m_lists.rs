//! The P2M frame lists a PV guest publishes for the toolstack's save and migration
//! (`xen/include/public/arch-x86/xen.h`, `arch_shared_info`: `max_pfn` and
//! `pfn_to_mfn_frame_list_list`; read by libxc's `map_p2m_tree` in
//! `tools/libs/guest/xg_sr_save_x86_pv.c`, built as Mini-OS's `arch_init_p2m` and
//! Linux's `xen_build_mfn_list_list` do).
//!
//! Three levels of pages of machine frame numbers, 512 to a page on x86_64: the guest's
//! own P2M list (entry `pfn` is the MFN of pseudo-physical frame `pfn`), then frame
//! list pages naming the P2M list's pages, then one "frame list list" page naming the
//! frame list pages, whose MFN goes in `shared_info`. `max_pfn` is the number of
//! entries. The P2M pages themselves are the live list, so the tools read the guest's
//! current mapping.

/// MFNs per page (8-byte entries).
pub const PER_PAGE: usize = 512;

/// How many pages each level needs for a P2M list of `entries` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Pages of the P2M list itself.
    pub p2m_pages: usize,
    /// Frame list pages (each names up to 512 P2M pages).
    pub list_pages: usize,
}

/// The layout for `entries` P2M entries; `None` beyond what one frame list list page
/// can name (512 * 512 * 512 frames: 512 GiB).
pub fn layout(entries: u64) -> Option<Layout> {
    let p2m_pages = usize::try_from(entries.div_ceil(PER_PAGE as u64)).ok()?;
    let list_pages = p2m_pages.div_ceil(PER_PAGE);
    (entries > 0 && list_pages <= PER_PAGE).then_some(Layout {
        p2m_pages,
        list_pages,
    })
}

/// Fills the frame list pages (`lists`, `layout.list_pages` of them) with the MFNs of
/// the P2M pages (`p2m_mfn(i)` for page `i`), and the frame list list (`top`) with
/// theirs (`list_mfn(j)`). Unused entries are 0, as the tools expect for "none".
pub fn fill(
    layout: Layout,
    p2m_mfn: impl Fn(usize) -> u64,
    list_mfn: impl Fn(usize) -> u64,
    lists: &mut [[u64; PER_PAGE]],
    top: &mut [u64; PER_PAGE],
) {
    assert_eq!(
        lists.len(),
        layout.list_pages,
        "one array per frame list page"
    );
    top.fill(0);
    for (j, list) in lists.iter_mut().enumerate() {
        list.fill(0);
        let first = j * PER_PAGE;
        let n = (layout.p2m_pages - first).min(PER_PAGE);
        for (k, slot) in list[..n].iter_mut().enumerate() {
            *slot = p2m_mfn(first + k);
        }
        top[j] = list_mfn(j);
    }
}

/// The MFN of P2M entry `pfn` as the tools find it: from the frame list list `top`,
/// through `read_page` (an MFN to its 512 entries), or `None` where a level names
/// MFN 0 or `pfn` is not below `max_pfn`.
pub fn lookup(
    top: &[u64; PER_PAGE],
    max_pfn: u64,
    pfn: u64,
    read_page: impl Fn(u64) -> [u64; PER_PAGE],
) -> Option<u64> {
    if pfn >= max_pfn {
        return None;
    }
    let per = PER_PAGE as u64;
    let (j, k, e) = (pfn / (per * per), (pfn / per) % per, pfn % per);
    let list = *top.get(j as usize).filter(|&&m| m != 0)?;
    let p2m = read_page(list)[k as usize];
    (p2m != 0).then(|| read_page(p2m)[e as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn layouts_round_up_per_level() {
        assert_eq!(layout(0), None);
        assert_eq!(
            layout(1),
            Some(Layout {
                p2m_pages: 1,
                list_pages: 1
            })
        );
        assert_eq!(
            layout(512),
            Some(Layout {
                p2m_pages: 1,
                list_pages: 1
            })
        );
        assert_eq!(
            layout(513),
            Some(Layout {
                p2m_pages: 2,
                list_pages: 1
            })
        );
        // 16 MiB, 256 MiB: one frame list page covers 1 GiB.
        assert_eq!(
            layout(4096),
            Some(Layout {
                p2m_pages: 8,
                list_pages: 1
            })
        );
        assert_eq!(
            layout(1 << 18),
            Some(Layout {
                p2m_pages: 512,
                list_pages: 1
            })
        );
        assert_eq!(
            layout((1 << 18) + 1),
            Some(Layout {
                p2m_pages: 513,
                list_pages: 2
            })
        );
        assert!(layout(512 * 512 * 512).is_some());
        assert_eq!(layout(512 * 512 * 512 + 1), None);
    }

    /// A guest of `entries` frames whose P2M maps pfn to 1000 + pfn, its P2M pages at
    /// MFNs 50_000 + i and frame list pages at 60_000 + j: every entry is found by the
    /// tools' walk, and nothing past `max_pfn`.
    #[test]
    fn the_tools_walk_finds_every_entry() {
        for entries in [1u64, 511, 4096, 300_000] {
            let l = layout(entries).unwrap();
            let mut lists = std::vec![[0u64; PER_PAGE]; l.list_pages];
            let mut top = [0u64; PER_PAGE];
            fill(
                l,
                |i| 50_000 + i as u64,
                |j| 60_000 + j as u64,
                &mut lists,
                &mut top,
            );
            let mut pages: BTreeMap<u64, [u64; PER_PAGE]> = BTreeMap::new();
            for i in 0..l.p2m_pages {
                let mut p = [0u64; PER_PAGE];
                for (e, slot) in p.iter_mut().enumerate() {
                    let pfn = (i * PER_PAGE + e) as u64;
                    if pfn < entries {
                        *slot = 1000 + pfn;
                    }
                }
                pages.insert(50_000 + i as u64, p);
            }
            for (j, list) in lists.iter().enumerate() {
                pages.insert(60_000 + j as u64, *list);
            }
            let read = |mfn: u64| *pages.get(&mfn).expect("an MFN the lists name");
            for pfn in [0, entries / 2, entries - 1] {
                assert_eq!(lookup(&top, entries, pfn, read), Some(1000 + pfn));
            }
            assert_eq!(lookup(&top, entries, entries, read), None);
        }
    }

    #[test]
    fn an_unpublished_list_is_found_by_no_one() {
        let top = [0u64; PER_PAGE];
        assert_eq!(lookup(&top, 10, 3, |_| panic!("nothing to read")), None);
    }
}
