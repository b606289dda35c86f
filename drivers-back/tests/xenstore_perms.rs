//! Permissions: a domU sees and changes only what it may; dom0 everything.

mod common;
use common::*;
use drivers_back::xenstore::{Access, Perm, XsError};
use pv_core::xs_wire::MsgType;

#[test]
fn domu_cannot_touch_another_domains_nodes() {
    let mut xs = store();
    xs.write(0, "/local/domain/2/secret", b"s").unwrap();
    xs.set_perms(0, "/local/domain/2/secret", &[Perm::new(Access::None, 2)])
        .unwrap();
    let theirs = "/local/domain/2/secret";
    assert_eq!(read(&mut xs, 1, 0, theirs), Err(XsError::EACCES));
    assert_eq!(write(&mut xs, 1, 0, theirs, b"x"), Err(XsError::EACCES));
    assert_eq!(dir(&mut xs, 1, 0, "/local/domain/2"), Err(XsError::EACCES));
    assert_eq!(get_perms(&mut xs, 1, theirs), Err(XsError::EACCES));
    assert_eq!(set_perms(&mut xs, 1, theirs, &["b1"]), Err(XsError::EACCES));
    assert_eq!(rm(&mut xs, 1, 0, theirs), Err(XsError::EACCES));
    assert_eq!(
        mkdir(&mut xs, 1, 0, "/local/domain/2/new"),
        Err(XsError::EACCES)
    );
    // A missing node under an unreadable one does not reveal its absence.
    assert_eq!(
        read(&mut xs, 1, 0, "/local/domain/2/nothing/here"),
        Err(XsError::EACCES)
    );
    assert_eq!(
        write(&mut xs, 1, 0, "/local/domain/2/nothing/here", b""),
        Err(XsError::EACCES)
    );
    // Nor dom0's nodes.
    assert_eq!(read(&mut xs, 1, 0, "/tool"), Err(XsError::EACCES));
    assert_eq!(dir(&mut xs, 1, 0, "/local/domain"), Err(XsError::EACCES));
    assert_eq!(write(&mut xs, 1, 0, "/evil", b""), Err(XsError::EACCES));
    assert_eq!(rm(&mut xs, 1, 0, "/local"), Err(XsError::EACCES));
    assert_eq!(rm(&mut xs, 1, 0, "/"), Err(XsError::EACCES));
    // Nothing changed.
    assert_eq!(xs.read(0, theirs).unwrap(), b"s");
    assert_eq!(
        xs.get_perms(0, theirs).unwrap(),
        [Perm::new(Access::None, 2)]
    );
    xs.check_invariants().unwrap();
}

#[test]
fn domu_owns_its_home_and_dom0_sees_everything() {
    let mut xs = store();
    write(&mut xs, 1, 0, "data/x", b"1").unwrap();
    assert_eq!(read(&mut xs, 1, 0, "data/x").unwrap(), b"1");
    assert_eq!(dir(&mut xs, 1, 0, "/local/domain/1").unwrap(), ["data"]);
    assert_eq!(read(&mut xs, 0, 0, "/local/domain/1/data/x").unwrap(), b"1");
    write(&mut xs, 0, 0, "/local/domain/1/data/x", b"2").unwrap();
    assert_eq!(read(&mut xs, 1, 0, "data/x").unwrap(), b"2");
    assert_eq!(dir(&mut xs, 0, 0, "/local/domain").unwrap(), ["1", "2"]);
    // Even a node whose list gives dom0 nothing.
    set_perms(&mut xs, 1, "data/x", &["n1", "n0"]).unwrap();
    assert_eq!(read(&mut xs, 0, 0, "/local/domain/1/data/x").unwrap(), b"2");
}

