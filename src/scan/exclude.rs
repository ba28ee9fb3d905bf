//! What the walk leaves out: the built-in run-time directories whose contents are never
//! captured, and the user's rsync-like `--exclude` patterns (docs/EXCLUDES.md).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use super::ScanError;

/// Directories (relative to the capture root) that are recorded with their metadata but whose
/// contents are run-time state, never captured (issue #2).
pub const CONTENTS_SKIPPED: &[&[u8]] = &[b"proc", b"sys", b"dev", b"run", b"tmp", b"var/tmp"];

/// Whether `rel` is one of the `CONTENTS_SKIPPED` directories.
pub fn contents_skipped(rel: &[u8]) -> bool {
    CONTENTS_SKIPPED.contains(&rel)
}

/// Compiled exclude patterns.
#[derive(Clone, Debug, Default)]
pub struct Excludes {
    /// Patterns that match any kind of entry.
    any: GlobSet,
    /// Patterns written with a trailing `/`: directories only.
    dirs: GlobSet,
}

impl Excludes {
    /// Compiles `patterns` and the patterns read from each `from` file (one a line; blank lines
    /// and lines starting with `#` are ignored).
    pub fn new(patterns: &[String], from: &[PathBuf]) -> Result<Self, ScanError> {
        let mut any = GlobSetBuilder::new();
        let mut dirs = GlobSetBuilder::new();
        let mut add = |pattern: &str, origin: &dyn Fn() -> String| {
            let (glob, dir_only) = compile(pattern).map_err(|reason| ScanError::Pattern {
                pattern: pattern.to_string(),
                origin: origin(),
                reason,
            })?;
            if dir_only {
                dirs.add(glob)
            } else {
                any.add(glob)
            };
            Ok::<(), ScanError>(())
        };
        for p in patterns {
            add(p, &|| "--exclude".to_string())?;
        }
        for file in from {
            let bytes = std::fs::read(file).map_err(|source| ScanError::Io {
                op: "read exclude file",
                path: file.clone(),
                source,
            })?;
            let text = String::from_utf8_lossy(&bytes);
            for (n, line) in text.lines().enumerate() {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if !line.is_empty() && !line.starts_with('#') {
                    add(line, &|| format!("{}:{}", file.display(), n + 1))?;
                }
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| ScanError::Pattern {
                pattern: String::new(),
                origin: "the exclude set".to_string(),
                reason: e.to_string(),
            })
        };
        Ok(Excludes {
            any: build(any)?,
            dirs: build(dirs)?,
        })
    }

    /// Whether the entry at `rel` (relative to the capture root, never empty) is excluded.
    pub fn matches(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.any.is_empty() && self.dirs.is_empty() {
            return false;
        }
        let candidate = Candidate::new(Path::new(OsStr::from_bytes(rel)));
        self.any.is_match_candidate(&candidate)
            || (is_dir && self.dirs.is_match_candidate(&candidate))
    }
}

/// Turns an rsync-style pattern into a glob over root-relative paths: a leading `/` anchors it
/// at the root; otherwise it may match at any depth (`**/` is prepended), which for a pattern
/// without `/` means "the basename". A trailing `/` restricts it to directories.
fn compile(pattern: &str) -> Result<(globset::Glob, bool), String> {
    let dir_only = pattern.ends_with('/');
    let body = pattern.trim_end_matches('/');
    let glob = match body.strip_prefix('/') {
        Some(anchored) => anchored.to_string(),
        None => format!("**/{body}"),
    };
    if body.trim_start_matches('/').is_empty() {
        return Err("the pattern is empty (it would exclude everything)".to_string());
    }
    let glob = GlobBuilder::new(&glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())?;
    Ok((glob, dir_only))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excl(patterns: &[&str]) -> Excludes {
        let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Excludes::new(&p, &[]).unwrap()
    }

    /// The semantics table of docs/EXCLUDES.md: (pattern, path, is_dir, excluded).
    #[test]
    fn exclude_semantics_table() {
        let table: &[(&str, &str, bool, bool)] = &[
            // No slash: the basename, at any depth.
            ("*.log", "a.log", false, true),
            ("*.log", "var/log/syslog.log", false, true),
            ("*.log", "var/log.d", true, false),
            ("cache", "cache", true, true),
            ("cache", "home/u/cache", true, true),
            ("cache", "home/u/cache2", true, false),
            ("cache", "home/cache/x", false, false), // x is not reached: its parent is excluded
            // Leading slash: anchored at the capture root.
            ("/cache", "cache", true, true),
            ("/cache", "home/cache", true, false),
            ("/home/*/.cache", "home/alice/.cache", true, true),
            ("/home/*/.cache", "home/alice/x/.cache", true, false),
            // `*` does not cross `/`, `**` does.
            ("/var/*", "var/log", true, true),
            ("/var/*", "var/log/syslog", false, false),
            ("/var/**/*.gz", "var/log/apt/history.log.1.gz", false, true),
            ("/var/**/*.gz", "var/x.gz", false, true),
            // Inner slash, no leading slash: matched against the end of the path.
            ("log/*.gz", "var/log/a.gz", false, true),
            ("log/*.gz", "log/a.gz", false, true),
            ("log/*.gz", "var/xlog/a.gz", false, false),
            // Trailing slash: directories only.
            ("build/", "src/build", true, true),
            ("build/", "src/build", false, false),
            ("/srv/www/", "srv/www", true, true),
            // Classes, `?`, escapes; dot files are not special.
            ("core.[0-9]*", "core.1234", false, true),
            ("?.tmp", "a.tmp", false, true),
            ("?.tmp", "ab.tmp", false, false),
            ("\\*", "*", false, true),
            ("\\*", "x", false, false),
            ("*", ".hidden", false, true),
        ];
        for &(pattern, path, is_dir, want) in table {
            let got = excl(&[pattern]).matches(path.as_bytes(), is_dir);
            assert_eq!(got, want, "pattern {pattern:?} on {path:?} (dir: {is_dir})");
        }
    }

    #[test]
    fn non_utf8_paths_match() {
        assert!(excl(&["*.bin"]).matches(b"dir/\xff\xfe.bin", false));
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_pattern() {
        for bad in ["", "/", "//", "[abc"] {
            let err = Excludes::new(&[bad.to_string()], &[]).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn exclude_from_reads_lines_skipping_comments() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("list");
        std::fs::write(&file, "# caches\n\n/var/cache/\r\n*.swp\n").unwrap();
        let e = Excludes::new(&[], std::slice::from_ref(&file)).unwrap();
        assert!(e.matches(b"var/cache", true));
        assert!(e.matches(b"home/.x.swp", false));
        assert!(!e.matches(b"var/cache", false));
        std::fs::write(&file, "ok\n[bad\n").unwrap();
        let err = Excludes::new(&[], &[file]).unwrap_err().to_string();
        assert!(err.contains("list:2"), "{err}");
    }

    #[test]
    fn built_in_run_time_directories() {
        assert!(contents_skipped(b"proc") && contents_skipped(b"var/tmp"));
        assert!(!contents_skipped(b"var") && !contents_skipped(b"home/proc"));
    }
}
