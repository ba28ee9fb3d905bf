//! Which kernel modules the rescue environment carries, in which order it loads them.
//!
//! The wanted names come from `rescue/modules.list` and from the captured filesystem types;
//! each is closed over the captured kernel's own `modules.dep` (hard dependencies) and
//! `modules.softdep` (`pre:`/`post:` modules requested by name at run time, such as the
//! crc32c and crct10dif helpers), with aliases (`crypto-crc32c`, `fs-ext4`) resolved through
//! `modules.alias`. Never by hand: the indexes are the kernel build's truth (depmod(8)).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A module name in the kernel's canonical form (`usb-storage` → `usb_storage`).
pub fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The name of the module at `relpath` (`kernel/fs/ext4/ext4.ko.zst` → `ext4`).
pub fn name_of(relpath: &str) -> String {
    let file = relpath.rsplit('/').next().unwrap_or(relpath);
    canonical(file.split('.').next().unwrap_or(file))
}

/// A kernel's module indexes, read from `/lib/modules/<version>/`.
#[derive(Debug, Default, Clone)]
pub struct ModuleIndex {
    /// name → (path relative to the modules dir, dependencies' paths) from `modules.dep`.
    deps: BTreeMap<String, (String, Vec<String>)>,
    /// name → (pre, post) names from `modules.softdep`.
    softdeps: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// (pattern, module name) from `modules.alias`, in the file's order.
    aliases: Vec<(String, String)>,
    /// pattern → its indexes in `aliases`: the exact matches.
    alias_exact: HashMap<String, Vec<usize>>,
    /// The indexes in `aliases` of the patterns with wildcards, with their literal prefix.
    alias_wild: Vec<(usize, String)>,
    /// Names built into the kernel (`modules.builtin`).
    builtin: BTreeSet<String>,
}

/// The outcome of a resolution.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModuleSet {
    /// Module paths (relative to the modules dir), each after everything it needs.
    pub load_order: Vec<String>,
    /// Wanted names built into the kernel: nothing to ship.
    pub builtin: Vec<String>,
    /// Wanted names this kernel has neither as a module nor built in.
    pub missing: Vec<String>,
}

