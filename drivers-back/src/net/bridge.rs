//! An L2 learning bridge between dom0's NIC (the uplink) and every vif, as a plain data
//! structure: dom0's loop hands it each frame a port received ([`Bridge::input`]) and
//! takes what is queued for each port ([`Bridge::pop`]). It follows Linux's bridge
//! (`net/bridge/br_input.c`, `br_fdb.c`, `br_forward.c`) with what Xen adds on a vif:
//! the source filters of netback and of the `vif-bridge` hotplug script's antispoofing.
//!
//! A frame from a port goes through, in order:
//!
//! 1. The filters. Frames shorter than an Ethernet header are dropped, as is a
//!    multicast, broadcast or all-zero source MAC from any port (Linux's
//!    `is_valid_ether_addr` check in `br_handle_frame`). A vif sends only from its own
//!    MAC; a port without one (the uplink) from any MAC except a vif's, which can only
//!    be a spoof or a loop of our own frame. A vif given an IPv4 address sends IPv4
//!    only from it, and ARP only with it as sender (or 0.0.0.0: an RFC 5227 probe,
//!    which no host learns from) and its MAC as sender hardware address; a VLAN tag
//!    from such a vif is dropped, as it would hide the IPv4 header from the check.
//! 2. Its offload request: a blank checksum or a GSO request the headers cannot honour
//!    (`pv_core::offload::headers`, `segment_count`) is dropped here, whichever ports
//!    would get it (netback drops a packet whose `checksum_setup` fails).
//! 3. Learning, from ports without a configured MAC only: a vif's MAC is pinned to it
//!    when it is added, and nothing moves it. A MAC learned on one such port moves to
//!    another that later sends from it. At most [`MAX_LEARNED`] MACs are learned; the
//!    one seen longest ago is forgotten first, so a flood of random source MACs costs
//!    a bounded table.
//! 4. Forwarding: a unicast MAC pinned or learned goes to that port only (dropped if
//!    it is the port it came from, as Linux does); broadcast, multicast and unknown
//!    unicast go to every other port.
//! 5. Adaptation to each destination's [`Offloads`]: a GSO frame to a port that does not
//!    take that GSO kind is cut into segments ([`offload::segment`]); a blank checksum
//!    to a port that does not take it (for that IP version) is filled
//!    ([`offload::fill_checksum`]); either arrives with `csum_blank` false and
//!    `data_validated` true. GSO counts as accepted only with the checksum offload of
//!    its IP version, as Linux's `netdev_fix_features` drops TSO without it. A frame
//!    needing neither is moved, not copied, to its last destination.
//! 6. Queueing, FIFO per destination, at most `queue` frames. A source port may fill
//!    an empty queue alone, but when the queue is full, a frame from a source holding
//!    less than half of it pushes out the newest frame of the source holding most (if
//!    that one holds more than half); a frame from a source holding half or more is
//!    dropped. So a flooding domU holds at most half of a busy destination's queue and
//!    cannot starve another sender to the same destination.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::fmt;

use pv_core::offload::{self, Headers, OffloadError, PacketMeta};
use smoltcp::wire::{
    ArpHardware, ArpPacket, EthernetFrame, EthernetProtocol, Ipv4Address, Ipv4Packet,
};

/// A port's id, from [`Bridge::add_port`].
pub type PortId = usize;

/// Most MACs learned on ports without a configured MAC (Linux's bridge has no bound,
/// only ageing; without a clock here the bound is what keeps a flood in check).
pub const MAX_LEARNED: usize = 1024;

/// EtherTypes of VLAN tags (802.1Q, 802.1ad, and the old QinQ one).
const VLAN_TAGS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// The offloads a port's receiver takes (netfront's `feature-no-csum-offload`,
/// `feature-ipv6-csum-offload`, `feature-gso-tcpv4`, `feature-gso-tcpv6`; the NIC's
/// virtio-net features for the uplink).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Blank TCP/UDP checksums over IPv4.
    pub csum_blank: bool,
    /// Blank TCP/UDP checksums over IPv6.
    pub ipv6_csum_blank: bool,
    pub gso_tcpv4: bool,
    pub gso_tcpv6: bool,
}

