//! The man pages and shell completions (`osimage man DIR`, `osimage completions SHELL`),
//! generated from the same clap definitions as `--help` (issue #24, item 18).
//!
//! clap_mangen renders NAME, SYNOPSIS, DESCRIPTION, OPTIONS, SUBCOMMANDS and VERSION; the
//! sections a man page is expected to have beyond those (man-pages(7): EXIT STATUS,
//! ENVIRONMENT, FILES, EXAMPLES, SEE ALSO) are appended here as roff. Their text follows
//! docs/DESIGN.md "Exit codes", the variables the code reads (`std::env::var`) and the files
//! it reads and writes. The restore agent (`rescue-agent`) is not a clap subcommand at all
//! (`cli::main` dispatches it before parsing), so neither the pages nor the completions know it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::args::Cli;

/// Where the Debian package installs docs/*.md; help texts and man pages point here instead of
/// the source tree, which an installed user does not have.
pub const DOC_DIR: &str = "/usr/share/doc/osimage";

/// One line of EXAMPLES: the subcommand it belongs to ("" for none), the command line and what
/// it does. Taken from README.md, docs/SCHEDULE.md and docs/RESTORE.md.
const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "capture",
        "osimage capture / -o /srv/system.iso",
        "Capture the running system into a bootable ISO.",
    ),
    (
        "capture",
        "osimage capture / -o /srv/next.iso --base /srv/system.iso",
        "Refresh: files unchanged since system.iso are not read again.",
    ),
    (
        "extract",
        "osimage extract /srv/system.iso -C /tmp/x etc/fstab home/alice",
        "Put two paths back, with all their metadata, under /tmp/x.",
    ),
    (
        "extract",
        "osimage extract https://images.example/web01.iso -C /tmp/x",
        "The same from an image on an HTTP(S) server that answers Range requests: only the \
         bytes needed are fetched.",
    ),
    (
        "list",
        "osimage list -l /srv/system.iso /etc",
        "An ls -l style listing of a subtree.",
    ),
    (
        "diff",
        "osimage diff /srv/system.iso /srv/next.iso",
        "What changed between two images.",
    ),
    (
        "info",
        "osimage info /srv/system.iso",
        "What an image holds: counts, sizes, dedup, layout.",
    ),
    (
        "verify",
        "osimage verify /srv/system.iso",
        "Check every chunk; damaged files are named and the exit status is 1.",
    ),
    (
        "verify",
        "osimage verify --boot /srv/system.iso",
        "Restore the image in a throw-away VM and boot the result.",
    ),
    (
        "restore",
        "osimage restore /srv/system.iso --target /dev/sdb --dry-run",
        "Print the restore plan; nothing is written.",
    ),
    (
        "restore",
        "osimage restore /srv/system.iso --target /dev/sdb",
        "Recreate the disk layout, the files and the boot loader on /dev/sdb.",
    ),
    (
        "schedule install",
        "osimage schedule install --every weekly --dest /srv/images --keep 4",
        "A weekly refresh of / into /srv/images, keeping the newest four images.",
    ),
    (
        "schedule install",
        "osimage schedule install --every daily --dest s3://images/fleet/web01 --keep 7",
        "A daily version of / in the store series web01, as capture -o s3://… makes it; \
         versions beyond the newest seven are forgotten, and a later store prune frees their \
         space. The S3 settings found now go to /etc/osimage/schedule-golden.env (mode 0600).",
    ),
    (
        "schedule list",
        "osimage schedule list",
        "The installed schedules.",
    ),
    (
        "schedule remove",
        "osimage schedule remove web",
        "Remove the schedule named web; its images stay.",
    ),
    (
        "sign",
        "osimage sign /srv/system.iso --key ~/.minisign/minisign.key",
        "Write /srv/system.iso.minisig (minisign -V checks it too).",
    ),
    (
        "netboot",
        "osimage netboot https://images.example/web01.iso -o /srv/tftp/web01",
        "Write boot.ipxe, the rescue kernel and initramfs into /srv/tftp/web01: a machine \
         that boots boot.ipxe restores web01.iso, reading it from that URL.",
    ),
    (
        "netboot",
        "osimage netboot /srv/www/web01.iso --source http://10.0.0.1/web01.iso -o /srv/tftp/web01 --cmdline 'osimage.target=/dev/sda osimage.force=1'",
        "The same from the local copy of an ISO that http://10.0.0.1/ serves, restoring onto \
         /dev/sda whatever it holds.",
    ),
    (
        "netboot",
        "osimage netboot s3://images/site-a/web01.iso -o /srv/tftp/web01 --expires 2d",
        "From an ISO kept in S3-compatible storage: boot.ipxe holds a URL presigned for two \
         days, so the machines need no credentials.",
    ),
    (
        "netboot",
        "osimage netboot s3://images/fleet/web01 -o /srv/tftp/web01 --plain-url http://mirror.lan/images/ --with-ipxe",
        "From a store version whose objects http://mirror.lan/images/ serves by key without \
         signatures: nothing expires, the version is pinned for 7 days, and iPXE's \
         undionly.kpxe and ipxe.efi are copied beside the files.",
    ),
    (
        "export",
        "osimage export s3://images/fleet/web01 -o web01.iso --compact",
        "A bootable ISO of the newest version of web01 holding only the blocks it uses, in \
         packs of its own.",
    ),
    (
        "import",
        "AWS_ENDPOINT_URL=https://s3.lan:3900 osimage import /srv/images/web01.iso s3://images/site-a/web01.iso",
        "Upload web01.iso to the bucket images of a self-hosted store (credentials from \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or ~/.aws/credentials).",
    ),
    (
        "store init",
        "osimage store init s3://images/fleet",
        "Create an empty image store under the prefix fleet of the bucket images.",
    ),
    (
        "capture",
        "osimage capture / -o s3://images/fleet/web01 --tag nightly",
        "Add a version of web01 to the image store at s3://images/fleet: only blocks no image \
         in the store holds yet are uploaded, and files unchanged since the newest version of \
         web01 are not read.",
    ),
    (
        "capture",
        "osimage capture / -o s3://images/fleet/web01 --no-base --cache-dir /var/cache/osimage",
        "The same, reading every file again (the store still deduplicates), with the store's \
         index objects kept under /var/cache/osimage/stores/ instead of ~/.cache/osimage/.",
    ),
    (
        "restore",
        "osimage restore s3://images/fleet/web01 --target /dev/sdb",
        "Restore the newest version of web01 from the store (web01@VERSION for another).",
    ),
    (
        "export",
        "osimage export s3://images/fleet/web01 -o /srv/web01.iso",
        "Write the newest version of web01 as a bootable ISO: its packs and manifest copied \
         from the store byte for byte, its rescue kernel and initramfs from the store's \
         blobs, checked whole before it is renamed into place.",
    ),
    (
        "store ls",
        "osimage store ls -l s3://images/fleet --series web01",
        "The versions of the series web01, oldest first, with each one's host, sizes and \
         tags.",
    ),
    (
        "store unlock",
        "osimage store unlock s3://images/fleet",
        "Remove the locks of captures that died: those not refreshed for 30 minutes.",
    ),
    (
        "store prune",
        "osimage store prune s3://images/fleet --all --keep-daily 7 --keep-weekly 4 --dry-run",
        "Show which versions of every series a week of dailies and a month of weeklies keep, \
         and why, and what would be condemned; change nothing.",
    ),
    (
        "store prune",
        "osimage store prune s3://images/fleet --series web01 --keep-last 3",
        "Forget all but the three newest versions of web01, and sweep what earlier prunes \
         condemned once the captures running then have finished.",
    ),
    (
        "store forget",
        "osimage store forget s3://images/fleet/web01@20261205T195045Z-3fa2c81d09be4471",
        "Forget one version by name: refused by readers at once, deleted by the next prune.",
    ),
    (
        "store pin",
        "osimage store pin s3://images/fleet/web01@20261205T195045Z-3fa2c81d09be4471 \
         --until 2027-01-31 --why 'rack 4 reinstall'",
        "Keep that version through 31 January 2027 whatever the retention rules say.",
    ),
    (
        "store unpin",
        "osimage store unpin s3://images/fleet/web01@20261205T195045Z-3fa2c81d09be4471",
        "Remove its pins: the rules decide again.",
    ),
    (
        "store check",
        "osimage store check s3://images/fleet --read-data --subset 10%",
        "Check every index and version object and that every pack a version uses is there, \
         and read a tenth of the packs (chosen by a printed seed: --seed N repeats the choice), \
         checking every block and pack hash. Exit status 1 names each damaged object.",
    ),
    (
        "store key",
        "osimage store key add s3://images/vault --passphrase-file old.pass \
         --new-passphrase-file night.pass",
        "Let a second passphrase open the encrypted store (store key list shows both; store \
         key remove takes one away, never the last).",
    ),
    (
        "store key list",
        "osimage store key list s3://images/vault --identity ops.key",
        "Show what opens each of the store's key objects and which one opened it now.",
    ),
    (
        "export",
        "osimage export s3://images/vault/web01 -o web01.iso --passphrase-file vault.pass \
         --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        "An encrypted store's version as an encrypted ISO under a key of its own, for that age \
         public key (without --recipient: for vault.pass; --decrypt writes a plain ISO).",
    ),
    (
        "store key add",
        "osimage store key add s3://images/vault --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        "Let that age key open the encrypted store too.",
    ),
    (
        "store key remove",
        "osimage store key remove s3://images/vault 3fa2c81d09be44713fa2c81d09be4471",
        "Remove one key object (its id from store key list); the last one is refused.",
    ),
    (
        "info",
        "osimage info s3://images/site-a/web01.iso",
        "Read an image kept in S3 with ranged, signed requests: only the bytes needed.",
    ),
    (
        "completions",
        "osimage completions bash > /etc/bash_completion.d/osimage",
        "Install bash completion by hand (the Debian package ships it).",
    ),
    (
        "man",
        "osimage man /usr/local/share/man/man1",
        "Write these pages.",
    ),
];

