//! Manifests: parsing, defaults, errors, and the bundle they produce read back by the
//! shim's own parser.

use super::*;

fn base() -> PathBuf {
    PathBuf::from("/manifests")
}

fn err(text: &str) -> String {
    format!("{:#}", Manifest::parse(text, &base()).unwrap_err())
}

/// A scratch directory under the target directory, fresh for each test.
fn scratch(test: &str) -> PathBuf {
    let dir = images::target_dir(&crate::bindgen::workspace_root())
        .join("xtask-tests")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fake_elf(fill: u8, len: usize) -> Vec<u8> {
    let mut v = vec![fill; len];
    v[..4].copy_from_slice(b"\x7fELF");
    v
}

#[test]
fn the_example_manifest_parses() {
    let root = crate::bindgen::workspace_root();
    let m = Manifest::load(&root.join("bundles/hello3.toml")).unwrap();
    let names: Vec<_> = m.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["hello", "hello-1", "hello-2"]);
    assert!(m
        .domains
        .iter()
        .all(|d| d.image == ImageRef::Example("hello".into())));
    assert_eq!(m.domains[0].role, Role::Dom0);
    assert_eq!(m.domains[0].memory_kib, 64 << 10);
    assert_eq!(m.domains[1].role, Role::DomU);
    assert_eq!(m.domains[1].cmdline, "greeting from d1");
    assert_eq!(m.domains[2].memory_kib, 16 << 10);
    assert_eq!(m.examples(), ["hello"]);
}

#[test]
fn defaults_and_memory_syntax() {
    let m = Manifest::parse(
        r#"
        [[domain]]
        name = "a"
        image = "hello"
        role = "dom0"
        [[domain]]
        name = "b"
        image = "./b.elf"
        [[domain]]
        name = "c"
        image = "/abs/c"
        memory = "1G"
        role = "domu"
        [[domain]]
        name = "d"
        image = "hello"
        memory = "512K"
        "#,
        &base(),
    )
    .unwrap();
    let d = &m.domains;
    assert_eq!(d[0].memory_kib, DEFAULT_DOM0_MIB << 10);
    assert_eq!(DEFAULT_DOM0_MIB, 64);
    assert_eq!((d[0].cmdline.as_str(), d[0].role), ("", Role::Dom0));
    assert_eq!(d[1].memory_kib, 16 << 10);
    assert_eq!(d[1].role, Role::DomU);
    assert_eq!(d[1].image, ImageRef::Path("/manifests/b.elf".into()));
    assert_eq!(d[2].image, ImageRef::Path("/abs/c".into()));
    assert_eq!((d[2].memory_kib, d[2].role), (1 << 20, Role::DomU));
    assert_eq!(d[3].memory_kib, 512);
    assert_eq!(m.total_mib(), 64 + 16 + 1024 + 1);

    assert_eq!(parse_memory("16m"), Ok(16 << 10));
    assert_eq!(parse_memory("8"), Ok(8 << 10));
    assert!(parse_memory("lots").is_err());
    assert!(parse_memory("").is_err());
    assert!(parse_memory("99999999999999999G").is_err());
}

#[test]
fn mistakes_are_reported_clearly() {
    let one = |extra: &str| format!("[[domain]]\nname = \"a\"\nimage = \"hello\"\n{extra}\n");
    let cases = [
        (one("colour = \"blue\""), "unknown field `colour`"),
        (one("role = \"root\""), "unknown variant `root`"),
        (one("memory = \"lots\""), "memory \"lots\""),
        (one("memory = -3"), "memory -3"),
        (one("memory = \"6K\""), "memory 6 KiB"),
        (one("memory = 0"), "memory 0 KiB"),
        (
            one(&format!("cmdline = \"{}\"", "x".repeat(1024))),
            "command line of 1024 bytes",
        ),
        (
            "[[domain]]\nimage = \"hello\"\n".into(),
            "missing field `name`",
        ),
        ("[[domain]]\nname = \"a\"\n".into(), "missing field `image`"),
        (
            "[[domian]]\nname = \"a\"\n".into(),
            "unknown field `domian`",
        ),
        ("".into(), "bundle has 0 domains"),
        (
            "[[domain]]\nname = \"a b\"\nimage = \"hello\"\n".into(),
            "printable ASCII without spaces (domain \"a b\"",
        ),
        (
            format!(
                "{}{}",
                one("role = \"dom0\""),
                one("role = \"dom0\"").replace("\"a\"", "\"b\"")
            ),
            "both dom0 (at most one) (domain \"b\"",
        ),
        (format!("{}{}", one(""), one("")), "have the same name"),
        (
            one("backends = true"),
            "only the dom0 may run the back-ends (FLAG_BACKENDS) (domain \"a\"",
        ),
        (one("backends = 1"), "backends"),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.contains(want), "{text}\nwant {want:?} in: {got}");
    }
}

