//! The bundle layout: round trips through [`encode`] and [`parse`], every rejection,
//! and hostile input (random, truncated, mutated) that must never panic.

use super::*;
use alloc::string::ToString;
use alloc::vec;
use proptest::prelude::*;

/// A stand-in for a PV ELF: the bundle only checks the magic.
fn fake_elf(len: usize, fill: u8) -> Vec<u8> {
    let mut v = vec![fill; len.max(4)];
    v[..4].copy_from_slice(ELF_MAGIC);
    v
}

fn dom<'a>(name: &'a str, image: &'a [u8], role: Role) -> BundleDomain<'a> {
    BundleDomain {
        name,
        image,
        memory_kib: 16 << 10,
        cmdline: "",
        role,
        backends: false,
    }
}

/// Entry field offsets, as in the layout table.
const IMAGE_OFF: usize = 0;
const IMAGE_LEN: usize = 8;
const MEMORY: usize = 16;
const NAME_OFF: usize = 24;
const NAME_LEN: usize = 28;
const CMDLINE_OFF: usize = 32;
const CMDLINE_LEN: usize = 36;
const ROLE: usize = 40;
const FLAGS: usize = 44;

fn field(i: usize, f: usize) -> usize {
    HEADER_SIZE + i * ENTRY_SIZE + f
}

fn set32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn set64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn get32(b: &[u8], off: usize) -> usize {
    u32_at(b, off) as usize
}

/// A valid bundle of two domains: "aa" (dom0, cmdline "console=hvc0") and "bb" (domU).
fn valid() -> Vec<u8> {
    let a = fake_elf(100, 1);
    let b = fake_elf(60, 2);
    let mut d0 = dom("aa", &a, Role::Dom0);
    d0.cmdline = "console=hvc0";
    encode(&[d0, dom("bb", &b, Role::DomU)]).unwrap()
}

fn err(b: &[u8]) -> BundleError {
    parse(b).expect_err("bundle should be rejected")
}

#[test]
fn round_trip_keeps_every_field_and_shares_images() {
    let hello = fake_elf(1001, 7);
    let other = fake_elf(333, 9);
    let domains = vec![
        BundleDomain {
            name: "hello",
            image: &hello,
            memory_kib: 64 << 10,
            cmdline: "loglevel=3 é",
            role: Role::Dom0,
            backends: true,
        },
        dom("hello-1", &hello, Role::DomU),
        BundleDomain {
            name: "other",
            image: &other,
            memory_kib: 4,
            cmdline: "x",
            role: Role::DomU,
            backends: false,
        },
    ];
    let bytes = encode(&domains).unwrap();
    let bundle = parse(&bytes).unwrap().unwrap();
    assert_eq!(bundle.domains, domains);
    // hello is stored once.
    assert!(bytes.len() < HEADER_SIZE + 3 * ENTRY_SIZE + 1001 + 333 + 64);
    assert_eq!(u64_at(&bytes, 16), bytes.len() as u64);
    for d in &bundle.domains {
        let off = d.image.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(off % IMAGE_ALIGN, 0, "{} image at {off}", d.name);
    }
    assert_eq!(bundle.domains[0].memory_pages(), 16384);
    assert_eq!(bundle.dom0().unwrap().name, "hello");
}

#[test]
fn dom0_gets_id_0_and_domus_count_from_1_in_manifest_order() {
    let img = fake_elf(8, 0);
    let domains = vec![
        dom("u1", &img, Role::DomU),
        dom("zero", &img, Role::Dom0),
        dom("u2", &img, Role::DomU),
        dom("u3", &img, Role::DomU),
    ];
    let bytes = encode(&domains).unwrap();
    let bundle = parse(&bytes).unwrap().unwrap();
    let ids: Vec<_> = (0..4).map(|i| bundle.domid_of(i).unwrap()).collect();
    assert_eq!(ids, [1, 0, 2, 3]);
    assert_eq!(bundle.domid_of(4), None);

    let only_domus = encode(&[dom("a", &img, Role::DomU), dom("b", &img, Role::DomU)]).unwrap();
    let bundle = parse(&only_domus).unwrap().unwrap();
    assert_eq!(bundle.dom0(), None);
    assert_eq!((bundle.domid_of(0), bundle.domid_of(1)), (Some(1), Some(2)));
}

