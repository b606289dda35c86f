//! Power control by the toolstack (`docs/misc/xenstore-paths.markdown`:
//! `~/control/shutdown`): dom0 writes `poweroff`, `halt` or `reboot` there to ask the
//! domain to stop; the domain acknowledges by clearing the node, then shuts down with
//! that reason (`SCHEDOP_shutdown`), as Linux's `drivers/xen/manage.c` does.
//!
//! libos starts [`obey_shutdown_requests`] as an executor daemon in every domain with
//! a store ring, so an appliance that runs the executor obeys without code of its own.
//! One that never runs it (a program that prints and returns) does not listen.

use xen_sys::{SHUTDOWN_poweroff, SHUTDOWN_reboot};

use crate::hypercall;
use crate::xenbus::{self, Store, NO_TX};

const NODE: &str = "control/shutdown";

/// Watches `control/shutdown` and obeys what is written there.
pub async fn obey_shutdown_requests() {
    let xs = match xenbus::store() {
        Ok(xs) => xs,
        Err(e) => {
            log::warn!("control: no store: {e}");
            return;
        }
    };
    let mut watch = match xs.watch(NODE).await {
        Ok(w) => w,
        Err(e) => {
            log::warn!("control: cannot watch {NODE}: {e}");
            return;
        }
    };
    loop {
        if let Err(e) = watch.next().await {
            log::warn!("control: watch on {NODE} ended: {e}");
            return;
        }
        let request = match xs.read_string(NO_TX, NODE).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        let reason = match request.as_str() {
            "" => continue,
            "poweroff" | "halt" => SHUTDOWN_poweroff,
            "reboot" => SHUTDOWN_reboot,
            other => {
                log::warn!("control: ignoring shutdown request {other:?}");
                continue;
            }
        };
        let _ = xs.write(NO_TX, NODE, b"").await;
        crate::println!("control: {request} requested by the toolstack");
        hypercall::shutdown(reason);
    }
}
