//! `osimage.source=`: the image read over the network instead of from a boot medium
//! (docs/NETBOOT.md, docs/STORE.md §9). Either an `.iso`/`.oimg` at an http(s) URL, read with
//! Range requests, or a path inside the initramfs to the `source.conf` that `osimage netboot
//! s3://…/NAME` wrote: one version of a store, its version object and packs read through
//! their presigned URLs, checked against the conf before a byte is used. Either way the
//! network is brought up first (`network`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cmdline::AgentOptions;
use super::console::Console;
use super::medium::{self, Medium};
use super::network;
use crate::envelope::Unlock;
use crate::format::PayloadError;
use crate::format::source::RangeRead;
use crate::payload::reader::PayloadReader;
use crate::remote::{HttpObject, RetryPolicy, Trust, is_url, redact};
use crate::store::read::open_from_conf;
use crate::store::source_conf::SourceConf;

/// The image of a network restore.
pub enum RemoteImage {
    /// An `.iso` or `.oimg` at a URL.
    Object(Arc<HttpObject>),
    /// A store version named by a `source.conf`.
    Version(Box<StoreVersion>),
}

/// A store version and how to reach it; the objects read are kept for their counters.
pub struct StoreVersion {
    conf: SourceConf,
    policy: RetryPolicy,
    trust: Trust,
    read: Mutex<Vec<Arc<HttpObject>>>,
}

impl RemoteImage {
    /// Opens the image's reader (`name` in messages); `unlock` is for an encrypted image
    /// (a store version is plain: encrypted stores are not built yet).
    pub fn open(&self, name: &Path, unlock: &Unlock) -> Result<PayloadReader, PayloadError> {
        match self {
            RemoteImage::Object(o) => PayloadReader::open_source(name, o.clone(), unlock),
            RemoteImage::Version(v) => {
                let open = open_from_conf(&v.conf, v.policy, &v.trust)?;
                if let Ok(mut read) = v.read.lock() {
                    read.push(open.version_object.clone());
                    read.push(open.packs.clone());
                }
                Ok(open.reader)
            }
        }
    }

    /// What was read and how it went, for the console's `read from` line.
    pub fn stats(&self) -> String {
        match self {
            RemoteImage::Object(o) => o.stats().describe(),
            RemoteImage::Version(v) => {
                let read = v.read.lock().map(|r| r.clone()).unwrap_or_default();
                match read.last() {
                    Some(packs) => packs.stats().describe(),
                    None => "nothing read".into(),
                }
            }
        }
    }
}

/// `osimage.source=SPEC`: the network brought up, then the image opened over HTTP(S) (its
/// first request learns its length and checks that the server honours Range), or the
/// `source.conf` at SPEC read and checked.
pub fn network_medium(opts: &AgentOptions, spec: &str, con: &Console) -> Result<Medium, String> {
    let shown = redact(spec);
    let conf = if spec.starts_with('/') {
        let bytes = read_bounded(Path::new(spec))
            .map_err(|e| format!("bad-source osimage.source={spec}: {e}"))?;
        Some(SourceConf::parse(spec, &bytes).map_err(|e| format!("bad-source {e}"))?)
    } else if is_url(spec) {
        None
    } else {
        return Err(format!(
            "bad-source osimage.source={shown:?} is neither an http:// or https:// URL nor the \
             path of a source.conf in the initramfs"
        ));
    };
    let trust = match &opts.ca {
        None => Trust::default(),
        Some(p) => Trust::with_ca_file(Path::new(p)).map_err(|e| format!("bad-ca {e}"))?,
    };
    let mut policy = RetryPolicy::default();
    if let Some(s) = opts.retry_for {
        policy.retry_for = Duration::from_secs(s);
    }
    let up = network::bring_up(
        opts.net.as_deref(),
        Duration::from_secs(opts.wait_secs),
        con,
    )?;
    con.line(&up.line());
    let (device, how, remote) = match conf {
        Some(conf) => {
            let bytes: u64 = conf.packs.iter().map(|p| p.len).sum();
            con.line(&format!(
                "osimage: reading {} from {} ({} packs)",
                conf.shown(),
                redact(&conf.object.url),
                conf.packs.len()
            ));
            let how = format!(
                "osimage.source {spec}, a store version of {} in {} packs over {}",
                crate::units::human_bytes(bytes),
                conf.packs.len(),
                up.interface
            );
            let version = StoreVersion {
                conf,
                policy,
                trust,
                read: Mutex::new(Vec::new()),
            };
            let device = version.conf.shown();
            (device, how, RemoteImage::Version(Box::new(version)))
        }
        None => {
            con.line(&format!("osimage: reading the image from {shown}"));
            let object = HttpObject::open(spec, policy, &trust)
                .map_err(|e| format!("source-unreadable {e}"))?;
            let how = format!(
                "osimage.source, {} over {}",
                crate::units::human_bytes(RangeRead::len(&object)),
                up.interface
            );
            (shown, how, RemoteImage::Object(Arc::new(object)))
        }
    };
    Ok(Medium {
        how,
        device,
        mount_point: medium::NO_MEDIUM_DIR.into(),
        disks: Vec::new(),
        remote: Some(Arc::new(remote)),
    })
}

/// The file at `path`, refused when larger than a `source.conf` may be.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let limit = crate::store::source_conf::MAX_SOURCE_CONF;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "more than the {} MiB a source.conf may have",
            limit >> 20
        )));
    }
    Ok(bytes)
}
