//! `osimage netboot IMAGE -o DIR`: the files to PXE/iPXE-boot an ISO's rescue environment,
//! which then restores the image reading it over HTTP (docs/NETBOOT.md). The work is
//! `osimage::write_netboot_dir`; this parses, picks the URL and prints.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use osimage::Progress as _;

use super::progress::TermProgress;
use super::{Failure, UsageError, json, source};

#[derive(Debug, Args)]
pub struct NetbootArgs {
    /// The ISO made by `osimage capture ROOT -o NAME.iso`: a path, an http:// or https://
    /// URL of one on a server that answers Range requests, or s3://BUCKET/KEY.iso of one
    /// kept in S3-compatible storage; its rescue kernel and initramfs are copied into DIR
    /// unchanged. Or a version in an image store, s3://BUCKET/PREFIX/NAME[@VERSION] (the
    /// newest without @): its rescue kernel and initramfs come from the store, and the
    /// initramfs also carries /osimage/source.conf with URLs of the version's objects
    /// presigned for --expires, so the machines need no credentials and read only that
    /// version.
    pub image: PathBuf,
    /// The directory to write: created, or an existing empty one (a non-empty one is refused
    /// and left untouched). It appears only when complete: the files are written into a
    /// temporary sibling directory and renamed onto DIR.
    #[arg(short, long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// The http:// or https:// URL of the ISO the machines read (their kernel parameter
    /// osimage.source=URL). Default: IMAGE when IMAGE is an http(s) URL; for an s3:// IMAGE
    /// a presigned URL valid for --expires, so the machines need no credentials; needed when
    /// IMAGE is a local file. It is written into boot.ipxe in clear (a presigned URL's query
    /// too); output shows it without its query.
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// For an s3:// IMAGE: how long the presigned URLs (in boot.ipxe, or in the initramfs
    /// for a store version) work, as a number and a unit (s, m, h, d): at most 7d, S3's
    /// limit. Default 24h. After that the machines cannot read the image; make the files
    /// again.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
    /// For an s3:// IMAGE: the S3 endpoint as the machines reach it, when that differs from
    /// the one this host uses (AWS_ENDPOINT_URL or the profile's endpoint_url), e.g. a name
    /// only the provisioning network resolves. The presigned URL names this endpoint; its
    /// host is part of the signature, so it must be the one the machines send.
    #[arg(long, value_name = "URL")]
    pub presign_endpoint: Option<String>,
    /// For a store version: name its objects by plain URLs, BASE followed by each object's
    /// key in the bucket (the store's prefix included), instead of presigned ones: for a
    /// public-read bucket (path style: http://HOST:PORT/BUCKET/) or a web server in front of
    /// the store. Nothing expires; the version is pinned for --pin-for.
    #[arg(long, value_name = "BASE", conflicts_with_all = ["expires", "presign_endpoint"])]
    pub plain_url: Option<String>,
    /// With --plain-url: how long the version is pinned against prunes, as a number and a
    /// unit (s, m, h, d), at most 3650d. Default 7d. After that a prune may delete it and the
    /// machines can no longer read it; make the files again, or osimage store pin it.
    #[arg(long, value_name = "DURATION", requires = "plain_url")]
    pub pin_for: Option<String>,
    /// Also copy iPXE's undionly.kpxe (for BIOS PXE firmware) and ipxe.efi (UEFI) into DIR,
    /// so plain PXE firmware can chain into iPXE from the same TFTP root. They come from
    /// Debian's ipxe package (/usr/lib/ipxe/; the environment variable OSIMAGE_IPXE_DIR names
    /// another directory); a missing file is an error and nothing is written.
    #[arg(long)]
    pub with_ipxe: bool,
    /// Kernel parameters appended to the machines' command line, e.g. 'osimage.target=/dev/sda
    /// osimage.force=1' to restore onto a named disk that holds data (RESTORE.md in
    /// /usr/share/doc/osimage lists them).
    #[arg(long, value_name = "EXTRA", default_value = "")]
    pub cmdline: String,
    /// Print one JSON document instead of the summary line (schema: JSON.md in
    /// /usr/share/doc/osimage).
    #[arg(long)]
    pub json: bool,
    /// (An encrypted store's passphrase or an age identity, to unlock it; the version's key
    /// set in the initramfs is wrapped for the same, unless --recipient,
    /// --recipient-file or --new-passphrase-file say otherwise. The machines then need it:
    /// osimage.keyfile= or the console prompt.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    #[command(flatten)]
    pub to: super::keys::OutputKeyArgs,
    #[command(flatten)]
    pub net: source::NetArgs,
}

