//! Network packets on the rings of `xen/include/public/io/netif.h`, both directions,
//! and the checks a back end makes on what a front end transmits (Linux's
//! `xen-netback/netback.c`: `xenvif_tx_build_gops`, `xenvif_get_extras`,
//! `xenvif_count_requests`, `xenvif_set_skb_gso`).
//!
//! A packet the front end transmits is one or more tx request slots: the first names
//! the whole packet's size and its own data (`offset`, and its part of the size), later
//! ones (`NETTXF_more_data` on each but the last) a fragment each, every fragment
//! inside one granted page. Right after the first slot come extra-info slots when it
//! has `NETTXF_extra_info` (GSO, multicast control, hash), chained by
//! `XEN_NETIF_EXTRA_FLAG_MORE`. Each request slot gets a response with its `id`; an
//! extra-info slot's response is `NETIF_RSP_NULL`.
//!
//! A packet the back end delivers fills one or more rx buffers the front end posted
//! (one page each, `id` and `gref`): each response carries that buffer's `id`, the
//! data's `offset` and its length in `status` (negative: an error), and
//! `NETRXF_more_data` on each but the last; a GSO packet's first response has
//! `NETRXF_extra_info` and the next slot is a GSO extra-info.
//!
//! The flag bits differ by direction (`NETTXF_csum_blank` is bit 0, `NETRXF_csum_blank`
//! bit 1), so they are two types, [`TxFlags`] and [`RxFlags`], that do not mix.
//!
//! What a hostile front end can do wrong, and what follows (as Linux's netback
//! decides): impossible ring indices, a missing or unknown extra-info slot, a GSO size
//! of 0 or an unknown GSO type, a fragment crossing its page, a packet whose slots run
//! past what was pushed or that uses more than [`FATAL_SLOTS`] slots: the vif is
//! disconnected ([`TxError::Fatal`]). A packet shorter than an Ethernet header, more
//! than [`MAX_SLOTS`] slots, a fragment larger than what is left of the packet's size:
//! that packet is dropped, every slot answered `NETIF_RSP_ERROR` ([`TxError::Drop`]).

use alloc::vec::Vec;

use xen_sys::{
    netif_rx_response, netif_tx_request, NETRXF_csum_blank, NETRXF_data_validated,
    NETRXF_extra_info, NETRXF_more_data, NETTXF_csum_blank, NETTXF_data_validated,
    NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO,
    XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_TYPE_MAX, XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
    XEN_NETIF_EXTRA_TYPE_MCAST_DEL, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
    XEN_NETIF_MAX_TX_SIZE, XEN_NETIF_NR_SLOTS_MIN,
};

use crate::abi::{FromGuest, ToGuest};
use crate::page::PAGE_SIZE;

/// An Ethernet header: the shortest packet a back end takes (`ETH_HLEN`).
pub const ETH_HLEN: usize = 14;
/// Slots of one packet a back end must take (`XEN_NETIF_NR_SLOTS_MIN`, Linux's
/// `XEN_NETBK_LEGACY_SLOTS_MAX`): the first and up to this many fragments; a packet
/// with more is dropped.
pub const MAX_SLOTS: usize = XEN_NETIF_NR_SLOTS_MIN as usize;
/// The largest packet (its size is 16 bits).
pub const MAX_TX_SIZE: usize = XEN_NETIF_MAX_TX_SIZE as usize;
/// Fragments after which a front end is taken as malicious (Linux's
/// `fatal_skb_slots` default, `FATAL_SKB_SLOTS_DEFAULT`).
pub const FATAL_SLOTS: usize = 20;

/// Flags of a tx request (`NETTXF_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxFlags(pub u16);

/// Flags of an rx response (`NETRXF_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxFlags(pub u16);

macro_rules! flags {
    ($t:ident { $($name:ident = $bit:expr),* $(,)? }) => {
        impl $t {
            $(pub const $name: $t = $t($bit as u16);)*
            pub fn has(self, f: $t) -> bool {
                self.0 & f.0 == f.0
            }
            pub fn with(self, f: $t, on: bool) -> $t {
                if on { $t(self.0 | f.0) } else { $t(self.0 & !f.0) }
            }
        }
    };
}

flags!(TxFlags {
    CSUM_BLANK = NETTXF_csum_blank,
    DATA_VALIDATED = NETTXF_data_validated,
    MORE_DATA = NETTXF_more_data,
    EXTRA_INFO = NETTXF_extra_info,
});

flags!(RxFlags {
    DATA_VALIDATED = NETRXF_data_validated,
    CSUM_BLANK = NETRXF_csum_blank,
    MORE_DATA = NETRXF_more_data,
    EXTRA_INFO = NETRXF_extra_info,
});

