//! The text `osimage netboot` writes: the iPXE script `boot.ipxe`, `README.txt`, and the checks
//! on what goes into them (docs/NETBOOT.md, docs/STORE.md §9.1). The script is read by iPXE,
//! which expands `${…}` settings on every line and splits words at whitespace, and its kernel
//! line becomes the Linux command line (x86 `COMMAND_LINE_SIZE`: 2048 bytes with the NUL), so
//! the URL and the extra parameters are checked before anything is written.

use crate::remote::redact;
use crate::rescue::menu::BASE_CMDLINE;

/// The longest kernel command line: x86's `COMMAND_LINE_SIZE` (2048) less its NUL.
pub const MAX_CMDLINE: usize = 2047;

/// The names of the files in the output directory.
pub const KERNEL_NAME: &str = "vmlinuz";
pub const INITRD_NAME: &str = "initrd.img";
pub const SCRIPT_NAME: &str = "boot.ipxe";
pub const README_NAME: &str = "README.txt";
/// Where a store version's `source.conf` lies in the initramfs netboot serves.
pub const SOURCE_CONF_PATH: &str = "/osimage/source.conf";

/// Why a URL or the extra parameters cannot go into the script: each names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("--source {shown}: {why}")]
    Url { shown: String, why: String },
    #[error("--cmdline {extra:?}: {why}")]
    Extra { extra: String, why: String },
    #[error(
        "the kernel command line would be {len} bytes, more than the {MAX_CMDLINE} an x86 \
         kernel keeps (COMMAND_LINE_SIZE 2048, with its NUL): shorten the URL ({url_len} \
         bytes) or --cmdline"
    )]
    TooLong { len: usize, url_len: usize },
}

/// Checks the URL the machines will read: `http://` or `https://` with a host, ASCII, and
/// nothing that iPXE or the kernel's command line would take apart: whitespace, quotes, a
/// backslash, control characters, `${` (an iPXE setting).
pub fn check_source_url(url: &str) -> Result<(), ScriptError> {
    let fail = |why: &str| ScriptError::Url {
        shown: shown_url(url),
        why: why.to_string(),
    };
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else {
        return Err(fail(
            "the machines read the image over HTTP: the URL must start with http:// or https://",
        ));
    };
    if let Some(c) = url.chars().find(|c| !c.is_ascii()) {
        return Err(fail(&format!(
            "holds {c:?}, which is not ASCII (percent-encode it)"
        )));
    }
    if url.chars().any(|c| c.is_ascii_whitespace()) {
        return Err(fail(
            "holds whitespace, which would split the kernel command line (percent-encode it as %20)",
        ));
    }
    if let Some(c) = url.chars().find(|c| c.is_ascii_control()) {
        return Err(fail(&format!("holds the control character {c:?}")));
    }
    if let Some(c) = url.chars().find(|c| matches!(c, '"' | '\'' | '\\')) {
        return Err(fail(&format!(
            "holds {c:?}, which the kernel command line would not keep (percent-encode it)"
        )));
    }
    if url.contains("${") {
        return Err(fail(
            "holds \"${\", which iPXE would expand as a setting (percent-encode the $ as %24)",
        ));
    }
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..host_end]
        .rsplit_once('@')
        .map_or(&rest[..host_end], |(_, h)| h);
    if host.is_empty() {
        return Err(fail("names no host"));
    }
    Ok(())
}

/// Checks `--cmdline`: kernel parameters separated by spaces, and nothing iPXE would take
/// apart or run: no control character (a newline would start another iPXE command), no `${`,
/// no quotes (iPXE splits words at blanks and keeps no quoting), no word starting with `#`
/// (iPXE drops the rest of the line as a comment).
pub fn check_extra(extra: &str) -> Result<(), ScriptError> {
    let fail = |why: &str| ScriptError::Extra {
        extra: extra.to_string(),
        why: why.to_string(),
    };
    if let Some(c) = extra.chars().find(|c| c.is_control()) {
        return Err(fail(&format!(
            "holds the control character {c:?}: give the parameters on one line"
        )));
    }
    if extra.contains("${") {
        return Err(fail("holds \"${\", which iPXE would expand as a setting"));
    }
    if let Some(c) = extra.chars().find(|c| matches!(c, '"' | '\'' | '\\')) {
        return Err(fail(&format!(
            "holds {c:?}: iPXE keeps no quoting, give parameters without quotes"
        )));
    }
    if extra.split_whitespace().any(|w| w.starts_with('#')) {
        return Err(fail(
            "a word starts with '#', which iPXE takes for a comment",
        ));
    }
    Ok(())
}

