//! Host tests of the devices dom0 drives: a device line mapped, bound, fired, EOI'd and
//! closed through the hypercalls, as Linux's and libos's pirq code does, and a domU that
//! tries each step and gets Xen's -EPERM.

use xen_sys::*;

use crate::common::event_channel as evtchn;
use crate::devices::{Device, LineChange};
use crate::hypervisor::{Hypervisor, Next};
use crate::testing::hypervisor::{call, peek_u32, poke, three, SCRATCH};
use crate::testing::TestMachine;
use crate::trap::DEVICE_VECTOR_BASE;
use xen_sys::domid_t;

const GSI: u32 = 47;

fn with_device() -> Hypervisor<TestMachine> {
    let mut h = three();
    h.add_devices(&[Device {
        mmio_base: 0xfeb0_2e00,
        mmio_len: 0x200,
        gsi: GSI,
    }]);
    assert!(h.frame_table.is_iomem(0xfeb02));
    assert!(!h.frame_table.is_iomem(0xfec00), "never the I/O APIC");
    h
}

fn physdev(h: &mut Hypervisor<TestMachine>, d: domid_t, cmd: u32, op: &[u8]) -> i64 {
    poke(h, d, SCRATCH, op);
    call(h, d, __HYPERVISOR_physdev_op, &[cmd as u64, SCRATCH]).0
}

