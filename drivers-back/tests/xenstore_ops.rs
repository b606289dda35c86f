//! Every xenstore operation over the wire, through `receive`/`take_output`.

mod common;
use common::*;
use drivers_back::xenstore::{Access, DomainRequest, Limits, Perm, Xenstored, XsError};
use pv_core::xs_wire::{self, MsgType};

#[test]
fn initial_layout() {
    let mut xs = Xenstored::new(Limits::default());
    assert_eq!(xs.directory(0, "/").unwrap(), ["local", "tool"]);
    assert_eq!(xs.directory(0, "/local").unwrap(), ["domain"]);
    assert_eq!(xs.directory(0, "/tool").unwrap(), ["xenstored"]);
    for p in ["/", "/local", "/local/domain", "/tool"] {
        assert_eq!(
            xs.get_perms(0, p).unwrap(),
            [Perm::new(Access::None, 0)],
            "{p}"
        );
        assert_eq!(xs.read(0, p).unwrap(), b"");
    }
    xs.check_invariants().unwrap();
}

#[test]
fn write_read_relative_and_absolute() {
    let mut xs = store();
    write(&mut xs, 1, 0, "name", b"guest").unwrap();
    assert_eq!(read(&mut xs, 1, 0, "name").unwrap(), b"guest");
    assert_eq!(
        read(&mut xs, 1, 0, "/local/domain/1/name").unwrap(),
        b"guest"
    );
    assert_eq!(xs.read(0, "/local/domain/1/name").unwrap(), b"guest");
    // Binary values, NULs included, are kept as they are.
    write(&mut xs, 1, 0, "bin", b"\0a\0\xff").unwrap();
    assert_eq!(read(&mut xs, 1, 0, "bin").unwrap(), b"\0a\0\xff");
    // Overwrite, empty value.
    write(&mut xs, 1, 0, "name", b"").unwrap();
    assert_eq!(read(&mut xs, 1, 0, "name").unwrap(), b"");
    assert_eq!(read(&mut xs, 1, 0, "missing"), Err(XsError::ENOENT));
    xs.check_invariants().unwrap();
}

#[test]
fn write_creates_parents_owned_by_the_writer() {
    let mut xs = store();
    xs.set_perms(
        0,
        "/local/domain/1",
        &[Perm::new(Access::None, 1), Perm::new(Access::Read, 2)],
    )
    .unwrap();
    write(&mut xs, 1, 0, "a/b/c", b"v").unwrap();
    assert_eq!(dir(&mut xs, 1, 0, "a").unwrap(), ["b"]);
    assert_eq!(read(&mut xs, 1, 0, "a/b").unwrap(), b"");
    for p in ["a", "a/b", "a/b/c"] {
        // Inherited from the parent, with the creating domU as owner.
        assert_eq!(get_perms(&mut xs, 1, p).unwrap(), ["n1", "r2"], "{p}");
    }
    // dom0 creating below a domU's node keeps the inherited owner.
    xs.write(0, "/local/domain/1/x/y", b"").unwrap();
    assert_eq!(get_perms(&mut xs, 1, "x/y").unwrap(), ["n1", "r2"]);
    // dom0 creating its own tree: owner 0.
    xs.write(0, "/vm/1/name", b"n").unwrap();
    assert_eq!(
        xs.get_perms(0, "/vm/1/name").unwrap(),
        [Perm::new(Access::None, 0)]
    );
    xs.check_invariants().unwrap();
}

