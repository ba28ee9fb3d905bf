//! `verify --boot` of a version in an image store (docs/VERIFY-BOOT.md "A version in an image
//! store: the network path"): no CD-ROM, the scratch VM boots from the network as a fleet's
//! machine does. Its firmware's iPXE gets `boot.ipxe` over QEMU's user network
//! (`restrict=on`), where each connection to [`GUEST_HOST`]:80 starts `busybox httpd` over the
//! netboot files and each one to [`GUEST_HOST`]:[`GUEST_STORE_PORT`] starts `busybox nc` to the
//! store's endpoint; the presigned URLs name that guest address, so the guest holds no
//! credentials and reaches nothing else.

use std::path::Path;

use super::cycle::Medium;
use super::key::ConsoleKey;
use super::{
    BootCheckError, BootCheckOptions, BootReport, Checked, FirmwareChoice, on_path, run_checked,
};
use crate::payload::reader::PayloadReader;

/// The host address the guest reaches the boot files and the store at.
pub const GUEST_HOST: &str = "10.0.2.100";
/// The guest's port of the store (relayed to the real endpoint).
pub const GUEST_STORE_PORT: u16 = 9000;

/// An image the scratch VM restores over the network.
pub struct NetworkImage<'a> {
    /// How the report names the image (`s3://BUCKET/PREFIX/NAME@VERSION`).
    pub shown: String,
    /// The image, opened here: its manifest is what the restored files are compared with.
    pub reader: &'a PayloadReader,
    /// The store's endpoint as this host reaches it (`http://HOST[:PORT]`).
    pub endpoint: String,
    /// Where the guest's store connections go: the endpoint's host and port
    /// ([`network_preflight`]).
    pub relay_to: (String, u16),
    /// Writes the netboot files (`boot.ipxe`, `vmlinuz`, `initrd.img`) into a directory that
    /// does not exist yet, with URLs presigned for [`network_preflight`]'s address.
    pub write_files: &'a dyn Fn(&Path) -> Result<(), String>,
    /// An encrypted version: the key its rescue agent is asked for (the served key set is
    /// wrapped for it), typed at the prompt.
    pub key: Option<&'a super::key::ConsoleKey>,
}

/// What is checked before the store is read: `opts` can boot from the network here, and the
/// store at `endpoint` (`http://HOST[:PORT]`) can be relayed to the VM. Returns the endpoint
/// the presigned URLs must name (the guest's address of the relay) and where the relay
/// connects. An `https://` endpoint is refused: the guest reaches it under another name,
/// which TLS rightly rejects.
pub fn network_preflight(
    endpoint: &str,
    opts: &BootCheckOptions,
) -> Result<(url::Url, (String, u16)), BootCheckError> {
    if opts.firmware == Some(FirmwareChoice::UefiSecureBoot) {
        return Err(BootCheckError::Image(
            "a network boot under Secure Boot needs a signed iPXE, which QEMU's ROM is not: \
             check Secure Boot on the exported ISO (`osimage export s3://... -o system.iso`, \
             then `verify --boot system.iso --firmware uefi-secureboot`)"
                .into(),
        ));
    }
    if !on_path("busybox") {
        return Err(BootCheckError::MissingTool {
            tool: "busybox".into(),
            package: "busybox-static".into(),
        });
    }
    guest_endpoint(endpoint)
}

