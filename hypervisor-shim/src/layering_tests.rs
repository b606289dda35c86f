//! Keeps the library's layers true (see the crate doc): reads every `crate::` and
//! `super::` path of every module (test code left out) and fails when a module reaches
//! into a layer above its own, or when modules import each other in a circle. The one
//! circle allowed is Xen's own: a multicall runs its entries through the dispatcher.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up: a module path's first component decides.
const LAYERS: &[&[&str]] = &[
    &[
        "machine",
        "abi",
        "paging",
        "trap",
        "time",
        "frames",
        "cmdline",
        "devices",
        "boot_info",
        "exit",
        "version",
    ],
    &["mm"],
    &["state"],
    &["domain"],
    &["common"],
    &["pv"],
    &["hypercall"],
    &["hypervisor"],
];

/// Module pairs allowed to import each other.
const ALLOWED_CIRCLES: &[(&str, &str)] = &[("hypercall", "hypercall::multicall")];

fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").next()?;
    LAYERS.iter().position(|l| l.contains(&top))
}

/// Module path of a source file (`pv/build/mod.rs` -> `pv::build`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn is_test_file(module: &str) -> bool {
    module
        .split("::")
        .any(|p| p == "tests" || p.ends_with("_tests") || p == "testing")
}

/// The library's source files: everything but the binary (`main.rs`, `arch/`).
fn sources(src: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p != src.join("arch") {
                    dirs.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs")
                && p != src.join("main.rs")
                && p != src.join("lib.rs")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its `#[cfg(test)]` and `#[cfg(any(test, ...))]` items (a test module at the end, by
/// this crate's convention) and without comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        // Test code, and test fixtures other crates may enable (`test-utils`).
        if t.starts_with("#[cfg(test)]") || t.starts_with("#[cfg(any(test,") {
            // Skip the item that follows: up to its closing brace at column 0, or a
            // one-line `mod x;`.
            for l in lines.by_ref() {
                if l.starts_with('}') || (!l.starts_with(' ') && l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Every path `crate::a::b...` or `super::...` in `code`, resolved to a module
/// path relative to the crate root (as far as identifiers go).
fn paths(module: &str, is_mod_rs: bool, code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let start_ok = i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let rest = &code[i..];
        let (base, skip): (Vec<String>, usize) = if start_ok && rest.starts_with("crate::") {
            (Vec::new(), "crate::".len())
        } else if start_ok && rest.starts_with("super::") {
            let mut base: Vec<String> = module.split("::").map(String::from).collect();
            if !is_mod_rs {
                base.pop();
            }
            let mut skip = 0;
            while code[i + skip..].starts_with("super::") {
                skip += "super::".len();
            }
            let ups = skip / "super::".len();
            // From a mod.rs, `super` is the parent of the module itself.
            let climb = if is_mod_rs { ups } else { ups - 1 };
            for _ in 0..climb {
                base.pop();
            }
            (base, skip)
        } else {
            i += 1;
            continue;
        };
        let mut j = i + skip;
        let mut segs = base;
        loop {
            let s = j;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            if s == j {
                break;
            }
            segs.push(code[s..j].to_string());
            if code[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        found.push(segs.join("::"));
        i = j.max(i + 1);
    }
    found
}

/// Uses of its own submodules by a `mod.rs` (`mmu::mmu_update(..)`): a parent that
/// calls into a child depends on it. Re-exports (`pub use child::X`) only name things
/// and do not count.
fn child_paths(module: &str, code: &str) -> Vec<String> {
    let children: Vec<&str> = code
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect();
    let mut found = Vec::new();
    for line in code.lines() {
        let t = line.trim_start();
        if t.starts_with("pub use ") || t.starts_with("mod ") || t.starts_with("pub mod ") {
            continue;
        }
        for c in &children {
            let pat = format!("{c}::");
            let mut from = 0;
            while let Some(k) = line[from..].find(&pat) {
                let at = from + k;
                let before = line[..at].chars().next_back();
                if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == '_' || b == ':') {
                    let prefix = if module.is_empty() {
                        String::new()
                    } else {
                        format!("{module}::")
                    };
                    found.push(format!("{prefix}{c}"));
                }
                from = at + pat.len();
            }
        }
    }
    found
}

/// The longest known module that `path` starts with.
fn resolve<'a>(modules: &'a BTreeSet<String>, path: &str) -> Option<&'a String> {
    let segs: Vec<&str> = path.split("::").collect();
    (1..=segs.len())
        .rev()
        .map(|n| segs[..n].join("::"))
        .find_map(|p| modules.get(&p))
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        if is_test_file(&module) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let is_mod_rs = f.file_name().is_some_and(|n| n == "mod.rs");
        let mut to = BTreeSet::new();
        let code = code(&text);
        let mut all = paths(&module, is_mod_rs, &code);
        if is_mod_rs {
            all.extend(child_paths(&module, &code));
        }
        for p in all {
            if let Some(m) = resolve(&modules, &p) {
                if *m != module && !is_test_file(m) {
                    to.insert(m.clone());
                }
            }
        }
        edges.insert(module, to);
    }
    Graph { edges }
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let g = graph();
    let mut bad = Vec::new();
    for (from, tos) in &g.edges {
        let Some(lf) = layer_of(from) else {
            bad.push(format!("{from}: in no layer (add it to LAYERS)"));
            continue;
        };
        for to in tos {
            match layer_of(to) {
                Some(lt) if lt <= lf => {}
                Some(lt) => bad.push(format!("{from} (layer {lf}) uses {to} (layer {lt})")),
                None => bad.push(format!("{to}: in no layer")),
            }
        }
    }
    assert!(bad.is_empty(), "layering broken:\n  {}", bad.join("\n  "));
}

#[test]
fn no_import_circles_but_multicall() {
    let g = graph();
    // Tarjan-free: a module is in a circle with `b` if each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in g.edges.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        g.edges.keys().map(|m| (m, reach(m))).collect();
    let mut circles = BTreeSet::new();
    for (a, ra) in &reaches {
        for b in ra {
            if b > *a && reaches.get(b).is_some_and(|rb| rb.contains(*a)) {
                let allowed = ALLOWED_CIRCLES
                    .iter()
                    .any(|&(x, y)| (x, y) == (a.as_str(), b.as_str()));
                if !allowed {
                    circles.insert(format!("{a} <-> {b}"));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "{} import circles:\n  {}",
        circles.len(),
        circles.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn the_path_reader_sees_crate_and_super_paths() {
    let code = "use crate::mm::{FrameTable};\nlet x = super::err(1);\n";
    assert_eq!(
        paths("hypercall::mmu", false, code),
        ["mm", "hypercall::err"]
    );
    assert_eq!(
        paths("pv::build", true, "super::traps::x"),
        ["pv::traps::x"]
    );
    assert_eq!(layer_of("pv::traps"), Some(5));
    assert!(code_skips_tests());
    let parent = "mod mmu;\npub mod console;\npub use console::X;\nfn f() { mmu::go(); }\n";
    assert_eq!(child_paths("hypercall", parent), ["hypercall::mmu"]);
}

fn code_skips_tests() -> bool {
    let c = code("use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n");
    c.contains("crate::a") && !c.contains("crate::b")
}