/// One port of the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// A vif's own MAC: frames from this port with another source MAC are dropped (a
    /// domU can send only from its own MAC). None for the uplink (the NIC), which may
    /// carry any source. If two ports are given the same MAC, the first added has it
    /// (the other's frames are dropped) until it is removed.
    pub mac: Option<[u8; 6]>,
    /// A vif's IPv4 address when the toolstack gave one (`ip=` in xl.cfg's vif spec):
    /// its IPv4 packets and ARP messages must carry it as sender. None: not filtered
    /// (DHCP).
    pub ip: Option<[u8; 4]>,
    /// What the port's receiver accepts; a frame is adapted before it is queued to a
    /// port that lacks an offload (checksum filled with offload::fill_checksum, GSO cut
    /// with offload::segment).
    pub accepts: Offloads,
    /// Frames queued to this port at most.
    pub queue: usize,
}

pub use super::Frame;

/// Why [`Bridge::input`] dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The port is not (or no longer) on the bridge.
    UnknownPort,
    /// Shorter than an Ethernet header.
    TooShort,
    /// A multicast, broadcast or all-zero source MAC.
    InvalidSource,
    /// A source MAC that is not the vif's own, or from a port without one, a vif's.
    SourceMac,
    /// An IPv4 packet or ARP message whose sender is not the vif's address (or that is
    /// too broken to tell).
    SourceIp,
    /// A VLAN tag from a vif whose IPv4 sender is filtered.
    Tagged,
    /// A blank checksum or GSO request the frame's headers cannot honour.
    BadOffload(OffloadError),
    /// Its destination is the port it came from, or there is no other port.
    NoDestination,
    /// Every destination's queue was full (or held the source's share).
    QueueFull,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::UnknownPort => f.write_str("from a port not on the bridge"),
            DropReason::TooShort => f.write_str("shorter than an Ethernet header"),
            DropReason::InvalidSource => f.write_str("multicast or zero source MAC"),
            DropReason::SourceMac => f.write_str("source MAC not the port's"),
            DropReason::SourceIp => f.write_str("IPv4 or ARP sender not the port's address"),
            DropReason::Tagged => f.write_str("VLAN tag from a port with an IPv4 filter"),
            DropReason::BadOffload(e) => write!(f, "offload request not possible: {e}"),
            DropReason::NoDestination => f.write_str("no destination but its own port"),
            DropReason::QueueFull => f.write_str("every destination queue full"),
        }
    }
}

/// What [`Bridge::input`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Queued to `to` ports (at least one segment each, for a segmented frame).
    Forwarded {
        to: usize,
    },
    Dropped(DropReason),
}

/// A port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames [`Bridge::input`] took from this port, whatever became of them.
    pub rx: u64,
    /// Of those, dropped by the port's filters (source MAC, IPv4/ARP sender, VLAN tag).
    pub rx_filtered: u64,
    /// Of those, dropped as malformed: too short, or an impossible offload request.
    pub rx_malformed: u64,
    /// Frames queued to this port (a segmented frame counts its segments).
    pub tx: u64,
    /// Frames for this port dropped because its queue was full or the sender had its
    /// share (including queued frames pushed out for another sender).
    pub tx_dropped: u64,
}

struct Port {
    cfg: PortConfig,
    /// Frames waiting, each with the port it came from.
    queue: VecDeque<(PortId, Frame)>,
    /// How many frames of `queue` each source port holds (no zero entries).
    held: BTreeMap<PortId, usize>,
    stats: PortStats,
}

impl Port {
    /// Queues `frame` from `src` under the fair-share rule of the module doc; false if
    /// it was dropped.
    fn admit(&mut self, src: PortId, frame: Frame) -> bool {
        let cap = self.cfg.queue;
        if self.queue.len() >= cap {
            let share = (cap / 2).max(1);
            let mine = self.held.get(&src).copied().unwrap_or(0);
            let hog = self
                .held
                .iter()
                .max_by_key(|&(_, &n)| n)
                .map(|(&p, &n)| (p, n));
            match hog {
                Some((hog, n)) if mine < share && n > share && hog != src => {
                    // Its newest frame: its older ones keep their place in line.
                    let at = self.queue.iter().rposition(|(s, _)| *s == hog);
                    if let Some(at) = at {
                        self.queue.remove(at);
                        self.release(hog);
                        self.stats.tx_dropped += 1;
                    }
                }
                _ => {
                    self.stats.tx_dropped += 1;
                    return false;
                }
            }
        }
        self.queue.push_back((src, frame));
        *self.held.entry(src).or_insert(0) += 1;
        self.stats.tx += 1;
        true
    }

