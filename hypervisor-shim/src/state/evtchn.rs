//! Event channels, 2-level ABI (`event_channel.h`; Xen's xen/common/event_channel.c and
//! event_2l.c): each domain's port table, and the pending/mask bitmaps that live in the
//! guest's `shared_info` and `vcpu_info` pages.
//!
//! The bitmaps are guest memory, read and written through the machine; the guest can
//! change them at any moment, so nothing here trusts what it reads back: a bit is only
//! ever a hint to deliver or not.

use alloc::vec::Vec;
use core::mem::offset_of;

use xen_sys::{shared_info, vcpu_info, EVTCHN_2L_NR_CHANNELS, NR_VIRQS};

use crate::domain::domains::DomId;
use crate::domain::Domain;
use crate::machine::{write_bytes, Machine, Mfn};

/// A port number (`evtchn_port_t`).
pub type Port = u32;

/// Ports a domU may have (Xen's default `max_event_channels` is 1023, so ports
/// 0..=1023); a privileged domain gets the whole 2-level space.
pub const DOMU_MAX_PORTS: u32 = 1024;
pub const DOM0_MAX_PORTS: u32 = EVTCHN_2L_NR_CHANNELS;

/// What a port is bound to (Xen's `ECS_*` states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Free,
    /// Port 0: never allocated (`ECS_RESERVED`).
    Reserved,
    /// Waiting for `remote` to bind to it.
    Unbound {
        remote: DomId,
    },
    Interdomain {
        remote: DomId,
        port: Port,
    },
    Virq(u32),
    Ipi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub binding: Binding,
    /// The vCPU notified (`bind_vcpu`); there is one vCPU, 0, per domain.
    pub vcpu: u32,
}

/// One domain's ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventChannels {
    chans: Vec<Channel>,
    max_ports: u32,
    /// The port bound to each VIRQ, 0 for none (vCPU 0's `virq_to_evtchn`).
    pub virqs: [Port; NR_VIRQS as usize],
}

impl EventChannels {
    pub fn new(max_ports: u32) -> Self {
        EventChannels {
            chans: alloc::vec![Channel {
                binding: Binding::Reserved,
                vcpu: 0
            }],
            max_ports: max_ports.clamp(1, EVTCHN_2L_NR_CHANNELS),
            virqs: [0; NR_VIRQS as usize],
        }
    }

    pub fn max_ports(&self) -> u32 {
        self.max_ports
    }

    /// Whether `port` is within the ports the domain has (Xen's `port_is_valid`: ports
    /// come in buckets of 64, so a free port near used ones is valid and closed).
    pub fn is_valid(&self, port: Port) -> bool {
        let buckets = (self.chans.len() as u32).div_ceil(BUCKET).max(1);
        port < (buckets * BUCKET).min(self.max_ports)
    }

    /// The channel at `port`, if the port was ever allocated.
    pub fn get(&self, port: Port) -> Option<&Channel> {
        self.chans.get(port as usize)
    }

    pub fn get_mut(&mut self, port: Port) -> Option<&mut Channel> {
        self.chans.get_mut(port as usize)
    }

    /// The lowest free port, bound to `binding` (`get_free_port`); `None` when the
    /// domain has used up its ports.
    pub fn alloc(&mut self, binding: Binding) -> Option<Port> {
        let ch = Channel { binding, vcpu: 0 };
        if let Some(p) = self.chans.iter().position(|c| c.binding == Binding::Free) {
            self.chans[p] = ch;
            return Some(p as Port);
        }
        if self.chans.len() as u32 >= self.max_ports {
            return None;
        }
        self.chans.push(ch);
        Some(self.chans.len() as Port - 1)
    }

    /// Ports in use (not free, not reserved).
    pub fn in_use(&self) -> impl Iterator<Item = (Port, &Channel)> {
        self.chans
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c.binding, Binding::Free | Binding::Reserved))
            .map(|(p, c)| (p as Port, c))
    }

    /// Marks `port` free (and unbinds its VIRQ); the caller updates the peer.
    pub fn release(&mut self, port: Port) {
        if let Some(c) = self.chans.get_mut(port as usize) {
            if let Binding::Virq(v) = c.binding {
                if let Some(slot) = self.virqs.get_mut(v as usize) {
                    *slot = 0;
                }
            }
            *c = Channel {
                binding: Binding::Free,
                vcpu: 0,
            };
        }
    }
}

const WORD_BITS: u32 = 64;
/// Xen's `EVTCHNS_PER_BUCKET` on x86_64.
const BUCKET: u32 = 64;
const PENDING: usize = offset_of!(shared_info, evtchn_pending);
const MASK: usize = offset_of!(shared_info, evtchn_mask);

/// Where a domain's vCPU 0 `vcpu_info` lives: in `shared_info`, or where the guest moved
/// it with `VCPUOP_register_vcpu_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuInfoAt {
    pub mfn: Mfn,
    pub offset: usize,
}

impl VcpuInfoAt {
    pub fn in_shared_info(shared_info: Mfn) -> Self {
        VcpuInfoAt {
            mfn: shared_info,
            offset: offset_of!(shared_info, vcpu_info),
        }
    }
    pub const UPCALL_PENDING: usize = offset_of!(vcpu_info, evtchn_upcall_pending);
    pub const UPCALL_MASK: usize = offset_of!(vcpu_info, evtchn_upcall_mask);
    pub const PENDING_SEL: usize = offset_of!(vcpu_info, evtchn_pending_sel);