/// `netboot --json`.
#[derive(Serialize)]
struct Document {
    dir: String,
    image: String,
    image_id: String,
    kernel_bytes: u64,
    initrd_bytes: u64,
    /// The URL the machines read, without its query.
    source: String,
    /// When a presigned `source` stops working (RFC 3339, UTC); `None` otherwise.
    expires: Option<String>,
    files: Vec<&'static str>,
}

/// The environment variable naming where `--with-ipxe` finds iPXE's files.
pub const IPXE_DIR_ENV: &str = "OSIMAGE_IPXE_DIR";

/// `--with-ipxe`: the directory its files are copied from.
fn ipxe_dir(a: &NetbootArgs) -> Option<PathBuf> {
    a.with_ipxe.then(|| {
        std::env::var_os(IPXE_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(osimage::DEBIAN_IPXE_DIR), PathBuf::from)
    })
}

/// The files DIR holds, for `--json`.
fn files(with_ipxe: bool) -> Vec<&'static str> {
    let mut v = vec!["boot.ipxe", "vmlinuz", "initrd.img", "README.txt"];
    if with_ipxe {
        v.extend(osimage::IPXE_FILES);
    }
    v
}

pub fn run(a: NetbootArgs, p: &TermProgress) -> Result<i32, Failure> {
    if let Some(address) = source::store_address(&a.image)? {
        return run_store(a, &address, p);
    }
    if a.plain_url.is_some() {
        return Err(UsageError(
            "--plain-url names the objects of a store version (s3://BUCKET/PREFIX/NAME); for \
             an ISO, --source names the URL the machines read"
                .into(),
        )
        .into());
    }
    let s3 = source::s3_address(&a.image)?;
    if (a.expires.is_some() || a.presign_endpoint.is_some()) && (s3.is_none() || a.source.is_some())
    {
        return Err(UsageError(
            "--expires and --presign-endpoint shape the URL presigned for an s3:// IMAGE; \
             here no URL is presigned"
                .into(),
        )
        .into());
    }
    let presign_endpoint = presign_endpoint(&a)?;
    let mut expires = None;
    let url = match (
        &a.source,
        &s3,
        a.image.to_str().filter(|_| source::is_url(&a.image)),
    ) {
        (Some(url), _, _) => url.clone(),
        (None, Some(address), _) => {
            let ttl = parse_lifetime(a.expires.as_deref().unwrap_or("24h"))?;
            let url = a
                .net
                .s3_client(address)?
                .presign_get(&address.key, ttl, presign_endpoint.as_ref())
                .map_err(|e| UsageError(format!("{address}: {e}")))?;
            expires = Some(chrono::Utc::now() + ttl);
            url
        }
        (None, None, Some(url)) => url.to_string(),
        (None, None, None) => {
            return Err(UsageError(format!(
                "{}: a local file: give --source URL, the http:// or https:// URL the machines \
                 will read this image from",
                a.image.display()
            ))
            .into());
        }
    };
    let with_ipxe = a.with_ipxe;
    // The URL, the extra parameters and DIR are checked before IMAGE is opened.
    osimage::check_netboot_arguments(&url, &a.cmdline, &a.output)?;
    let object = source::open_object(&a.image, &a.net)?;
    let req = osimage::NetbootRequest {
        image: object.bytes.clone(),
        shown: object.shown.clone(),
        source: url,
        ipxe: ipxe_dir(&a),
        extra_cmdline: a.cmdline,
        dir: a.output,
        expires: expires.map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
    };
    let r = osimage::write_netboot_dir(&req);
    if let Some(line) = object.summary() {
        eprintln!("osimage: {line}");
    }
    let r = r?;
    if a.json {
        json::print(
            "netboot",
            &Document {
                dir: r.dir.display().to_string(),
                image: object.shown.display().to_string(),
                image_id: r.image_id,
                kernel_bytes: r.kernel_bytes,
                initrd_bytes: r.initrd_bytes,
                source: r.source_shown,
                expires: expires.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                files: files(with_ipxe),
            },
        )?;
        return Ok(0);
    }
    p.say(&format!(
        "{}: netboot files for image {}: kernel {}, initramfs {}; machines will read {}",
        r.dir.display(),
        r.image_id,
        osimage::human_bytes(r.kernel_bytes),
        osimage::human_bytes(r.initrd_bytes),
        r.source_shown
    ));
    if let Some(at) = expires {
        p.say(&format!(
            "the presigned URL in boot.ipxe works until {}; make the files again before then",
            at.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    Ok(0)
}

/// `--presign-endpoint`, parsed.
fn presign_endpoint(a: &NetbootArgs) -> Result<Option<url::Url>, UsageError> {
    a.presign_endpoint
        .as_deref()
        .map(|e| {
            osimage::s3::parse_endpoint("--presign-endpoint", e)
                .map_err(|e| UsageError(e.to_string()))
        })
        .transpose()
}

/// `netboot s3://B/P/NAME[@V]`: a store version, its packs and version object presigned
/// into `source.conf` inside the initramfs (docs/STORE.md §9.1).
fn run_store(
    a: NetbootArgs,
    address: &osimage::store::ImageAddress,
    p: &TermProgress,
) -> Result<i32, Failure> {
    if a.source.is_some() {
        return Err(UsageError(format!(
            "{address}: --source names the URL of an ISO; a store version is read through \
             presigned URLs of its own objects, which netboot makes"
        ))
        .into());
    }
    let ttl = parse_lifetime(a.expires.as_deref().unwrap_or("24h"))?;
    let pin_for = match &a.pin_for {
        Some(text) => parse_duration("--pin-for", text, PIN_FOR_MAX)?,
        None => PIN_FOR_DEFAULT,
    };
    let plain = a
        .plain_url
        .as_deref()
        .map(osimage::store::netboot::check_plain_base)
        .transpose()
        .map_err(UsageError)?;
    let endpoint = presign_endpoint(&a)?;
    osimage::check_netboot_arguments("http://checked.invalid/", &a.cmdline, &a.output)?;
    let client = a.net.store_client(&address.root)?;
    // An encrypted store is unlocked before anything of it is read or any lock written.
    let unlock = a.keys.unlock()?;
    let store = osimage::store::Store::open_unlocked(client, address.root.clone(), &unlock)?;
    let key_lock =
        a.to.lock(store.keys.is_some(), &unlock, &address.root.to_string())?;
    // A Read lock while the version is named and pinned (STORE.md §9.3): a prune running
    // meanwhile waits for it, and finds the pin before it sweeps.
    let interrupts = osimage::Interrupts::start();
    let lock = store.take_lock(
        osimage::store::objects::LockKind::Read,
        Some(&address.series),
    )?;
    let _unlock = interrupts.on_interrupt(lock.shown().to_string(), lock.releaser());
    let version = source::version_named(&store, address)?;
    p.status(&format!(
        "reading {}/{}@{version}",
        address.root, address.series
    ));
    // Presigned URLs pin the version until they expire; plain ones for --pin-for.
    let (v, pinned_until) = match &plain {
        Some(base) => (
            osimage::store::netboot::plain(
                &store,
                &address.series,
                &version,
                base,
                key_lock.as_ref(),
            )?,
            chrono::Utc::now() + pin_for,
        ),
        None => {
            let expires = chrono::Utc::now() + ttl;
            let v = osimage::store::netboot::presigned(
                &store,
                &address.series,
                &version,
                ttl,
                expires,
                endpoint.as_ref(),
                key_lock.as_ref(),
            )?;
            (v, expires)
        }
    };
    // Pinned: no prune forgets it while machines may boot it.
    let why = format!("netboot {}", a.output.display());
    let pin =
        osimage::store::prune::by_hand::pin(&store, &address.series, &version, pinned_until, &why)?;
    lock.release()?;
    let until_text = pinned_until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let urls = match &plain {
        Some(base) => osimage::StoreUrls::Plain {
            base: base.clone(),
            pinned_until: until_text.clone(),
        },
        None => osimage::StoreUrls::Presigned {
            endpoint: match &endpoint {
                Some(e) => e.to_string(),
                None => store.client.endpoint(),
            },
            expires: until_text.clone(),
        },
    };
    p.status("writing the netboot files");
    let with_ipxe = a.with_ipxe;
    let r = osimage::write_store_netboot_dir(&osimage::StoreNetbootRequest {
        store: &store,
        version: &v,
        urls,
        extra_cmdline: a.cmdline.clone(),
        ipxe: ipxe_dir(&a),
        dir: a.output,
    })?;
    if a.json {
        json::print(
            "netboot",
            &Document {
                dir: r.dir.display().to_string(),
                image: r.source_shown.clone(),
                image_id: r.image_id,
                kernel_bytes: r.kernel_bytes,
                initrd_bytes: r.initrd_bytes,
                source: r.source_shown,
                expires: plain.is_none().then_some(until_text),
                files: files(with_ipxe),
            },
        )?;
        return Ok(0);
    }
    let kind = if plain.is_some() {
        "plain"
    } else {
        "presigned"
    };
    p.say(&format!(
        "{}: netboot files for {} (image {}): kernel {}, initramfs {} with the {kind} URLs \
         of its version object and {} packs",
        r.dir.display(),
        r.source_shown,
        r.image_id,
        osimage::human_bytes(r.kernel_bytes),
        osimage::human_bytes(r.initrd_bytes),
        v.conf.packs.len()
    ));
    let when = pinned_until.format("%Y-%m-%d %H:%M UTC");
    p.say(&match &plain {
        Some(_) => format!(
            "the URLs do not expire; the version is pinned until {when} ({}): make the files \
             again, or pin it again, before then",
            store.shown(&pin)
        ),
        None => format!(
            "the URLs work until {when}, and the version is pinned until then ({}); make the \
             files again before then",
            store.shown(&pin)
        ),
    });
    Ok(0)
}

/// `--pin-for` when not given (docs/STORE.md §9.3).
const PIN_FOR_DEFAULT: std::time::Duration = std::time::Duration::from_secs(7 * 86400);
/// The longest `--pin-for`: ten years.
const PIN_FOR_MAX: std::time::Duration = std::time::Duration::from_secs(3650 * 86400);

/// `--expires`: a whole number and a unit (`s`, `m`, `h`, `d`), from 1 s to 7 days.
fn parse_lifetime(text: &str) -> Result<std::time::Duration, UsageError> {
    parse_duration("--expires", text, osimage::s3::PRESIGN_MAX)
}

/// `flag`'s DURATION: a whole number and a unit (`s`, `m`, `h`, `d`), from 1 s to `max`.
fn parse_duration(
    flag: &str,
    text: &str,
    max: std::time::Duration,
) -> Result<std::time::Duration, UsageError> {
    let bad = |why: &str| UsageError(format!("{flag} {text:?}: {why}"));
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| bad("give a number and a unit, e.g. 24h, 90m, 7d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad("the unit is one of s, m, h, d")),
    };
    let d = std::time::Duration::from_secs(n.saturating_mul(scale));
    if d.is_zero() || d > max {
        let days = max.as_secs() / 86400;
        return Err(bad(&format!("give from 1 second to {days} days")));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::parse_lifetime;

    #[test]
    fn lifetimes_have_a_unit_and_stay_within_seven_days() {
        assert_eq!(parse_lifetime("24h").unwrap().as_secs(), 86400);
        assert_eq!(parse_lifetime("7d").unwrap().as_secs(), 604_800);
        assert_eq!(parse_lifetime("90m").unwrap().as_secs(), 5400);
        for bad in [
            "8d",
            "0s",
            "24",
            "h",
            "1.5h",
            "-1h",
            "99999999999999999999d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
        let pin = |t| super::parse_duration("--pin-for", t, super::PIN_FOR_MAX);
        assert_eq!(pin("30d").unwrap().as_secs(), 30 * 86400);
        assert_eq!(pin("3650d").unwrap().as_secs(), 3650 * 86400);
        let e = pin("3651d").unwrap_err().0;
        assert!(e.starts_with("--pin-for \"3651d\""), "{e}");
    }
}
