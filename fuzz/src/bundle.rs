//! The boot bundle parser (`hypervisor_shim::pv::build::bundle`): the input is the boot module.
//!
//! Properties: a module without the magic is `Ok(None)`; a bundle that parses has
//! 1 ..= MAX_DOMAINS domains whose names, command lines and images lie inside the
//! input, follow the format's rules (ELF magic, printable unique names, memory in whole
//! pages, one dom0 at most, back-ends only on the dom0), and re-encoding them gives a
//! bundle that parses to the same domains.

use hypervisor_shim::pv::build::bundle::{self as format, Role};

use crate::offset_within;

pub fn check(data: &[u8]) {
    let parsed = format::parse(data);
    let bundle = match parsed {
        Ok(None) => {
            assert!(!data.starts_with(&format::MAGIC));
            return;
        }
        Ok(Some(b)) => b,
        Err(e) => {
            // Every error has a message (and formatting it must not panic).
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let n = bundle.domains.len();
    assert!((1..=format::MAX_DOMAINS).contains(&n));
    let mut dom0s = 0;
    for (i, d) in bundle.domains.iter().enumerate() {
        // Inside the input's data area, after the header and the entries.
        let data_start = format::HEADER_SIZE + n * format::ENTRY_SIZE;
        let parts = [
            ("name", d.name.as_bytes()),
            ("cmdline", d.cmdline.as_bytes()),
            ("image", d.image),
        ];
        for (what, part) in parts {
            let off = offset_within(data, part);
            assert!(off.is_some_and(|o| o >= data_start), "domain {i}: {what}");
        }
        let image_off = offset_within(data, d.image).expect("checked");
        assert!(image_off.is_multiple_of(format::IMAGE_ALIGN));
        assert!(d.image.starts_with(b"\x7fELF"));
        assert!((1..=format::MAX_NAME_LEN).contains(&d.name.len()));
        assert!(d.name.bytes().all(|b| b.is_ascii_graphic()));
        assert!(d.cmdline.len() <= format::MAX_CMDLINE_LEN && !d.cmdline.contains('\0'));
        assert!(d.memory_kib > 0 && d.memory_kib.is_multiple_of(4));
        assert!(d.memory_kib <= format::MAX_MEMORY_KIB);
        assert!(bundle.domains[..i].iter().all(|e| e.name != d.name));
        if d.role == Role::Dom0 {
            dom0s += 1;
        }
        assert!(!d.backends || d.role == Role::Dom0);
        // Domain ids: dom0 is 0, domUs are 1, 2, ... and all distinct.
        let id = bundle.domid_of(i).expect("index in range");
        assert_eq!(id == 0, d.role == Role::Dom0);
        assert!((0..i).all(|j| bundle.domid_of(j) != Some(id)));
    }
    assert!(dom0s <= 1);
    assert_eq!(bundle.domid_of(n), None);

    let again = format::encode(&bundle.domains).expect("a parsed bundle re-encodes");
    let reparsed = format::parse(&again).expect("re-encoded bundle parses");
    assert_eq!(reparsed.as_ref(), Some(&bundle));
}
