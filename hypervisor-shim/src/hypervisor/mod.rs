//! The shim's state and its one entry point: every trap or hypercall from the running
//! domain comes here as a [`TrapFrame`] and leaves as the frame to resume, or as the
//! end of the machine when no domain is left.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::common::event_channel as evtchn;
use crate::common::sched::{Policy, RoundRobinBoost};
use crate::common::{domain, schedule};
use crate::devices::{Device, Irqs};
use crate::domain::Domains;
use crate::domain::{shutdown_reason_name, BootRings, Domain, RunState};
use crate::exit::ShimExit;
use crate::frames::FrameAllocator;
use crate::hypercall::{self, Effects, Env};
use crate::machine::{Machine, Mfn, PAGE_SIZE};
use crate::mm::m2p::M2p;
use crate::mm::{FrameTable, Mm};
use crate::pv::build::elf::XenImage;
use crate::pv::build::{self, DomainConfig};
use crate::pv::cpuid::CpuidPolicy;
use crate::pv::traps;
use crate::state::evtchn::Binding;
use crate::state::vcpu::{FpuArea, GuestCpu};
use crate::time::Clock;
use crate::trap::{device_of_vector, TrapFrame, SERIAL_VECTOR, SYSCALL_VECTOR, TIMER_VECTOR};
use xen_sys::domid_t;

pub struct Hypervisor<M: Machine> {
    pub machine: M,
    pub frames: FrameAllocator,
    pub m2p: M2p,
    /// L4 entries every guest address space carries (M2P, the shim's direct map).
    pub shim_l4: Vec<(usize, u64)>,
    /// Owner, page type and reference counts of every machine frame.
    pub frame_table: FrameTable,
    pub domains: Domains,
    /// The domain on the CPU (or the last one, while the CPU idles).
    pub current: domid_t,
    pub cmdline: String,
    /// The CPUID policy every guest sees (computed once from the host's leaves).
    pub cpuid: CpuidPolicy,
    pub clock: Clock,
    /// When the current domain's time slice ends (system time).
    slice_end: u64,
    /// The domain whose x87/SSE state is in the CPU's registers.
    fpu_owner: Option<domid_t>,
    /// Which domain runs next.
    policy: Box<dyn Policy + Send>,
    /// The next timer deadline (TSC), and whether the arch layer has yet to program it.
    deadline: Option<u64>,
    deadline_changed: bool,
    /// The devices dom0 may drive ([`Hypervisor::add_devices`]); device `i` interrupts
    /// on `DEVICE_VECTOR_BASE + i`.
    devices: Vec<Device>,
    pub irqs: Irqs,
}

/// What a domain is built from.
#[derive(Clone, Copy, Debug)]
pub struct DomainSpec<'a> {
    pub domid: domid_t,
    /// Empty: the image's `GUEST_OS` note names it.
    pub name: &'a str,
    pub image: &'a [u8],
    pub nr_pages: u64,
    pub cmdline: &'a str,
    /// The control domain (`SIF_PRIVILEGED | SIF_INITDOMAIN`).
    pub privileged: bool,
    /// Domain 0 runs xenstored and the console back-end (the bundle's
    /// `FLAG_BACKENDS`): a domU gets unbound event channels for its rings and starts
    /// paused until domain 0 unpauses it. Without it a domU runs at once, with no
    /// channels (its console is `console_io`).
    pub backends_in_dom0: bool,
}

/// What the arch layer does after a trap.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Load this L4 and `iretq` into [`Hypervisor::resume_frame`]. `work`: something
    /// besides (the timer, the FPU, segment bases or CR0.TS) may need loading: ask
    /// [`Hypervisor::take_deadline`], [`Hypervisor::take_fpu_switch`] and
    /// [`Hypervisor::take_guest_cpu`]. Most hypercalls need none of it.
    Resume { l4: Mfn, work: bool },
    /// No domain is ready: wait for the timer (see [`Hypervisor::take_deadline`]), then
    /// call [`Hypervisor::wake_from_idle`].
    Idle,
    /// Nothing left to run: end the machine.
    Halt(ShimExit),
}

/// The x87/SSE state to switch on the CPU before resuming: save the registers into
/// `save` (unless its domain is gone), load them from `load`.
pub struct FpuSwitch {
    pub save: Option<*mut FpuArea>,
    pub load: *const FpuArea,
}

