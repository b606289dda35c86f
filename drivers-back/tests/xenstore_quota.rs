//! Quotas: nodes, watches, node size, queued output. dom0 is unaffected.

mod common;
use common::*;
use drivers_back::xenstore::{Limits, XsError};
use pv_core::xs_wire::{self, MsgType};

#[test]
fn defaults_are_xen_4_17s() {
    let l = Limits::default();
    assert_eq!(
        (
            l.nodes,
            l.watches,
            l.transactions,
            l.node_size,
            l.perms_per_node
        ),
        (1000, 128, 10, 2048, 5)
    );
    assert_eq!((l.transaction_nodes, l.outstanding), (1024, 20));
}

#[test]
fn node_count() {
    let mut xs = store_with(Limits {
        nodes: 20,
        ..Default::default()
    });
    // Domain 1 owns its home already: 19 more.
    for i in 0..19 {
        write(&mut xs, 1, 0, &format!("n{i}"), b"").unwrap();
    }
    assert_eq!(write(&mut xs, 1, 0, "one-more", b""), Err(XsError::ENOSPC));
    assert_eq!(mkdir(&mut xs, 1, 0, "one-more"), Err(XsError::ENOSPC));
    // A path needing several new nodes is refused as a whole.
    rm(&mut xs, 1, 0, "n0").unwrap();
    assert_eq!(write(&mut xs, 1, 0, "a/b", b""), Err(XsError::ENOSPC));
    assert_eq!(read(&mut xs, 1, 0, "a"), Err(XsError::ENOENT));
    write(&mut xs, 1, 0, "a", b"").unwrap();
    // Overwriting is fine at the limit.
    write(&mut xs, 1, 0, "a", b"v").unwrap();
    // Other domains have their own count; dom0 none, even creating domain 1's nodes.
    write(&mut xs, 2, 0, "x", b"").unwrap();
    for i in 0..50 {
        xs.write(0, &format!("/local/domain/1/dom0-{i}"), b"")
            .unwrap();
    }
    // Those are domain 1's (inherited owner): it stays over its quota.
    assert_eq!(write(&mut xs, 1, 0, "more", b""), Err(XsError::ENOSPC));
    xs.check_invariants().unwrap();
}

#[test]
fn node_count_in_transactions() {
    let mut xs = store_with(Limits {
        nodes: 5,
        ..Default::default()
    });
    let t1 = tx_start(&mut xs, 1).unwrap();
    let t2 = tx_start(&mut xs, 1).unwrap();
    for i in 0..4 {
        write(&mut xs, 1, t1, &format!("a{i}"), b"").unwrap();
    }
    assert_eq!(write(&mut xs, 1, t1, "a4", b""), Err(XsError::ENOSPC));
    for i in 0..3 {
        write(&mut xs, 1, t2, &format!("b{i}"), b"").unwrap();
    }
    tx_end(&mut xs, 1, t2, true).unwrap();
    // t1 fits no more once t2's nodes exist (it would also conflict: same parent).
    assert!(tx_end(&mut xs, 1, t1, true).is_err());
    assert_eq!(
        dir(&mut xs, 1, 0, "/local/domain/1").unwrap(),
        ["b0", "b1", "b2"]
    );
    xs.check_invariants().unwrap();
}

#[test]
fn node_size() {
    let mut xs = store();
    // 24-byte header + 8 per permission + value: 2048 is the limit, exclusive.
    let max = 2048 - 24 - 8 - 1;
    write(&mut xs, 1, 0, "big", &vec![b'x'; max]).unwrap();
    assert_eq!(
        write(&mut xs, 1, 0, "big", &vec![b'x'; max + 1]),
        Err(XsError::ENOSPC)
    );
    assert_eq!(
        write(&mut xs, 1, 0, "new", &vec![b'x'; 3000]),
        Err(XsError::ENOSPC)
    );
    assert_eq!(read(&mut xs, 1, 0, "big").unwrap().len(), max);
    assert_eq!(read(&mut xs, 1, 0, "new"), Err(XsError::ENOENT));
    // Permissions count too.
    assert_eq!(
        set_perms(&mut xs, 1, "big", &["n1", "r2"]),
        Err(XsError::ENOSPC)
    );
    // A parent's child list counts: it cannot grow past the limit either.
    let name = "c".repeat(600);
    for i in 0..3 {
        write(&mut xs, 1, 0, &format!("dir/{name}{i}"), b"").unwrap();
    }
    assert_eq!(
        write(&mut xs, 1, 0, &format!("dir/{name}3"), b""),
        Err(XsError::ENOSPC)
    );
    // dom0 is not limited.
    xs.write(0, "/local/domain/1/huge", &vec![b'y'; 4000])
        .unwrap();
    assert_eq!(read(&mut xs, 1, 0, "huge").unwrap().len(), 4000);
}

#[test]
fn watch_count() {
    let mut xs = store();
    for i in 0..128 {
        assert!(watch(&mut xs, 1, &format!("w{i}"), "t").reply.is_ok());
    }
    assert_eq!(watch(&mut xs, 1, "w128", "t").reply, Err(XsError::E2BIG));
    unwatch(&mut xs, 1, "w0", "t").unwrap();
    assert!(watch(&mut xs, 1, "w128", "t").reply.is_ok());
    for i in 0..300 {
        assert!(watch(&mut xs, 0, &format!("w{i}"), "t").reply.is_ok());
    }
    xs.check_invariants().unwrap();
}

#[test]
fn a_domain_that_does_not_read_is_throttled() {
    let mut xs = store();
    assert!(xs.wants_input(1));
    let one = xs_wire::encode(MsgType::Read, 1, 0, b"nothing\0").unwrap();
    let mut sent = 0;
    while xs.wants_input(1) {
        xs.receive(1, &one).unwrap();
        sent += 1;
        assert!(sent <= 20);
    }
    assert_eq!(sent, 20);
    // Each reply taken frees a slot.
    let reply_len = xs_wire::HEADER_LEN + b"ENOENT\0".len();
    let taken = xs.take_output(1, reply_len);
    assert_eq!(taken.len(), reply_len);
    assert!(xs.wants_input(1));
    // A partly taken reply still counts.
    xs.receive(1, &one).unwrap();
    xs.take_output(1, 3);
    assert!(!xs.wants_input(1));
    // dom0 is never throttled.
    for _ in 0..50 {
        xs.receive(0, &xs_wire::encode(MsgType::Read, 1, 0, b"/x\0").unwrap())
            .unwrap();
    }
    assert!(xs.wants_input(0));
}

#[test]
fn queued_events_are_bounded() {
    let mut xs = store_with(Limits {
        output_bytes: 1000,
        ..Default::default()
    });
    watch(&mut xs, 1, "/local/domain/1", "t");
    for i in 0..200 {
        xs.write(0, &format!("/local/domain/1/n{i}"), b"").unwrap();
    }
    assert!(xs.pending_output(1) <= 1000);
    let got = events(&mut xs, 1);
    assert!(!got.is_empty() && got.len() < 200);
    assert_eq!(got[0], ev("/local/domain/1/n0", "t"));
    // Replies are not dropped: they are bounded by the outstanding quota instead.
    write(&mut xs, 1, 0, "n0", b"").unwrap();
    // dom0's own queue is not bounded.
    watch(&mut xs, 0, "/local/domain/2", "t");
    for i in 0..200 {
        xs.write(0, &format!("/local/domain/2/n{i}"), b"").unwrap();
    }
    assert_eq!(events(&mut xs, 0).len(), 200);
}