fn guest_endpoint(endpoint: &str) -> Result<(url::Url, (String, u16)), BootCheckError> {
    let u = url::Url::parse(endpoint)
        .map_err(|e| BootCheckError::Image(format!("the store's endpoint {endpoint}: {e}")))?;
    if u.scheme() != "http" {
        return Err(BootCheckError::Image(format!(
            "verify --boot of a store version relays the VM's requests to the store's \
             endpoint under another host name, which only plain HTTP allows; {endpoint} is \
             {}: export the version (`osimage export s3://... -o system.iso`) and run \
             `osimage verify --boot system.iso`",
            u.scheme()
        )));
    }
    let host = u
        .host_str()
        .ok_or_else(|| BootCheckError::Image(format!("the store's endpoint {endpoint}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let guest = url::Url::parse(&format!("http://{GUEST_HOST}:{GUEST_STORE_PORT}"))
        .expect("a constant URL");
    Ok((guest, (host, port)))
}

/// Runs the whole check on a network image (see the module's text).
pub fn verify_boot_network(
    img: &NetworkImage,
    opts: &BootCheckOptions,
    say: &dyn Fn(&str),
) -> Result<BootReport, BootCheckError> {
    // the CLI ran `network_preflight` before it read the store; a library caller may not have
    let (_, relay_to) = network_preflight(&img.endpoint, opts)?;
    if relay_to != img.relay_to {
        return Err(BootCheckError::Image(format!(
            "{}: the relay goes to {}:{}, not to the endpoint {}",
            img.shown, img.relay_to.0, img.relay_to.1, img.endpoint
        )));
    }
    let checked = Checked::new(&img.shown, img.reader, img.key, opts)?;
    let medium = Medium::Network {
        write_files: img.write_files,
        relay_to: &img.relay_to,
    };
    run_checked(checked, &medium, opts, say)
}

/// `verify --boot` of version `version` of `series` in `store` (the caller holds a Read lock
/// on the store for as long as this runs): the preflight, the netboot files with URLs
/// presigned for the guest's relay for three `opts.timeout`s plus an hour, then
/// [`verify_boot_network`].
pub fn verify_store_version(
    store: &crate::store::Store,
    series: &str,
    version: &str,
    opts: &BootCheckOptions,
    say: &dyn Fn(&str),
) -> Result<BootReport, BootCheckError> {
    let unlock = crate::envelope::Unlock::default();
    verify_store_version_unlocked(store, series, version, &unlock, opts, say)
}

/// [`verify_store_version`] of a store that may be encrypted (opened with `unlock`): the
/// served `source.conf` carries the version's key set wrapped for the passphrase or the one
/// age key that `unlock` holds (STORE.md §6.1 "The key set"), which is typed at the agent's
/// prompt in the VM.
pub fn verify_store_version_unlocked(
    store: &crate::store::Store,
    series: &str,
    version: &str,
    unlock: &crate::envelope::Unlock,
    opts: &BootCheckOptions,
    say: &dyn Fn(&str),
) -> Result<BootReport, BootCheckError> {
    let key = match store.keys {
        Some(_) => Some(ConsoleKey::chosen(unlock, &|_| true).ok_or_else(|| {
            BootCheckError::Image(format!(
                "{}/{series}@{version}: an encrypted store, and no passphrase or age key to \
                 type at the rescue agent's prompt",
                store.root
            ))
        })?),
        None => None,
    };
    let lock = key.as_ref().map(ConsoleKey::lock);
    let endpoint = store.client.endpoint();
    let (guest, relay_to) = network_preflight(&endpoint, opts)?;
    // The URLs outlive every boot the check may make (three per firmware mode at most).
    let ttl = (opts.timeout * 3 + std::time::Duration::from_secs(3600))
        .min(crate::remote::s3::PRESIGN_MAX);
    let expires = chrono::Utc::now() + ttl;
    let v = crate::store::netboot::presigned(
        store,
        series,
        version,
        ttl,
        expires,
        Some(&guest),
        lock.as_ref(),
    )
    .map_err(|e| BootCheckError::Image(e.to_string()))?;
    let write_files = |dir: &Path| {
        crate::netboot::store::write_store_netboot_dir(
            &crate::netboot::store::StoreNetbootRequest {
                store,
                version: &v,
                urls: crate::netboot::store::StoreUrls::Presigned {
                    endpoint: guest.to_string(),
                    expires: v.conf.expires.clone().unwrap_or_default(),
                },
                extra_cmdline: String::new(),
                dir: dir.to_path_buf(),
                ipxe: None,
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let image = NetworkImage {
        shown: v.open.name.display().to_string(),
        reader: &v.open.reader,
        endpoint,
        relay_to,
        write_files: &write_files,
        key: key.as_ref(),
    };
    verify_boot_network(&image, opts, say)
}

/// The served form of a network medium: its boot file URL and the guest forwards.
pub(super) struct Served {
    pub forwards: Vec<(String, String)>,
}

impl Served {
    /// Writes the netboot files into `work/netboot` and says how the guest reaches them and
    /// the store.
    pub fn prepare(
        work: &Path,
        write_files: &dyn Fn(&Path) -> Result<(), String>,
        relay_to: &(String, u16),
    ) -> Result<Served, BootCheckError> {
        let dir = work.join("netboot");
        write_files(&dir).map_err(BootCheckError::Image)?;
        let forwards = vec![
            (
                format!("{GUEST_HOST}:80"),
                format!(
                    "busybox httpd -i -h {}",
                    shell_quoted(&dir.display().to_string())
                ),
            ),
            (
                format!("{GUEST_HOST}:{GUEST_STORE_PORT}"),
                format!("busybox nc {} {}", shell_quoted(&relay_to.0), relay_to.1),
            ),
        ];
        Ok(Served { forwards })
    }

    /// The boot file DHCP hands out.
    pub fn bootfile() -> String {
        format!("http://{GUEST_HOST}/boot.ipxe")
    }
}

/// `text` as one word for `/bin/sh` (QEMU runs a guestfwd command through it).
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_endpoints_are_relayed_and_https_is_refused_naming_the_way_that_works() {
        let (guest, relay) = guest_endpoint("http://127.0.0.1:3900").unwrap();
        assert_eq!(guest.as_str(), "http://10.0.2.100:9000/");
        assert_eq!(relay, ("127.0.0.1".to_string(), 3900));
        let (_, relay) = guest_endpoint("http://[::1]:3900").unwrap();
        assert_eq!(relay, ("::1".to_string(), 3900));
        let (_, relay) = guest_endpoint("http://garage.lan").unwrap();
        assert_eq!(relay, ("garage.lan".to_string(), 80));
        let e = guest_endpoint("https://s3.eu-west-1.amazonaws.com")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("only plain HTTP") && e.contains("osimage export s3://"),
            "{e}"
        );
        assert!(guest_endpoint("not a url").is_err());
    }

    #[test]
    fn the_served_files_and_the_relay_are_quoted_for_the_shell() {
        let work = tempfile::tempdir().unwrap();
        let odd = work.path().join("it's here");
        std::fs::create_dir(&odd).unwrap();
        let s = Served::prepare(
            &odd,
            &|dir| std::fs::create_dir(dir).map_err(|e| e.to_string()),
            &("::1".into(), 3900),
        )
        .unwrap();
        assert!(odd.join("netboot").is_dir());
        assert_eq!(s.forwards[0].0, "10.0.2.100:80");
        assert!(
            s.forwards[0].1.ends_with(r"/it'\''s here/netboot'"),
            "{}",
            s.forwards[0].1
        );
        assert_eq!(
            s.forwards[1],
            ("10.0.2.100:9000".into(), "busybox nc '::1' 3900".into())
        );
        let e = Served::prepare(&odd, &|_| Err("no blobs".into()), &("h".into(), 1));
        assert!(matches!(e, Err(BootCheckError::Image(m)) if m == "no blobs"));
    }
}
