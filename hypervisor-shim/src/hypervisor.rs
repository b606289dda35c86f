//! The shim's state and its one entry point: every trap or hypercall from the running
//! domain comes here as a [`TrapFrame`] and leaves as the frame to resume, or as the
//! end of the machine when no domain is left.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::builder::{self, DomainConfig};
use crate::cpuid::CpuidPolicy;
use crate::domain::{shutdown_reason_name, Domain, RunState};
use crate::elf::XenImage;
use crate::exception;
use crate::exit::ShimExit;
use crate::frames::FrameAllocator;
use crate::hypercall::{self, Env};
use crate::m2p::M2p;
use crate::machine::{Machine, Mfn};
use crate::mm::{self, FrameTable, Mm};
use crate::trap::{write_fault_report, TrapFrame, SYSCALL_VECTOR};
use crate::vcpu::GuestCpu;

pub struct Hypervisor<M: Machine> {
    pub machine: M,
    pub frames: FrameAllocator,
    pub m2p: M2p,
    /// L4 entries every guest address space carries (M2P, the shim's direct map).
    pub shim_l4: Vec<(usize, u64)>,
    /// Owner, page type and reference counts of every machine frame.
    pub frame_table: FrameTable,
    pub domains: Vec<Domain>,
    pub current: usize,
    pub cmdline: String,
    /// The CPUID policy every guest sees (computed once from the host's leaves).
    pub cpuid: CpuidPolicy,
}

/// Words of the guest's stack shown when it crashes.
const STACK_WORDS: u64 = 4;

/// What the arch layer does after a trap.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Load this L4 and `iretq` into the frame.
    Resume { l4: Mfn },
    /// Nothing left to run: end the machine.
    Halt(ShimExit),
}

impl<M: Machine> Hypervisor<M> {
    /// Builds the initial (privileged) domain from a PV kernel image.
    pub fn create_initial_domain(
        &mut self,
        image: &[u8],
        nr_pages: u64,
        cmdline: &str,
    ) -> Result<&Domain, String> {
        let img = XenImage::parse(image).map_err(|e| format!("{e}"))?;
        let name = String::from(img.guest_os.unwrap_or("domain-0"));
        log::info!(
            "d0: {} ({}), {} pages, image {:#x}-{:#x}, entry {:#x}, hypercall page {:x?}",
            name,
            img.xen_version.unwrap_or("no XEN_VERSION note"),
            nr_pages,
            img.kstart,
            img.kend,
            img.entry,
            img.hypercall_page
        );
        let cfg = DomainConfig {
            domid: 0,
            nr_pages,
            cmdline,
            initial: true,
        };
        let built = builder::build(
            &mut self.machine,
            &mut self.frames,
            &img,
            &cfg,
            &self.shim_l4,
        )
        .map_err(|e| format!("{e}"))?;
        for (pfn, &mfn) in built.p2m.iter().enumerate() {
            self.m2p.set(&mut self.machine, mfn, pfn as u64);
        }
        mm::adopt_domain(&mut self.frame_table, &mut self.machine, 0, true, &built)
            .map_err(|e| format!("bootstrap page tables refused: -{e}"))?;
        self.domains.push(Domain::new(0, name, true, built));
        self.current = self.domains.len() - 1;
        Ok(&self.domains[self.current])
    }

    /// Records an entry frame saved elsewhere than in the running domain's `regs` (the
    /// arch layer's IST entries).
    pub fn save_entry_frame(&mut self, frame: &TrapFrame) {
        if let Some(d) = self.domains.get_mut(self.current) {
            d.regs = *frame;
        }
    }

    /// Handles one entry from the running domain, whose `regs` hold what the CPU and the
    /// entry stub saved. On `Resume`, [`Hypervisor::resume_frame`] is what to return to.
    pub fn handle(&mut self, cr2: u64, console: &mut dyn FnMut(&[u8])) -> Next {
        let cur = self.current;
        let dom = &mut self.domains[cur];
        let vector = dom.regs.vector;
        // Kept for a crash report, as handling an exception rewrites the registers. Not
        // for hypercalls (the hot path): they change only RAX before a crash is known.
        // (`then_some` would copy the frame on every entry, hypercalls included.)
        let entry = if vector != SYSCALL_VECTOR {
            Some(dom.regs)
        } else {
            None
        };
        let result = if vector == SYSCALL_VECTOR && dom.vcpu.kernel_mode {
            let mut env = Env {
                machine: &mut self.machine,
                console,
                cmdline: &self.cmdline,
                mm: Mm {
                    table: &mut self.frame_table,
                    alloc: &mut self.frames,
                    m2p: &self.m2p,
                },
            };
            hypercall::dispatch(&mut env, dom);
            Ok(())
        } else if vector == SYSCALL_VECTOR {
            exception::syscall_from_user(&mut self.machine, dom)
        } else {
            exception::handle(&mut self.machine, &self.cpuid, dom, cr2)
        };
        let result = result.and_then(|()| {
            if dom.runnable() {
                exception::check_return_frame(&mut self.machine, dom)
            } else {
                Ok(())
            }
        });
        if let Err(why) = result {
            // Fatal to the guest only: report what it did, and why it cannot go on.
            let frame = entry.unwrap_or(dom.regs);
            let mut report = String::new();
            let who = format!("d{} ({}) crashed", dom.id, dom.name);
            let _ = write_fault_report(&mut report, &who, &frame, cr2);
            for line in report.lines() {
                log::error!("{line}");
            }
            log::error!("  {why}");
            // The top of the guest's stack, read through its own tables: for a kernel
            // built without frame pointers it names the caller of the faulting code.
            let guest = crate::machine::GuestMemory {
                machine: &mut self.machine,
                l4: dom.active_l4(),
            };
            let mut words = String::new();
            for i in 0..STACK_WORDS {
                let mut b = [0u8; 8];
                match guest.read(frame.rsp.wrapping_add(i * 8), &mut b) {
                    Ok(()) => words.push_str(&format!(" {:#018x}", u64::from_le_bytes(b))),
                    Err(_) => break,
                }
            }
            if !words.is_empty() {
                log::error!("  stack:{words}");
            }
            dom.state = RunState::Crashed;
        }
        if dom.runnable() {
            return Next::Resume {
                l4: dom.active_l4(),
            };
        }
        self.reap(cur)
    }

