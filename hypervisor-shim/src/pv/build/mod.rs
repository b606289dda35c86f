//! Building a PV domain from a kernel image, the way Xen builds dom0
//! (`xen/include/public/xen.h` start-of-day rules, `start_info`, `shared_info`):
//! allocate and scrub its memory, load the segments, fill the hypercall page, write the
//! P2M list and `start_info`, build the bootstrap page tables (read-only to the guest
//! where they map themselves) and the initial register state.

use alloc::vec::Vec;
use core::mem::offset_of;

use xen_sys::{shared_info, start_info, vcpu_info, SIF_INITDOMAIN, SIF_PRIVILEGED};

pub mod bundle;
pub mod elf;
pub mod layout;

use crate::frames::FrameAllocator;
use crate::machine::{write_bytes, write_u64, Machine, Mfn, PAGE_SIZE};
use crate::paging::{self, Pte, ACCESSED, DIRTY, PRESENT, USER, WRITABLE};
use crate::pv::build::elf::XenImage;
use crate::pv::build::layout::{Layout, LayoutError};
use crate::trap::{TrapFrame, RING3_CS64, RING3_SS};

/// RFLAGS a guest starts with: IF set (the guest's own "interrupt flag" is the event
/// mask in `vcpu_info`, which starts masked) and the reserved bit 1.
pub const GUEST_RFLAGS: u64 = 0x202;

#[derive(Clone, Debug)]
pub struct DomainConfig<'a> {
    pub domid: u16,
    pub nr_pages: u64,
    pub cmdline: &'a str,
    /// The initial, privileged domain (`SIF_PRIVILEGED | SIF_INITDOMAIN`).
    pub initial: bool,
}

#[derive(Clone, Debug)]
pub struct BuiltDomain {
    /// Pseudo-physical to machine frame map.
    pub p2m: Vec<Mfn>,
    pub l4: Mfn,
    pub shared_info: Mfn,
    pub layout: Layout,
    pub regs: TrapFrame,
}

impl BuiltDomain {
    /// What the domain's record starts from.
    pub fn initial(&self) -> crate::domain::Initial {
        crate::domain::Initial {
            l4: self.l4,
            shared_info: self.shared_info,
            regs: self.regs,
            nr_pages: self.p2m.len() as u64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    Layout(LayoutError),
    /// Not enough free machine frames for the domain's memory.
    OutOfMemory {
        wanted: u64,
        free: u64,
    },
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            BuildError::Layout(e) => write!(f, "{e}"),
            BuildError::OutOfMemory { wanted, free } => {
                write!(
                    f,
                    "out of memory: domain wants {wanted} frames, {free} free"
                )
            }
        }
    }
}

/// Hypercall page contents for a 64-bit PV guest: 32 bytes per hypercall, each
/// `push %rcx; push %r11; mov $nr,%eax; syscall; pop %r11; pop %rcx; ret`, except
/// `iret`, which does not return and keeps the guest's RAX on the stack for the shim.
pub fn hypercall_page() -> [u8; PAGE_SIZE] {
    let mut page = [0xcc; PAGE_SIZE]; // int3 padding
    for (nr, stub) in page.chunks_exact_mut(32).enumerate() {
        let nr = nr as u32;
        if nr == xen_sys::__HYPERVISOR_iret {
            stub[..4].copy_from_slice(&[0x51, 0x41, 0x53, 0x50]);
            stub[4] = 0xb8;
            stub[5..9].copy_from_slice(&nr.to_le_bytes());
            stub[9..11].copy_from_slice(&[0x0f, 0x05]);
        } else {
            stub[..4].copy_from_slice(&[0x51, 0x41, 0x53, 0xb8]);
            stub[4..8].copy_from_slice(&nr.to_le_bytes());
            stub[8..14].copy_from_slice(&[0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3]);
        }
    }
    page
}