    fn release(&mut self, src: PortId) {
        if let Some(n) = self.held.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&src);
            }
        }
    }
}

/// A learned MAC: where it was last seen, and when (the bridge's frame clock).
struct Learned {
    port: PortId,
    seen: u64,
}

/// How a frame must be changed for a destination.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Original,
    Filled,
    Segmented,
}

/// The bridge: ports, their queues, and the MAC table.
#[derive(Default)]
pub struct Bridge {
    ports: BTreeMap<PortId, Port>,
    next_id: PortId,
    /// Each vif's configured MAC: never learned, never moved.
    pinned: BTreeMap<[u8; 6], PortId>,
    learned: BTreeMap<[u8; 6], Learned>,
    /// The learned MACs by when they were last seen, oldest first.
    by_age: BTreeMap<u64, [u8; 6]>,
    clock: u64,
}

fn mac_at(data: &[u8], at: usize) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&data[at..at + 6]);
    m
}

fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

impl Bridge {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a port; its configured MAC is pinned to it unless another port has it.
    pub fn add_port(&mut self, cfg: PortConfig) -> PortId {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(mac) = cfg.mac {
            if !self.pinned.contains_key(&mac) {
                self.pin(mac, id);
            }
        }
        self.ports.insert(
            id,
            Port {
                cfg,
                queue: VecDeque::new(),
                held: BTreeMap::new(),
                stats: PortStats::default(),
            },
        );
        id
    }

    fn pin(&mut self, mac: [u8; 6], port: PortId) {
        self.pinned.insert(mac, port);
        if let Some(old) = self.learned.remove(&mac) {
            self.by_age.remove(&old.seen);
        }
    }

    /// Forgets the port, its learned addresses and its queue (its frames already queued
    /// to other ports stay there). Ids are never reused, so a stale id names no port:
    /// every call with it is as for a port never added. A MAC it had pinned passes to
    /// the first other port configured with it, if any.
    pub fn remove_port(&mut self, port: PortId) {
        let Some(gone) = self.ports.remove(&port) else {
            return;
        };
        if let Some(mac) = gone.cfg.mac {
            if self.pinned.get(&mac) == Some(&port) {
                self.pinned.remove(&mac);
                let heir = self.ports.iter().find(|(_, p)| p.cfg.mac == Some(mac));
                if let Some((&heir, _)) = heir {
                    self.pin(mac, heir);
                }
            }
        }
        let by_age = &mut self.by_age;
        self.learned.retain(|_, l| {
            let keep = l.port != port;
            if !keep {
                by_age.remove(&l.seen);
            }
            keep
        });
    }

    /// A frame that arrived from `from`: filtered, learned, forwarded (known unicast to
    /// that port only; broadcast, multicast and unknown unicast to every other port;
    /// never back to `from`), as the module doc says. Returns what happened.
    pub fn input(&mut self, from: PortId, frame: Frame) -> Verdict {
        let Some(port) = self.ports.get_mut(&from) else {
            return Verdict::Dropped(DropReason::UnknownPort);
        };
        port.stats.rx += 1;
        if frame.data.len() < EthernetFrame::<&[u8]>::header_len() {
            port.stats.rx_malformed += 1;
            return Verdict::Dropped(DropReason::TooShort);
        }
        let cfg = port.cfg.clone();
        if let Err(why) = self.filter(from, &cfg, &frame.data) {
            self.ports
                .get_mut(&from)
                .expect("looked up")
                .stats
                .rx_filtered += 1;
            return Verdict::Dropped(why);
        }
        let headers = match Self::check_offload(&frame) {
            Ok(h) => h,
            Err(e) => {
                self.ports
                    .get_mut(&from)
                    .expect("looked up")
                    .stats
                    .rx_malformed += 1;
                return Verdict::Dropped(DropReason::BadOffload(e));
            }
        };
        let src = mac_at(&frame.data, 6);
        if cfg.mac.is_none() {
            self.learn(src, from);
        }
        let dests = self.destinations(from, &mac_at(&frame.data, 0));
        if dests.is_empty() {
            return Verdict::Dropped(DropReason::NoDestination);
        }
        let reached = self.deliver(from, frame, headers, &dests);
        if reached == 0 {
            Verdict::Dropped(DropReason::QueueFull)
        } else {
            Verdict::Forwarded { to: reached }
        }
    }