#[test]
fn run_guests_become_dom0_then_uniquely_named_domus() {
    let guests: Vec<String> = ["hello", "hello:quiet x=1", "hello", "hello-1", "dir/k.elf"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let m = Manifest::from_guests(&guests, 32 << 10, Path::new("/cwd")).unwrap();
    let names: Vec<_> = m.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["hello", "hello-1", "hello-2", "hello-1-1", "k"]);
    assert_eq!(m.domains[0].role, Role::Dom0);
    assert_eq!(m.domains[0].memory_kib, 32 << 10);
    assert!(m.domains[1..].iter().all(|d| d.role == Role::DomU));
    assert!(m.domains[1..].iter().all(|d| d.memory_kib == 16 << 10));
    assert_eq!(m.domains[1].cmdline, "quiet x=1");
    assert_eq!(m.domains[4].image, ImageRef::Path("/cwd/dir/k.elf".into()));
    assert_eq!(m.domains[3].image, ImageRef::Example("hello-1".into()));

    let bad = Manifest::from_guests(&[":x".to_string()], 1 << 16, Path::new("/"));
    assert!(format!("{:#}", bad.unwrap_err()).contains("no image"));
}

/// The acceptance test of the format across crates: a manifest with images by path
/// (no bare-metal build needed) gives a bundle that the shim's parser reads back with
/// every field as written.
#[test]
fn a_manifest_becomes_a_bundle_the_shim_reads_back() {
    let dir = scratch("bundle-round-trip");
    let a = fake_elf(0xa1, 4099);
    let b = fake_elf(0xb2, 100);
    std::fs::write(dir.join("a.elf"), &a).unwrap();
    std::fs::write(dir.join("b.elf"), &b).unwrap();
    let text = r#"
        [[domain]]
        name = "first"
        image = "./b.elf"
        memory = 20
        cmdline = "one two"
        [[domain]]
        name = "zero"
        image = "./a.elf"
        role = "dom0"
        memory = "128M"
        [[domain]]
        name = "third"
        image = "./b.elf"
    "#;
    std::fs::write(dir.join("m.toml"), text).unwrap();
    let m = Manifest::load(&dir.join("m.toml")).unwrap();
    let root = crate::bindgen::workspace_root();
    let out = dir.join("out/m.bundle");
    m.write(&root, &out).unwrap();

    let bytes = std::fs::read(&out).unwrap();
    let bundle = format::parse(&bytes).unwrap().expect("a bundle");
    let got: Vec<_> = bundle
        .domains
        .iter()
        .map(|d| (d.name, d.image, d.memory_kib, d.cmdline, d.role))
        .collect();
    assert_eq!(
        got,
        [
            ("first", &b[..], 20 << 10, "one two", Role::DomU),
            ("zero", &a[..], 128 << 10, "", Role::Dom0),
            ("third", &b[..], 16 << 10, "", Role::DomU),
        ]
    );
    let ids: Vec<_> = (0..3).map(|i| bundle.domid_of(i).unwrap()).collect();
    assert_eq!(ids, [1, 0, 2]);
    // b.elf is stored once: the images, the header, 3 entries, strings and padding.
    assert!(
        bytes.len() < 4099 + 100 + 24 + 3 * 48 + 64,
        "{}",
        bytes.len()
    );
    assert!(m.table().contains("d0   zero"), "{}", m.table());
}

