//! Transactions: isolation, commit, abort, EAGAIN on conflict, limits.

mod common;
use common::*;
use drivers_back::xenstore::XsError;
use pv_core::xs_wire::MsgType;

#[test]
fn commit_makes_changes_visible() {
    let mut xs = store();
    write(&mut xs, 1, 0, "x", b"old").unwrap();
    let tx = tx_start(&mut xs, 1).unwrap();
    assert_ne!(tx, 0);
    write(&mut xs, 1, tx, "x", b"new").unwrap();
    write(&mut xs, 1, tx, "y/z", b"created").unwrap();
    // Inside: the transaction's view. Outside: the committed one.
    assert_eq!(read(&mut xs, 1, tx, "x").unwrap(), b"new");
    assert_eq!(dir(&mut xs, 1, tx, "y").unwrap(), ["z"]);
    assert_eq!(read(&mut xs, 1, 0, "x").unwrap(), b"old");
    assert_eq!(read(&mut xs, 1, 0, "y/z"), Err(XsError::ENOENT));
    assert_eq!(xs.read(0, "/local/domain/1/x").unwrap(), b"old");
    tx_end(&mut xs, 1, tx, true).unwrap();
    assert_eq!(read(&mut xs, 1, 0, "x").unwrap(), b"new");
    assert_eq!(read(&mut xs, 1, 0, "y/z").unwrap(), b"created");
    // The transaction is over.
    assert_eq!(read(&mut xs, 1, tx, "x"), Err(XsError::ENOENT));
    xs.check_invariants().unwrap();
}

#[test]
fn abort_discards() {
    let mut xs = store();
    let tx = tx_start(&mut xs, 1).unwrap();
    write(&mut xs, 1, tx, "a/b", b"1").unwrap();
    write(&mut xs, 1, 0, "keep", b"").unwrap();
    rm(&mut xs, 1, tx, "keep").unwrap();
    assert_eq!(read(&mut xs, 1, tx, "keep"), Err(XsError::ENOENT));
    tx_end(&mut xs, 1, tx, false).unwrap();
    assert_eq!(read(&mut xs, 1, 0, "a/b"), Err(XsError::ENOENT));
    assert_eq!(read(&mut xs, 1, 0, "keep").unwrap(), b"");
    xs.check_invariants().unwrap();
}

#[test]
fn conflicting_change_gives_eagain() {
    let mut xs = store();
    write(&mut xs, 1, 0, "x", b"0").unwrap();
    let tx = tx_start(&mut xs, 1).unwrap();
    let v = read(&mut xs, 1, tx, "x").unwrap();
    assert_eq!(v, b"0");
    write(&mut xs, 1, tx, "y", b"derived").unwrap();
    // Somebody else changes what the transaction read.
    xs.write(0, "/local/domain/1/x", b"1").unwrap();
    assert_eq!(tx_end(&mut xs, 1, tx, true), Err(XsError::EAGAIN));
    assert_eq!(read(&mut xs, 1, 0, "y"), Err(XsError::ENOENT));
    // Gone, whatever the outcome.
    assert_eq!(tx_end(&mut xs, 1, tx, true), Err(XsError::ENOENT));
    // The retry works.
    let tx = tx_start(&mut xs, 1).unwrap();
    read(&mut xs, 1, tx, "x").unwrap();
    write(&mut xs, 1, tx, "y", b"derived").unwrap();
    tx_end(&mut xs, 1, tx, true).unwrap();
}

#[test]
fn conflicts_on_creation_removal_and_between_transactions() {
    let mut xs = store();
    // Reading a missing node, which then appears.
    let tx = tx_start(&mut xs, 1).unwrap();
    assert_eq!(read(&mut xs, 1, tx, "later"), Err(XsError::ENOENT));
    write(&mut xs, 1, 0, "later", b"").unwrap();
    assert_eq!(tx_end(&mut xs, 1, tx, true), Err(XsError::EAGAIN));
    // Listing a directory that gains a child.
    let tx = tx_start(&mut xs, 1).unwrap();
    dir(&mut xs, 1, tx, "/local/domain/1").unwrap();
    write(&mut xs, 1, 0, "sibling", b"").unwrap();
    assert_eq!(tx_end(&mut xs, 1, tx, true), Err(XsError::EAGAIN));
    // A node removed under it.
    let tx = tx_start(&mut xs, 1).unwrap();
    read(&mut xs, 1, tx, "sibling").unwrap();
    rm(&mut xs, 1, 0, "sibling").unwrap();
    assert_eq!(tx_end(&mut xs, 1, tx, true), Err(XsError::EAGAIN));
    // Two transactions of different domains on one node: the second loses.
    xs.set_perms(
        0,
        "/local/domain/1/later",
        &[
            drivers_back::xenstore::Perm::new(drivers_back::xenstore::Access::None, 1),
            drivers_back::xenstore::Perm::new(drivers_back::xenstore::Access::Both, 2),
        ],
    )
    .unwrap();
    let t1 = tx_start(&mut xs, 1).unwrap();
    let t2 = tx_start(&mut xs, 2).unwrap();
    write(&mut xs, 1, t1, "later", b"one").unwrap();
    write(&mut xs, 2, t2, "/local/domain/1/later", b"two").unwrap();
    tx_end(&mut xs, 1, t1, true).unwrap();
    assert_eq!(tx_end(&mut xs, 2, t2, true), Err(XsError::EAGAIN));
    assert_eq!(read(&mut xs, 1, 0, "later").unwrap(), b"one");
}