/// Prints the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "osimage", out);
}

/// Writes `osimage.1` and one page per subcommand (`osimage-capture.1`,
/// `osimage-schedule-install.1`, …) into `dir`, creating it; returns the paths written.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (path, page) in pages() {
        let file = dir.join(format!("{}.1", page_name(&path)));
        std::fs::write(&file, page).map_err(|e| format!("{}: {e}", file.display()))?;
        written.push(file);
    }
    Ok(written)
}

/// Every page: the subcommand path ("" for osimage itself, "schedule install") and its roff.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    collect(&cmd, String::new(), &mut out);
    out
}

fn collect(cmd: &clap::Command, path: String, out: &mut Vec<(String, Vec<u8>)>) {
    out.push((path.clone(), render(cmd, &path)));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_path = if path.is_empty() {
            sub.get_name().to_string()
        } else {
            format!("{path} {}", sub.get_name())
        };
        collect(sub, sub_path, out);
    }
}

fn page_name(path: &str) -> String {
    if path.is_empty() {
        "osimage".into()
    } else {
        format!("osimage-{}", path.replace(' ', "-"))
    }
}

/// One page: clap_mangen's sections, then ours. The exit codes are ours (EXIT STATUS), so
/// clap_mangen's "EXTRA" section is rendered only for other after-help text, as NOTES.
fn render(cmd: &clap::Command, path: &str) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut w = Vec::new();
    // Writes into a Vec cannot fail.
    let _ = man.render_title(&mut w);
    let _ = man.render_name_section(&mut w);
    let _ = man.render_synopsis_section(&mut w);
    let _ = man.render_description_section(&mut w);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        let _ = man.render_options_section(&mut w);
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        let _ = man.render_subcommands_section(&mut w);
    }
    let after = cmd.get_after_long_help().or(cmd.get_after_help());
    if after.is_some_and(|a| a.to_string() != super::args::EXIT_STATUS) {
        let mut extra = Vec::new();
        let _ = man.render_extra_section(&mut extra);
        let extra = String::from_utf8_lossy(&extra).replacen(".SH EXTRA", ".SH NOTES", 1);
        w.extend_from_slice(extra.as_bytes());
    }
    w.extend_from_slice(sections(path).as_bytes());
    let _ = man.render_version_section(&mut w);
    w
}