#[test]
fn images_must_be_pv_kernels() {
    let dir = scratch("bundle-bad-image");
    std::fs::write(dir.join("notes.txt"), "not a kernel").unwrap();
    let text = "[[domain]]\nname = \"x\"\nimage = \"./notes.txt\"\n";
    let m = Manifest::parse(text, &dir).unwrap();
    let root = crate::bindgen::workspace_root();
    let e = format!("{:#}", m.write(&root, &dir.join("x.bundle")).unwrap_err());
    assert!(
        e.contains("domain \"x\"") && e.contains("neither an ELF"),
        "{e}"
    );

    let m = Manifest::parse("[[domain]]\nname = \"x\"\nimage = \"nosuch\"\n", &dir).unwrap();
    let e = format!("{:#}", m.write(&root, &dir.join("x.bundle")).unwrap_err());
    assert!(e.contains("no example named `nosuch`"), "{e}");
}

#[test]
fn backends_is_a_dom0_flag_carried_into_the_bundle() {
    let text = "[[domain]]\nname = \"d0\"\nimage = \"hello\"\nrole = \"dom0\"\nbackends = true\n\
                [[domain]]\nname = \"u\"\nimage = \"hello\"\n";
    let m = Manifest::parse(text, Path::new(".")).unwrap();
    assert!(m.domains[0].backends && !m.domains[1].backends);
    let b = m.domains[0].to_bundle(b"\x7fELF");
    assert!(b.backends);
}

/// dom0 with the back-ends, then `domus` as `(name, [disk specs])` in TOML.
fn with_disks(domus: &[(&str, &[&str])]) -> String {
    let mut text =
        "[[domain]]\nname = \"d0\"\nimage = \"dom0\"\nrole = \"dom0\"\nbackends = true\n"
            .to_string();
    for (name, disks) in domus {
        let specs: Vec<String> = disks.iter().map(|d| format!("{d:?}")).collect();
        let _ = write!(
            text,
            "[[domain]]\nname = \"{name}\"\nimage = \"hello\"\ndisk = [{}]\n",
            specs.join(", ")
        );
    }
    text
}

#[test]
fn disk_specs_parse_in_both_forms() {
    let text = with_disks(&[
        (
            "web",
            &[
                "vdev=xvda,access=rw,size=64M,target=images/kv.img",
                " vdev = xvdb , access=ro, format=raw, devtype=disk, target=/abs/a,b c.img",
                "/abs/pos.img,raw,xvdc,ro",
                "./pos2.img,,d3p1",
            ],
        ),
        (
            "db",
            &[
                "vdev=xvda,size=1G,target=./db.img",
                "size=4096B,vdev=51728,access=w,target=x",
            ],
        ),
    ]);
    let m = Manifest::parse(&text, &base()).unwrap();
    let got: Vec<_> = m.domains[1]
        .disks
        .iter()
        .chain(&m.domains[2].disks)
        .map(|d| {
            (
                d.target.to_str().unwrap(),
                d.vdev.as_str(),
                d.devid,
                d.access,
                d.size,
            )
        })
        .collect();
    use Access::{ReadOnly as Ro, ReadWrite as Rw};
    assert_eq!(
        got,
        [
            (
                "/manifests/images/kv.img",
                "xvda",
                51712,
                Rw,
                Some(64 << 20)
            ),
            ("/abs/a,b c.img", "xvdb", 51728, Ro, None),
            ("/abs/pos.img", "xvdc", 51744, Ro, None),
            ("/manifests/pos2.img", "d3p1", 51761, Rw, None),
            ("/manifests/db.img", "xvda", 51712, Rw, Some(1 << 30)),
            ("/manifests/x", "51728", 51728, Rw, Some(4096)),
        ]
    );
    // Serials count the manifest's disks, domain ids the domUs.
    let placed: Vec<_> = m
        .disks()
        .iter()
        .map(|d| (d.domid, d.serial.clone(), d.spec.vdev.clone()))
        .collect();
    let want: Vec<_> = [
        (1, "vbd0", "xvda"),
        (1, "vbd1", "xvdb"),
        (1, "vbd2", "xvdc"),
        (1, "vbd3", "d3p1"),
        (2, "vbd4", "xvda"),
        (2, "vbd5", "51728"),
    ]
    .iter()
    .map(|&(id, s, v)| (id, s.to_string(), v.to_string()))
    .collect();
    assert_eq!(placed, want);
    assert!(
        m.table()
            .contains("disk vbd4  xvda     w  /manifests/db.img"),
        "{}",
        m.table()
    );

    assert_eq!(disks::parse_size("64M"), Ok(64 << 20));
    assert_eq!(disks::parse_size("8"), Ok(8 << 20));
    assert_eq!(disks::parse_size("2T"), Ok(2 << 40));
    assert_eq!(disks::parse_size("1536b"), Ok(1536));
}