/// A TCP segmentation offload: the packet is one TCP segment larger than the MTU,
/// to be cut into `size`-byte segments by whoever sends it on a real wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    pub kind: GsoKind,
    pub size: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoKind {
    TcpV4,
    TcpV6,
}

impl GsoKind {
    /// `XEN_NETIF_GSO_TYPE_*`.
    pub fn number(self) -> u8 {
        match self {
            GsoKind::TcpV4 => XEN_NETIF_GSO_TYPE_TCPV4 as u8,
            GsoKind::TcpV6 => XEN_NETIF_GSO_TYPE_TCPV6 as u8,
        }
    }

    fn parse(n: u8) -> Option<GsoKind> {
        match n as u32 {
            XEN_NETIF_GSO_TYPE_TCPV4 => Some(GsoKind::TcpV4),
            XEN_NETIF_GSO_TYPE_TCPV6 => Some(GsoKind::TcpV6),
            _ => None,
        }
    }
}

/// What netif.h's flags say about a packet's checksum and segmentation, whichever
/// direction it travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// The TCP/UDP checksum field holds only the pseudo-header sum (Linux's
    /// `CHECKSUM_PARTIAL`): whoever hands the packet to a party that checks fills it.
    pub csum_blank: bool,
    /// The checksum is known good (or blank from a trusted sender).
    pub data_validated: bool,
    pub gso: Option<Gso>,
}

impl PacketMeta {
    /// The flags of a tx request's first slot.
    pub fn tx_flags(&self) -> TxFlags {
        TxFlags::default()
            .with(TxFlags::CSUM_BLANK, self.csum_blank)
            .with(TxFlags::DATA_VALIDATED, self.data_validated)
            .with(TxFlags::EXTRA_INFO, self.gso.is_some())
    }

    /// The flags of an rx response's first slot.
    pub fn rx_flags(&self) -> RxFlags {
        RxFlags::default()
            .with(RxFlags::CSUM_BLANK, self.csum_blank)
            .with(RxFlags::DATA_VALIDATED, self.data_validated)
            .with(RxFlags::EXTRA_INFO, self.gso.is_some())
    }
}

/// An extra-info slot (`struct netif_extra_info`, 8 bytes at the start of a ring
/// slot, in either ring).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`, as the peer wrote it.
    pub kind: u8,
    /// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
    pub more: bool,
    /// The union's six bytes.
    pub data: [u8; 6],
}

impl ExtraInfo {
    /// A GSO extra-info (`u.gso`: size, type, pad, features).
    pub fn gso(gso: Gso) -> ExtraInfo {
        let s = gso.size.to_le_bytes();
        ExtraInfo {
            kind: XEN_NETIF_EXTRA_TYPE_GSO as u8,
            more: false,
            data: [s[0], s[1], gso.kind.number(), 0, 0, 0],
        }
    }

    /// The GSO it describes: `None` if it is not a GSO slot; `Err` for a size of 0 or
    /// an unknown type.
    pub fn as_gso(&self) -> Option<Result<Gso, TxFatal>> {
        if self.kind as u32 != XEN_NETIF_EXTRA_TYPE_GSO {
            return None;
        }
        let size = u16::from_le_bytes([self.data[0], self.data[1]]);
        Some(match GsoKind::parse(self.data[2]) {
            _ if size == 0 => Err(TxFatal::GsoSizeZero),
            Some(kind) => Ok(Gso { kind, size }),
            None => Err(TxFatal::BadGsoType(self.data[2])),
        })
    }

    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0; 8];
        b[0] = self.kind;
        b[1] = if self.more {
            XEN_NETIF_EXTRA_FLAG_MORE as u8
        } else {
            0
        };
        b[2..].copy_from_slice(&self.data);
        b
    }

    pub fn from_bytes(b: &[u8]) -> ExtraInfo {
        ExtraInfo {
            kind: b[0],
            more: b[1] & XEN_NETIF_EXTRA_FLAG_MORE as u8 != 0,
            data: [b[2], b[3], b[4], b[5], b[6], b[7]],
        }
    }

    /// The tx slot holding it (a front end's view).
    pub fn as_tx_slot(self) -> netif_tx_request {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.to_bytes());
        netif_tx_request::decode(&b)
    }

    /// The extra-info a tx slot holds (a back end's view of a slot it expects one in).
    pub fn from_tx_slot(slot: &netif_tx_request) -> ExtraInfo {
        let mut b = [0u8; 12];
        slot.encode(&mut b);
        ExtraInfo::from_bytes(&b)
    }

    /// The rx response slot holding it.
    pub fn as_rx_slot(self) -> netif_rx_response {
        netif_rx_response::decode(&self.to_bytes())
    }

    /// The extra-info an rx response slot holds (a front end's view).
    pub fn from_rx_slot(slot: &netif_rx_response) -> ExtraInfo {
        let mut b = [0u8; 8];
        slot.encode(&mut b);
        ExtraInfo::from_bytes(&b)
    }
}

