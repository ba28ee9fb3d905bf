//! Packaging (issue #24, items 16 and 17): the Debian package's dependencies are the runtime
//! list setup.sh installs, CI installs every package a test asks for, and the package's
//! generated assets are the files packaging/build-assets.sh makes. Text checks of the
//! repository's own files; nothing is built.

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The packages of a list under .ci/: one a line, `#` comments.
fn list(rel: &str) -> BTreeSet<String> {
    read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The string value of `key = "…"` in Cargo.toml's [package.metadata.deb] table.
fn deb_field(key: &str) -> String {
    let toml = read("Cargo.toml");
    let table = toml
        .split("\n[package.metadata.deb]\n")
        .nth(1)
        .expect("Cargo.toml has a [package.metadata.deb] table");
    let table = table.split("\n[").next().unwrap_or(table);
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{key} = \"")))
        .unwrap_or_else(|| panic!("no {key} in [package.metadata.deb]"));
    line.split_once(" = \"")
        .unwrap()
        .1
        .trim_end_matches('"')
        .to_string()
}

/// A Debian relationship field's packages: each entry's first alternative (`a | b` → a),
/// without version constraints and cargo-deb's `$auto`.
fn packages_of(field: &str) -> BTreeSet<String> {
    field
        .split(',')
        .map(|e| e.split('|').next().unwrap_or("").trim())
        .map(|e| e.split_whitespace().next().unwrap_or(""))
        .filter(|e| !e.is_empty() && *e != "$auto")
        .map(String::from)
        .collect()
}

#[test]
fn deb_depends_are_the_runtime_list() {
    let depends = packages_of(&deb_field("depends"));
    let runtime = list(".ci/apt-runtime");
    assert!(runtime.contains("grub-efi-amd64-bin") && runtime.contains("mtools"));
    assert_eq!(
        depends, runtime,
        "Cargo.toml's [package.metadata.deb] depends and .ci/apt-runtime differ"
    );
    assert!(
        deb_field("depends").starts_with("$auto,"),
        "libc6 comes from $auto"
    );
    // A package is either needed or optional, never both.
    for field in ["recommends", "suggests"] {
        let optional = packages_of(&deb_field(field));
        let both: Vec<_> = optional.intersection(&runtime).collect();
        assert!(both.is_empty(), "{field} repeats Depends: {both:?}");
    }
}

/// `bash .ci/run` (setup.sh --with-tests) installs every package a test's `common::need`
/// names, but for the essential ones every Debian system has.
#[test]
fn ci_installs_every_package_the_tests_need() {
    const BASE: [&str; 6] = ["apt", "coreutils", "dpkg", "gzip", "mount", "util-linux"];
    let mut installed: BTreeSet<String> = BASE.iter().map(|s| s.to_string()).collect();
    for l in [".ci/apt-runtime", ".ci/apt-build", ".ci/apt-packages"] {
        installed.extend(list(l));
    }
    let setup = read("setup.sh");
    assert!(
        setup.contains(".ci/apt-runtime .ci/apt-build)"),
        "setup.sh's lists"
    );
    assert!(setup.contains("--with-tests) lists+=(.ci/apt-packages)"));
    assert!(read(".ci/run").contains("bash setup.sh --with-tests"));

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut needed = BTreeSet::new();
    let mut files = vec![dir.clone()];
    while let Some(d) = files.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // tests/cache: the e2e systems' trees, not test code (and changing under
                // other tests)
                if path.file_name().is_some_and(|n| n != "cache") {
                    files.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // A call to `need` lists (tool, package) pairs: the quoted strings alternate.
                for call in text.split("need(&[").skip(1) {
                    let call = call.split("])").next().unwrap_or("");
                    let quoted: Vec<&str> = call.split('"').skip(1).step_by(2).collect();
                    for pair in quoted.chunks(2) {
                        if let [tool, package] = pair {
                            needed.insert((package.to_string(), tool.to_string()));
                        }
                    }
                }
            }
        }
    }
    assert!(
        needed.iter().any(|(p, _)| p == "qemu-system-x86"),
        "the scan found no need() of QEMU: {needed:?}"
    );
    let missing: Vec<_> = needed
        .iter()
        .filter(|(p, _)| !installed.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "(package, tool) pairs no .ci list installs: {missing:?}"
    );
}

/// The package's generated assets are what build-assets.sh writes, and go where Debian's
/// man, bash-completion, zsh and fish look for them.
#[test]
fn deb_assets_are_built_by_build_assets() {
    let toml = read("Cargo.toml");
    let script = read("packaging/build-assets.sh");
    for (made, installed) in [
        (
            "completions/osimage.bash",
            "usr/share/bash-completion/completions/osimage",
        ),
        (
            "completions/_osimage",
            "usr/share/zsh/vendor-completions/_osimage",
        ),
        (
            "completions/osimage.fish",
            "usr/share/fish/vendor_completions.d/osimage.fish",
        ),
        ("man/*.1.gz", "usr/share/man/man1/"),
    ] {
        let asset = format!("[\"target/assets/{made}\", \"{installed}\", \"644\"]");
        assert!(toml.contains(&asset), "Cargo.toml lacks the asset {asset}");
        let written = format!("\"$out/{made}\"");
        let written_man = "gzip -9n \"$out\"/man/*.1";
        assert!(
            script.contains(&written) || (made.starts_with("man/") && script.contains(written_man)),
            "build-assets.sh does not write {made}"
        );
    }
    assert!(script.contains("\"$bin\" man \"$out/man\""));
    assert!(toml.contains("[\"target/release/osimage\", \"usr/bin/\", \"755\"]"));
    assert!(toml.contains("[\"docs/*.md\", \"usr/share/doc/osimage/\", \"644\"]"));
}