    /// The source filters of the module doc.
    fn filter(&self, from: PortId, cfg: &PortConfig, data: &[u8]) -> Result<(), DropReason> {
        let src = mac_at(data, 6);
        if is_multicast(&src) || src == [0; 6] {
            return Err(DropReason::InvalidSource);
        }
        let owner = self.pinned.get(&src);
        match cfg.mac {
            Some(mac) if mac != src || owner != Some(&from) => return Err(DropReason::SourceMac),
            None if owner.is_some() => return Err(DropReason::SourceMac),
            _ => {}
        }
        let Some(ip) = cfg.ip else {
            return Ok(());
        };
        let ip = Ipv4Address::from(ip);
        let eth = EthernetFrame::new_unchecked(data);
        match eth.ethertype() {
            EthernetProtocol::Ipv4 => {
                let ok = Ipv4Packet::new_checked(eth.payload())
                    .is_ok_and(|p| p.version() == 4 && p.src_addr() == ip);
                ok.then_some(()).ok_or(DropReason::SourceIp)
            }
            EthernetProtocol::Arp => {
                let ok = ArpPacket::new_checked(eth.payload()).is_ok_and(|a| {
                    a.hardware_type() == ArpHardware::Ethernet
                        && a.protocol_type() == EthernetProtocol::Ipv4
                        && a.hardware_len() == 6
                        && a.protocol_len() == 4
                        && a.source_hardware_addr() == src
                        && (a.source_protocol_addr() == ip.octets()
                            || a.source_protocol_addr() == [0; 4])
                });
                ok.then_some(()).ok_or(DropReason::SourceIp)
            }
            EthernetProtocol::Unknown(t) if VLAN_TAGS.contains(&t) => Err(DropReason::Tagged),
            _ => Ok(()),
        }
    }

    /// Checks that the frame's offload request can be honoured; the headers found, if
    /// it makes one.
    fn check_offload(frame: &Frame) -> Result<Option<Headers>, OffloadError> {
        if let Some(gso) = frame.meta.gso {
            offload::segment_count(&frame.data, gso)?;
        } else if !frame.meta.csum_blank {
            return Ok(None);
        }
        offload::headers(&frame.data).map(Some)
    }

    fn learn(&mut self, mac: [u8; 6], port: PortId) {
        if self.pinned.contains_key(&mac) {
            return;
        }
        self.clock += 1;
        let seen = self.clock;
        if let Some(l) = self.learned.get_mut(&mac) {
            self.by_age.remove(&l.seen);
            *l = Learned { port, seen };
        } else {
            if self.learned.len() >= MAX_LEARNED {
                if let Some((_, oldest)) = self.by_age.pop_first() {
                    self.learned.remove(&oldest);
                }
            }
            self.learned.insert(mac, Learned { port, seen });
        }
        self.by_age.insert(seen, mac);
    }

    /// Where a frame to `dst` from `from` goes (never `from`).
    fn destinations(&self, from: PortId, dst: &[u8; 6]) -> Vec<PortId> {
        if !is_multicast(dst) {
            if let Some(p) = self.lookup(dst) {
                return if p == from {
                    Vec::new()
                } else {
                    alloc::vec![p]
                };
            }
        }
        self.ports.keys().copied().filter(|&p| p != from).collect()
    }