/// Why a vif is disconnected (Linux's `xenvif_fatal_tx_err`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxFatal {
    /// `NETTXF_extra_info` with no slot pushed after it.
    MissingExtra,
    /// An extra-info of type 0 or beyond `XEN_NETIF_EXTRA_TYPE_MAX`.
    BadExtraType(u8),
    GsoSizeZero,
    BadGsoType(u8),
    /// `NETTXF_more_data` on the last slot pushed.
    MissingSlots {
        asked: usize,
    },
    /// More fragments than any honest front end uses.
    TooManySlots,
    /// A slot's data crosses the end of its page.
    CrossPage {
        offset: u16,
        size: u16,
    },
}

impl core::fmt::Display for TxFatal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TxFatal::MissingExtra => write!(f, "missing extra info"),
            TxFatal::BadExtraType(t) => write!(f, "invalid extra type {t}"),
            TxFatal::GsoSizeZero => write!(f, "GSO size must not be zero"),
            TxFatal::BadGsoType(t) => write!(f, "bad GSO type {t}"),
            TxFatal::MissingSlots { asked } => {
                write!(f, "asked for more than the {asked} slots pushed")
            }
            TxFatal::TooManySlots => write!(f, "more than {FATAL_SLOTS} fragments"),
            TxFatal::CrossPage { offset, size } => {
                write!(f, "slot crosses its page: offset {offset}, size {size}")
            }
        }
    }
}

/// Why one packet is dropped (Linux's `xenvif_tx_err`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxDrop {
    /// Shorter than an Ethernet header (0 included).
    TooShort(u16),
    /// More than [`MAX_SLOTS`] fragments.
    TooManySlots,
    /// A fragment larger than what is left of the packet's size.
    FragmentTooLarge,
}

/// A data slot of a transmitted packet: part of one granted page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxFrag {
    pub id: u16,
    pub gref: u32,
    pub offset: u16,
    pub size: u16,
}

/// A transmitted packet, checked: its data slots in order (the first slot's `size`
/// already reduced to its own part), the extra-info slots that followed the first
/// (each answered `NETIF_RSP_NULL`), and its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPacket {
    pub frags: Vec<TxFrag>,
    pub extras: usize,
    pub meta: PacketMeta,
    /// A multicast-control request (`XEN_NETIF_EXTRA_TYPE_MCAST_ADD`/`_DEL`) rather
    /// than a packet: answered, not sent.
    pub mcast: Option<(bool, [u8; 6])>,
    /// The packet's size, as the first slot said.
    pub len: usize,
}

impl TxPacket {
    /// Ring slots it took.
    pub fn slots(&self) -> usize {
        self.frags.len() + self.extras
    }
}

/// What became of the next packet on the tx ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Drop it: answer `NETIF_RSP_ERROR` to each of its data slots (`ids`, in order)
    /// and `NETIF_RSP_NULL` to its `extras`; `slots` consumed in all.
    Drop {
        why: TxDrop,
        ids: Vec<u16>,
        extras: usize,
        slots: usize,
    },
    /// Disconnect the vif.
    Fatal(TxFatal),
}