#[test]
fn disk_mistakes_are_reported_clearly() {
    let seventeen: Vec<String> = (0..17)
        .map(|i| format!("vdev=xvd{},target=d{i}.img", (b'a' + i) as char))
        .collect();
    let seventeen: Vec<&str> = seventeen.iter().map(|s| s.as_str()).collect();
    let one = |spec: &str| with_disks(&[("web", &[spec])]);
    let cases = [
        (
            one("vdev=xvda,colour=blue,target=a.img"),
            "domain \"web\": disk \"vdev=xvda,colour=blue,target=a.img\": unknown key `colour`",
        ),
        (one("vdev=xvda,target="), "no target"),
        (one("vdev=xvda"), "no target"),
        (one("target=a.img"), "no vdev (the device the domU sees"),
        (
            one("target=a.img,vdev=xvda,size=64M"),
            "`target=` must be the last key, everything after it is the path \
             (here \"a.img,vdev=xvda,size=64M\")",
        ),
        (
            one("vdev=xvdA,target=a.img"),
            "vdev \"xvdA\": no disk letters",
        ),
        (
            one("vdev=sdq,target=a.img"),
            "vdev \"sdq\": disk 16 is out of range",
        ),
        (
            one("vdev=xvda,access=rx,target=a.img"),
            "access \"rx\": expected rw (w) or ro (r)",
        ),
        (
            one("vdev=xvda,format=qcow2,target=a.img"),
            "format \"qcow2\": only raw",
        ),
        (
            one("vdev=xvda,devtype=cdrom,target=a.img"),
            "devtype \"cdrom\"",
        ),
        (
            one("vdev=xvda,size=lots,target=a.img"),
            "size \"lots\": expected a size",
        ),
        (
            one("vdev=xvda,size=1000B,target=a.img"),
            "size \"1000B\" (1000 bytes): must be a nonzero multiple of 512 bytes",
        ),
        (
            one("vdev=xvda,size=0,target=a.img"),
            "nonzero multiple of 512",
        ),
        (
            one("vdev=xvda,vdev=xvdb,target=a.img"),
            "`vdev` given twice",
        ),
        (
            one("a.img,raw,xvda,rw,extra"),
            "positional parameter \"extra\"",
        ),
        (one("a.img,raw,xvda,target=b.img"), "`target` given twice"),
        (
            with_disks(&[("web", &["vdev=xvda,target=a.img", "vdev=d0p0,target=b.img"])]),
            "domain \"web\": two disks are the same device 51712 (vdev xvda and vdev d0p0)",
        ),
        (
            with_disks(&[("web", &seventeen)]),
            "17 disks: at most 16 in all (each is a virtio-mmio transport",
        ),
        (
            with_disks(&[
                ("web", &["vdev=xvda,target=a.img"]),
                ("db", &["vdev=xvdb,target=./a.img"]),
            ]),
            "image /manifests/a.img is both domain \"web\"'s xvda and domain \"db\"'s xvdb: \
             one image file may be shared only read-only",
        ),
        (
            "[[domain]]\nname = \"d0\"\nimage = \"dom0\"\nrole = \"dom0\"\nbackends = true\n\
             disk = [\"vdev=xvda,target=a.img\"]\n"
                .into(),
            "domain \"d0\": dom0 may not have disks: the disks are dom0's devices, which it \
             serves to the domUs",
        ),
        (
            "[[domain]]\nname = \"web\"\nimage = \"hello\"\ndisk = [\"vdev=xvda,target=a.img\"]\n"
                .into(),
            "the manifest has disks but no dom0 with `backends = true`",
        ),
        (
            "[[domain]]\nname = \"web\"\nimage = \"hello\"\ndisk = \"vdev=xvda,target=a.img\"\n"
                .into(),
            "invalid type: string \"vdev=xvda,target=a.img\", expected a sequence",
        ),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.contains(want), "{text}\nwant {want:?} in: {got}");
    }
    // Read-only, one image may back several disks.
    let shared = with_disks(&[
        ("web", &["vdev=xvda,access=ro,target=a.img"]),
        ("db", &["vdev=xvda,access=ro,target=a.img"]),
    ]);
    assert_eq!(Manifest::parse(&shared, &base()).unwrap().disks().len(), 2);
}

