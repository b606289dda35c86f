//! Watches: registration event, subtree events, unwatch, permission filtering and the
//! special @introduceDomain/@releaseDomain events.

mod common;
use common::*;
use drivers_back::xenstore::{Access, Perm, XsError};

#[test]
fn registration_fires_once_with_the_registered_form() {
    let mut xs = store();
    let x = watch(&mut xs, 1, "device", "tok");
    assert_eq!(x.reply.unwrap(), b"OK\0");
    // Relative watches see relative paths, even when the node does not exist.
    assert_eq!(x.events, [ev("device", "tok")]);
    let x = watch(&mut xs, 1, "/local/domain/1/device", "abs");
    assert_eq!(x.events, [ev("/local/domain/1/device", "abs")]);
    // The acknowledgement comes first.
    let bytes =
        pv_core::xs_wire::encode(pv_core::xs_wire::MsgType::Watch, 5, 0, &args(&[b"x", b"t"]))
            .unwrap();
    xs.receive(1, &bytes).unwrap();
    let out = drain(&mut xs, 1);
    assert_eq!(out[0].header.ty, pv_core::xs_wire::MsgType::Watch);
    assert_eq!(event_of(&out[1]), ev("x", "t"));
    // Same path and token again: EEXIST; another token is another watch.
    assert_eq!(
        watch(&mut xs, 1, "device", "tok").reply,
        Err(XsError::EEXIST)
    );
    assert!(watch(&mut xs, 1, "device", "tok2").reply.is_ok());
}

#[test]
fn changes_fire_watches_on_the_node_and_above() {
    let mut xs = store();
    watch(&mut xs, 1, "a", "on-a");
    watch(&mut xs, 1, "a/b", "on-b");
    watch(&mut xs, 1, "z", "on-z");
    let x = exchange(&mut xs, 1, pv_core::xs_wire::MsgType::Write, 0, b"a/b/c\0v");
    assert_eq!(x.events, [ev("a/b/c", "on-a"), ev("a/b/c", "on-b")]);
    write(&mut xs, 1, 0, "a/b/c", b"w").unwrap();
    assert_eq!(events(&mut xs, 1), Vec::<(String, String)>::new()); // drained by exchange
    let x = exchange(&mut xs, 1, pv_core::xs_wire::MsgType::Write, 0, b"a\0v");
    assert_eq!(x.events, [ev("a", "on-a")]);
    // mkdir of an existing node changes nothing and fires nothing.
    let x = exchange(&mut xs, 1, pv_core::xs_wire::MsgType::Mkdir, 0, b"a\0");
    assert!(x.events.is_empty());
    // dom0's in-process writes fire too.
    xs.write(0, "/local/domain/1/a/new", b"").unwrap();
    assert_eq!(events(&mut xs, 1), [ev("a/new", "on-a")]);
}