    /// What `accepts` needs done to a frame with `meta` and `headers`.
    fn form(meta: &PacketMeta, headers: Option<Headers>, accepts: &Offloads) -> Form {
        let Some(h) = headers else {
            return Form::Original;
        };
        let csum = if h.ipv6 {
            accepts.ipv6_csum_blank
        } else {
            accepts.csum_blank
        };
        let gso = if h.ipv6 {
            accepts.gso_tcpv6
        } else {
            accepts.gso_tcpv4
        };
        if meta.gso.is_some() && !(gso && csum) {
            Form::Segmented
        } else if meta.csum_blank && !csum {
            Form::Filled
        } else {
            Form::Original
        }
    }

    /// Queues `frame` (adapted) to each of `dests`; how many got at least one frame.
    fn deliver(
        &mut self,
        from: PortId,
        frame: Frame,
        headers: Option<Headers>,
        dests: &[PortId],
    ) -> usize {
        let forms: Vec<Form> = dests
            .iter()
            .map(|d| Self::form(&frame.meta, headers, &self.ports[d].cfg.accepts))
            .collect();
        let last_of = |f: Form| forms.iter().rposition(|&x| x == f);
        let (last_orig, last_filled, last_seg) = (
            last_of(Form::Original),
            last_of(Form::Filled),
            last_of(Form::Segmented),
        );
        let adapted = PacketMeta {
            csum_blank: false,
            data_validated: true,
            gso: None,
        };
        let mut segments = Vec::new();
        if let (Some(_), Some(gso)) = (last_seg, frame.meta.gso) {
            // check_offload made sure this succeeds.
            let _ = offload::segment(&frame.data, gso, &mut |data| {
                segments.push(Frame {
                    data,
                    meta: adapted,
                })
            });
        }
        let mut original = Some(frame);
        let mut filled = None;
        if last_filled.is_some() {
            let mut f = if last_orig.is_some() {
                original.clone().expect("not yet moved")
            } else {
                original.take().expect("not yet moved")
            };
            // check_offload made sure this succeeds.
            let _ = offload::fill_checksum(&mut f.data);
            f.meta = adapted;
            filled = Some(f);
        }
        let mut segments = Some(segments);
        let mut reached = 0;
        for (i, (&d, &form)) in dests.iter().zip(&forms).enumerate() {
            let batch = match form {
                Form::Original => {
                    take_or_clone(&mut original, last_orig == Some(i)).map(|f| Vec::from([f]))
                }
                Form::Filled => {
                    take_or_clone(&mut filled, last_filled == Some(i)).map(|f| Vec::from([f]))
                }
                Form::Segmented => take_or_clone(&mut segments, last_seg == Some(i)),
            };
            let port = self.ports.get_mut(&d).expect("a destination is a port");
            let mut any = false;
            for f in batch.unwrap_or_default() {
                any |= port.admit(from, f);
            }
            reached += usize::from(any);
        }
        reached
    }

    /// The next frame queued for `port` (FIFO).
    pub fn pop(&mut self, port: PortId) -> Option<Frame> {
        let p = self.ports.get_mut(&port)?;
        let (src, frame) = p.queue.pop_front()?;
        p.release(src);
        Some(frame)
    }

    /// Frames waiting for `port`.
    pub fn queued(&self, port: PortId) -> usize {
        self.ports.get(&port).map_or(0, |p| p.queue.len())
    }

    /// The port's counters (all zero for a port not on the bridge).
    pub fn stats(&self, port: PortId) -> PortStats {
        self.ports.get(&port).map(|p| p.stats).unwrap_or_default()
    }

    /// The port a unicast MAC goes to (pinned or learned), if known.
    pub fn lookup(&self, mac: &[u8; 6]) -> Option<PortId> {
        self.pinned
            .get(mac)
            .copied()
            .or_else(|| self.learned.get(mac).map(|l| l.port))
    }

    /// MACs learned (not counting the pinned ones); at most [`MAX_LEARNED`].
    pub fn learned(&self) -> usize {
        self.learned.len()
    }
}

/// The value itself for its last user, a copy for the others.
fn take_or_clone<T: Clone>(v: &mut Option<T>, last: bool) -> Option<T> {
    if last {
        v.take()
    } else {
        v.clone()
    }
}