/// dom0's command line gets ` disks=` after ` names=` when there are disks, and only
/// then; the domUs' command lines are left alone.
#[test]
fn dom0_learns_the_disks_on_its_command_line() {
    let dir = scratch("bundle-disks-cmdline");
    std::fs::write(dir.join("k.elf"), fake_elf(0xc3, 64)).unwrap();
    let cmdlines = |text: &str| -> Vec<String> {
        let m = Manifest::parse(text, &dir).unwrap();
        // Any ELF will do for every domain: only the command lines are looked at.
        let files = vec![dir.join("k.elf"); m.domains.len()];
        let bytes = m.encode(&files).unwrap();
        let bundle = format::parse(&bytes).unwrap().unwrap();
        bundle
            .domains
            .iter()
            .map(|d| d.cmdline.to_string())
            .collect()
    };
    let mut text = with_disks(&[
        (
            "web",
            &[
                "vdev=xvda,size=64M,target=images/kv.img",
                "x.img,raw,xvdb,ro",
            ],
        ),
        ("plain", &[]),
        ("db", &["vdev=d1p2,access=r,target=db.img"]),
    ]);
    text = text.replace("backends = true\n", "backends = true\ncmdline = \"stay\"\n");
    assert_eq!(
        cmdlines(&text),
        [
            "stay names=1:web,2:plain,3:db disks=1:xvda:w:vbd0,1:xvdb:r:vbd1,3:d1p2:r:vbd2",
            "",
            "",
            "",
        ]
    );
    assert_eq!(cmdlines(&with_disks(&[("web", &[])]))[0], "names=1:web");
}

/// Images: created when missing (with their directories, of the spec's size), never
/// touched when present, refused when not a regular file or missing without a size.
#[test]
fn disk_images_are_created_once_and_never_overwritten() {
    let dir = scratch("disk-images");
    // What needs no qemu-img.
    std::fs::create_dir(dir.join("adir")).unwrap();
    let e = format!(
        "{:#}",
        disks::ensure_image(&dir.join("adir"), Some(1 << 20)).unwrap_err()
    );
    assert!(e.contains("adir is a directory"), "{e}");
    let e = format!(
        "{:#}",
        disks::ensure_image(Path::new("/dev/null"), None).unwrap_err()
    );
    assert!(e.contains("/dev/null is not a regular file"), "{e}");
    let e = format!(
        "{:#}",
        disks::ensure_image(&dir.join("none.img"), None).unwrap_err()
    );
    assert!(e.contains("none.img does not exist: add `size=`"), "{e}");
    assert!(!dir.join("none.img").exists());
    std::fs::write(dir.join("small.img"), [0x5a; 512]).unwrap();
    assert_eq!(
        disks::ensure_image(&dir.join("small.img"), Some(1 << 20)).unwrap(),
        disks::Image::Existing
    );
    assert_eq!(std::fs::read(dir.join("small.img")).unwrap(), [0x5a; 512]);

    if let Err(e) = crate::deps::ensure_qemu_img() {
        eprintln!("SKIPPED image creation: qemu-img is absent and could not be installed: {e:#}");
        return;
    }
    let text = with_disks(&[("web", &["vdev=xvda,size=64K,target=images/sub/kv.img"])]);
    std::fs::write(dir.join("m.toml"), text).unwrap();
    let m = Manifest::load(&dir.join("m.toml")).unwrap();
    let image = dir.join("images/sub/kv.img");
    disks::ensure_images(&m.disks()).unwrap();
    let meta = std::fs::metadata(&image).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len(), 64 << 10);

    // A marker byte survives a second run, even one asking for a larger image.
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[0] = 0xa5;
    bytes[4095] = 0x5a;
    std::fs::write(&image, &bytes).unwrap();
    disks::ensure_images(&m.disks()).unwrap();
    assert_eq!(
        disks::ensure_image(&image, Some(1 << 30)).unwrap(),
        disks::Image::Existing
    );
    let after = std::fs::read(&image).unwrap();
    assert_eq!((after.len(), after[0], after[4095]), (64 << 10, 0xa5, 0x5a));
}