/// Builds a domain. `shim_l4` are the L4 slots the shim keeps in every address space
/// (its direct map and the read-only M2P). The caller records the returned P2M in
/// the M2P table.
pub fn build<M: Machine>(
    m: &mut M,
    frames: &mut FrameAllocator,
    image: &XenImage,
    cfg: &DomainConfig,
    shim_l4: &[(usize, u64)],
) -> Result<BuiltDomain, BuildError> {
    let layout = Layout::new(image, cfg.nr_pages, cfg.initial).map_err(BuildError::Layout)?;
    let free = frames.free_frames();
    if free < cfg.nr_pages + 1 {
        return Err(BuildError::OutOfMemory {
            wanted: cfg.nr_pages + 1,
            free,
        });
    }
    let mut p2m = Vec::with_capacity(cfg.nr_pages as usize);
    for _ in 0..cfg.nr_pages {
        let mfn = frames.alloc().ok_or(BuildError::OutOfMemory {
            wanted: cfg.nr_pages,
            free,
        })?;
        m.zero_frame(mfn);
        p2m.push(mfn);
    }
    let shared = frames
        .alloc()
        .ok_or(BuildError::OutOfMemory { wanted: 1, free: 0 })?;
    m.zero_frame(shared);

    let frame_of = |va: u64| p2m[layout.pfn(va) as usize];
    let copy_to = |m: &mut M, mut va: u64, mut bytes: &[u8]| {
        while !bytes.is_empty() {
            let off = (va as usize) & (PAGE_SIZE - 1);
            let n = (PAGE_SIZE - off).min(bytes.len());
            write_bytes(m, frame_of(va), off, &bytes[..n]);
            va += n as u64;
            bytes = &bytes[n..];
        }
    };

    for seg in &image.segments {
        let data = &image.data[seg.file_offset..seg.file_offset + seg.filesz];
        copy_to(m, seg.vaddr, data); // the rest of memsz is already zero
    }
    if let Some(hp) = image.hypercall_page {
        copy_to(m, hp, &hypercall_page());
    }

    // P2M list: one machine frame number per pseudo-physical frame.
    for (pfn, mfn) in p2m.iter().enumerate() {
        let va = layout.p2m.0 + pfn as u64 * 8;
        write_u64(m, frame_of(va), (va as usize) & (PAGE_SIZE - 1), *mfn);
    }

    // shared_info: events masked on vCPU 0 until the guest unmasks them.
    let mask = offset_of!(shared_info, vcpu_info) + offset_of!(vcpu_info, evtchn_upcall_mask);
    write_bytes(m, shared, mask, &[1]);
    let max_pfn = offset_of!(shared_info, arch) + offset_of!(xen_sys::arch_shared_info, max_pfn);
    write_u64(m, shared, max_pfn, cfg.nr_pages);

    write_start_info(m, frame_of(layout.start_info), &layout, &p2m, shared, cfg);
    let l4 = build_page_tables(m, &layout, &p2m, shim_l4);

    let regs = TrapFrame {
        rip: image.entry,
        cs: RING3_CS64 as u64,
        rflags: GUEST_RFLAGS,
        rsp: layout.stack.1,
        ss: RING3_SS as u64,
        rsi: layout.start_info,
        ..TrapFrame::default()
    };
    Ok(BuiltDomain {
        p2m,
        l4,
        shared_info: shared,
        layout,
        regs,
    })
}