    /// A byte field of the `vcpu_info`; `None` if its frame is not RAM.
    pub fn read_u8<M: Machine + ?Sized>(&self, m: &M, field: usize) -> Option<u8> {
        m.frame(self.mfn)
            .and_then(|f| f.get(self.offset + field).copied())
    }

    pub fn write_u8<M: Machine + ?Sized>(&self, m: &mut M, field: usize, v: u8) {
        write_bytes(m, self.mfn, self.offset + field, &[v]);
    }

    /// Sets bit `bit` of `evtchn_pending_sel`; whether it was already set.
    fn test_and_set_sel<M: Machine + ?Sized>(&self, m: &mut M, bit: u32) -> bool {
        test_and_set(m, self.mfn, self.offset + Self::PENDING_SEL, bit)
    }
}

fn bit_location(base: usize, bit: u32) -> (usize, u8) {
    (base + (bit / 8) as usize, 1 << (bit % 8))
}

fn test_bit<M: Machine + ?Sized>(m: &M, mfn: Mfn, base: usize, bit: u32) -> bool {
    let (at, b) = bit_location(base, bit);
    m.frame(mfn)
        .and_then(|f| f.get(at))
        .is_some_and(|&v| v & b != 0)
}

/// Sets a bit in guest memory and says whether it was set before.
fn test_and_set<M: Machine + ?Sized>(m: &mut M, mfn: Mfn, base: usize, bit: u32) -> bool {
    let (at, b) = bit_location(base, bit);
    match m.frame_mut(mfn).and_then(|f| f.get_mut(at)) {
        Some(v) => {
            let was = *v & b != 0;
            *v |= b;
            was
        }
        None => true,
    }
}

fn test_and_clear<M: Machine + ?Sized>(m: &mut M, mfn: Mfn, base: usize, bit: u32) -> bool {
    let (at, b) = bit_location(base, bit);
    match m.frame_mut(mfn).and_then(|f| f.get_mut(at)) {
        Some(v) => {
            let was = *v & b != 0;
            *v &= !b;
            was
        }
        None => false,
    }
}

pub fn is_pending<M: Machine + ?Sized>(m: &M, dom: &Domain, port: Port) -> bool {
    test_bit(m, dom.shared_info, PENDING, port)
}

pub fn is_masked<M: Machine + ?Sized>(m: &M, dom: &Domain, port: Port) -> bool {
    test_bit(m, dom.shared_info, MASK, port)
}

pub fn clear_pending<M: Machine + ?Sized>(m: &mut M, dom: &Domain, port: Port) {
    test_and_clear(m, dom.shared_info, PENDING, port);
}

/// `evtchn_2l_set_pending`: marks `port` pending and, unless it is masked, raises the
/// vCPU's selector bit and `evtchn_upcall_pending`; wakes the vCPU if it blocked or
/// polls this port.
pub fn set_pending<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain, port: Port) {
    if port >= dom.evtchn.max_ports() || test_and_set(m, dom.shared_info, PENDING, port) {
        return;
    }
    if !is_masked(m, dom, port) && !dom.vcpu_info.test_and_set_sel(m, port / WORD_BITS) {
        mark_events_pending(m, dom);
    }
    if dom.sched.polls(port) {
        dom.sched.wake();
    }
}

/// `vcpu_mark_events_pending`: raises `evtchn_upcall_pending` and kicks the vCPU.
fn mark_events_pending<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain) {
    let vi = dom.vcpu_info;
    if vi.read_u8(m, VcpuInfoAt::UPCALL_PENDING) == Some(0) {
        vi.write_u8(m, VcpuInfoAt::UPCALL_PENDING, 1);
    }
    dom.sched.wake();
}

/// `evtchn_2l_unmask`: clears the mask bit and re-raises an event that became pending
/// while it was masked.
pub fn unmask<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain, port: Port) {
    if test_and_clear(m, dom.shared_info, MASK, port)
        && is_pending(m, dom, port)
        && !dom.vcpu_info.test_and_set_sel(m, port / WORD_BITS)
    {
        mark_events_pending(m, dom);
    }
}

/// Raises `virq` for the domain if it bound a port to it.
pub fn send_virq<M: Machine + ?Sized>(m: &mut M, dom: &mut Domain, virq: u32) {
    if let Some(&port) = dom.evtchn.virqs.get(virq as usize) {
        if port != 0 {
            set_pending(m, dom, port);
        }
    }
}

/// Whether an upcall is due: `evtchn_upcall_pending` set and `evtchn_upcall_mask` clear
/// (Xen's `local_events_need_delivery`).
pub fn upcall_due<M: Machine + ?Sized>(m: &M, dom: &Domain) -> bool {
    let vi = dom.vcpu_info;
    vi.read_u8(m, VcpuInfoAt::UPCALL_PENDING)
        .is_some_and(|p| p != 0)
        && vi.read_u8(m, VcpuInfoAt::UPCALL_MASK) == Some(0)
}