/// Reads the next packet from the `pushed` slots the front end made available,
/// `slot(i)` being the i-th of them (copied out of the ring, so the front end cannot
/// change it while it is checked). The order of the checks is netback's.
pub fn parse_tx(
    pushed: usize,
    mut slot: impl FnMut(usize) -> netif_tx_request,
) -> Result<TxPacket, TxError> {
    debug_assert!(pushed > 0);
    let first = slot(0);
    let mut at = 1;
    let flags = TxFlags(first.flags);
    let mut gso = None;
    let mut mcast = None;
    if flags.has(TxFlags::EXTRA_INFO) {
        loop {
            if at >= pushed {
                return Err(TxError::Fatal(TxFatal::MissingExtra));
            }
            let extra = ExtraInfo::from_tx_slot(&slot(at));
            at += 1;
            let kind = extra.kind as u32;
            if kind == 0 || kind >= XEN_NETIF_EXTRA_TYPE_MAX {
                return Err(TxError::Fatal(TxFatal::BadExtraType(extra.kind)));
            }
            match kind {
                XEN_NETIF_EXTRA_TYPE_GSO => gso = Some(extra),
                XEN_NETIF_EXTRA_TYPE_MCAST_ADD => mcast = Some((true, addr(&extra))),
                XEN_NETIF_EXTRA_TYPE_MCAST_DEL => mcast = Some((false, addr(&extra))),
                // A hash the front end computed: a hint we do not need.
                XEN_NETIF_EXTRA_TYPE_HASH => {}
                _ => unreachable!("checked against XEN_NETIF_EXTRA_TYPE_MAX"),
            }
            if !extra.more {
                break;
            }
        }
    }
    let extras = at - 1;
    let one = |id, gref, offset, size| TxFrag {
        id,
        gref,
        offset,
        size,
    };
    if let Some(mcast) = mcast {
        return Ok(TxPacket {
            frags: alloc::vec![one(first.id, first.gref, first.offset, 0)],
            extras,
            meta: PacketMeta::default(),
            mcast: Some(mcast),
            len: 0,
        });
    }
    // xenvif_count_requests: the fragments.
    let mut remaining = first.size;
    let mut frags = alloc::vec![one(first.id, first.gref, first.offset, 0)];
    let mut drop = None;
    let mut more = flags.has(TxFlags::MORE_DATA);
    let mut n = 0;
    while more {
        if at + n >= pushed {
            return Err(TxError::Fatal(TxFatal::MissingSlots { asked: pushed }));
        }
        if n >= FATAL_SLOTS {
            return Err(TxError::Fatal(TxFatal::TooManySlots));
        }
        if drop.is_none() && n >= MAX_SLOTS {
            drop = Some(TxDrop::TooManySlots);
        }
        let s = slot(at + n);
        if drop.is_none() && s.size > remaining {
            drop = Some(TxDrop::FragmentTooLarge);
        }
        remaining = remaining.wrapping_sub(s.size);
        n += 1;
        if s.offset as usize + s.size as usize > PAGE_SIZE {
            return Err(TxError::Fatal(TxFatal::CrossPage {
                offset: s.offset,
                size: s.size,
            }));
        }
        more = TxFlags(s.flags).has(TxFlags::MORE_DATA);
        frags.push(one(s.id, s.gref, s.offset, s.size));
    }
    let slots = at + n;
    let dropped = |why, frags: &[TxFrag]| TxError::Drop {
        why,
        ids: frags.iter().map(|f| f.id).collect(),
        extras,
        slots,
    };
    if let Some(why) = drop {
        return Err(dropped(why, &frags));
    }
    if (first.size as usize) < ETH_HLEN {
        return Err(dropped(TxDrop::TooShort(first.size), &frags));
    }
    // What is left of the size is the first slot's own data.
    if first.offset as usize + remaining as usize > PAGE_SIZE {
        return Err(TxError::Fatal(TxFatal::CrossPage {
            offset: first.offset,
            size: remaining,
        }));
    }
    frags[0].size = remaining;
    let gso = match gso.and_then(|g| g.as_gso()) {
        Some(Err(e)) => return Err(TxError::Fatal(e)),
        Some(Ok(g)) => Some(g),
        None => None,
    };
    Ok(TxPacket {
        frags,
        extras,
        meta: PacketMeta {
            csum_blank: flags.has(TxFlags::CSUM_BLANK),
            data_validated: flags.has(TxFlags::DATA_VALIDATED),
            gso,
        },
        mcast: None,
        len: first.size as usize,
    })
}

fn addr(e: &ExtraInfo) -> [u8; 6] {
    e.data
}

/// The tx slots of a packet of `len` bytes in `pages` (each `(gref, offset, size)`),
/// as a front end writes them: the first slot with the whole size and the flags of
/// `meta`, its GSO extra-info next, then one slot per further page. `ids` gives each
/// data slot its id.
pub fn tx_slots(
    pages: &[(u32, u16, u16)],
    ids: &[u16],
    meta: &PacketMeta,
    out: &mut impl FnMut(netif_tx_request),
) {
    let len: usize = pages.iter().map(|p| p.2 as usize).sum();
    for (i, &(gref, offset, size)) in pages.iter().enumerate() {
        let more = i + 1 < pages.len();
        let (flags, size) = if i == 0 {
            (meta.tx_flags().with(TxFlags::MORE_DATA, more), len as u16)
        } else {
            (TxFlags::default().with(TxFlags::MORE_DATA, more), size)
        };
        out(netif_tx_request {
            gref,
            offset,
            flags: flags.0,
            id: ids[i],
            size,
        });
        if i == 0 {
            if let Some(gso) = meta.gso {
                out(ExtraInfo::gso(gso).as_tx_slot());
            }
        }
    }
}

/// A MAC address in xenstore's form (`mac` nodes: `00:16:3e:xx:xx:xx`, lower-case),
/// as Linux's netfront (`xen_net_read_mac`) and ours parse it.
pub fn format_mac(mac: &[u8; 6]) -> alloc::string::String {
    alloc::format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    )
}

/// Parses `xx:xx:xx:xx:xx:xx` (either case); `None` for anything else.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests;