fn write_start_info<M: Machine>(
    m: &mut M,
    si: Mfn,
    layout: &Layout,
    p2m: &[Mfn],
    shared: Mfn,
    cfg: &DomainConfig,
) {
    let mut put = |off: usize, v: u64| write_u64(m, si, off, v);
    put(offset_of!(start_info, nr_pages), p2m.len() as u64);
    put(offset_of!(start_info, shared_info), shared << 12);
    put(offset_of!(start_info, pt_base), layout.page_tables.0);
    put(offset_of!(start_info, nr_pt_frames), layout.nr_pt_frames());
    put(offset_of!(start_info, mfn_list), layout.p2m.0);
    if let Some((store, _)) = layout.store_console {
        put(
            offset_of!(start_info, store_mfn),
            p2m[layout.pfn(store) as usize],
        );
        let console = offset_of!(start_info, console)
            + offset_of!(xen_sys::start_info__bindgen_ty_1__bindgen_ty_1, mfn);
        put(console, p2m[layout.pfn(store) as usize + 1]);
    }
    let flags = if cfg.initial {
        SIF_PRIVILEGED | SIF_INITDOMAIN
    } else {
        0
    };
    write_bytes(m, si, offset_of!(start_info, flags), &flags.to_le_bytes());
    write_bytes(m, si, offset_of!(start_info, magic), b"xen-3.0-x86_64\0");
    let cmd = cfg.cmdline.as_bytes();
    let n = cmd.len().min(xen_sys::MAX_GUEST_CMDLINE as usize - 1);
    write_bytes(m, si, offset_of!(start_info, cmd_line), &cmd[..n]);
}

/// Writes a domU's xenstore and console event channels into its `start_info` (frame
/// `si`): `store_evtchn` and `console.domU.evtchn`.
pub fn set_ring_evtchns<M: Machine>(m: &mut M, si: Mfn, store: u32, console: u32) {
    let console_at = offset_of!(start_info, console)
        + offset_of!(xen_sys::start_info__bindgen_ty_1__bindgen_ty_1, evtchn);
    write_bytes(
        m,
        si,
        offset_of!(start_info, store_evtchn),
        &store.to_le_bytes(),
    );
    write_bytes(m, si, console_at, &console.to_le_bytes());
}

/// Maps the whole initial region with 4 KiB pages; the page-table pages themselves are
/// mapped read-only (a frame is a page table or writable, never both). Returns the L4.
fn build_page_tables<M: Machine>(
    m: &mut M,
    layout: &Layout,
    p2m: &[Mfn],
    shim_l4: &[(usize, u64)],
) -> Mfn {
    let table_flags = PRESENT | WRITABLE | USER | ACCESSED;
    let mut next_pt = layout.pfn(layout.page_tables.0) as usize;
    let mut alloc_pt = || {
        let mfn = p2m[next_pt];
        next_pt += 1;
        mfn
    };
    let l4 = alloc_pt();
    for &(slot, entry) in shim_l4 {
        write_u64(m, l4, slot * 8, entry);
    }
    let mut va = layout.v_start;
    while va < layout.v_end {
        let mut table = l4;
        for level in (2..=4).rev() {
            let off = paging::index(va, level) * 8;
            let pte = Pte(m
                .frame(table)
                .map_or(0, |f| crate::machine::read_u64(f, off / 8)));
            table = if pte.present() {
                pte.mfn()
            } else {
                let t = alloc_pt();
                write_u64(m, table, off, Pte::new(t, table_flags).0);
                t
            };
        }
        let in_pt = (layout.page_tables.0..layout.page_tables.1).contains(&va);
        let flags = if in_pt {
            PRESENT | USER | ACCESSED
        } else {
            PRESENT | WRITABLE | USER | ACCESSED | DIRTY
        };
        let mfn = p2m[layout.pfn(va) as usize];
        write_u64(m, table, paging::index(va, 1) * 8, Pte::new(mfn, flags).0);
        va += PAGE_SIZE as u64;
    }
    debug_assert!(next_pt as u64 <= layout.pfn(layout.page_tables.1));
    l4
}