#[test]
fn granted_access() {
    let mut xs = store();
    write(&mut xs, 1, 0, "shared", b"v").unwrap();
    // Read for 2.
    set_perms(&mut xs, 1, "shared", &["n1", "r2"]).unwrap();
    assert_eq!(read(&mut xs, 2, 0, "/local/domain/1/shared").unwrap(), b"v");
    assert_eq!(
        write(&mut xs, 2, 0, "/local/domain/1/shared", b"w"),
        Err(XsError::EACCES)
    );
    // Write only: 2 may write but not read.
    set_perms(&mut xs, 1, "shared", &["n1", "w2"]).unwrap();
    write(&mut xs, 2, 0, "/local/domain/1/shared", b"w").unwrap();
    assert_eq!(
        read(&mut xs, 2, 0, "/local/domain/1/shared"),
        Err(XsError::EACCES)
    );
    // Both; and a child 2 creates there is 2's, with the inherited list.
    set_perms(&mut xs, 1, "shared", &["n1", "b2"]).unwrap();
    write(&mut xs, 2, 0, "/local/domain/1/shared/sub", b"x").unwrap();
    assert_eq!(
        get_perms(&mut xs, 2, "/local/domain/1/shared/sub").unwrap(),
        ["n2", "b2"]
    );
    // So the parent's owner has no access to it (C's rule: the list says so).
    assert_eq!(read(&mut xs, 1, 0, "shared/sub"), Err(XsError::EACCES));
    // Default access for everybody else via the first entry.
    set_perms(&mut xs, 1, "shared", &["r1"]).unwrap();
    assert_eq!(read(&mut xs, 2, 0, "/local/domain/1/shared").unwrap(), b"w");
    // The first matching entry counts.
    set_perms(&mut xs, 1, "shared", &["r1", "n2", "b2"]).unwrap();
    assert_eq!(
        read(&mut xs, 2, 0, "/local/domain/1/shared"),
        Err(XsError::EACCES)
    );
}

#[test]
fn only_owner_and_dom0_set_perms() {
    let mut xs = store();
    write(&mut xs, 1, 0, "n", b"").unwrap();
    set_perms(&mut xs, 1, "n", &["n1", "b2"]).unwrap();
    // 2 may write but does not own the node.
    assert_eq!(
        set_perms(&mut xs, 2, "/local/domain/1/n", &["b1"]),
        Err(XsError::EACCES)
    );
    // The owner cannot give the node away.
    assert_eq!(set_perms(&mut xs, 1, "n", &["n2"]), Err(XsError::EPERM));
    // dom0 can.
    set_perms(&mut xs, 0, "/local/domain/1/n", &["n2"]).unwrap();
    assert_eq!(get_perms(&mut xs, 2, "/local/domain/1/n").unwrap(), ["n2"]);
    // Now 2 is the owner, 1 is not.
    assert_eq!(read(&mut xs, 1, 0, "n"), Err(XsError::EACCES));
    set_perms(&mut xs, 2, "/local/domain/1/n", &["n2", "r1"]).unwrap();
    assert_eq!(read(&mut xs, 1, 0, "n").unwrap(), b"");
}

#[test]
fn bad_permission_lists() {
    let mut xs = store();
    write(&mut xs, 1, 0, "n", b"").unwrap();
    for bad in [
        &["x1"][..],
        &["r"],
        &["rr1"],
        &["r1x"],
        &["r70000"],
        &[""],
        &["r-1"],
    ] {
        assert_eq!(
            set_perms(&mut xs, 1, "n", bad),
            Err(XsError::EINVAL),
            "{bad:?}"
        );
    }
    assert_eq!(set_perms(&mut xs, 1, "n", &[]), Err(XsError::EINVAL));
    assert_eq!(
        req(&mut xs, 1, MsgType::SetPerms, 0, b"n"),
        Err(XsError::EINVAL)
    );
    // More entries than the quota: ENOSPC for a domU, fine for dom0.
    let six = ["n1", "r2", "r3", "r4", "r5", "r6"];
    assert_eq!(set_perms(&mut xs, 1, "n", &six), Err(XsError::ENOSPC));
    set_perms(&mut xs, 1, "n", &six[..5]).unwrap();
    set_perms(&mut xs, 0, "/local/domain/1/n", &six).unwrap();
    assert_eq!(get_perms(&mut xs, 1, "n").unwrap(), six);
}