#[test]
fn rm_fires_for_the_root_and_exact_watches_below() {
    let mut xs = store();
    for p in ["t/x/y", "t/z"] {
        write(&mut xs, 1, 0, p, b"").unwrap();
    }
    watch(&mut xs, 1, "t", "root");
    watch(&mut xs, 1, "t/x/y", "leaf");
    watch(&mut xs, 1, "/local/domain/1", "home");
    rm(&mut xs, 1, 0, "t/x").unwrap_or_else(|e| panic!("{e}"));
    // exchange() drained them; redo with a fresh subtree to look at the events.
    write(&mut xs, 1, 0, "t/x/y", b"").unwrap();
    events(&mut xs, 1);
    let x = exchange(&mut xs, 1, pv_core::xs_wire::MsgType::Rm, 0, b"t/x\0");
    let mut got = x.events.clone();
    got.sort();
    let mut want = vec![
        ev("t/x", "root"),
        ev("/local/domain/1/t/x", "home"),
        ev("t/x/y", "leaf"),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn unwatch_stops_events() {
    let mut xs = store();
    watch(&mut xs, 1, "a", "t");
    assert_eq!(unwatch(&mut xs, 1, "a", "other"), Err(XsError::ENOENT));
    assert_eq!(unwatch(&mut xs, 1, "a", "t").unwrap(), b"OK\0");
    write(&mut xs, 1, 0, "a", b"").unwrap();
    assert!(events(&mut xs, 1).is_empty());
    assert_eq!(unwatch(&mut xs, 1, "a", "t"), Err(XsError::ENOENT));
    // The absolute form names the same watch.
    watch(&mut xs, 1, "b", "t");
    assert_eq!(
        unwatch(&mut xs, 1, "/local/domain/1/b", "t").unwrap(),
        b"OK\0"
    );
}

#[test]
fn events_only_reach_watchers_who_may_read() {
    let mut xs = store();
    // Domain 2 watches domain 1's home: allowed, but it learns nothing.
    let x = watch(&mut xs, 2, "/local/domain/1", "spy");
    assert!(x.reply.is_ok());
    write(&mut xs, 1, 0, "private", b"p").unwrap();
    assert!(events(&mut xs, 2).is_empty());
    // Readable node: the event arrives.
    write(&mut xs, 1, 0, "public", b"").unwrap();
    set_perms(&mut xs, 1, "public", &["n1", "r2"]).unwrap();
    assert_eq!(events(&mut xs, 2), [ev("/local/domain/1/public", "spy")]);
    write(&mut xs, 1, 0, "public", b"v").unwrap();
    assert_eq!(events(&mut xs, 2), [ev("/local/domain/1/public", "spy")]);
    // A watcher losing read access hears of that change, then nothing.
    set_perms(&mut xs, 1, "public", &["n1"]).unwrap();
    assert_eq!(events(&mut xs, 2), [ev("/local/domain/1/public", "spy")]);
    write(&mut xs, 1, 0, "public", b"w").unwrap();
    assert!(events(&mut xs, 2).is_empty());
    // A readable parent is enough (the child of a node 2 may read).
    set_perms(&mut xs, 1, "public", &["n1", "r2"]).unwrap();
    events(&mut xs, 2);
    write(&mut xs, 1, 0, "public/hidden", b"").unwrap();
    set_perms(&mut xs, 1, "public/hidden", &["n1"]).unwrap();
    // Both events are the same and still pending: merged into one.
    assert_eq!(
        events(&mut xs, 2),
        [ev("/local/domain/1/public/hidden", "spy")]
    );
    write(&mut xs, 1, 0, "public/hidden", b"secret").unwrap();
    assert_eq!(
        events(&mut xs, 2),
        [ev("/local/domain/1/public/hidden", "spy")]
    );
    assert_eq!(
        read(&mut xs, 2, 0, "/local/domain/1/public/hidden"),
        Err(XsError::EACCES)
    );
    // dom0 sees everything.
    watch(&mut xs, 0, "/local/domain/1", "dom0");
    write(&mut xs, 1, 0, "private", b"q").unwrap();
    assert_eq!(events(&mut xs, 0), [ev("/local/domain/1/private", "dom0")]);
}

#[test]
fn identical_pending_events_are_merged() {
    let mut xs = store();
    watch(&mut xs, 2, "/local/domain/2", "w");
    xs.write(0, "/local/domain/2/x", b"1").unwrap();
    xs.write(0, "/local/domain/2/x", b"2").unwrap();
    xs.write(0, "/local/domain/2/y", b"2").unwrap();
    assert_eq!(
        events(&mut xs, 2),
        [ev("/local/domain/2/x", "w"), ev("/local/domain/2/y", "w")]
    );
}

#[test]
fn special_events() {
    let mut xs = store();
    watch(&mut xs, 0, "@introduceDomain", "intro");
    watch(&mut xs, 0, "@releaseDomain", "rel");
    watch(&mut xs, 0, "/", "all");
    let x = watch(&mut xs, 1, "@releaseDomain", "rel1");
    assert_eq!(x.events, [ev("@releaseDomain", "rel1")]);
    add_domain(&mut xs, 7);
    let mut got = events(&mut xs, 0);
    got.retain(|e| e.0.starts_with('@'));
    // A watch on / sees special events too (as in C).
    assert_eq!(
        got,
        [
            ev("@introduceDomain", "intro"),
            ev("@introduceDomain", "all")
        ]
    );
    xs.release(7);
    let mut got = events(&mut xs, 0);
    got.retain(|e| e.0.starts_with('@'));
    assert_eq!(
        got,
        [ev("@releaseDomain", "rel"), ev("@releaseDomain", "all")]
    );
    // Domain 1 may not read @releaseDomain: nothing.
    assert!(events(&mut xs, 1).is_empty());
    // Until dom0 lets it; a domU may not change that itself.
    assert_eq!(
        set_perms(&mut xs, 1, "@releaseDomain", &["r1"]),
        Err(XsError::EACCES)
    );
    set_perms(&mut xs, 0, "@releaseDomain", &["n0", "r1"]).unwrap();
    add_domain(&mut xs, 8);
    xs.release(8);
    assert_eq!(events(&mut xs, 1), [ev("@releaseDomain", "rel1")]);
    // In-process form too.
    xs.set_perms(0, "@introduceDomain", &[Perm::new(Access::Read, 0)])
        .unwrap();
    add_domain(&mut xs, 9);
    assert!(events(&mut xs, 1).is_empty()); // not watching @introduceDomain
    assert_eq!(
        set_perms(&mut xs, 0, "@unknown", &["n0"]),
        Err(XsError::EINVAL)
    );
    // The released domain's connection is gone: nothing queued for it, no input.
    assert_eq!(xs.pending_output(7), 0);
    assert!(!xs.wants_input(7));
}

#[test]
fn release_drops_watches() {
    let mut xs = store();
    watch(&mut xs, 2, "/local/domain/2", "w");
    xs.release(2);
    add_domain(&mut xs, 2);
    xs.write(0, "/local/domain/2/x", b"").unwrap();
    assert!(events(&mut xs, 2).is_empty());
}