/// Escapes text for roff: backslashes, hyphens (so they are not broken into dashes) and a
/// leading control character.
fn esc(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// A tagged paragraph: `tag` in bold, `body` below it, indented.
fn item(tag: &str, body: &str) -> String {
    format!(".TP\n\\fB{}\\fR\n{}\n", esc(tag), esc(body))
}

/// EXIT STATUS, ENVIRONMENT, FILES, EXAMPLES and SEE ALSO for the page of `path`.
fn sections(path: &str) -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for (code, what) in [
        ("0", "Success."),
        (
            "1",
            "Failure, with a message naming what and where; also a restore that leaves a disk \
             that will not boot (unless --allow-unbootable), a verify that finds damage, an \
             extract whose data fails its hash.",
        ),
        (
            "2",
            "Usage error: an unknown option or a missing argument, and the values osimage \
             checks itself (--every, --name, --map, --hostname, an --exclude pattern).",
        ),
        (
            "3",
            "Finished but incomplete: capture --keep-going (or a scheduled run) skipped files \
             it could not read and wrote the image without them; or verify --boot could not \
             run the VM on this host, so the image was not judged.",
        ),
        (
            "128 + N",
            "Stopped by signal N; a capture removes its temporary files first.",
        ),
        ("101", "A panic: always a bug, please report it."),
    ] {
        s += &item(code, what);
    }
    s += ".SH ENVIRONMENT\n";
    for (var, what) in [
        (
            "OSIMAGE_PASSPHRASE",
            "The passphrase of an encrypted image, for capture --encrypt and every command \
             that reads one, when --passphrase-file is not given (else it is asked for on the \
             terminal).",
        ),
        (
            "OSIMAGE_RETRY_FOR",
            "Seconds for which a request to an image given as an http:// or https:// URL is \
             retried after a passing failure, when --retry-for is not given (default 600).",
        ),
        (
            "OSIMAGE_CA",
            "A PEM file of CA certificates trusted besides the bundled Mozilla roots when \
             reading an image from an https:// URL, when --ca is not given.",
        ),
        (
            "OSIMAGE_CONNECTIONS",
            "How many requests fetch ahead the blocks a read of an image over HTTP or S3 will \
             need, 1 to 32, when --connections is not given (default 4).",
        ),
        (
            "OSIMAGE_IPXE_DIR",
            "Where netboot --with-ipxe finds undionly.kpxe and ipxe.efi (default /usr/lib/ipxe, \
             from Debian's ipxe package).",
        ),
        (
            "OSIMAGE_WAITING_EVERY",
            "Seconds between the \"waiting for URL: last error, retry N in S s\" lines on \
             stderr while a request to an http:// or https:// image keeps failing, the first \
             that long after its first failure (default 10; 0: none).",
        ),
        (
            "SOURCE_DATE_EPOCH",
            "Seconds since 1970: the ISO's volume dates, for reproducible images (default: \
             now).",
        ),
        (
            "TMPDIR",
            "Where verify --boot makes its temporary directory when --work-dir is not given \
             (default /tmp).",
        ),
        (
            "PATH",
            "Where the tools osimage runs are looked for (grub-mkimage, mkfs.vfat, mcopy, \
             the mkfs tools of a restore, qemu-system-x86_64).",
        ),
    ] {
        s += &item(var, what);
    }
    s += ".SH FILES\n";
    for (file, what) in [
        (
            "DIR/.osimage-partial-PID-*, DIR/.osimage-work-PID-*",
            "A capture's temporary image and ISO work folder in OUTPUT's directory DIR (mode \
             0600): renamed into place or removed, also on SIGINT, SIGTERM and SIGHUP; a later \
             capture into DIR removes those no live process owns.",
        ),
        (
            "IMAGE.minisig",
            "The signature osimage sign writes and verify --pubkey and restore \
             --require-signature read.",
        ),
        (
            "ROOT/boot/vmlinuz-*, ROOT/lib/modules/, ROOT/usr/lib/grub/",
            "The captured system's kernel, modules and GRUB files, from which an ISO's rescue \
             environment and boot images are made.",
        ),
        (
            "/etc/systemd/system/osimage-NAME.service, osimage-NAME.timer",
            "The units osimage schedule install writes (systemd).",
        ),
        (
            "/etc/cron.d/osimage-NAME, /var/log/osimage-NAME.log",
            "The cron job and its log, where systemd is not running.",
        ),
        (
            "/usr/share/OVMF/OVMF_CODE_4M.fd, OVMF_VARS_4M.fd",
            "The UEFI firmware verify --boot runs (Debian package ovmf).",
        ),
        (
            DOC_DIR,
            "The documentation: FORMAT.md (the image format), RESTORE.md, RESCUE.md, \
             SCHEDULE.md, SECURITY.md, VERIFY-BOOT.md, EXCLUDES.md and the others.",
        ),
    ] {
        s += &item(file, what);
    }
    s += ".SH EXAMPLES\n";
    for (sub, line, what) in EXAMPLES {
        if path.is_empty() || *sub == path || sub.starts_with(&format!("{path} ")) {
            s += &item(line, what);
        }
    }
    s += ".SH \"SEE ALSO\"\n";
    let mut see: Vec<String> = Vec::new();
    if !path.is_empty() {
        see.push("\\fBosimage\\fR(1)".into());
    }
    see.extend(
        [
            "minisign(1)",
            "qemu-system-x86_64(1)",
            "grub-mkimage(1)",
            "systemd.timer(5)",
            "crontab(5)",
        ]
        .iter()
        .map(|p| {
            let (name, sec) = p.split_once('(').unwrap_or((p, ""));
            format!("\\fB{}\\fR({sec}", esc(name))
        }),
    );
    s += &see.join(", ");
    s += &format!("\n.PP\nThe documentation in {}.\n", esc(DOC_DIR));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page has the sections man-pages(7) expects, each once.
    #[test]
    fn every_page_has_the_conventional_sections() {
        let pages = pages();
        let names: Vec<String> = pages.iter().map(|(p, _)| page_name(p)).collect();
        for want in ["osimage", "osimage-capture", "osimage-schedule-install"] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        for (path, page) in &pages {
            let page = String::from_utf8(page.clone()).unwrap();
            for sh in [
                ".SH NAME",
                ".SH SYNOPSIS",
                ".SH \"EXIT STATUS\"",
                ".SH ENVIRONMENT",
                ".SH FILES",
                ".SH EXAMPLES",
                ".SH \"SEE ALSO\"",
            ] {
                assert_eq!(page.matches(sh).count(), 1, "{sh} in {}", page_name(path));
            }
            // The EXAMPLES section of each page has at least one of its own command lines.
            let examples = page.split(".SH EXAMPLES").nth(1).unwrap();
            let examples = examples.split(".SH").next().unwrap();
            assert!(
                examples.contains(".TP"),
                "no example in {}",
                page_name(path)
            );
            assert!(!page.contains(".SH EXTRA"), "{}", page_name(path));
        }
        let top = &pages.iter().find(|(p, _)| p.is_empty()).unwrap().1;
        let top = String::from_utf8_lossy(top);
        assert!(top.contains("OSIMAGE_PASSPHRASE") && top.contains("SOURCE_DATE_EPOCH"));
        assert!(top.contains("\\fB128 + N\\fR"));
    }

    /// The restore agent is nobody's command: no page, no mention in any page.
    #[test]
    fn man_pages_do_not_know_the_agent() {
        for (path, page) in pages() {
            let page = String::from_utf8_lossy(&page);
            assert!(
                !page.contains("rescue-agent") && !page.contains("rescue\\-agent"),
                "{} mentions rescue-agent",
                page_name(&path)
            );
        }
    }

    /// The agent is dispatched before clap: no shell completes it.
    #[test]
    fn completions_do_not_offer_the_agent() {
        use clap::ValueEnum;
        for shell in clap_complete::Shell::value_variants() {
            let mut out = Vec::new();
            completions(*shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("capture"), "{shell}: no subcommands at all?");
            assert!(
                !text.contains("rescue-agent"),
                "{shell} completes rescue-agent"
            );
            assert!(
                !text.contains("rescue__subcmd"),
                "{shell} completes rescue-agent"
            );
        }
    }

    /// Every help text (short and long, of every command) is for an installed user: no path
    /// of the source tree (docs/, rescue/, tests/, src/), and no agent.
    #[test]
    fn help_names_no_repository_path() {
        fn walk(cmd: &mut clap::Command, name: String, out: &mut Vec<(String, String)>) {
            out.push((format!("{name} -h"), cmd.render_help().to_string()));
            out.push((format!("{name} --help"), cmd.render_long_help().to_string()));
            for sub in cmd.get_subcommands_mut() {
                let n = format!("{name} {}", sub.get_name());
                walk(sub, n, out);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut helps = Vec::new();
        walk(&mut cmd, "osimage".into(), &mut helps);
        assert!(helps.len() > 20, "{}", helps.len());
        for (which, text) in &helps {
            for bad in ["docs/", "rescue/", "tests/", "src/", "rescue-agent", ".rs"] {
                assert!(!text.contains(bad), "`{which}` names {bad}:\n{text}");
            }
        }
        // The pointers that replaced them lead to the installed documentation.
        assert!(helps.iter().any(|(_, t)| t.contains(DOC_DIR)));
    }
}