#[test]
fn release_forgets_the_domain() {
    let mut xs = store();
    write(&mut xs, 2, 0, "mine/deep", b"x").unwrap();
    xs.write(0, "/local/domain/1/for-two", b"y").unwrap();
    xs.set_perms(
        0,
        "/local/domain/1/for-two",
        &[Perm::new(Access::None, 0), Perm::new(Access::Read, 2)],
    )
    .unwrap();
    assert_eq!(
        read(&mut xs, 2, 0, "/local/domain/1/for-two").unwrap(),
        b"y"
    );
    xs.release(2);
    assert!(!xs.is_introduced(2));
    // Its nodes are gone (the home too: 2 owned it) and its grants with them.
    assert_eq!(
        xs.read(0, "/local/domain/2/mine/deep"),
        Err(XsError::ENOENT)
    );
    assert_eq!(xs.read(0, "/local/domain/2"), Err(XsError::ENOENT));
    assert_eq!(
        xs.get_perms(0, "/local/domain/1/for-two").unwrap(),
        [Perm::new(Access::None, 0)]
    );
    // A new domain 2 inherits nothing.
    add_domain(&mut xs, 2);
    assert_eq!(
        read(&mut xs, 2, 0, "/local/domain/1/for-two"),
        Err(XsError::EACCES)
    );
    xs.check_invariants().unwrap();
}

#[test]
fn device_model_acts_for_its_target() {
    let mut xs = store();
    add_domain(&mut xs, 3);
    write(&mut xs, 1, 0, "private", b"p").unwrap();
    assert_eq!(
        read(&mut xs, 3, 0, "/local/domain/1/private"),
        Err(XsError::EACCES)
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::SetTarget, 0, &args(&[b"3", b"1"])).unwrap(),
        b"OK\0"
    );
    assert_eq!(
        read(&mut xs, 3, 0, "/local/domain/1/private").unwrap(),
        b"p"
    );
    write(&mut xs, 3, 0, "/local/domain/1/private", b"q").unwrap();
    assert_eq!(
        req(&mut xs, 0, MsgType::SetTarget, 0, &args(&[b"3", b"9"])),
        Err(XsError::ENOENT)
    );
    // The target's departure ends it.
    xs.release(1);
    add_domain(&mut xs, 1);
    write(&mut xs, 1, 0, "private", b"p").unwrap();
    assert_eq!(
        read(&mut xs, 3, 0, "/local/domain/1/private"),
        Err(XsError::EACCES)
    );
}

#[test]
fn bad_names_are_einval() {
    let mut xs = store();
    let long = "a".repeat(2100);
    for bad in [
        "/a/",
        "a//b",
        "a b",
        "a.b",
        "@special",
        "/local/domain/1/é",
        long.as_str(),
    ] {
        assert_eq!(read(&mut xs, 1, 0, bad), Err(XsError::EINVAL), "{bad}");
        assert_eq!(
            write(&mut xs, 1, 0, bad, b""),
            Err(XsError::EINVAL),
            "{bad}"
        );
    }
    // Missing NUL terminators.
    assert_eq!(
        req(&mut xs, 1, MsgType::Read, 0, b"name"),
        Err(XsError::EINVAL)
    );
    assert_eq!(req(&mut xs, 1, MsgType::Read, 0, b""), Err(XsError::EINVAL));
    assert_eq!(
        req(&mut xs, 1, MsgType::Read, 0, b"a\0b\0"),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::Write, 0, b"name"),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::Mkdir, 0, b"x"),
        Err(XsError::EINVAL)
    );
    assert_eq!(req(&mut xs, 1, MsgType::Rm, 0, b""), Err(XsError::EINVAL));
    assert_eq!(
        req(&mut xs, 1, MsgType::Watch, 0, b"a\0"),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::Watch, 0, b"a\0t"),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::TransactionEnd, 0, b"T"),
        Err(XsError::EINVAL)
    );
    // The connection lives on.
    write(&mut xs, 1, 0, "still", b"here").unwrap();
    assert_eq!(read(&mut xs, 1, 0, "still").unwrap(), b"here");
}
