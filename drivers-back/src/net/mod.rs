//! dom0's side of the virtual network (`xen/include/public/io/netif.h`; Linux's
//! `drivers/net/xen-netback` and `net/bridge`).
//!
//! - [`bridge`]: the L2 learning bridge between dom0's NIC and every vif, with
//!   netback's anti-spoofing and the offload fallbacks of `pv_core::offload`.

pub mod bridge;
