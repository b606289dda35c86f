//! A domain's event-channel port table (`event_channel.h`; Xen's `struct evtchn` and
//! the port allocation of xen/common/event_channel.c). Delivery, which touches the
//! bitmaps in guest memory, is `common::event_channel`.

use alloc::vec::Vec;
use xen_sys::{domid_t, evtchn_port_t, EVTCHN_2L_NR_CHANNELS, NR_VIRQS};

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
        remote: domid_t,
    },
    Interdomain {
        remote: domid_t,
        port: evtchn_port_t,
    },
    Virq(u32),
    Ipi,
    /// A device's interrupt line (its pirq: `crate::devices`).
    Pirq(u32),
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
    pub virqs: [evtchn_port_t; NR_VIRQS as usize],
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
    pub fn is_valid(&self, port: evtchn_port_t) -> bool {
        let buckets = (self.chans.len() as u32).div_ceil(BUCKET).max(1);
        port < (buckets * BUCKET).min(self.max_ports)
    }

    /// The channel at `port`, if the port was ever allocated.
    pub fn get(&self, port: evtchn_port_t) -> Option<&Channel> {
        self.chans.get(port as usize)
    }

    pub fn get_mut(&mut self, port: evtchn_port_t) -> Option<&mut Channel> {
        self.chans.get_mut(port as usize)
    }

    /// The lowest free port, bound to `binding` (`get_free_port`); `None` when the
    /// domain has used up its ports.
    pub fn alloc(&mut self, binding: Binding) -> Option<evtchn_port_t> {
        let ch = Channel { binding, vcpu: 0 };
        if let Some(p) = self.chans.iter().position(|c| c.binding == Binding::Free) {
            self.chans[p] = ch;
            return Some(p as evtchn_port_t);
        }
        if self.chans.len() as u32 >= self.max_ports {
            return None;
        }
        self.chans.push(ch);
        Some(self.chans.len() as evtchn_port_t - 1)
    }

    /// Ports in use (not free, not reserved).
    pub fn in_use(&self) -> impl Iterator<Item = (evtchn_port_t, &Channel)> {
        self.chans
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c.binding, Binding::Free | Binding::Reserved))
            .map(|(p, c)| (p as evtchn_port_t, c))
    }

    /// Marks `port` free (and unbinds its VIRQ); the caller updates the peer.
    pub fn release(&mut self, port: evtchn_port_t) {
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

/// Xen's `EVTCHNS_PER_BUCKET` on x86_64.
const BUCKET: u32 = 64;
