//! Per-machine files (issue #11, docs/GENERALIZE.md): a directory copied over the restored
//! tree last, for network configuration and the like. Regular files, directories and symbolic
//! links are copied with their mode, owner and modification time; an existing file or link at
//! the same path is replaced; a directory is merged into. Symbolic links inside the overlay are
//! copied as links, never followed, and nothing is written outside the tree (an existing link
//! in the tree on the way to a path is not followed either: the copy refuses it).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::RestoreError;

/// Copies `overlay` over `root`; returns the paths written (`/etc/...`), in order.
pub fn apply_overlay(overlay: &Path, root: &Path) -> Result<Vec<String>, RestoreError> {
    let meta = std::fs::metadata(overlay).map_err(|e| RestoreError::io("reading", overlay, e))?;
    if !meta.is_dir() {
        return Err(RestoreError::target(
            overlay,
            "the overlay is not a directory".into(),
        ));
    }
    let mut written = Vec::new();
    copy_dir(overlay, root, "", &mut written)?;
    Ok(written)
}

fn copy_dir(
    from: &Path,
    root: &Path,
    rel: &str,
    written: &mut Vec<String>,
) -> Result<(), RestoreError> {
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .map_err(|e| RestoreError::io("reading", from, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| RestoreError::io("reading", from, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let rel = format!("{rel}/{}", name.to_string_lossy());
        let src = e.path();
        let dst = root.join(rel.trim_start_matches('/'));
        let m =
            std::fs::symlink_metadata(&src).map_err(|e| RestoreError::io("reading", &src, e))?;
        let existing = std::fs::symlink_metadata(&dst).ok();
        let ft = m.file_type();
        if ft.is_dir() {
            match &existing {
                Some(x) if x.is_dir() => {}
                Some(_) => {
                    return Err(RestoreError::target(
                        &dst,
                        format!(
                            "the overlay has a directory {rel} where the image has a file or link"
                        ),
                    ));
                }
                None => {
                    std::fs::create_dir(&dst).map_err(|e| RestoreError::io("creating", &dst, e))?
                }
            }
            written.push(rel.clone());
            copy_dir(&src, root, &rel, written)?;
            // after its children: creating them changed the directory's times
            set_meta(&dst, &m)?;
            continue;
        } else if ft.is_file() || ft.is_symlink() {
            if let Some(x) = &existing {
                if x.is_dir() {
                    return Err(RestoreError::target(
                        &dst,
                        format!("the overlay has a file {rel} where the image has a directory"),
                    ));
                }
                std::fs::remove_file(&dst).map_err(|e| RestoreError::io("replacing", &dst, e))?;
            }
            if ft.is_symlink() {
                let to =
                    std::fs::read_link(&src).map_err(|e| RestoreError::io("reading", &src, e))?;
                std::os::unix::fs::symlink(&to, &dst)
                    .map_err(|e| RestoreError::io("creating", &dst, e))?;
            } else {
                std::fs::copy(&src, &dst).map_err(|e| RestoreError::io("copying", &src, e))?;
            }
        } else {
            return Err(RestoreError::target(
                &src,
                "the overlay may hold only files, directories and symbolic links".into(),
            ));
        }
        set_meta(&dst, &m)?;
        written.push(rel);
    }
    Ok(())
}

/// Owner, mode and mtime of `m` onto `dst` (a link keeps its own mode).
fn set_meta(dst: &Path, m: &std::fs::Metadata) -> Result<(), RestoreError> {
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))
        .map_err(|e| RestoreError::io("chown", dst, e))?;
    if !m.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| RestoreError::io("chmod", dst, e))?;
    }
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        dst,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| RestoreError::io("setting times of", dst, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_replace_links_stay_links_and_directories_merge() {
        let ov = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        let (o, r) = (ov.path(), root.path());
        std::fs::create_dir_all(o.join("etc/network")).expect("mkdir");
        std::fs::write(o.join("etc/network/interfaces"), "auto eth0\n").expect("w");
        std::fs::set_permissions(
            o.join("etc/network/interfaces"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("/nowhere", o.join("etc/link")).expect("symlink");
        std::fs::create_dir_all(r.join("etc/network")).expect("mkdir");
        std::fs::write(r.join("etc/network/interfaces"), "old\n").expect("w");
        std::fs::write(r.join("etc/keep"), "keep\n").expect("w");

        let written = apply_overlay(o, r).expect("overlay");
        assert_eq!(
            written,
            [
                "/etc",
                "/etc/link",
                "/etc/network",
                "/etc/network/interfaces"
            ]
        );
        let f = r.join("etc/network/interfaces");
        assert_eq!(std::fs::read_to_string(&f).expect("r"), "auto eth0\n");
        assert_eq!(std::fs::metadata(&f).expect("m").mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_link(r.join("etc/link")).expect("link"),
            Path::new("/nowhere")
        );
        assert_eq!(
            std::fs::read_to_string(r.join("etc/keep")).expect("r"),
            "keep\n"
        );
    }

    #[test]
    fn a_file_over_a_directory_is_refused_and_a_missing_overlay_named() {
        let ov = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(ov.path().join("etc"), "x").expect("w");
        std::fs::create_dir(root.path().join("etc")).expect("mkdir");
        let e = apply_overlay(ov.path(), root.path()).expect_err("refused");
        assert!(
            e.to_string().contains("where the image has a directory"),
            "{e}"
        );
        let missing = ov.path().join("nope");
        let e = apply_overlay(&missing, root.path()).expect_err("missing");
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
