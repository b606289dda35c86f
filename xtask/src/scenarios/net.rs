//! The network: dom0 drives the machine's NIC (QEMU's virtio-net) and proves it
//! against QEMU's user-mode network, from a manifest (`bundles/nic.toml`), so the
//! manifest's `nic` key, dom0's ` nic` command line word and QEMU's `-netdev` are
//! tested on the way.

use std::time::Duration;

use super::expected::dom0::{self as lines, FAIL};
use super::harness::{check, Boot, Check, Ctx, End, Failure, Pass, Scenario};
use crate::qemu::Outcome;

pub fn all() -> Vec<Scenario> {
    vec![Scenario::new(
        "net-nic",
        "bundles/nic.toml: dom0 finds the virtio-net device of QEMU's user network (`nic = \"user\"`), sends an ARP request for the gateway and a DHCPDISCOVER, and prints the ARP reply and the DHCP offer; a 1514-byte ping comes back intact; a burst of 2,000 ARP requests (transmit buffers refused and retried on the interrupt) gets 2,000 replies; the hello domU runs meanwhile and dom0 powers off",
        net_nic,
    )]
}

fn net_nic(ctx: &Ctx) -> Result<Pass, Failure> {
    check(
        ctx,
        Check {
            boot: Boot::Manifest {
                path: "bundles/nic.toml",
            },
            expect: lines::NIC,
            fail_on: FAIL,
            end: End::Outcome(Outcome::PowerOff),
            timeout: Duration::from_secs(90),
            first_guest_line: None,
            anywhere: &["hello| Hello from hello"],
        },
    )
}