/// Takes a freshly built domain into the frame table, as Xen's dom0 builder leaves
/// it: every frame of its reservation (and its shared_info page) owned by it with its
/// allocation reference, and its bootstrap L4 validated as the kernel base pointer,
/// which types the bootstrap tables (L4..L1), gives every writable mapping a writable
/// type reference and every read-only one a general reference.
pub fn adopt_domain<M: Machine + ?Sized>(
    table: &mut crate::mm::FrameTable,
    m: &mut M,
    domid: u16,
    privileged: bool,
    built: &BuiltDomain,
) -> Result<(), crate::mm::Errno> {
    table.register_domain(domid, privileged);
    for &mfn in &built.p2m {
        table.assign(mfn, domid, false)?;
    }
    table.assign(built.shared_info, domid, true)?;
    table.switch_base(m, domid, Some(built.l4), None)?;
    // Xen's builders pin the initial L4 too (dom0_build.c, libxenguest's
    // `arch_setup_bootlate`); kernels rely on it, e.g. Linux unpins it once it has
    // built its own tables.
    table.pin(m, built.l4, 4, domid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::GuestMemory;
    use crate::pv::build::elf::testing::make_elf;
    use crate::testing::TestMachine;
    use alloc::vec;

    const BASE: u64 = 0xffff_ffff_8000_0000;

    fn image_bytes() -> Vec<u8> {
        let mut code = vec![0x90u8; 0x3000];
        code[0x2000..0x2010].copy_from_slice(b"kernel data here");
        make_elf(
            BASE,
            &code,
            0x5000,
            &[
                (xen_sys::XEN_ELFNOTE_VIRT_BASE, BASE.to_le_bytes().to_vec()),
                (
                    xen_sys::XEN_ELFNOTE_ENTRY,
                    (BASE + 0x10).to_le_bytes().to_vec(),
                ),
                (
                    xen_sys::XEN_ELFNOTE_HYPERCALL_PAGE,
                    (BASE + 0x1000).to_le_bytes().to_vec(),
                ),
            ],
        )
    }

    struct Built {
        m: TestMachine,
        d: BuiltDomain,
    }

    fn build_test_domain(nr_pages: u64, initial: bool) -> Built {
        let bytes = image_bytes();
        let img = XenImage::parse(&bytes).unwrap();
        let mut m = TestMachine::new(0x1000, 4096);
        let mut frames = FrameAllocator::new();
        frames.add(0x1000, 0x1000 + 4096);
        let cfg = DomainConfig {
            domid: 0,
            nr_pages,
            cmdline: "console=hvc0 quiet",
            initial,
        };
        let shim = [(262usize, 0xdead_b000 | PRESENT | WRITABLE)];
        let d = build(&mut m, &mut frames, &img, &cfg, &shim).unwrap();
        Built { m, d }
    }

    #[test]
    fn layout_follows_the_start_of_day_rules() {
        let b = build_test_domain(2048, true);
        let l = b.d.layout;
        assert_eq!(l.v_start, BASE);
        assert_eq!(l.kernel, (BASE, BASE + 0x5000));
        assert_eq!(l.p2m, (BASE + 0x5000, BASE + 0x5000 + 0x4000));
        assert_eq!(l.start_info, l.p2m.1);
        assert_eq!(l.page_tables.0, l.start_info + 0x1000);
        assert_eq!(l.stack.0, l.page_tables.1);
        assert_eq!(l.v_end % (4 << 20), 0);
        assert!(l.v_end - l.stack.1 >= 512 << 10);
        // One L4, one L3, one L2, and an L1 per 2 MiB of the region.
        assert_eq!(l.nr_pt_frames(), 3 + (l.v_end - l.v_start) / (2 << 20));
        assert_eq!(b.d.regs.rsp, l.stack.1);
        assert_eq!(b.d.regs.rsi, l.start_info);
        assert_eq!(b.d.regs.rip, BASE + 0x10);
        assert_eq!(b.d.regs.cs, 0xe033);
    }

    #[test]
    fn every_bootstrap_page_is_mapped_to_its_pfn() {
        let mut b = build_test_domain(2048, true);
        let l = b.d.layout;
        let p2m = b.d.p2m.clone();
        let g = GuestMemory {
            machine: &mut b.m,
            l4: b.d.l4,
        };
        let mut va = l.v_start;
        while va < l.v_end {
            let in_pt = (l.page_tables.0..l.page_tables.1).contains(&va);
            assert_eq!(g.translate(va, false), Ok(p2m[l.pfn(va) as usize]));
            assert_eq!(
                g.translate(va, true).is_ok(),
                !in_pt,
                "page tables read-only at {va:#x}"
            );
            va += 4096;
        }
        assert!(g.translate(l.v_end, false).is_err());
        assert!(g.translate(0, false).is_err());
    }

    #[test]
    fn image_hypercall_page_and_start_info_are_in_place() {
        let mut b = build_test_domain(2048, true);
        let l = b.d.layout;
        let shim_slot = crate::machine::read_u64(b.m.frame(b.d.l4).unwrap(), 262);
        assert_eq!(shim_slot, 0xdead_b000 | PRESENT | WRITABLE);
        let g = GuestMemory {
            machine: &mut b.m,
            l4: b.d.l4,
        };
        let mut buf = [0u8; 16];
        g.read(BASE + 0x2000, &mut buf).unwrap();
        assert_eq!(&buf, b"kernel data here");
        g.read(BASE + 0x4000, &mut buf).unwrap();
        assert_eq!(buf, [0; 16], "bss is zeroed");
        // console_io is hypercall 18: mov $18,%eax at offset 18*32+3.
        g.read(BASE + 0x1000 + 18 * 32, &mut buf).unwrap();
        assert_eq!(
            &buf[..14],
            &[0x51, 0x41, 0x53, 0xb8, 18, 0, 0, 0, 0x0f, 0x05, 0x41, 0x5b, 0x59, 0xc3]
        );

        let si = l.start_info;
        let rd = |off: usize| {
            let mut b = [0u8; 8];
            g.read(si + off as u64, &mut b).unwrap();
            u64::from_le_bytes(b)
        };
        assert_eq!(rd(offset_of!(start_info, nr_pages)), 2048);
        assert_eq!(rd(offset_of!(start_info, pt_base)), l.page_tables.0);
        assert_eq!(rd(offset_of!(start_info, mfn_list)), l.p2m.0);
        assert_eq!(
            rd(offset_of!(start_info, shared_info)),
            b.d.shared_info << 12
        );
        assert_eq!(
            rd(offset_of!(start_info, flags)) as u32,
            SIF_PRIVILEGED | SIF_INITDOMAIN
        );
        let mut magic = [0u8; 15];
        g.read(si, &mut magic).unwrap();
        assert_eq!(&magic, b"xen-3.0-x86_64\0");
        let mut cmd = [0u8; 19];
        g.read(si + offset_of!(start_info, cmd_line) as u64, &mut cmd)
            .unwrap();
        assert_eq!(&cmd, b"console=hvc0 quiet\0");
        // The P2M list as the guest sees it.
        let mut mfn0 = [0u8; 8];
        g.read(l.p2m.0, &mut mfn0).unwrap();
        assert_eq!(u64::from_le_bytes(mfn0), b.d.p2m[0]);
    }

    #[test]
    fn domu_gets_store_and_console_pages_and_no_privilege() {
        let mut b = build_test_domain(2048, false);
        let l = b.d.layout;
        let (store, _) = l.store_console.unwrap();
        assert_eq!(store, l.start_info + 0x1000);
        let g = GuestMemory {
            machine: &mut b.m,
            l4: b.d.l4,
        };
        assert_eq!(
            g.read_u32(l.start_info + offset_of!(start_info, flags) as u64),
            Ok(0)
        );
    }

    #[test]
    fn too_little_memory_is_refused() {
        let bytes = image_bytes();
        let img = XenImage::parse(&bytes).unwrap();
        assert!(matches!(
            Layout::new(&img, 16, true),
            Err(LayoutError::TooSmall { .. })
        ));
        let mut m = TestMachine::new(0, 64);
        let mut frames = FrameAllocator::new();
        frames.add(0, 64);
        let cfg = DomainConfig {
            domid: 1,
            nr_pages: 2048,
            cmdline: "",
            initial: false,
        };
        let err = build(&mut m, &mut frames, &img, &cfg, &[]).unwrap_err();
        assert!(matches!(err, BuildError::OutOfMemory { .. }));
    }
}