#[test]
fn modules_without_the_magic_are_not_bundles() {
    assert_eq!(parse(&fake_elf(64, 0)), Ok(None));
    assert_eq!(parse(b""), Ok(None));
    assert_eq!(parse(b"XPVBUND"), Ok(None));
    assert_eq!(parse(b"#!/bin/sh\nexit 0\n"), Ok(None));
}

#[test]
fn bytes_after_the_total_size_are_ignored() {
    let original = valid();
    let want = parse(&original).unwrap().unwrap();
    let mut b = original.clone();
    b.extend_from_slice(&[0xaa; 4096]);
    assert_eq!(parse(&b).unwrap().unwrap(), want);
}

#[test]
fn the_largest_legal_bundle_parses() {
    let img = fake_elf(16, 0);
    let names: Vec<_> = (0..MAX_DOMAINS)
        .map(|i| alloc::format!("{i:0>64}"))
        .collect();
    let cmdline = "c".repeat(MAX_CMDLINE_LEN);
    let domains: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| BundleDomain {
            name: n,
            image: &img,
            memory_kib: MAX_MEMORY_KIB,
            cmdline: &cmdline,
            role: if i == 5 { Role::Dom0 } else { Role::DomU },
            backends: i == 5,
        })
        .collect();
    let bytes = encode(&domains).unwrap();
    let bundle = parse(&bytes).unwrap().unwrap();
    assert_eq!(bundle.domains, domains);
    assert_eq!(bundle.domid_of(63), Some(63));
}

#[test]
fn truncated_bundles_are_rejected() {
    let b = valid();
    assert_eq!(
        err(&b[..HEADER_SIZE - 1]),
        BundleError::Truncated {
            need: HEADER_SIZE as u64,
            have: HEADER_SIZE - 1
        }
    );
    assert_eq!(
        err(&b[..b.len() - 1]),
        BundleError::Truncated {
            need: b.len() as u64,
            have: b.len() - 1
        }
    );
    // Declared size past the end of the module.
    let mut b = valid();
    set64(&mut b, 16, u64::MAX);
    assert!(matches!(err(&b), BundleError::Truncated { .. }));
}

#[test]
fn header_rules() {
    let mut b = valid();
    set32(&mut b, 8, 2);
    assert_eq!(err(&b), BundleError::Version(2));

    for n in [0, MAX_DOMAINS as u32 + 1, u32::MAX] {
        let mut b = valid();
        set32(&mut b, 12, n);
        assert_eq!(err(&b), BundleError::DomainCount(n));
    }
    // A count larger than the entries actually there: the total size no longer covers them.
    let mut b = valid();
    set32(&mut b, 12, 3);
    set64(&mut b, 16, (HEADER_SIZE + 2 * ENTRY_SIZE) as u64);
    assert_eq!(
        err(&b),
        BundleError::TotalSize((HEADER_SIZE + 2 * ENTRY_SIZE) as u64)
    );
}

#[test]
fn ranges_must_lie_in_the_data_area() {
    let data_start = (HEADER_SIZE + 2 * ENTRY_SIZE) as u32;
    let len = valid().len();
    let cases: &[(usize, u64, &str)] = &[
        // The name inside the header or the entries.
        (field(1, NAME_OFF), 0, "name"),
        (field(1, NAME_OFF), u64::from(data_start) - 1, "name"),
        (field(1, NAME_OFF), len as u64 - 1, "name"),
        (field(0, CMDLINE_OFF), u64::from(u32::MAX), "command line"),
        (field(0, CMDLINE_OFF), 8, "command line"),
    ];
    for &(off, v, what) in cases {
        let mut b = valid();
        set32(&mut b, off, v as u32);
        let index = (off - HEADER_SIZE) / ENTRY_SIZE;
        assert_eq!(
            err(&b),
            BundleError::OutOfBounds { index, what },
            "{off} = {v}"
        );
    }
    // Images: at the start of the module (which is a bundle, not an ELF), past the end,
    // and an offset + length that overflows u64.
    for (img_off, img_len) in [(0, 64), (len as u64 & !7, 64), (!7u64, 16), (0, u64::MAX)] {
        let mut b = valid();
        set64(&mut b, field(1, IMAGE_OFF), img_off);
        set64(&mut b, field(1, IMAGE_LEN), img_len);
        assert_eq!(
            err(&b),
            BundleError::OutOfBounds {
                index: 1,
                what: "image"
            },
            "{img_off:#x} + {img_len:#x}"
        );
    }
}

