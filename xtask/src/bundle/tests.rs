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
