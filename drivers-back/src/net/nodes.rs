//! The nodes a toolstack writes to create a vif, before either end runs (libxl's
//! `libxl__device_nic_add`; Xen's `docs/misc/xenstore-paths.pandoc`):
//!
//! - the front end's `/local/domain/<front>/device/vif/<id>`: `backend`,
//!   `backend-id`, `handle`, `mac`, `state`;
//! - the back end's `/local/domain/<back>/backend/vif/<front>/<id>`: `frontend`,
//!   `frontend-id`, `online`, `state`, `handle`, `mac`, `bridge`, `type`, `script`,
//!   `hotplug-status` (our bridge needs no hotplug script: it is `connected` at once),
//!   and `ip` when the toolstack gave one.
//!
//! MAC addresses are written as `00:16:3e:xx:xx:xx`, lower-case hex, the form both
//! Linux's netfront (`xen_net_read_mac`) and ours parse.

use alloc::format;
use alloc::string::String;

use xenbus::{Store, XsError};

use pv_core::netif::format_mac;

use crate::device_nodes;

/// One vif as the toolstack describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vif<'a> {
    pub front: u16,
    /// The device number (`handle`), 0 for the first vif of a domain.
    pub id: u32,
    pub mac: [u8; 6],
    /// The address the toolstack gave the domain (xl.cfg's `ip=`), if any.
    pub ip: Option<&'a str>,
    /// The bridge it joins (`bridge`), for people reading the store.
    pub bridge: &'a str,
}

impl Vif<'_> {
    pub fn front_dir(&self) -> String {
        format!("/local/domain/{}/device/vif/{}", self.front, self.id)
    }

    pub fn back_dir(&self, back: u16) -> String {
        format!(
            "/local/domain/{back}/backend/vif/{}/{}",
            self.front, self.id
        )
    }
}

/// Writes the nodes of `vif`, served by domain `back`.
pub async fn create<S: Store>(store: &S, back: u16, vif: &Vif<'_>) -> Result<(), XsError> {
    let (fe, be) = (vif.front_dir(), vif.back_dir(back));
    let (front_id, back_id) = (format!("{}", vif.front), format!("{back}"));
    let handle = format!("{}", vif.id);
    let mac = format_mac(&vif.mac);
    let fe_nodes = [
        ("backend", be.as_str()),
        ("backend-id", back_id.as_str()),
        ("handle", handle.as_str()),
        ("mac", mac.as_str()),
        ("state", "1"),
    ];
    let mut be_nodes = alloc::vec![
        ("frontend", fe.as_str()),
        ("frontend-id", front_id.as_str()),
        ("online", "1"),
        ("handle", handle.as_str()),
        ("mac", mac.as_str()),
        ("bridge", vif.bridge),
        ("type", "vif"),
        ("script", "none"),
        ("hotplug-status", "connected"),
        ("state", "1"),
    ];
    if let Some(ip) = vif.ip {
        be_nodes.push(("ip", ip));
    }
    device_nodes::create(store, (vif.front, &fe, &fe_nodes), (back, &be, &be_nodes)).await
}

/// Removes both directories.
pub async fn remove<S: Store>(store: &S, back: u16, vif: &Vif<'_>) -> Result<(), XsError> {
    device_nodes::remove(store, &vif.front_dir(), &vif.back_dir(back)).await
}
