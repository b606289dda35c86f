//! Node names: validation, canonicalisation and the parent/child relation
//! (`is_valid_nodename`, `canonicalize`, `get_parent` in C `xenstored_core.c`,
//! `is_child` in `xenstored_watch.c`; the rules of `docs/misc/xenstore.txt`).

use alloc::format;
use alloc::string::{String, ToString};
use pv_core::xs_wire::{XsError, ABS_PATH_MAX, REL_PATH_MAX};

/// A domain's home directory, against which its relative paths are resolved.
pub(crate) fn domain_path(domid: u16) -> String {
    format!("/local/domain/{domid}")
}

/// Characters allowed in node names ("Nodes can have lots of crap", says C).
fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Offset of the part of `path` after `/local/domain/<domid>/`, 0 if there is none
/// (C's `sscanf(node, "/local/domain/%5u/%n")`).
fn local_offset(path: &str) -> usize {
    const PREFIX: &str = "/local/domain/";
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return 0;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=5).contains(&digits) && rest.as_bytes().get(digits) == Some(&b'/') {
        PREFIX.len() + digits + 1
    } else {
        0
    }
}

/// Checks an absolute node name: starts with `/`, no trailing `/` (except the root), no
/// `//`, only the allowed characters, at most `XENSTORE_ABS_PATH_MAX` bytes, and at most
/// `XENSTORE_REL_PATH_MAX` bytes below a domain's home (C's `quota_max_path_len`).
pub(crate) fn validate(path: &str) -> Result<(), XsError> {
    let ok = path.starts_with('/')
        && (path == "/" || !path.ends_with('/'))
        && !path.contains("//")
        && path.len() <= ABS_PATH_MAX
        && path.len() - local_offset(path) <= REL_PATH_MAX
        && path.bytes().all(valid_char);
    if ok {
        Ok(())
    } else {
        Err(XsError::EINVAL)
    }
}

/// True for the special watch names (`@introduceDomain`, `@releaseDomain`, ...).
pub(crate) fn is_special(raw: &[u8]) -> bool {
    raw.first() == Some(&b'@')
}

/// Checks a special name: `@` followed by allowed characters, at most
/// `XENSTORE_REL_PATH_MAX` bytes.
pub(crate) fn validate_special(raw: &[u8]) -> Result<String, XsError> {
    if is_special(raw) && raw.len() <= REL_PATH_MAX && raw.iter().all(|&c| valid_char(c)) {
        // All allowed characters are ASCII.
        Ok(raw.iter().map(|&c| c as char).collect())
    } else {
        Err(XsError::EINVAL)
    }
}

/// The absolute, validated name of `raw` as seen by `domid`: names not starting with
/// `/` are relative to the domain's home.
pub(crate) fn canonicalize(domid: u16, raw: &[u8]) -> Result<String, XsError> {
    let raw = core::str::from_utf8(raw).map_err(|_| XsError::EINVAL)?;
    let path = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("{}/{}", domain_path(domid), raw)
    };
    validate(&path)?;
    Ok(path)
}

/// The parent of a valid node name (the root is its own parent).
pub(crate) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of a valid node name other than the root.
pub(crate) fn basename(path: &str) -> &str {
    path.rfind('/').map_or(path, |i| &path[i + 1..])
}

/// The name of child `name` of `dir`.
pub(crate) fn child(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// True if `path` is `dir` or below it. Everything is below `/`, the special names too:
/// as in C, a watch on `/` also sees `@introduceDomain` and `@releaseDomain` (when the
/// watcher may read them).
pub(crate) fn is_child(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return true;
    }
    match path.strip_prefix(dir) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn validation() {
        for ok in ["/", "/a", "/local/domain/1/x-y_z@w", "/A/9"] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "a", "/a/", "//", "/a//b", "/a b", "/a.b", "/a\u{e9}", "/a\0",
        ] {
            assert_eq!(validate(bad), Err(XsError::EINVAL), "{bad:?}");
        }
        let long = format!("/{}", "a".repeat(REL_PATH_MAX));
        assert_eq!(validate(&long), Err(XsError::EINVAL));
        // Below a domain's home the relative part may be REL_PATH_MAX long.
        let home = format!("/local/domain/7/{}", "a".repeat(REL_PATH_MAX));
        assert_eq!(validate(&home), Ok(()));
        let home = format!("/local/domain/7/{}", "a".repeat(REL_PATH_MAX + 1));
        assert_eq!(validate(&home), Err(XsError::EINVAL));
    }

    #[test]
    fn canonical_names() {
        assert_eq!(
            canonicalize(3, b"device/vif").unwrap(),
            "/local/domain/3/device/vif"
        );
        assert_eq!(canonicalize(3, b"/tool").unwrap(), "/tool");
        assert_eq!(canonicalize(3, b""), Err(XsError::EINVAL));
        assert_eq!(canonicalize(3, b"\xff"), Err(XsError::EINVAL));
        assert_eq!(
            validate_special(b"@releaseDomain").unwrap(),
            "@releaseDomain"
        );
        assert_eq!(validate_special(b"@a b"), Err(XsError::EINVAL));
    }

    #[test]
    fn relations() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(basename("/a/b"), "b");
        assert_eq!(child("/", "a"), "/a");
        assert_eq!(child("/a", "b"), "/a/b");
        let yes = vec![("/a", "/a"), ("/a/b", "/a"), ("/a", "/")];
        for (p, d) in yes {
            assert!(is_child(p, d), "{p} {d}");
        }
        assert!(!is_child("/ab", "/a"));
        assert!(!is_child("/", "/a"));
        assert!(is_child("@releaseDomain", "/"));
        assert!(!is_child("@releaseDomain", "/a"));
        assert_eq!(local_offset("/local/domain/12/x"), 17);
        assert_eq!(local_offset("/local/domain/123456/x"), 0);
        assert_eq!(local_offset("/local/domain/12"), 0);
    }
}