#[test]
fn images_must_be_aligned_elf_files() {
    let mut b = valid();
    let off = u64_at(&b, field(1, IMAGE_OFF));
    set64(&mut b, field(1, IMAGE_OFF), off + 4);
    assert_eq!(
        err(&b),
        BundleError::Misaligned {
            index: 1,
            offset: off + 4
        }
    );

    let mut b = valid();
    let off = u64_at(&b, field(0, IMAGE_OFF)) as usize;
    b[off] = b'M';
    assert_eq!(err(&b), BundleError::NotElf { index: 0 });

    let mut b = valid();
    set64(&mut b, field(0, IMAGE_LEN), 3);
    assert_eq!(err(&b), BundleError::NotElf { index: 0 });
    set64(&mut b, field(0, IMAGE_LEN), 0);
    assert_eq!(err(&b), BundleError::NotElf { index: 0 });
}

#[test]
fn names_are_short_printable_and_unique() {
    for len in [0, MAX_NAME_LEN as u32 + 1] {
        let mut b = valid();
        set32(&mut b, field(1, NAME_LEN), len);
        assert_eq!(err(&b), BundleError::NameLength { index: 1, len });
    }
    for bad in [b' ', b'\n', 0, 0x7f, 0xc3] {
        let mut b = valid();
        let off = get32(&b, field(1, NAME_OFF));
        b[off + 1] = bad;
        assert_eq!(
            err(&b),
            BundleError::NameChars { index: 1 },
            "byte {bad:#x}"
        );
    }
    let mut b = valid();
    let off = get32(&b, field(1, NAME_OFF));
    b[off..off + 2].copy_from_slice(b"aa");
    assert_eq!(
        err(&b),
        BundleError::DuplicateName {
            first: 0,
            second: 1
        }
    );
    // Same name via the offset: also a duplicate.
    let mut b = valid();
    let off = get32(&b, field(0, NAME_OFF));
    set32(&mut b, field(1, NAME_OFF), off as u32);
    assert!(matches!(err(&b), BundleError::DuplicateName { .. }));

    let img = fake_elf(8, 0);
    assert_eq!(
        encode(&[dom("x", &img, Role::DomU), dom("x", &img, Role::DomU)]),
        Err(BundleError::DuplicateName {
            first: 0,
            second: 1
        })
    );
}

#[test]
fn command_lines_fit_start_info_and_are_c_strings() {
    let mut b = valid();
    set32(&mut b, field(0, CMDLINE_LEN), MAX_CMDLINE_LEN as u32 + 1);
    assert_eq!(
        err(&b),
        BundleError::CmdlineLength {
            index: 0,
            len: MAX_CMDLINE_LEN as u32 + 1
        }
    );
    assert_eq!(MAX_CMDLINE_LEN, 1023);
    for bad in [0u8, 0xff] {
        let mut b = valid();
        let off = get32(&b, field(0, CMDLINE_OFF));
        b[off + 3] = bad;
        assert_eq!(err(&b), BundleError::CmdlineChars { index: 0 });
    }
    let img = fake_elf(8, 0);
    let long = "a".repeat(1024);
    let mut d = dom("x", &img, Role::Dom0);
    d.cmdline = &long;
    assert_eq!(
        encode(&[d]),
        Err(BundleError::CmdlineLength {
            index: 0,
            len: 1024
        })
    );
}

#[test]
fn memory_roles_and_reserved_field() {
    for kib in [0, 1, 6, MAX_MEMORY_KIB + 4, !3u64] {
        let mut b = valid();
        set64(&mut b, field(1, MEMORY), kib);
        assert_eq!(err(&b), BundleError::Memory { index: 1, kib });
    }
    let mut b = valid();
    set32(&mut b, field(1, ROLE), 2);
    assert_eq!(err(&b), BundleError::Role { index: 1, code: 2 });

    let mut b = valid();
    set32(&mut b, field(1, ROLE), ROLE_DOM0);
    assert_eq!(
        err(&b),
        BundleError::TwoDom0 {
            first: 0,
            second: 1
        }
    );

    // Unknown flag bits, and the back-ends flag on a domU, are refused; on the dom0
    // it is kept.
    let mut b = valid();
    set32(&mut b, field(0, FLAGS), 2);
    assert_eq!(err(&b), BundleError::Flags { index: 0, value: 2 });
    let mut b = valid();
    set32(&mut b, field(1, FLAGS), FLAG_BACKENDS);
    assert_eq!(err(&b), BundleError::BackendsNotDom0 { index: 1 });
    let mut b = valid();
    set32(&mut b, field(0, FLAGS), FLAG_BACKENDS);
    let bundle = parse(&b).unwrap().unwrap();
    assert!(bundle.domains[0].backends && !bundle.domains[1].backends);
    assert_eq!(
        get32(&valid(), field(0, FLAGS)),
        0,
        "written as 0 when not set"
    );
}