/// The URL as messages and the script's `echo` line show it: without its query, fragment and
/// user information (a presigned URL's query holds its credentials).
pub fn shown_url(url: &str) -> String {
    redact(url)
}

/// The kernel command line of the netboot entry: the ISO's "Restore (automatic)" entry
/// (`rescue::menu`: `BASE_CMDLINE osimage.id=ID`, then `osimage.auto=1`), with
/// `osimage.source=URL` and the extra parameters after it. `initrd=` names the initramfs
/// for the EFI stub under UEFI (harmless for BIOS). Checked against [`MAX_CMDLINE`].
pub fn kernel_cmdline(image_id: &str, url: &str, extra: &str) -> Result<String, ScriptError> {
    check_source_url(url)?;
    cmdline_with_source(image_id, url, extra)
}

/// The same line with `osimage.source=SOURCE` for a source checked by the caller: a URL, or
/// [`SOURCE_CONF_PATH`] inside the initramfs (a store version, docs/STORE.md §9.1).
pub fn cmdline_with_source(
    image_id: &str,
    source: &str,
    extra: &str,
) -> Result<String, ScriptError> {
    check_extra(extra)?;
    let mut line = format!(
        "initrd={INITRD_NAME} {BASE_CMDLINE} osimage.id={image_id} osimage.auto=1 \
         osimage.source={source}"
    );
    let extra = extra.split_whitespace().collect::<Vec<_>>().join(" ");
    if !extra.is_empty() {
        line.push(' ');
        line.push_str(&extra);
    }
    if line.len() > MAX_CMDLINE {
        return Err(ScriptError::TooLong {
            len: line.len(),
            url_len: source.len(),
        });
    }
    Ok(line)
}

/// `boot.ipxe`: what iPXE runs. `vmlinuz` and `initrd.img` are resolved relative to the
/// script's own URI, so the directory works served over TFTP or HTTP. `from` says where the
/// image is read (a URL without its query, or a store version).
pub fn boot_ipxe(image_id: &str, from: &str, cmdline: &str) -> String {
    format!(
        "#!ipxe\n\
         echo osimage netboot: image {image_id}, restoring from {from}\n\
         kernel {KERNEL_NAME} {cmdline}\n\
         initrd {INITRD_NAME}\n\
         boot\n"
    )
}

/// `README.txt` of an image read from a URL: what the files are and how to serve them.
pub fn readme(image_id: &str, url: &str, expires: Option<&str>) -> String {
    let lifetime = match expires {
        Some(at) => format!(
            "\nThe URL is presigned: it stops working at {at}. Make the files again before\n\
             then (osimage netboot s3://BUCKET/KEY -o DIR --expires 7d at most).\n"
        ),
        None => String::new(),
    };
    let shown = shown_url(url);
    let head = format!(
        "The machine boots the image's rescue environment over the network and restores the image,
reading it from {shown} (the URL in full is in {SCRIPT_NAME}).
{lifetime}"
    );
    let initrd = "the rescue initramfs, as in the ISO (/osimage/rescue/initrd.img)";
    let reach = format!(
        "The image itself ({shown}) must stay reachable from the machines, on a server that
  answers HTTP Range requests (nginx, Apache, any S3-compatible store, a presigned URL)."
    );
    let secret = format!(
        "The URL is written in {SCRIPT_NAME} in clear. A presigned URL is a bearer capability:
  whoever reads this directory can read the image until the URL expires."
    );
    readme_text(image_id, &head, initrd, &reach, &secret)
}

