//! The tree holds to docs/DESIGN.md "Which module may use which" (issue #18): every
//! `crate::` path in `src/` is read and each top-level module may name only the modules its
//! row of that table allows, so no import cycle can come back unnoticed. And every
//! `docs/NAME.md` that the code cites exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The table of docs/DESIGN.md, "Which module may use which": module → what it may use
/// besides the leaves `sys`, `units` and `progress`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("format", &[]),
    ("iso", &["format"]),
    ("sys", &[]),
    ("units", &[]),
    ("progress", &[]),
    ("signature", &[]),
    ("scan", &["format"]),
    ("envelope", &["format"]),
    ("remote", &["format"]),
    ("image", &["format", "envelope", "iso"]),
    ("layout", &["format", "scan"]),
    ("payload", &["format", "scan", "image", "envelope"]),
    ("extract", &["format", "payload"]),
    ("refresh", &["format", "scan", "envelope", "payload"]),
    ("rescue", &["format"]),
    ("restore", &["format", "layout", "payload", "extract"]),
    (
        "store",
        &[
            "format", "scan", "envelope", "image", "payload", "refresh", "remote", "rescue",
        ],
    ),
    (
        "capture",
        &[
            "format", "scan", "envelope", "image", "iso", "layout", "payload", "refresh", "rescue",
            "store",
        ],
    ),
    ("netboot", &["format", "iso", "remote", "rescue", "store"]),
    (
        "bootcheck",
        &[
            "format", "scan", "envelope", "image", "iso", "layout", "payload", "refresh",
            "restore", "remote", "store", "netboot",
        ],
    ),
    (
        "schedule",
        &[
            "format",
            "scan",
            "envelope",
            "payload",
            "capture",
            "bootcheck",
            "store",
            "remote",
        ],
    ),
    (
        "fuzzing",
        &[
            "format", "envelope", "iso", "layout", "payload", "restore", "store",
        ],
    ),
    (
        "agent",
        &[
            "format", "envelope", "layout", "payload", "remote", "restore", "store",
        ],
    ),
];

/// Modules that use nothing of the crate, not even the leaves.
const GROUND: &[&str] = &["format", "sys", "units", "progress", "signature"];
const LEAVES: &[&str] = &["sys", "units", "progress"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`None` for lib.rs and main.rs).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The code of a line, without its `//` comment (doc comments name modules in prose).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Top-level module → the top-level modules its code names as `crate::X`.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        let text = std::fs::read_to_string(f).expect("read a source file");
        let entry = uses.entry(m.clone()).or_default();
        for line in text.lines() {
            let code = code(line);
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != m && modules.contains(&name) {
                    entry.insert(name);
                }
            }
        }
    }
    uses
}

#[test]
fn every_module_uses_only_what_its_layer_allows() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (m, used) in uses() {
        if m == "cli" {
            assert!(
                used.is_empty(),
                "src/cli is the binary's: it names the library as osimage::, never crate::X ({used:?})"
            );
            continue;
        }
        let Some(may) = allowed.get(m.as_str()) else {
            wrong.push(format!("src/{m} is not in docs/DESIGN.md's table"));
            continue;
        };
        for u in &used {
            let leaf = LEAVES.contains(&u.as_str()) && !GROUND.contains(&m.as_str());
            if !leaf && !may.contains(&u.as_str()) {
                wrong.push(format!("{m} uses {u}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that docs/DESIGN.md \"Which module may use which\" does not allow: {wrong:#?}"
    );
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let g = uses();
    // Kahn's algorithm: a cycle leaves modules that never reach in-degree zero.
    let mut left: BTreeMap<&str, usize> = g.keys().map(|m| (m.as_str(), 0)).collect();
    for used in g.values() {
        for u in used {
            *left.entry(u.as_str()).or_default() += 1;
        }
    }
    let mut ready: Vec<&str> = left
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(m, _)| *m)
        .collect();
    while let Some(m) = ready.pop() {
        left.remove(m);
        for u in g.get(m).into_iter().flatten() {
            if let Some(n) = left.get_mut(u.as_str()) {
                *n -= 1;
                if *n == 0 {
                    ready.push(u.as_str());
                }
            }
        }
    }
    assert!(
        left.is_empty(),
        "modules on an import cycle (or used only by one): {:?}",
        left.keys()
    );
}

#[test]
fn every_doc_the_code_cites_exists() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut missing = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read a source file");
        for (i, _) in text.match_indices("docs/") {
            let name: String = text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_' || *c == '.')
                .collect();
            let name = name.trim_end_matches('.');
            if name.ends_with(".md") && !docs.join(name).is_file() {
                missing.insert(format!("{}: docs/{name}", f.display()));
            }
        }
    }
    assert!(missing.is_empty(), "cited but missing: {missing:#?}");
}