/// `nic`: dom0's, `user` or `tap:NAME`; it reaches QEMU through `Manifest::nic` and
/// dom0 as ` nic` at the end of its command line.
#[test]
fn a_dom0_nic_reaches_qemu_and_the_command_line() {
    use crate::qemu::NicBackend;
    let dir = scratch("bundle-nic");
    std::fs::write(dir.join("k.elf"), fake_elf(0xc3, 64)).unwrap();
    let manifest = |nic: &str| {
        let mut text = with_disks(&[("web", &[])]);
        text = text.replace(
            "backends = true\n",
            &format!("backends = true\ncmdline = \"nic-selftest\"\nnic = \"{nic}\"\n"),
        );
        Manifest::parse(&text, &dir)
    };
    let m = manifest("user").unwrap();
    assert_eq!(
        m.nic().map(|n| n.backend),
        Some(NicBackend::User { hostfwd: vec![] })
    );
    let files = vec![dir.join("k.elf"); m.domains.len()];
    let bytes = m.encode(&files).unwrap();
    let bundle = format::parse(&bytes).unwrap().unwrap();
    assert_eq!(bundle.domains[0].cmdline, "nic-selftest names=1:web nic");
    assert_eq!(bundle.domains[1].cmdline, "");
    assert!(m.table().contains("nic  user  MAC 52:54:00:12:34:56"));
    assert_eq!(
        manifest("tap:tap0").unwrap().nic().map(|n| n.backend),
        Some(NicBackend::Tap {
            ifname: "tap0".into()
        })
    );
    // None without the key.
    assert_eq!(
        Manifest::parse(&with_disks(&[("web", &[])]), &dir)
            .unwrap()
            .nic(),
        None
    );
    let e = format!("{:#}", manifest("wifi").unwrap_err());
    assert!(
        e.contains(r#"domain "d0": nic "wifi": expected "user""#),
        "{e}"
    );
    // Only dom0 has the machine's NIC.
    let domu = with_disks(&[("web", &[])]) + "nic = \"user\"\n";
    assert!(
        err(&domu).contains(r#"domain "web": only dom0 may have a nic"#),
        "{}",
        err(&domu)
    );
}

/// Vifs: dom0 learns them (`vifs=`), gets QEMU's user network as its NIC with the
/// vifs' forwarded ports, and the mistakes are named.
#[test]
fn vifs_reach_dom0_and_the_user_network() {
    use crate::qemu::{HostFwd, NicBackend};
    let dir = scratch("bundle-vifs");
    std::fs::write(dir.join("k.elf"), fake_elf(0xc3, 64)).unwrap();
    let text = with_disks(&[("web", &[]), ("db", &[])])
        .replacen(
            "name = \"web\"\n",
            "name = \"web\"\nvif = [\"mac=00:16:3e:00:00:01,ip=10.0.2.16,hostfwd=8080:80\"]\n",
            1,
        )
        .replacen("name = \"db\"\n", "name = \"db\"\nvif = [\"\"]\n", 1);
    let m = Manifest::parse(&text, &dir).unwrap();
    assert_eq!(
        m.nic().map(|n| n.backend),
        Some(NicBackend::User {
            hostfwd: vec![HostFwd {
                host_port: 8080,
                guest: [10, 0, 2, 16].into(),
                guest_port: 80
            }]
        })
    );
    let files = vec![dir.join("k.elf"); m.domains.len()];
    let bytes = m.encode(&files).unwrap();
    let bundle = format::parse(&bytes).unwrap().unwrap();
    let db_mac = crate::vifs::format_mac(&m.vifs()[1].1);
    assert_eq!(
        bundle.domains[0].cmdline,
        format!("names=1:web,2:db vifs=1|00:16:3e:00:00:01|10.0.2.16/24|10.0.2.2,2|{db_mac}|| nic")
    );
    for (bad, want) in [
        (
            text.replace("ip=10.0.2.16,", "ip=10.0.2.16,color=red,"),
            "unknown key `color`",
        ),
        (
            text.replace("vif = [\"\"]", "vif = [\"mac=00:16:3e:00:00:01\"]"),
            "two vifs have the MAC 00:16:3e:00:00:01",
        ),
        (
            text.replace("vif = [\"\"]", "vif = [\"ip=10.0.2.17,hostfwd=8080:81\"]"),
            "host port 8080 is forwarded twice",
        ),
    ] {
        let e = err(&bad);
        assert!(e.contains(want), "{e}");
    }
}