    /// The registers to resume the current domain with (after [`Hypervisor::handle`]
    /// returned `Next::Resume`). The arch layer returns to the guest straight from them
    /// and saves the next entry into them: a hypercall copies no frame.
    pub fn resume_frame(&self) -> Option<&TrapFrame> {
        self.domains.get(self.current).map(|d| &d.regs)
    }

    /// The segment bases and CR0.TS to load before resuming the current domain (after
    /// [`Hypervisor::handle`] returned `Next::Resume`), if they changed since the last
    /// call: most entries (every hypercall but a few) change none of them.
    pub fn take_guest_cpu(&mut self) -> Option<GuestCpu> {
        let d = self.domains.get_mut(self.current)?;
        core::mem::take(&mut d.vcpu.cpu_dirty).then(|| GuestCpu::from(&d.vcpu))
    }

    /// Tears down a stopped domain (its memory scrubbed and returned) and decides what
    /// runs next.
    fn reap(&mut self, index: usize) -> Next {
        let dom = self.domains.remove(index);
        match dom.state {
            RunState::Shutdown(r) => {
                log::info!(
                    "d{} ({}) shut down: {}",
                    dom.id,
                    dom.name,
                    shutdown_reason_name(r)
                )
            }
            _ => log::info!("d{} ({}) crashed", dom.id, dom.name),
        }
        self.machine.release_address_space(dom.l4);
        if let Some(user) = dom.user_l4 {
            self.machine.release_address_space(user);
        }
        // Every reference the domain holds goes, then every frame it owns (its
        // reservation, what populate_physmap gave it, shared_info) is scrubbed, its
        // M2P entry invalidated and returned.
        let still_mapped =
            self.frame_table
                .teardown(&mut self.machine, dom.id, &dom.held_type_refs());
        let freed = self
            .frame_table
            .reclaim(&mut self.machine, &mut self.frames, &self.m2p);
        log::info!(
            "d{}: {freed} frames freed ({still_mapped} still mapped elsewhere), {} frames free",
            dom.id,
            self.frames.free_frames()
        );
        match self.domains.first() {
            Some(next) => {
                self.current = 0;
                Next::Resume {
                    l4: next.active_l4(),
                }
            }
            None => {
                let exit = match dom.state {
                    RunState::Shutdown(r) => ShimExit::for_shutdown(r),
                    _ => ShimExit::Crashed,
                };
                log::info!("no domains left: {exit:?}");
                Next::Halt(exit)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests::make_elf;
    use crate::m2p::INVALID;
    use crate::machine::TestMachine;
    use alloc::vec;

    const BASE: u64 = 0xffff_ffff_8000_0000;

    fn hv() -> Hypervisor<TestMachine> {
        let mut machine = TestMachine::new(0, 4096);
        let mut frames = FrameAllocator::new();
        frames.add(1, 4096);
        let m2p = M2p::new(&mut machine, &mut frames, 4096).unwrap();
        let shim_l4 = vec![(M2p::l4_slot(), m2p.l4_entry)];
        let frame_table = FrameTable::new(4096, &frames, &m2p, &shim_l4);
        let mut h = Hypervisor {
            machine,
            frames,
            m2p,
            shim_l4,
            frame_table,
            domains: Vec::new(),
            current: 0,
            cmdline: String::new(),
            cpuid: CpuidPolicy::from_host(crate::cpuid::tests::greedy_host, 4096),
        };
        let elf = make_elf(
            BASE,
            &[0x90; 0x1000],
            0x1000,
            &[(xen_sys::XEN_ELFNOTE_VIRT_BASE, BASE.to_le_bytes().to_vec())],
        );
        h.create_initial_domain(&elf, 1500, "").unwrap();
        h
    }

    /// The P2M list the domain was given (`start_info.mfn_list`), read as the guest sees it.
    fn guest_p2m(h: &mut Hypervisor<TestMachine>) -> Vec<Mfn> {
        let d = &h.domains[0];
        let g = crate::machine::GuestMemory {
            machine: &mut h.machine,
            l4: d.l4,
        };
        let word = |va: u64| {
            let mut b = [0u8; 8];
            g.read(va, &mut b).unwrap();
            u64::from_le_bytes(b)
        };
        let si = d.regs.rsi;
        let n = word(si + core::mem::offset_of!(xen_sys::start_info, nr_pages) as u64);
        let list = word(si + core::mem::offset_of!(xen_sys::start_info, mfn_list) as u64);
        (0..n).map(|i| word(list + i * 8)).collect()
    }

    /// An entry from the running domain with registers `f` (as the arch layer saves it).
    fn enter(h: &mut Hypervisor<TestMachine>, f: &TrapFrame, cr2: u64) -> Next {
        h.save_entry_frame(f);
        h.handle(cr2, &mut |_| {})
    }

    #[test]
    fn hypercall_returns_to_the_guest() {
        let mut h = hv();
        let mut f = h.domains[0].regs;
        f.vector = SYSCALL_VECTOR;
        f.rax = xen_sys::__HYPERVISOR_xen_version as u64;
        f.rdi = xen_sys::XENVER_pagesize as u64;
        let next = enter(&mut h, &f, 0);
        assert_eq!(
            next,
            Next::Resume {
                l4: h.domains[0].l4
            }
        );
        let f = *h.resume_frame().unwrap();
        assert_eq!(f.rax, 4096);
    }

    #[test]
    fn a_fault_crashes_the_domain_and_returns_its_memory() {
        let mut h = hv();
        let free_before = h.frames.free_frames();
        let p2m = guest_p2m(&mut h);
        let mut f = h.domains[0].regs;
        f.vector = 14;
        assert_eq!(enter(&mut h, &f, 0x1234), Next::Halt(ShimExit::Crashed));
        assert!(h.domains.is_empty());
        assert_eq!(h.frames.free_frames(), free_before + p2m.len() as u64 + 1);
        assert!(p2m
            .iter()
            .all(|&mfn| h.machine.frame(mfn).unwrap().iter().all(|&b| b == 0)));
    }

    fn m2p_entry(h: &mut Hypervisor<TestMachine>, l4: Mfn, mfn: Mfn) -> u64 {
        let g = crate::machine::GuestMemory {
            machine: &mut h.machine,
            l4,
        };
        let mut b = [0u8; 8];
        g.read(xen_sys::MACH2PHYS_VIRT_START + mfn * 8, &mut b)
            .unwrap();
        u64::from_le_bytes(b)
    }

    #[test]
    fn m2p_follows_the_domain_and_is_cleared_when_it_dies() {
        let mut h = hv();
        let (l4, p2m) = (h.domains[0].l4, guest_p2m(&mut h));
        for (pfn, &mfn) in p2m.iter().enumerate() {
            assert_eq!(m2p_entry(&mut h, l4, mfn), pfn as u64);
        }
        let mut f = h.domains[0].regs;
        f.vector = 6;
        enter(&mut h, &f, 0);
        // The dead domain's L4 is scrubbed: read the table through a fresh one.
        let probe = h.frames.alloc().unwrap();
        h.machine.zero_frame(probe);
        crate::machine::write_u64(&mut h.machine, probe, M2p::l4_slot() * 8, h.m2p.l4_entry);
        assert!(p2m
            .iter()
            .all(|&mfn| m2p_entry(&mut h, probe, mfn) == INVALID));
    }

    #[test]
    fn syscall_from_guest_user_mode_is_not_a_hypercall() {
        let mut h = hv();
        h.domains[0].user_l4 = Some(h.domains[0].l4);
        h.domains[0].vcpu.toggle_guest_mode();
        let mut f = h.domains[0].regs;
        f.vector = SYSCALL_VECTOR;
        f.rax = xen_sys::__HYPERVISOR_sched_op_compat as u64;
        f.rdi = xen_sys::SCHEDOP_shutdown as u64;
        // No syscall callback and no #UD handler: the guest dies of its #UD, and the
        // shutdown it asked for never happened.
        assert_eq!(enter(&mut h, &f, 0), Next::Halt(ShimExit::Crashed));
    }

    #[test]
    fn poweroff_halts_the_machine_as_powered_off() {
        let mut h = hv();
        let mut f = h.domains[0].regs;
        f.vector = SYSCALL_VECTOR;
        f.rax = xen_sys::__HYPERVISOR_sched_op_compat as u64;
        f.rdi = xen_sys::SCHEDOP_shutdown as u64;
        f.rsi = xen_sys::SHUTDOWN_poweroff as u64;
        assert_eq!(enter(&mut h, &f, 0), Next::Halt(ShimExit::PoweredOff));
    }
}