/// `README.txt` of a store version (`shown`: `s3://B/P/NAME@VERSION`) whose URLs are in the
/// initramfs's `source.conf`: presigned, or plain (`--plain-url`).
pub fn readme_store(image_id: &str, shown: &str, urls: &super::store::StoreUrls) -> String {
    use super::store::StoreUrls;
    let (head, reach, secret) = match urls {
        StoreUrls::Presigned { endpoint, expires } => (
            format!(
                "The machine boots the image's rescue environment over the network and restores
{shown}, reading its version object and packs from the store at {endpoint}
with the presigned URLs in {INITRD_NAME}'s {SOURCE_CONF_PATH}.

The URLs stop working at {expires}. Make the files again before then
(osimage netboot s3://BUCKET/PREFIX/NAME -o DIR --expires 7d at most).
"
            ),
            format!(
                "The store ({endpoint}) must stay reachable from the machines; they send it
  nothing but GETs of this one version's objects."
            ),
            format!(
                "{INITRD_NAME} holds presigned URLs: bearer capabilities. Whoever reads this directory
  can read the version until the URLs expire."
            ),
        ),
        StoreUrls::Plain { base, pinned_until } => (
            format!(
                "The machine boots the image's rescue environment over the network and restores
{shown}, reading its version object and packs at {base}
followed by each object's key (the plain URLs in {INITRD_NAME}'s {SOURCE_CONF_PATH}).

The URLs do not expire. The version is pinned until {pinned_until}: after that a
prune may forget it and delete its packs. Make the files again before then
(osimage netboot s3://BUCKET/PREFIX/NAME -o DIR --plain-url BASE --pin-for 30d),
or pin it again (osimage store pin).
"
            ),
            format!(
                "The server at {base} must stay reachable from the machines and serve the
  store's objects by key, answering HTTP Range requests; they send it nothing but GETs
  of this one version's objects."
            ),
            "The URLs carry no credentials: whoever reaches the server can read the version."
                .to_string(),
        ),
    };
    let initrd = "the rescue initramfs of the version, with source.conf";
    readme_text(image_id, &head, initrd, &reach, &secret)
}

fn readme_text(image_id: &str, head: &str, initrd: &str, reach: &str, secret: &str) -> String {
    format!(
        "osimage netboot files for image {image_id}
======================================================

{head}
Files
  {SCRIPT_NAME}   the iPXE script: loads the kernel and initramfs, then boots
  {KERNEL_NAME}     the rescue kernel, as in the ISO (/osimage/rescue/vmlinuz)
  {INITRD_NAME}  {initrd}

Serving this directory
  iPXE loads {KERNEL_NAME} and {INITRD_NAME} relative to where it loaded {SCRIPT_NAME}
  from, so serve the directory as it is: as an HTTP directory
  (http://server/netboot/{SCRIPT_NAME}) or as (part of) a TFTP root.

  {reach}

dnsmasq (DHCP + TFTP): hand iPXE the script, and chain plain PXE firmware into iPXE
first (undionly.kpxe and ipxe.efi come with Debian's ipxe package, /usr/lib/ipxe/):

  enable-tftp
  tftp-root=/srv/tftp          # holds this directory's files, undionly.kpxe, ipxe.efi
  dhcp-range=192.168.10.100,192.168.10.200,12h
  dhcp-match=set:ipxe,175      # iPXE sends DHCP option 175
  dhcp-match=set:efi64,option:client-arch,7
  dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe
  dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi
  dhcp-boot=tag:ipxe,{SCRIPT_NAME}

What the machine does
  It brings its network up with DHCP, reads the image, and restores it
  unattended onto its only blank disk (no partition table, no filesystem), then powers
  off. With no blank disk, or several, it waits on the console. To name the disk and
  overwrite it, make the files again with
    osimage netboot IMAGE -o DIR --cmdline 'osimage.target=/dev/sda osimage.force=1'

Security
  {secret} Serve the
  directory on the provisioning network only.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn the_kernel_line_is_the_automatic_entry_plus_the_source() {
        let url = "https://images.example/fleet/web.iso?X-Amz-Signature=abc&X-Amz-Credential=k";
        let line = kernel_cmdline(ID, url, "  osimage.target=/dev/sda   osimage.force=1 ").unwrap();
        assert_eq!(
            line,
            format!(
                "initrd=initrd.img console=tty0 console=ttyS0,115200 no_timer_check \
                 osimage.id={ID} osimage.auto=1 osimage.source={url} \
                 osimage.target=/dev/sda osimage.force=1"
            )
        );
        let script = boot_ipxe(ID, &shown_url(url), &line);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "#!ipxe");
        assert_eq!(
            lines[1],
            format!(
                "echo osimage netboot: image {ID}, restoring from https://images.example/fleet/web.iso"
            )
        );
        assert_eq!(lines[2], format!("kernel vmlinuz {line}"));
        assert_eq!(lines[3..], ["initrd initrd.img", "boot"]);
        // The query (credentials) is only on the kernel line, never in the echo or README.
        assert_eq!(script.matches("X-Amz-Signature").count(), 1);
        let readme = readme(ID, url, None);
        assert!(!readme.contains("X-Amz"), "{readme}");
        assert!(readme.contains("https://images.example/fleet/web.iso"));
        assert!(readme.contains("undionly.kpxe") && readme.contains("ipxe.efi"));
    }

    #[test]
    fn the_grub_menu_s_automatic_entry_has_the_same_parameters() {
        // The netboot entry must boot as the ISO's "Restore (automatic)" does.
        let cfg = crate::rescue::grub_cfg(ID, &crate::rescue::MenuParams::default());
        let auto = cfg
            .split("--id restore-auto")
            .nth(1)
            .and_then(|e| e.lines().find(|l| l.trim_start().starts_with("linux ")))
            .unwrap();
        let grub_args: Vec<&str> = auto.split_whitespace().skip(2).collect();
        let line = kernel_cmdline(ID, "http://h/x.iso", "").unwrap();
        let ours: Vec<&str> = line
            .split_whitespace()
            .filter(|w| !w.starts_with("initrd=") && !w.starts_with("osimage.source="))
            .collect();
        assert_eq!(ours, grub_args);
    }

    #[test]
    fn urls_ipxe_or_the_kernel_would_take_apart_are_refused() {
        for ok in [
            "http://10.0.2.2:8080/system.iso",
            "HTTPS://images.example/a/b.iso?X-Amz-Date=1&sig=%24%7B",
            "https://user:pw@host/x.iso#frag",
        ] {
            check_source_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("ftp://host/x.iso", "http:// or https://"),
            ("/srv/x.iso", "http:// or https://"),
            ("http://host/a b.iso", "whitespace"),
            ("http://host/a\tb.iso", "whitespace"),
            ("http://host/a\u{1}b.iso", "control character"),
            ("http://host/a\"b.iso", "'\"'"),
            ("http://host/a'b.iso", "'\\''"),
            ("http://host/${net0/ip}.iso", "${"),
            ("http://host/é.iso", "not ASCII"),
            ("http:///x.iso", "no host"),
            ("https://user@/x.iso", "no host"),
        ] {
            let e = check_source_url(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with("--source "), "{e}");
        }
        // The message never shows a query.
        let e = check_source_url("http://h/x.iso?sig=secret ${x}")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn extra_parameters_ipxe_would_take_apart_are_refused() {
        check_extra("osimage.target=/dev/sda osimage.force=1").unwrap();
        check_extra("").unwrap();
        for (bad, why) in [
            ("a=1\nshell", "control character"),
            ("a=${x}", "${"),
            ("a=\"b c\"", "quoting"),
            ("a=1 #b", "comment"),
        ] {
            let e = check_extra(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_command_line_fits_in_2047_bytes() {
        let fixed = kernel_cmdline(ID, "http://h/", "").unwrap().len();
        let fits = format!("http://h/{}", "a".repeat(MAX_CMDLINE - fixed));
        assert_eq!(kernel_cmdline(ID, &fits, "").unwrap().len(), MAX_CMDLINE);
        let over = format!("{fits}a");
        match kernel_cmdline(ID, &over, "") {
            Err(ScriptError::TooLong { len, url_len }) => {
                assert_eq!((len, url_len), (MAX_CMDLINE + 1, over.len()));
            }
            other => panic!("{other:?}"),
        }
        // The extra parameters count too.
        assert!(matches!(
            kernel_cmdline(ID, &fits, "x"),
            Err(ScriptError::TooLong { .. })
        ));
    }
}