impl<M: Machine> Hypervisor<M> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        machine: M,
        frames: FrameAllocator,
        m2p: M2p,
        shim_l4: Vec<(usize, u64)>,
        frame_table: FrameTable,
        cmdline: String,
        cpuid: CpuidPolicy,
        clock: Clock,
    ) -> Self {
        Hypervisor {
            machine,
            frames,
            m2p,
            shim_l4,
            frame_table,
            domains: Domains::new(),
            current: 0,
            cmdline,
            cpuid,
            clock,
            slice_end: 0,
            fpu_owner: None,
            policy: Box::new(RoundRobinBoost::default()),
            deadline: None,
            deadline_changed: false,
            devices: Vec::new(),
            irqs: Irqs::default(),
        }
    }

    /// Builds a domain from a PV kernel image. The first domain built is the one that
    /// runs first.
    pub fn create_domain(&mut self, spec: &DomainSpec) -> Result<&Domain, String> {
        if self.domains.get(spec.domid).is_some() {
            return Err(format!("domain {} exists", spec.domid));
        }
        let img = XenImage::parse(spec.image).map_err(|e| format!("{e}"))?;
        let name = match (spec.name, img.guest_os) {
            ("", Some(os)) => String::from(os),
            ("", None) => format!("domain-{}", spec.domid),
            (n, _) => String::from(n),
        };
        log::info!(
            "d{}: {} ({}), {} pages, image {:#x}-{:#x}, entry {:#x}, hypercall page {:x?}",
            spec.domid,
            name,
            img.xen_version.unwrap_or("no XEN_VERSION note"),
            spec.nr_pages,
            img.kstart,
            img.kend,
            img.entry,
            img.hypercall_page
        );
        let cfg = DomainConfig {
            domid: spec.domid,
            nr_pages: spec.nr_pages,
            cmdline: spec.cmdline,
            initial: spec.privileged,
        };
        let built = build::build(
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
        build::adopt_domain(
            &mut self.frame_table,
            &mut self.machine,
            spec.domid,
            spec.privileged,
            &built,
        )
        .map_err(|e| format!("bootstrap page tables refused: -{e}"))?;
        let layout = built.layout;
        let pfn_mfn = |va: u64| {
            let pfn = layout.pfn(va);
            (pfn, built.p2m[pfn as usize])
        };
        let start_info = pfn_mfn(layout.start_info).1;
        // The xenstore page, then the console page (see `Layout`).
        let rings = layout
            .store_console
            .map(|(store, _)| (pfn_mfn(store), pfn_mfn(store + PAGE_SIZE as u64)));
        let mut dom = Domain::new(spec.domid, name, spec.privileged, built.initial());
        dom.grant
            .grow(
                &mut self.machine,
                &mut self.frame_table,
                &mut self.frames,
                spec.domid,
                1,
            )
            .map_err(|e| format!("grant table: -{e}"))?;
        if let Some(((store_pfn, store_mfn), (console_pfn, console_mfn))) = rings {
            self.attach_rings(
                &mut dom,
                spec,
                start_info,
                store_pfn,
                store_mfn,
                console_pfn,
                console_mfn,
            )?;
        }
        self.clock
            .publish_wallclock(&mut self.machine, dom.shared_info);
        let first = self.domains.is_empty();
        self.domains.insert(Box::new(dom));
        if first {
            self.current = spec.domid;
            self.switch_to(spec.domid, self.now());
        }
        self.domains
            .get(spec.domid)
            .ok_or_else(|| String::from("domain vanished"))
    }

    /// What a toolstack does for a new domU's xenstore and console rings
    /// (`xc_dom_gnttab_init`, `xc_dom_gnttab_seed`; `alloc_xs_evtchn`-like unbound
    /// ports): grant entries `GNTTAB_RESERVED_CONSOLE` and `GNTTAB_RESERVED_XENSTORE`
    /// give domain 0 read-write access to the console and xenstore pages; with
    /// back-ends in domain 0, two unbound ports for domain 0 (xenstore first, then
    /// console) go into `start_info`, and the domain starts paused (one pause
    /// reference, dropped by domain 0's `XEN_DOMCTL_unpausedomain` once it has
    /// introduced the domain).
    #[allow(clippy::too_many_arguments)]
    fn attach_rings(
        &mut self,
        dom: &mut Domain,
        spec: &DomainSpec,
        start_info: Mfn,
        store_pfn: u64,
        store_mfn: Mfn,
        console_pfn: u64,
        console_mfn: Mfn,
    ) -> Result<(), String> {
        let frame =
            |mfn: Mfn| u32::try_from(mfn).map_err(|_| format!("frame {mfn:#x} beyond a v1 grant"));
        let flags = xen_sys::GTF_permit_access as u16;
        for (gref, mfn) in [
            (xen_sys::GNTTAB_RESERVED_CONSOLE, console_mfn),
            (xen_sys::GNTTAB_RESERVED_XENSTORE, store_mfn),
        ] {
            dom.grant
                .write_entry(&mut self.machine, gref, flags, 0, frame(mfn)?)
                .ok_or("grant table has no frame 0")?;
        }
        let mut rings = BootRings {
            store_pfn,
            console_pfn,
            ..BootRings::default()
        };
        if spec.backends_in_dom0 {
            let mut port = || {
                dom.evtchn
                    .alloc(Binding::Unbound { remote: 0 })
                    .ok_or("no free event channel")
            };
            rings.store_evtchn = port()?;
            rings.console_evtchn = port()?;
            build::set_ring_evtchns(
                &mut self.machine,
                start_info,
                rings.store_evtchn,
                rings.console_evtchn,
            );
            dom.sched.pause_count = 1;
        }
        dom.rings = Some(rings);
        Ok(())
    }

    /// Builds the initial (privileged) domain 0 alone, as Xen builds dom0.
    pub fn create_initial_domain(
        &mut self,
        image: &[u8],
        nr_pages: u64,
        cmdline: &str,
    ) -> Result<&Domain, String> {
        self.create_domain(&DomainSpec {
            domid: 0,
            name: "",
            image,
            nr_pages,
            cmdline,
            privileged: true,
            backends_in_dom0: false,
        })
    }

    /// System time now.
    pub fn now(&self) -> u64 {
        self.clock.ns_at(self.machine.tsc())
    }

    /// Records an entry frame saved elsewhere than in the running domain's `regs` (the
    /// arch layer's IST entries).
    pub fn save_entry_frame(&mut self, frame: &TrapFrame) {
        if let Some(d) = self.domains.get_mut(self.current) {
            d.regs = *frame;
        }
    }

    /// Handles one entry from the running domain, whose `regs` hold what the CPU and the
    /// entry stub saved. On `Resume`, [`Hypervisor::resume_frame`] is what to return to
    /// (possibly another domain's).
    pub fn handle(&mut self, cr2: u64, console: &mut dyn FnMut(&[u8])) -> Next {
        let cur = self.current;
        // The null hypercall, answered before any set-up: it changes nothing but RAX.
        if let Some(d) = self.domains.get_mut(cur) {
            let r = &mut d.regs;
            if r.vector == SYSCALL_VECTOR
                && d.vcpu.kernel_mode
                && hypercall::is_null_hypercall(r.rax, r.rdi)
            {
                r.rax = crate::version::VERSION_WORD as u64;
                return self.resume_current();
            }
        }
        let Some(mut dom) = self.domains.take(cur) else {
            return self.reschedule(false);
        };
        let vector = dom.regs.vector;
        if vector == TIMER_VECTOR || vector == SERIAL_VECTOR {
            self.domains.put(dom);
            return self.reschedule(vector == TIMER_VECTOR);
        }
        if device_of_vector(vector).is_some() {
            self.domains.put(dom);
            self.device_interrupt(vector);
            return self.reschedule(false);
        }
        // Kept for a crash report, as handling an exception rewrites the registers. Not
        // for hypercalls (the hot path): they change only RAX before a crash is known.
        // (`then_some` would copy the frame on every entry, hypercalls included.)
        let entry = if vector != SYSCALL_VECTOR {
            Some(dom.regs)
        } else {
            None
        };
        let mut effects = Effects::default();
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
                domains: &mut self.domains,
                clock: &self.clock,
                irqs: &mut self.irqs,
                effects: Effects::default(),
            };
            hypercall::dispatch(&mut env, &mut dom);
            effects = env.effects;
            Ok(())
        } else if vector == SYSCALL_VECTOR {
            traps::syscall_from_user(&mut self.machine, &mut dom)
        } else {
            traps::handle(&mut self.machine, &self.cpuid, &mut dom, cr2)
        };
        if let Err(why) = result {
            let frame = entry.unwrap_or(dom.regs);
            domain::crash(&mut self.machine, &mut dom, &frame, cr2, &why);
        }
        let ready = dom.ready();
        self.domains.put(dom);
        if ready && !effects.resched {
            return self.resume_current();
        }
        self.reschedule(false)
    }

    /// Bytes typed on the serial console: kept for domain 0 (`CONSOLEIO_read`), which
    /// hears of them through `VIRQ_CONSOLE`. With no domain 0 they go nowhere.
    pub fn console_input(&mut self, bytes: &[u8]) {
        let Some(d) = self.domains.get_mut(0) else {
            return;
        };
        if d.dead {
            return;
        }
        let room = hypercall::console::INPUT_MAX.saturating_sub(d.console_input.len());
        if room < bytes.len() {
            log::warn!("console input: {} bytes dropped", bytes.len() - room);
        }
        d.console_input.extend(&bytes[..bytes.len().min(room)]);
        evtchn::send_virq(&mut self.machine, d, xen_sys::VIRQ_CONSOLE);
    }

    /// Picks the first domain to run, once every domain of the boot module is built.
    pub fn start(&mut self) -> Next {
        self.reschedule(false)
    }

    /// The CPU idled until an interrupt: run what became due.
    pub fn wake_from_idle(&mut self) -> Next {
        self.reschedule(true)
    }

    /// Runs expired timers, tears down dead domains and picks the domain to run (round
    /// robin with boost by default, see `common/sched/`). `tick`: the timer interrupt, which may end a slice.
    #[inline(never)]
    fn reschedule(&mut self, tick: bool) -> Next {
        loop {
            let now = self.now();
            self.reap_dead();
            for d in self.domains.iter_mut() {
                if d.runnable() && d.sched.expire(now) {
                    evtchn::send_virq(&mut self.machine, d, xen_sys::VIRQ_TIMER);
                }
            }
            let cur = self.current;
            let cur_ready = self.domains.get(cur).is_some_and(|d| d.ready());
            let yielded = self
                .domains
                .get_mut(cur)
                .is_some_and(|d| core::mem::take(&mut d.sched.yielded));
            let slice_over = tick && now >= self.slice_end;
            if tick {
                // The interrupt may come a little before the deadline as the TSC sees
                // it (two clocks): whatever is due next, arm it again.
                self.deadline_changed = true;
            }
            let next =
                self.policy
                    .pick(&mut self.domains, cur, cur_ready && !yielded && !slice_over);
            let Some(next) = next else {
                if !self.domains.iter().any(|d| d.runnable()) {
                    return Next::Halt(self.machine_exit());
                }
                if let Some(d) = self.domains.get_mut(cur) {
                    if d.sched.runstate.state == xen_sys::RUNSTATE_running {
                        d.sched.runstate.change(xen_sys::RUNSTATE_blocked, now);
                    }
                }
                self.set_deadline(now);
                return Next::Idle;
            };
            if next != cur
                || self
                    .domains
                    .get(cur)
                    .is_some_and(|d| d.sched.runstate.state != xen_sys::RUNSTATE_running)
            {
                self.switch_to(next, now);
            } else if slice_over {
                self.slice_end = now + self.policy.slice_ns();
            }
            self.set_deadline(now);
            match self.resume_current() {
                Next::Idle => continue,
                n => return n,
            }
        }
    }

    /// Makes `next` the running domain at system time `now`.
    #[inline(never)]
    fn switch_to(&mut self, next: domid_t, now: u64) {
        let prev = self.current;
        if prev != next {
            if let Some(d) = self.domains.get_mut(prev) {
                schedule::switch_out(&mut self.machine, d, now);
            }
        }
        self.current = next;
        self.slice_end = now + self.policy.slice_ns();
        if let Some(d) = self.domains.get_mut(next) {
            schedule::switch_in(&mut self.machine, &self.clock, d, now);
        }
    }

    /// The next timer deadline: the earliest vCPU timer, and the end of the slice if
    /// another domain waits for the CPU.
    #[inline(never)]
    fn set_deadline(&mut self, now: u64) {
        let cur = self.current;
        let mut next = self
            .domains
            .iter()
            .filter(|d| d.runnable())
            .filter_map(|d| d.sched.next_deadline())
            .min();
        if self.domains.iter().any(|d| d.id != cur && d.ready()) {
            next = Some(next.map_or(self.slice_end, |n| n.min(self.slice_end)));
        }
        let tsc = next.map(|ns| self.clock.tsc_at(ns.max(now)));
        if tsc != self.deadline {
            self.deadline = tsc;
            self.deadline_changed = true;
        }
    }

    /// The timer deadline (TSC) to program, if it changed since the last call: `Some(None)`
    /// means no timer is needed.
    pub fn take_deadline(&mut self) -> Option<Option<u64>> {
        core::mem::take(&mut self.deadline_changed).then_some(self.deadline)
    }

    /// Delivers pending events to the current domain and checks its return frame; a
    /// domain that cannot be resumed dies (and `Idle` asks the caller to pick again).
    #[inline]
    fn resume_current(&mut self) -> Next {
        let cur = self.current;
        let Some(dom) = self.domains.get_mut(cur) else {
            return Next::Idle;
        };
        let r = traps::deliver_events(&mut self.machine, dom)
            .and_then(|()| traps::check_return_frame(&mut self.machine, dom));
        match r {
            Ok(()) => Next::Resume {
                l4: dom.active_l4(),
                work: dom.vcpu.cpu_dirty || self.deadline_changed || self.fpu_owner != Some(cur),
            },
            Err(why) => {
                let frame = dom.regs;
                domain::crash(&mut self.machine, dom, &frame, 0, &why);
                Next::Idle
            }
        }
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

    /// The x87/SSE switch to make before resuming the current domain, if another
    /// domain's state is in the registers.
    pub fn take_fpu_switch(&mut self) -> Option<FpuSwitch> {
        let cur = self.current;
        if self.fpu_owner == Some(cur) {
            return None;
        }
        let save = self
            .fpu_owner
            .and_then(|o| self.domains.get_mut(o))
            .filter(|d| !d.dead)
            .map(|d| &mut *d.fpu as *mut FpuArea);
        let load = &*self.domains.get(cur)?.fpu as *const FpuArea;
        self.fpu_owner = Some(cur);
        Some(FpuSwitch { save, load })
    }

    /// Tears down every domain that stopped (or was destroyed) since the last look, and
    /// drops the records of destroyed dead ones.
    #[inline(never)]
    fn reap_dead(&mut self) {
        // Runs at every scheduling decision: find, don't collect (usually none).
        loop {
            let stopped = self
                .domains
                .iter()
                .find(|d| (!d.runnable() || d.destroy) && !d.dead)
                .map(|d| d.id);
            let Some(id) = stopped else { break };
            self.reap(id);
        }
        loop {
            let gone = self
                .domains
                .iter()
                .find(|d| d.dead && d.destroy)
                .map(|d| d.id);
            let Some(id) = gone else { break };
            self.domains.remove(id);
        }
    }

    /// Tears down a stopped domain: memory scrubbed and returned, ports closed (their
    /// peers see them unbound), and `VIRQ_DOM_EXC` raised for the control domain. The
    /// record stays, for a privileged domain to read and destroy.
    #[inline(never)]
    fn reap(&mut self, id: domid_t) {
        let Some(mut dom) = self.domains.take(id) else {
            return;
        };
        match dom.state {
            RunState::Runnable if dom.destroy => log::info!("d{} ({}) destroyed", dom.id, dom.name),
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
        let now = self.now();
        domain::teardown(
            &mut self.machine,
            &mut Mm {
                table: &mut self.frame_table,
                alloc: &mut self.frames,
                m2p: &self.m2p,
            },
            &mut dom,
            &mut self.domains,
            now,
        );
        if self.fpu_owner == Some(id) {
            self.fpu_owner = None;
        }
        self.irqs.release_domain(id);
        let destroy = dom.destroy;
        self.domains.put(dom);
        if destroy {
            self.domains.remove(id);
        }
        domain::notify_control_domains(&mut self.machine, &mut self.domains);
    }

    /// How the machine ends once no domain is alive: as domain 0 (or the first domain)
    /// ended, as in Xen, where dom0's fate is the machine's.
    fn machine_exit(&self) -> ShimExit {
        let exit = match self.domains.get(0).or(self.domains.iter().next()) {
            Some(d) => match d.state {
                RunState::Shutdown(r) => ShimExit::for_shutdown(r),
                _ => ShimExit::Crashed,
            },
            None => ShimExit::PoweredOff,
        };
        log::info!("no domains left: {exit:?}");
        exit
    }
}

#[cfg(test)]
mod device_tests;
mod devices;

#[cfg(test)]
mod domctl_tests;
#[cfg(test)]
mod grant_tests;
#[cfg(test)]
pub(crate) mod many_domains_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::m2p::INVALID;
    use crate::testing::TestMachine;

    fn hv() -> Hypervisor<TestMachine> {
        let mut h = crate::hypervisor::many_domains_tests::empty(4096);
        let elf = crate::hypervisor::many_domains_tests::test_elf(0x1000);
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
        let l4 = h.domains[0].l4;
        assert!(matches!(next, Next::Resume { l4: to, .. } if to == l4));
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
        assert!(h.domains[0].dead, "only its record is left");
        // Its reservation, shared_info and grant frame 0.
        assert_eq!(h.frames.free_frames(), free_before + p2m.len() as u64 + 2);
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
