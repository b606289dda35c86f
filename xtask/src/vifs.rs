//! Virtual network interfaces: a manifest's vif specs, written as xl.cfg writes them
//! (Xen's `docs/man/xl-network-configuration.5.pod`): `key=value` pairs separated by
//! commas.
//!
//! ```text
//! mac=00:16:3e:01:02:03, ip=10.0.2.16, hostfwd=8080:80
//! ```
//!
//! - `mac=`: the vif's MAC. Without it one is made in Xen's `00:16:3e` prefix from the
//!   domain's name and the vif's index, so it is the same at every boot.
//! - `ip=`: the domain's IPv4 address (`A.B.C.D`, or `A.B.C.D/len`; /24 if no length),
//!   written to the vif's back-end `ip` node as libxl does; the bridge lets the vif
//!   send only from it. Without it the domain asks DHCP (QEMU's user network answers).
//! - `gateway=` (ours): the default route, written to the back end's `gateway` node;
//!   default 10.0.2.2 (QEMU's user network) when `ip=` is given.
//! - `bridge=`: accepted, `xenbr0` (dom0 has one bridge).
//! - `type=vif`: accepted, the only type of a PV domain.
//! - `hostfwd=HOST:GUEST` (ours, may repeat): QEMU's user network forwards TCP port
//!   HOST of 127.0.0.1 on the host to port GUEST of this vif's `ip=`.
//!
//! Unknown keys are errors.

use std::net::Ipv4Addr;

use pv_core::netif;
pub use pv_core::netif::format_mac;

/// The address QEMU's user network routes through.
pub const USER_NET_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// One vif of a domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifSpec {
    pub mac: Option<[u8; 6]>,
    pub ip: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    /// (host port, guest port), TCP.
    pub hostfwd: Vec<(u16, u16)>,
}

impl VifSpec {
    pub fn parse(spec: &str) -> Result<VifSpec, String> {
        let mut v = VifSpec {
            mac: None,
            ip: None,
            gateway: None,
            hostfwd: Vec::new(),
        };
        let mut seen = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: want key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            if key != "hostfwd" {
                if seen.contains(&key) {
                    return Err(format!("`{key}` given twice"));
                }
                seen.push(key);
            }
            match key {
                "mac" => v.mac = Some(parse_mac(value).ok_or_else(|| format!("mac {value:?}"))?),
                "ip" => {
                    let (a, len) = match value.split_once('/') {
                        Some((a, l)) => (a, l.parse().ok().filter(|&l: &u8| l <= 32)),
                        None => (value, Some(24)),
                    };
                    let a: Ipv4Addr = a.parse().map_err(|_| format!("ip {value:?}"))?;
                    v.ip = Some((a, len.ok_or_else(|| format!("ip {value:?}: prefix"))?));
                }
                "gateway" => {
                    v.gateway = Some(value.parse().map_err(|_| format!("gateway {value:?}"))?)
                }
                "bridge" if value == "xenbr0" => {}
                "bridge" => return Err(format!("bridge {value:?}: dom0 has one, xenbr0")),
                "type" if value == "vif" => {}
                "type" => return Err(format!("type {value:?}: a PV domain's vifs are `vif`")),
                "hostfwd" => {
                    let bad = || format!("hostfwd {value:?}: want HOSTPORT:GUESTPORT");
                    let (h, g) = value.split_once(':').ok_or_else(bad)?;
                    let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0);
                    v.hostfwd
                        .push((port(h).ok_or_else(bad)?, port(g).ok_or_else(bad)?));
                }
                other => {
                    return Err(format!(
                        "unknown key `{other}` (known: mac, ip, gateway, bridge, type, hostfwd)"
                    ))
                }
            }
        }
        if !v.hostfwd.is_empty() && v.ip.is_none() {
            return Err("hostfwd needs ip= (QEMU forwards to a fixed address)".into());
        }
        if v.ip.is_some() && v.gateway.is_none() {
            v.gateway = Some(USER_NET_GATEWAY);
        }
        Ok(v)
    }

    /// The vif's MAC: the given one, or one in Xen's prefix made from `domain` and
    /// `index` (FNV-1a; the low bit of the first byte stays clear: unicast).
    pub fn mac_for(&self, domain: &str, index: usize) -> [u8; 6] {
        self.mac.unwrap_or_else(|| {
            let mut h: u32 = 0x811c_9dc5;
            for b in domain.bytes().chain(index.to_le_bytes()) {
                h = (h ^ b as u32).wrapping_mul(0x0100_0193);
            }
            let b = h.to_le_bytes();
            [0x00, 0x16, 0x3e, b[0] & 0x7f, b[1], b[2]]
        })
    }

    /// dom0's `vifs=` entry for it (`DOMID|MAC|IP|GATEWAY`; the address keeps its
    /// `/len`).
    pub fn dom0_entry(&self, domid: u16, mac: [u8; 6]) -> String {
        let ip = self.ip.map(|(a, l)| format!("{a}/{l}")).unwrap_or_default();
        let gw = self.gateway.map(|g| g.to_string()).unwrap_or_default();
        format!("{domid}|{}|{ip}|{gw}", format_mac(&mac))
    }
}

/// A MAC as xl.cfg writes it; a multicast one is refused.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    netif::parse_mac(s).filter(|m| m[0] & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_xl_writes_them() {
        let v = VifSpec::parse("mac=00:16:3e:01:02:03, ip=10.0.2.16, hostfwd=8080:80").unwrap();
        assert_eq!(v.mac, Some([0, 0x16, 0x3e, 1, 2, 3]));
        assert_eq!(v.ip, Some((Ipv4Addr::new(10, 0, 2, 16), 24)));
        assert_eq!(v.gateway, Some(USER_NET_GATEWAY));
        assert_eq!(v.hostfwd, [(8080, 80)]);
        assert_eq!(
            v.dom0_entry(1, v.mac_for("web", 0)),
            "1|00:16:3e:01:02:03|10.0.2.16/24|10.0.2.2"
        );
        // Nothing given: DHCP, a MAC of Xen's prefix, the same each time.
        let d = VifSpec::parse("").unwrap();
        assert_eq!((d.ip, d.gateway), (None, None));
        let m = d.mac_for("web", 0);
        assert_eq!(&m[..3], &[0x00, 0x16, 0x3e]);
        assert_eq!(m, d.mac_for("web", 0));
        assert_ne!(m, d.mac_for("web", 1));
        assert_ne!(m, d.mac_for("db", 0));
        assert_eq!(d.dom0_entry(2, m).matches('|').count(), 3);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, want) in [
            ("color=red", "unknown key `color`"),
            ("mac=00:16:3e:01:02", "mac"),
            ("mac=01:16:3e:01:02:03", "mac"),
            ("ip=10.0.2", "ip"),
            ("ip=10.0.2.16/33", "prefix"),
            ("ip=10.0.2.16,ip=10.0.2.17", "twice"),
            ("hostfwd=8080", "hostfwd"),
            ("hostfwd=8080:80", "needs ip="),
            ("bridge=br1", "xenbr0"),
            ("type=ioemu", "type"),
            ("noequals", "key=value"),
        ] {
            let e = VifSpec::parse(spec).unwrap_err();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }
}