#[test]
fn mkdir_and_directory() {
    let mut xs = store();
    mkdir(&mut xs, 1, 0, "device/vif/0").unwrap();
    mkdir(&mut xs, 1, 0, "device/vbd").unwrap();
    // Existing: fine, unchanged.
    write(&mut xs, 1, 0, "device/vbd", b"keep").unwrap();
    mkdir(&mut xs, 1, 0, "device/vbd").unwrap();
    assert_eq!(read(&mut xs, 1, 0, "device/vbd").unwrap(), b"keep");
    // Creation order.
    assert_eq!(dir(&mut xs, 1, 0, "device").unwrap(), ["vif", "vbd"]);
    assert_eq!(
        dir(&mut xs, 1, 0, "device/vif/0").unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(dir(&mut xs, 1, 0, "nothing"), Err(XsError::ENOENT));
    let raw = req(&mut xs, 1, MsgType::Directory, 0, b"device\0").unwrap();
    assert_eq!(raw, b"vif\0vbd\0");
}

#[test]
fn directory_part_pages_a_long_list() {
    let mut xs = store();
    let names: Vec<String> = (0..300)
        .map(|i| format!("child-with-a-rather-long-name-{i:04}"))
        .collect();
    for n in &names {
        xs.mkdir(0, &format!("/big/{n}")).unwrap();
    }
    // Too long for one XS_DIRECTORY reply.
    assert_eq!(dir(&mut xs, 0, 0, "/big"), Err(XsError::E2BIG));
    let mut got = Vec::new();
    let mut offset = 0;
    let mut generation = None;
    loop {
        let r = req(
            &mut xs,
            0,
            MsgType::DirectoryPart,
            0,
            &args(&[b"/big", offset.to_string().as_bytes()]),
        )
        .unwrap();
        assert!(r.len() <= xs_wire::PAYLOAD_MAX);
        let parts: Vec<&[u8]> = xs_wire::strings(&r).collect();
        let g = parts[0].to_vec();
        assert!(
            generation.is_none() || generation.as_ref() == Some(&g),
            "generation changed"
        );
        generation = Some(g);
        let mut done = false;
        for p in &parts[1..] {
            if p.is_empty() {
                done = true;
                break;
            }
            offset += p.len() + 1;
            got.push(String::from_utf8(p.to_vec()).unwrap());
        }
        if done {
            break;
        }
    }
    assert_eq!(got, names);
    // Past the end: just the generation and the empty string.
    let r = req(
        &mut xs,
        0,
        MsgType::DirectoryPart,
        0,
        &args(&[b"/big", b"999999"]),
    )
    .unwrap();
    assert!(r.ends_with(b"\0\0"));
    assert_eq!(
        req(&mut xs, 0, MsgType::DirectoryPart, 0, b"/big\0"),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::DirectoryPart, 0, b"/big\0x\0"),
        Err(XsError::EINVAL)
    );
}

#[test]
fn rm_is_recursive() {
    let mut xs = store();
    for p in ["a/b/c", "a/b/d", "a/e", "f"] {
        write(&mut xs, 1, 0, p, b"1").unwrap();
    }
    let before = xs.node_count();
    rm(&mut xs, 1, 0, "a").unwrap();
    assert_eq!(xs.node_count(), before - 5);
    assert_eq!(dir(&mut xs, 1, 0, ""), Err(XsError::EINVAL)); // "/local/domain/1/" is not a name
    assert_eq!(dir(&mut xs, 1, 0, "/local/domain/1").unwrap(), ["f"]);
    assert_eq!(read(&mut xs, 1, 0, "a/b/c"), Err(XsError::ENOENT));
    // Removing what is gone is fine while the parent exists; not otherwise.
    rm(&mut xs, 1, 0, "a").unwrap();
    assert_eq!(rm(&mut xs, 1, 0, "a/b"), Err(XsError::ENOENT));
    assert_eq!(xs.rm(0, "/"), Err(XsError::EINVAL));
    xs.check_invariants().unwrap();
}

#[test]
fn perms_round_trip() {
    let mut xs = store();
    write(&mut xs, 1, 0, "p", b"").unwrap();
    set_perms(&mut xs, 1, "p", &["n1", "r2", "b0"]).unwrap();
    assert_eq!(get_perms(&mut xs, 1, "p").unwrap(), ["n1", "r2", "b0"]);
    let raw = req(&mut xs, 1, MsgType::GetPerms, 0, b"p\0").unwrap();
    assert_eq!(raw, b"n1\0r2\0b0\0");
    assert_eq!(
        xs.get_perms(0, "/local/domain/1/p").unwrap(),
        [
            Perm::new(Access::None, 1),
            Perm::new(Access::Read, 2),
            Perm::new(Access::Both, 0)
        ]
    );
}

#[test]
fn domain_queries() {
    let mut xs = store();
    assert_eq!(
        req(&mut xs, 1, MsgType::GetDomainPath, 0, b"7\0").unwrap(),
        b"/local/domain/7\0"
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::GetDomainPath, 0, b"x\0"),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::IsDomainIntroduced, 0, b"1\0").unwrap(),
        b"T\0"
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::IsDomainIntroduced, 0, b"9\0").unwrap(),
        b"F\0"
    );
    let self_id = xen_sys::DOMID_SELF.to_string();
    assert_eq!(
        req(
            &mut xs,
            0,
            MsgType::IsDomainIntroduced,
            0,
            &args(&[self_id.as_bytes()])
        )
        .unwrap(),
        b"T\0"
    );
    // Privileged only, as in C xenstored 4.17.
    assert_eq!(
        req(&mut xs, 1, MsgType::IsDomainIntroduced, 0, b"2\0"),
        Err(XsError::EACCES)
    );
}