impl ModuleIndex {
    /// Parses the text indexes; `softdep`, `alias` and `builtin` may be empty.
    pub fn parse(dep: &str, softdep: &str, alias: &str, builtin: &str) -> Self {
        let mut idx = ModuleIndex::default();
        for line in dep.lines() {
            let Some((path, rest)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            let deps = rest.split_whitespace().map(str::to_string).collect();
            idx.deps.insert(name_of(path), (path.to_string(), deps));
        }
        // "softdep MOD pre: A B post: C" (modprobe.d(5)).
        for line in softdep
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
        {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let entry = idx.softdeps.entry(canonical(module)).or_default();
            let mut post = false;
            for w in words {
                match w {
                    "pre:" => post = false,
                    "post:" => post = true,
                    _ if post => entry.1.push(w.to_string()),
                    _ => entry.0.push(w.to_string()),
                }
            }
        }
        for line in alias.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(pat), Some(module)) =
                (words.next(), words.next(), words.next())
            {
                let i = idx.aliases.len();
                idx.alias_exact.entry(pat.to_string()).or_default().push(i);
                if pat.contains(['*', '?', '[']) {
                    let literal = pat.split(['*', '?', '[']).next().unwrap_or("");
                    idx.alias_wild.push((i, literal.to_string()));
                }
                idx.aliases.push((pat.to_string(), canonical(module)));
            }
        }
        idx.builtin = builtin
            .lines()
            .map(name_of)
            .filter(|n| !n.is_empty())
            .collect();
        idx
    }

    /// The modules a name stands for: the module of that name, and every module an alias of
    /// that name points to (several for `crypto-crc32c`: generic and accelerated).
    fn lookup(&self, name: &str) -> Vec<String> {
        let canon = canonical(name);
        let mut out = Vec::new();
        if self.deps.contains_key(&canon) {
            out.push(canon.clone());
        }
        // The aliases matching `name` exactly, as `canon`, or as a wildcard pattern (whose
        // literal prefix must lead `name`: a cheap test that rules out `pci:v…` and the like),
        // taken in the file's order.
        let mut hits: Vec<usize> = [name, canon.as_str()]
            .iter()
            .filter_map(|k| self.alias_exact.get(*k))
            .flatten()
            .copied()
            .chain(
                self.alias_wild
                    .iter()
                    .filter(|(i, literal)| {
                        name.starts_with(literal.as_str()) && wildcard(&self.aliases[*i].0, name)
                    })
                    .map(|(i, _)| *i),
            )
            .collect();
        hits.sort_unstable();
        hits.dedup();
        for i in hits {
            let module = &self.aliases[i].1;
            if self.deps.contains_key(module) && !out.contains(module) {
                out.push(module.clone());
            }
        }
        out
    }

    /// Closes `wanted` over hard and soft dependencies and orders it for loading.
    pub fn resolve<S: AsRef<str>>(&self, wanted: &[S]) -> ModuleSet {
        let mut set = ModuleSet::default();
        let mut seen = BTreeSet::new();
        for w in wanted {
            let w = w.as_ref();
            let found = self.lookup(w);
            if found.is_empty() {
                if self.builtin.contains(&canonical(w)) {
                    set.builtin.push(w.to_string());
                } else {
                    set.missing.push(w.to_string());
                }
            }
            for m in found {
                self.visit(&m, &mut seen, &mut set.load_order);
            }
        }
        set
    }

    /// Depth-first: soft `pre:` modules, hard dependencies, the module, soft `post:` modules.
    fn visit(&self, name: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) {
        if !seen.insert(name.to_string()) {
            return;
        }
        let Some((path, deps)) = self.deps.get(name) else {
            return;
        };
        let (pre, post) = self.softdeps.get(name).cloned().unwrap_or_default();
        for p in &pre {
            for m in self.lookup(p) {
                self.visit(&m, seen, order);
            }
        }
        // modules.dep lists a module's dependencies with the deepest last; loading walks it
        // backwards (kmod does the same).
        for d in deps.iter().rev() {
            self.visit(&name_of(d), seen, order);
        }
        order.push(path.clone());
        for p in &post {
            for m in self.lookup(p) {
                self.visit(&m, seen, order);
            }
        }
    }

    /// `modules.dep`, `modules.softdep` and `modules.alias` restricted to the shipped modules,
    /// with paths renamed by `rename` (compressed modules are shipped decompressed).
    pub fn subset_indexes(
        &self,
        shipped: &[String],
        rename: impl Fn(&str) -> String,
    ) -> (String, String, String) {
        let names: BTreeSet<String> = shipped.iter().map(|p| name_of(p)).collect();
        let mut dep = String::new();
        for (name, (path, deps)) in &self.deps {
            if names.contains(name) {
                let deps: Vec<String> = deps.iter().map(|d| rename(d)).collect();
                dep.push_str(
                    &format!("{}: {}\n", rename(path), deps.join(" ")).replace(": \n", ":\n"),
                );
            }
        }
        let mut soft = String::new();
        for (name, (pre, post)) in self.softdeps.iter().filter(|(n, _)| names.contains(*n)) {
            soft.push_str(&format!("softdep {name}"));
            if !pre.is_empty() {
                soft.push_str(&format!(" pre: {}", pre.join(" ")));
            }
            if !post.is_empty() {
                soft.push_str(&format!(" post: {}", post.join(" ")));
            }
            soft.push('\n');
        }
        let mut alias = String::new();
        for (pat, module) in self.aliases.iter().filter(|(_, m)| names.contains(m)) {
            alias.push_str(&format!("alias {pat} {module}\n"));
        }
        (dep, soft, alias)
    }
}

/// The module names a captured filesystem type needs (`vfat` also wants its code pages).
pub fn for_filesystem(fstype: &str) -> Vec<String> {
    match fstype {
        "ext2" | "ext3" | "ext4" => vec!["ext4".into(), "fs-ext4".into()],
        "vfat" | "fat" | "msdos" => [
            "vfat",
            "nls_cp437",
            "nls_ascii",
            "nls_utf8",
            "nls_iso8859_1",
        ]
        .map(String::from)
        .to_vec(),
        "swap" | "" => Vec::new(),
        // The block layers (issue #19): device-mapper, MD and its personalities, dm-crypt
        // with the ciphers LUKS uses by default.
        "lvm" => ["dm_mod", "dm_snapshot"].map(String::from).to_vec(),
        "md" => ["md_mod", "raid0", "raid1", "raid10", "raid456", "linear"]
            .map(String::from)
            .to_vec(),
        "luks" => [
            "dm_mod",
            "dm_crypt",
            "crypto-aes",
            "crypto-xts",
            "crypto-sha256",
            "crypto-argon2",
        ]
        .map(String::from)
        .to_vec(),
        other => vec![other.to_string(), format!("fs-{other}")],
    }
}

