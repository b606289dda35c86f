//! How the shim ends the machine when no domain is left: a value written to QEMU's
//! `isa-debug-exit` port (0xf4), which QEMU turns into its exit status `(value << 1) | 1`.
//! `cargo xtask` reads the status back with [`ShimExit::from_qemu_status`].

/// The fate of the initial domain, which decides the machine's (as in Xen, where dom0
/// halting halts the machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShimExit {
    PoweredOff = 0x10,
    Crashed = 0x11,
    /// The shim itself failed (a bug or a broken machine; never a guest's doing).
    ShimPanic = 0x12,
    Reboot = 0x13,
}

impl ShimExit {
    pub const fn port_value(self) -> u32 {
        self as u32
    }

    pub fn from_qemu_status(status: i32) -> Option<Self> {
        [
            Self::PoweredOff,
            Self::Crashed,
            Self::ShimPanic,
            Self::Reboot,
        ]
        .into_iter()
        .find(|e| ((e.port_value() << 1) | 1) as i32 == status)
    }

    /// What the initial domain's shutdown reason means for the machine.
    pub fn for_shutdown(reason: u32) -> Self {
        match reason {
            xen_sys::SHUTDOWN_poweroff => Self::PoweredOff,
            xen_sys::SHUTDOWN_crash => Self::Crashed,
            _ => Self::Reboot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_status_round_trips() {
        assert_eq!(ShimExit::from_qemu_status(33), Some(ShimExit::PoweredOff));
        assert_eq!(ShimExit::from_qemu_status(35), Some(ShimExit::Crashed));
        assert_eq!(ShimExit::from_qemu_status(0), None);
        assert_eq!(
            ShimExit::for_shutdown(xen_sys::SHUTDOWN_watchdog),
            ShimExit::Reboot
        );
    }
}