#[test]
fn introduce_release_over_the_wire() {
    let mut xs = store();
    assert_eq!(
        req(
            &mut xs,
            0,
            MsgType::Introduce,
            0,
            &args(&[b"5", b"1234", b"7"])
        )
        .unwrap(),
        b"OK\0"
    );
    assert!(xs.is_introduced(5));
    assert_eq!(
        xs.take_domain_requests(),
        [DomainRequest::Introduce {
            domid: 5,
            mfn: 1234,
            port: 7
        }]
    );
    assert_eq!(
        req(
            &mut xs,
            0,
            MsgType::Introduce,
            0,
            &args(&[b"5", b"1234", b"0"])
        ),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::Introduce, 0, &args(&[b"5", b"1234"])),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::Resume, 0, b"5\0").unwrap(),
        b"OK\0"
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::Release, 0, b"5\0").unwrap(),
        b"OK\0"
    );
    assert!(!xs.is_introduced(5));
    assert_eq!(
        xs.take_domain_requests(),
        [DomainRequest::Release { domid: 5 }]
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::Release, 0, b"5\0"),
        Err(XsError::ENOENT)
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::Release, 0, b"0\0"),
        Err(XsError::EINVAL)
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::Resume, 0, b"5\0"),
        Err(XsError::ENOENT)
    );
    // Only dom0 may introduce, release, resume or set targets.
    assert_eq!(
        req(
            &mut xs,
            1,
            MsgType::Introduce,
            0,
            &args(&[b"6", b"1", b"1"])
        ),
        Err(XsError::EACCES)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::Release, 0, b"2\0"),
        Err(XsError::EACCES)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::Resume, 0, b"2\0"),
        Err(XsError::EACCES)
    );
    assert_eq!(
        req(&mut xs, 1, MsgType::SetTarget, 0, &args(&[b"1", b"2"])),
        Err(XsError::EACCES)
    );
    assert!(xs.is_introduced(2) && !xs.is_introduced(6));
    assert!(xs.take_domain_requests().is_empty());
}

#[test]
fn unsupported_types() {
    let mut xs = store();
    for ty in [
        MsgType::Unknown(20),
        MsgType::Unknown(999),
        MsgType::WatchEvent,
        MsgType::Error,
    ] {
        assert_eq!(
            req(&mut xs, 1, ty, 0, b"x\0"),
            Err(XsError::ENOSYS),
            "{ty:?}"
        );
    }
    assert_eq!(
        req(&mut xs, 1, MsgType::Control, 0, b"check\0"),
        Err(XsError::EACCES)
    );
    assert_eq!(
        req(&mut xs, 0, MsgType::Control, 0, b"check\0"),
        Err(XsError::EINVAL)
    );
}

#[test]
fn replies_echo_ids_and_errors_are_named() {
    let mut xs = store();
    let bytes = xs_wire::encode(MsgType::Read, 0xdead_beef, 0, b"nothing\0").unwrap();
    xs.receive(1, &bytes).unwrap();
    let out = drain(&mut xs, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].header.ty, MsgType::Error);
    assert_eq!(out[0].header.req_id, 0xdead_beef);
    assert_eq!(out[0].payload, b"ENOENT\0");
    // An unknown transaction id: ENOENT, echoed.
    let x = exchange(&mut xs, 1, MsgType::Read, 77, b"name\0");
    assert_eq!(x.reply, Err(XsError::ENOENT));
    assert_eq!(x.reply_header.tx_id, 77);
}

#[test]
fn reset_watches_drops_watches_and_transactions() {
    let mut xs = store();
    watch(&mut xs, 1, "a", "t");
    let tx = tx_start(&mut xs, 1).unwrap();
    assert_eq!(
        req(&mut xs, 1, MsgType::ResetWatches, 0, b"").unwrap(),
        b"OK\0"
    );
    write(&mut xs, 1, 0, "a", b"x").unwrap();
    assert!(events(&mut xs, 1).is_empty());
    assert_eq!(read(&mut xs, 1, tx, "a"), Err(XsError::ENOENT));
    assert_eq!(tx_end(&mut xs, 1, tx, true), Err(XsError::ENOENT));
}
