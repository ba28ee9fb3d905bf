//! Paths inside the captured root, resolved the way a `chroot` into it would: absolute symlink
//! targets start again at ROOT, `..` stops at ROOT. Each lookup remembers the symlinks it went
//! through, so the initramfs can recreate them (`/lib64 -> usr/lib64` on a merged-/usr Debian)
//! and the program finds its loader at the path written in its ELF header.

use std::io;
use std::path::{Path, PathBuf};

/// Symlinks followed before a lookup gives up (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// A captured root directory.
#[derive(Debug, Clone)]
pub struct RootFs {
    root: PathBuf,
}

/// Where a path inside the root really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The final path, relative to the root, with no symlink in it (`usr/bin/ls`).
    pub path: String,
    /// Symlinks met on the way, as (link path relative to the root, target as stored).
    pub links: Vec<(String, String)>,
}

impl RootFs {
    pub fn new(root: &Path) -> Self {
        RootFs {
            root: root.to_path_buf(),
        }
    }

    /// The root on the host.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of a resolved relative path.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Resolves `path` (absolute or relative to the root) following every symlink inside the
    /// root. The final component must exist.
    pub fn resolve(&self, path: &str) -> io::Result<Resolved> {
        let mut done: Vec<String> = Vec::new();
        let mut todo: Vec<String> = components(path).into_iter().rev().collect();
        let mut links = Vec::new();
        while let Some(comp) = todo.pop() {
            match comp.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            done.push(comp);
            let rel = done.join("/");
            let host = self.root.join(&rel);
            let meta = std::fs::symlink_metadata(&host)?;
            if !meta.file_type().is_symlink() {
                if !todo.is_empty() && !meta.is_dir() {
                    return Err(io::Error::new(io::ErrorKind::NotADirectory, rel));
                }
                continue;
            }
            if links.len() >= MAX_SYMLINKS {
                return Err(io::Error::other(format!("{path}: too many symlinks")));
            }
            let target = std::fs::read_link(&host)?;
            let target = target
                .to_str()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{rel}: non-UTF-8 link"))
                })?
                .to_string();
            links.push((rel, target.clone()));
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            todo.extend(components(&target).into_iter().rev());
        }
        Ok(Resolved {
            path: done.join("/"),
            links,
        })
    }

    /// Like [`resolve`](Self::resolve), but `None` when the path does not exist.
    pub fn find(&self, path: &str) -> Option<Resolved> {
        self.resolve(path).ok()
    }
}

/// A path's non-empty components (`/usr//bin/` → `usr`, `bin`).
pub fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_links_inside_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib64")).unwrap();
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/ld.so"), b"x").unwrap();
        symlink("usr/lib64", r.join("lib64")).unwrap();
        symlink("../lib/x86_64-linux-gnu/ld.so", r.join("usr/lib64/ld.so")).unwrap();
        // An absolute link restarts at the root, not at the host's "/".
        symlink("/usr/lib", r.join("lib")).unwrap();
        // ".." above the root stays at the root.
        symlink("../../../../usr", r.join("usr/lib/up")).unwrap();

        let fs = RootFs::new(r);
        let got = fs.resolve("/lib64/ld.so").unwrap();
        assert_eq!(got.path, "usr/lib/x86_64-linux-gnu/ld.so");
        assert_eq!(
            got.links,
            vec![
                ("lib64".to_string(), "usr/lib64".to_string()),
                (
                    "usr/lib64/ld.so".to_string(),
                    "../lib/x86_64-linux-gnu/ld.so".to_string()
                )
            ]
        );
        assert_eq!(
            fs.resolve("lib/x86_64-linux-gnu/ld.so").unwrap().path,
            "usr/lib/x86_64-linux-gnu/ld.so"
        );
        assert_eq!(fs.resolve("usr/lib/up/lib64").unwrap().path, "usr/lib64");
        assert!(fs.find("/nope").is_none());
    }

    #[test]
    fn symlink_loops_end() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        assert!(RootFs::new(t.path()).resolve("a").is_err());
    }
}
