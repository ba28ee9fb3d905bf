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
use crate::remote::{
    HttpObject, MAX_CONNECTIONS, MAX_FETCH_CACHE_MIB, RetryPolicy, Trust, is_url, redact,
};
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
    /// (an encrypted store's version: for its key set in `source.conf`, docs/STORE.md §6.1).
    pub fn open(&self, name: &Path, unlock: &Unlock) -> Result<PayloadReader, PayloadError> {
        match self {
            RemoteImage::Object(o) => PayloadReader::open_source(name, o.clone(), unlock),
            RemoteImage::Version(v) => {
                let open = open_from_conf(&v.conf, v.policy, &v.trust, unlock)?;
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
    let policy = policy(opts)?;
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

/// The requests' policy from the kernel parameters: `osimage.retry-for=`,
/// `osimage.connections=` (1 to 32) and `osimage.fetch-cache=` (MiB, 1 to 16384); a bad
/// value is a `bad-parameter` failure naming it.
pub fn policy(opts: &AgentOptions) -> Result<RetryPolicy, String> {
    let mut policy = RetryPolicy::default();
    if let Some(s) = opts.retry_for {
        policy.retry_for = Duration::from_secs(s);
    }
    let number = |name: &str, value: &str, max: u64| {
        value
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                format!("bad-parameter osimage.{name}={value:?} is not a number from 1 to {max}")
            })
    };
    if let Some(v) = &opts.connections {
        policy.connections = number("connections", v, MAX_CONNECTIONS as u64)? as usize;
    }
    if let Some(v) = &opts.fetch_cache {
        policy.fetch_cache = number("fetch-cache", v, MAX_FETCH_CACHE_MIB)? << 20;
    }
    Ok(policy)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetch_parameters_set_the_policy_and_bad_ones_are_named() {
        let p = policy(&AgentOptions::parse("osimage.retry-for=30")).expect("defaults");
        assert_eq!(p.retry_for, Duration::from_secs(30));
        assert_eq!(p.connections, 4);
        assert_eq!(p.fetch_cache, 128 << 20);
        let p = policy(&AgentOptions::parse(
            "osimage.connections=16 osimage.fetch-cache=512",
        ))
        .expect("set");
        assert_eq!((p.connections, p.fetch_cache), (16, 512 << 20));
        for (cmdline, named) in [
            ("osimage.connections=0", "osimage.connections=\"0\""),
            ("osimage.connections=33", "osimage.connections=\"33\""),
            ("osimage.connections=four", "osimage.connections=\"four\""),
            ("osimage.fetch-cache=", "osimage.fetch-cache=\"\""),
            ("osimage.fetch-cache=16385", "osimage.fetch-cache=\"16385\""),
        ] {
            let e = policy(&AgentOptions::parse(cmdline)).expect_err(cmdline);
            assert!(e.starts_with("bad-parameter "), "{e}");
            assert!(e.contains(named), "{cmdline}: {e}");
        }
    }
}