#[test]
fn encode_rejects_empty_and_oversized_domain_lists() {
    assert_eq!(encode(&[]), Err(BundleError::DomainCount(0)));
    let img = fake_elf(8, 0);
    let names: Vec<_> = (0..=MAX_DOMAINS).map(|i| i.to_string()).collect();
    let domains: Vec<_> = names.iter().map(|n| dom(n, &img, Role::DomU)).collect();
    assert_eq!(encode(&domains), Err(BundleError::DomainCount(65)));
    let mut d = dom("x", &img, Role::DomU);
    d.memory_kib = 0;
    assert_eq!(encode(&[d]), Err(BundleError::Memory { index: 0, kib: 0 }));
}

#[test]
fn errors_are_one_clear_line() {
    let errors = [
        BundleError::Truncated { need: 24, have: 8 },
        BundleError::Version(9),
        BundleError::DomainCount(0),
        BundleError::TotalSize(3),
        BundleError::OutOfBounds {
            index: 2,
            what: "image",
        },
        BundleError::Misaligned {
            index: 0,
            offset: 0x41,
        },
        BundleError::NotElf { index: 1 },
        BundleError::NameLength { index: 0, len: 65 },
        BundleError::NameChars { index: 0 },
        BundleError::DuplicateName {
            first: 0,
            second: 3,
        },
        BundleError::CmdlineLength {
            index: 0,
            len: 2000,
        },
        BundleError::CmdlineChars { index: 0 },
        BundleError::Memory { index: 0, kib: 0 },
        BundleError::Role { index: 0, code: 7 },
        BundleError::Flags { index: 0, value: 2 },
        BundleError::BackendsNotDom0 { index: 1 },
        BundleError::TwoDom0 {
            first: 0,
            second: 1,
        },
    ];
    for e in errors {
        let s = e.to_string();
        assert!(s.starts_with("bundle "), "{s}");
        assert!(!s.contains('\n'), "{s}");
    }
    assert_eq!(
        BundleError::Misaligned {
            index: 2,
            offset: 0x41
        }
        .to_string(),
        "bundle domain 2: image offset 0x41 is not a multiple of 8"
    );
}

/// Whatever `parse` accepts satisfies the rules (and so re-encodes to an equal bundle).
fn check_accepted(module: &[u8]) {
    if let Ok(Some(bundle)) = parse(module) {
        assert!(!bundle.domains.is_empty() && bundle.domains.len() <= MAX_DOMAINS);
        assert!(
            bundle
                .domains
                .iter()
                .filter(|d| d.role == Role::Dom0)
                .count()
                <= 1
        );
        for d in &bundle.domains {
            assert!(!d.name.is_empty() && d.name.len() <= MAX_NAME_LEN);
            assert!(d.cmdline.len() <= MAX_CMDLINE_LEN);
            assert!(d.image.starts_with(ELF_MAGIC));
            assert!(d.memory_kib > 0 && d.memory_kib % 4 == 0);
            assert!(!d.backends || d.role == Role::Dom0);
        }
        let again = encode(&bundle.domains).unwrap();
        assert_eq!(parse(&again).unwrap().unwrap(), bundle);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn random_modules_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut module = MAGIC.to_vec();
        module.extend_from_slice(&tail);
        check_accepted(&module);
        check_accepted(&tail);
    }

    #[test]
    fn truncated_and_mutated_bundles_never_panic(
        cut in 0usize..400,
        flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..8),
        word in (0usize..2, 0usize..12, any::<u32>()),
    ) {
        let mut b = valid();
        for (at, v) in flips {
            let n = b.len();
            b[at % n] = v;
        }
        let (i, f, v) = word;
        set32(&mut b, field(i, f * 4), v);
        check_accepted(&b);
        let cut = cut.min(b.len());
        check_accepted(&b[..cut]);
    }
}

#[test]
fn every_prefix_of_a_valid_bundle_is_rejected_without_panic() {
    let b = valid();
    for n in MAGIC.len()..b.len() {
        assert!(parse(&b[..n]).is_err(), "prefix of {n} bytes");
    }
}