/// Shell-style match of `*`, `?` and `[...]` (the patterns of `modules.alias`).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
            continue;
        }
        if pi < p.len()
            && let Some((true, next)) = match_one(&p, pi, t[ti])
        {
            pi = next;
            ti += 1;
            continue;
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches one pattern element at `pi` against `c`: (matched, index after the element).
fn match_one(p: &[char], pi: usize, c: char) -> Option<(bool, usize)> {
    match p[pi] {
        '?' => Some((true, pi + 1)),
        '[' => {
            let end = p[pi + 1..].iter().position(|&x| x == ']')? + pi + 1;
            let set = &p[pi + 1..end];
            let (negate, set) = match set.first() {
                Some('!') | Some('^') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            Some((hit != negate, end + 1))
        }
        x => Some((x == c, pi + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/lib/crc-t10dif.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/lib/crc-t10dif.ko:
kernel/crypto/crct10dif_generic.ko:
kernel/a.ko: kernel/b.ko
kernel/b.ko: kernel/a.ko
";
    const SOFT: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep crc_t10dif pre: crct10dif post: missing-thing
";
    const ALIAS: &str = "\
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias fs-ext4 ext4
alias crct10dif crct10dif_generic
alias usb:v*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, SOFT, ALIAS, "kernel/fs/isofs/isofs.ko\n")
    }

    fn pos(set: &ModuleSet, name: &str) -> usize {
        set.load_order
            .iter()
            .position(|p| name_of(p) == name)
            .unwrap_or_else(|| panic!("{name} not in {:?}", set.load_order))
    }

    #[test]
    fn hard_and_soft_dependencies_load_first() {
        let set = index().resolve(&["ext4"]);
        assert_eq!(set.load_order.len(), 6, "{:?}", set.load_order);
        for before in ["crc32c_intel", "crc32c_generic", "jbd2", "mbcache", "crc16"] {
            assert!(pos(&set, before) < pos(&set, "ext4"), "{before}");
        }
        assert!(set.missing.is_empty() && set.builtin.is_empty());
    }

    #[test]
    fn softdep_names_resolve_through_aliases_and_post_comes_after() {
        let set = index().resolve(&["sd_mod"]);
        assert!(pos(&set, "crct10dif_generic") < pos(&set, "crc_t10dif"));
        assert!(pos(&set, "crc_t10dif") < pos(&set, "sd_mod"));
        assert!(pos(&set, "scsi_common") < pos(&set, "scsi_mod"));
    }

    #[test]
    fn dashes_aliases_builtin_missing_and_cycles() {
        let set = index().resolve(&["usb-storage", "fs-ext4", "isofs", "nvme", "a"]);
        assert!(pos(&set, "scsi_mod") < pos(&set, "usb_storage"));
        assert!(set.load_order.iter().any(|p| p.ends_with("ext4.ko")));
        assert_eq!(set.builtin, vec!["isofs"]);
        assert_eq!(set.missing, vec!["nvme"]);
        assert!(pos(&set, "b") < pos(&set, "a"));
        let unique: BTreeSet<_> = set.load_order.iter().collect();
        assert_eq!(unique.len(), set.load_order.len());
    }

    #[test]
    fn subset_indexes_keep_only_shipped_modules() {
        let idx = index();
        let set = idx.resolve(&["ext4"]);
        let (dep, soft, alias) = idx.subset_indexes(&set.load_order, |p| p.to_string());
        assert!(dep.contains("kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko"));
        assert!(dep.contains("kernel/fs/jbd2/jbd2.ko:\n"));
        assert!(!dep.contains("sd_mod"));
        assert_eq!(soft.lines().count(), 2);
        assert!(alias.contains("alias fs-ext4 ext4") && !alias.contains("usb"));
    }

    #[test]
    fn aliases_match_exactly_or_by_pattern_in_the_files_order() {
        let idx = ModuleIndex::parse(
            "kernel/a.ko:\nkernel/b.ko:\nkernel/c.ko:\n",
            "",
            "alias dev:x*y b\nalias pci:v*d* c\nalias dev:x1y a\nalias dev:?1y c\n",
            "",
        );
        // `dev:x1y`: b by pattern, a exactly, c by `?`: in the file's order, not exact first.
        assert_eq!(idx.lookup("dev:x1y"), vec!["b", "a", "c"]);
        assert_eq!(idx.lookup("dev:z1y"), vec!["c"]);
        assert!(idx.lookup("pci-ish").is_empty());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("usb:v*d*dc*", "usb:v1234d0001dc00"));
        assert!(wildcard("pci:v00008086d*sv*", "pci:v00008086d1234sv0"));
        assert!(!wildcard("pci:v00008086d*", "pci:v00001af4d1000"));
        assert!(wildcard("a[0-9]c", "a5c") && !wildcard("a[!0-9]c", "a5c"));
        assert!(wildcard("*", "") && !wildcard("?", ""));
    }

    #[test]
    fn names() {
        assert_eq!(
            name_of("kernel/arch/x86/crypto/crc32c-intel.ko.zst"),
            "crc32c_intel"
        );
        assert_eq!(for_filesystem("ext3"), vec!["ext4", "fs-ext4"]);
        assert!(for_filesystem("vfat").contains(&"nls_cp437".to_string()));
    }
}