#[test]
fn unrelated_changes_do_not_conflict() {
    let mut xs = store();
    write(&mut xs, 1, 0, "mine/a", b"").unwrap();
    let tx = tx_start(&mut xs, 1).unwrap();
    write(&mut xs, 1, tx, "mine/a", b"tx").unwrap();
    xs.write(0, "/local/domain/2/other", b"x").unwrap();
    write(&mut xs, 1, 0, "elsewhere", b"").unwrap();
    tx_end(&mut xs, 1, tx, true).unwrap();
    assert_eq!(read(&mut xs, 1, 0, "mine/a").unwrap(), b"tx");
}

#[test]
fn watches_fire_at_commit_only() {
    let mut xs = store();
    watch(&mut xs, 2, "/local/domain/2", "w");
    watch(&mut xs, 0, "/local/domain/2", "dom0");
    let tx = tx_start(&mut xs, 2).unwrap();
    write(&mut xs, 2, tx, "a", b"").unwrap();
    write(&mut xs, 2, tx, "b/c", b"").unwrap();
    assert!(events(&mut xs, 0).is_empty());
    let x = exchange(&mut xs, 2, MsgType::TransactionEnd, tx, b"T\0");
    assert_eq!(x.reply.unwrap(), b"OK\0");
    assert_eq!(
        x.events,
        [ev("/local/domain/2/a", "w"), ev("/local/domain/2/b/c", "w")]
    );
    assert_eq!(
        events(&mut xs, 0),
        [
            ev("/local/domain/2/a", "dom0"),
            ev("/local/domain/2/b/c", "dom0")
        ]
    );
    // Aborted: nothing.
    let tx = tx_start(&mut xs, 2).unwrap();
    write(&mut xs, 2, tx, "a", b"x").unwrap();
    tx_end(&mut xs, 2, tx, false).unwrap();
    assert!(events(&mut xs, 0).is_empty());
    // Removal in a transaction: the subtree's root for watches above it, each node
    // for watches on exactly that node.
    watch(&mut xs, 0, "/local/domain/2/b/c", "leaf");
    let tx = tx_start(&mut xs, 2).unwrap();
    rm(&mut xs, 2, tx, "b").unwrap();
    tx_end(&mut xs, 2, tx, true).unwrap();
    let mut got = events(&mut xs, 0);
    got.sort();
    assert_eq!(
        got,
        [
            ev("/local/domain/2/b", "dom0"),
            ev("/local/domain/2/b/c", "leaf")
        ]
    );
}

#[test]
fn protocol_errors() {
    let mut xs = store();
    let tx = tx_start(&mut xs, 1).unwrap();
    // No nesting.
    assert_eq!(
        req(&mut xs, 1, MsgType::TransactionStart, tx, b"\0"),
        Err(XsError::EBUSY)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::TransactionEnd, tx, b"X\0"),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::TransactionEnd, 0, b"T\0"),
        Err(XsError::ENOENT)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::TransactionEnd, tx + 1, b"T\0"),
        Err(XsError::ENOENT)
    );
    // A transaction belongs to its connection.
    assert_eq!(
        read(&mut xs, 2, tx, "/local/domain/2"),
        Err(XsError::ENOENT)
    );
    // Watches ignore the transaction id.
    assert!(
        exchange(&mut xs, 1, MsgType::Watch, 999, &args(&[b"w", b"t"]))
            .reply
            .is_ok()
    );
    tx_end(&mut xs, 1, tx, true).unwrap();
}

#[test]
fn transaction_quota() {
    let mut xs = store();
    let ids: Vec<u32> = (0..10).map(|_| tx_start(&mut xs, 1).unwrap()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    assert_eq!(tx_start(&mut xs, 1), Err(XsError::ENOSPC));
    // Other domains have their own quota, dom0 none.
    tx_start(&mut xs, 2).unwrap();
    for _ in 0..30 {
        tx_start(&mut xs, 0).unwrap();
    }
    tx_end(&mut xs, 1, ids[3], false).unwrap();
    tx_start(&mut xs, 1).unwrap();
}

#[test]
fn touching_too_many_nodes_fails_the_transaction() {
    let mut xs = store_with(drivers_back::xenstore::Limits {
        transaction_nodes: 8,
        ..Default::default()
    });
    let tx = tx_start(&mut xs, 1).unwrap();
    let mut failed = None;
    for i in 0..10 {
        if let Err(e) = write(&mut xs, 1, tx, &format!("n{i}"), b"") {
            failed = Some(e);
            break;
        }
    }
    assert_eq!(failed, Some(XsError::ENOSPC));
    // C reports the broken transaction as ENOMEM at commit.
    assert_eq!(tx_end(&mut xs, 1, tx, true), Err(XsError::ENOMEM));
    assert_eq!(read(&mut xs, 1, 0, "n0"), Err(XsError::ENOENT));
}