/// `PHYSDEVOP_map_pirq` of GSI `index` on the caller, with `pirq` asked for.
fn map_pirq(
    h: &mut Hypervisor<TestMachine>,
    d: domid_t,
    index: i32,
    pirq: i32,
) -> Result<u32, i64> {
    let mut op = [0u8; 40];
    op[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    op[4..8].copy_from_slice(&(MAP_PIRQ_TYPE_GSI as i32).to_le_bytes());
    op[8..12].copy_from_slice(&index.to_le_bytes());
    op[12..16].copy_from_slice(&pirq.to_le_bytes());
    match physdev(h, d, PHYSDEVOP_map_pirq, &op) {
        0 => Ok(peek_u32(h, d, SCRATCH + 12)),
        e => Err(e),
    }
}

fn bind_pirq(h: &mut Hypervisor<TestMachine>, d: domid_t, pirq: u32) -> Result<u32, i64> {
    let mut op = [0u8; 12];
    op[0..4].copy_from_slice(&pirq.to_le_bytes());
    poke(h, d, SCRATCH, &op);
    match call(
        h,
        d,
        __HYPERVISOR_event_channel_op,
        &[EVTCHNOP_bind_pirq as u64, SCRATCH],
    )
    .0
    {
        0 => Ok(peek_u32(h, d, SCRATCH + 8)),
        e => Err(e),
    }
}

fn close(h: &mut Hypervisor<TestMachine>, d: domid_t, port: u32) -> i64 {
    poke(h, d, SCRATCH, &port.to_le_bytes());
    call(
        h,
        d,
        __HYPERVISOR_event_channel_op,
        &[EVTCHNOP_close as u64, SCRATCH],
    )
    .0
}

fn eoi(h: &mut Hypervisor<TestMachine>, d: domid_t, pirq: u32) -> i64 {
    physdev(h, d, PHYSDEVOP_eoi, &pirq.to_le_bytes())
}

fn status_flags(h: &mut Hypervisor<TestMachine>, d: domid_t, irq: u32) -> Result<u32, i64> {
    let mut op = [0u8; 8];
    op[0..4].copy_from_slice(&irq.to_le_bytes());
    match physdev(h, d, PHYSDEVOP_irq_status_query, &op) {
        0 => Ok(peek_u32(h, d, SCRATCH + 4)),
        e => Err(e),
    }
}

const EPERM: i64 = -(XEN_EPERM as i64);
const EINVAL: i64 = -(XEN_EINVAL as i64);

#[test]
fn dom0_maps_binds_hears_and_eois_a_device_line() {
    let mut h = with_device();
    assert_eq!(
        map_pirq(&mut h, 0, 5, -1),
        Err(EINVAL),
        "no device on GSI 5"
    );
    assert_eq!(
        map_pirq(&mut h, 0, GSI as i32, 3),
        Err(EINVAL),
        "pirq is the GSI"
    );
    assert_eq!(map_pirq(&mut h, 0, GSI as i32, -1), Ok(GSI));
    assert_eq!(
        map_pirq(&mut h, 0, GSI as i32, GSI as i32),
        Ok(GSI),
        "again: same"
    );
    assert_eq!(status_flags(&mut h, 0, GSI), Ok(XENIRQSTAT_needs_eoi));
    assert_eq!(h.take_line_changes(), [], "masked until bound");
    let port = bind_pirq(&mut h, 0, GSI).unwrap();
    assert_eq!(bind_pirq(&mut h, 0, GSI), Err(-(XEN_EEXIST as i64)));
    assert_eq!(h.take_line_changes(), [LineChange::Unmask(GSI)]);

    // The line fires while domain 1 runs: dom0's port is pending, domain 1 goes on
    // or dom0 runs, as the scheduler likes.
    h.current = 1;
    let mut f = h.domains[1].regs;
    f.vector = DEVICE_VECTOR_BASE;
    h.save_entry_frame(&f);
    assert!(matches!(h.handle(0, &mut |_| {}), Next::Resume { .. }));
    assert!(evtchn::is_pending(&h.machine, &h.domains[0], port));
    assert!(h.irqs.line(GSI).unwrap().in_flight);
    assert_eq!(h.take_line_changes(), [], "the arch layer masked it itself");
    assert_eq!(eoi(&mut h, 0, GSI), 0);
    assert_eq!(h.take_line_changes(), [LineChange::Unmask(GSI)]);
    assert_eq!(eoi(&mut h, 0, GSI), 0);
    assert_eq!(h.take_line_changes(), [], "nothing in flight");

    // Closing the port masks the line; it can be bound again.
    assert_eq!(close(&mut h, 0, port), 0);
    assert_eq!(h.take_line_changes(), [LineChange::Mask(GSI)]);
    evtchn::clear_pending(&mut h.machine, &h.domains[0], port);
    h.device_interrupt(DEVICE_VECTOR_BASE);
    assert!(!evtchn::is_pending(&h.machine, &h.domains[0], port));
    let again = bind_pirq(&mut h, 0, GSI).unwrap();
    assert_eq!(h.take_line_changes(), [LineChange::Unmask(GSI)]);
    h.device_interrupt(DEVICE_VECTOR_BASE);
    assert!(evtchn::is_pending(&h.machine, &h.domains[0], again));

    // A reset closes the port behind the line's back: binding again still works.
    poke(&mut h, 0, SCRATCH, &DOMID_SELF.to_le_bytes());
    assert_eq!(
        call(
            &mut h,
            0,
            __HYPERVISOR_event_channel_op,
            &[EVTCHNOP_reset as u64, SCRATCH]
        )
        .0,
        0
    );
    assert!(bind_pirq(&mut h, 0, GSI).is_ok());
    let unmap = {
        let mut op = [0u8; 8];
        op[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
        op[4..8].copy_from_slice(&(GSI as i32).to_le_bytes());
        op
    };
    assert_eq!(physdev(&mut h, 0, PHYSDEVOP_unmap_pirq, &unmap), 0);
    assert!(h.irqs.line(GSI).unwrap().masked);
    assert_eq!(eoi(&mut h, 0, GSI), EINVAL, "not mapped any more");
}

#[test]
fn a_domu_gets_no_device_line() {
    let mut h = with_device();
    assert_eq!(map_pirq(&mut h, 1, GSI as i32, -1), Err(EPERM));
    assert_eq!(bind_pirq(&mut h, 1, GSI), Err(EPERM));
    assert_eq!(
        bind_pirq(&mut h, 1, 5),
        Err(EPERM),
        "in range: no access first"
    );
    assert_eq!(
        bind_pirq(&mut h, 1, 4096),
        Err(EINVAL),
        "beyond the domain's pirqs"
    );
    assert_eq!(eoi(&mut h, 1, GSI), EINVAL);
    assert_eq!(eoi(&mut h, 1, 4096), EINVAL);
    assert_eq!(status_flags(&mut h, 1, GSI), Ok(0));
    assert_eq!(
        status_flags(&mut h, 1, 5),
        Ok(0),
        "no line: no flags, as Xen"
    );
    assert_eq!(status_flags(&mut h, 1, 4096), Err(EINVAL));
    // dom0's line is not the domU's to take or EOI either.
    map_pirq(&mut h, 0, GSI as i32, -1).unwrap();
    bind_pirq(&mut h, 0, GSI).unwrap();
    h.device_interrupt(DEVICE_VECTOR_BASE);
    let _ = h.take_line_changes();
    assert_eq!(eoi(&mut h, 1, GSI), EINVAL);
    assert_eq!(
        h.take_line_changes(),
        [],
        "still masked, in flight for dom0"
    );
    assert!(h.irqs.line(GSI).unwrap().in_flight);
}
