//! User and group names of the captured root, for display only: the numeric ids are the truth.
//!
//! Reads `ROOT/etc/passwd` and `ROOT/etc/group` (`name:x:id:...`, passwd(5), group(5)).

use std::path::Path;

/// `(id, name)` pairs from an `/etc/passwd`- or `/etc/group`-shaped file, sorted by id (stable:
/// duplicates keep their file order). A missing or unreadable file gives an empty list.
pub fn read_id_names(path: &Path) -> Vec<(u32, String)> {
    match std::fs::read(path) {
        Ok(bytes) => parse_id_names(&String::from_utf8_lossy(&bytes)),
        Err(_) => Vec::new(),
    }
}

/// Parses `name:password:id:...` lines; comments, NIS `+`/`-` lines and malformed lines are
/// ignored.
pub fn parse_id_names(text: &str) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('+') && !l.starts_with('-'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?.trim();
            let id = fields.nth(1)?.trim().parse::<u32>().ok()?;
            (!name.is_empty()).then(|| (id, name.to_string()))
        })
        .collect();
    out.sort_by_key(|(id, _)| *id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_become_sorted_pairs() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # comment\n\
                    www-data:x:33:33::/var/www:/usr/sbin/nologin\n\
                    daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
                    broken line\n\
                    bad:x:notanumber:1::/:/bin/false\n\
                    +nisuser::::::\n\
                    \n\
                    nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(
            parse_id_names(text),
            vec![
                (0, "root".to_string()),
                (1, "daemon".to_string()),
                (33, "www-data".to_string()),
                (65534, "nobody".to_string()),
            ]
        );
    }

    #[test]
    fn group_lines_and_missing_file() {
        assert_eq!(
            parse_id_names("sudo:x:27:alice,bob\nroot:x:0:\n"),
            vec![(0, "root".to_string()), (27, "sudo".to_string())]
        );
        assert!(read_id_names(Path::new("/nonexistent/etc/passwd")).is_empty());
    }
}
