//! The agent's options, from the kernel command line (`osimage.*` parameters, the same ones the
//! boot menu's entries pass): `osimage.auto=1`, `osimage.interactive=1`, `osimage.shell=1`,
//! `osimage.target=/dev/X`, `osimage.force=1`, `osimage.poweroff=1|reboot`, `osimage.id=HEX`,
//! `osimage.wait=SECONDS` (how long to look for the boot medium), `osimage.default-layout=1`
//! (an image that recorded no disk layout goes onto osimage's default one, docs/RESTORE.md),
//! `osimage.generalize=1`, `osimage.hostname=NAME|RULE` and `osimage.new-uuids=1`
//! (docs/GENERALIZE.md), `osimage.map=vda=/dev/sda,vdb=/dev/sdb` (an image of several disks:
//! recorded disk → target, docs/RESTORE.md "Several disks"), `osimage.overlay=DEVICE[:DIR]`
//! (per-machine files from a second medium, docs/GENERALIZE.md), `osimage.keyfile=PATH` (the
//! passphrase or age key of an encrypted image: a path on the boot medium, or `DEVICE:PATH`
//! on a second medium), `osimage.allow-unbootable=1` (a restored disk that will not boot
//! ends in `OSIMAGE-RESTORE-DONE`, not `OSIMAGE-RESTORE-FAILED not-bootable`),
//! `osimage.seed=N` (the new identities of `new-uuids` and `default-layout` derived from N,
//! as `restore --seed N` derives them; not a number: drawn at random).
//!
//! A restore over the network (docs/NETBOOT.md): `osimage.source=URL` (an http:// or
//! https:// URL of the `.iso`, read with Range requests instead of looking for a boot medium),
//! `osimage.net=dhcp|IF:ADDR/PREFIX[:GATEWAY[:DNS]]` (default DHCP on every interface with a
//! link), `osimage.ca=PATH` (PEM CA certificates trusted besides the bundled roots),
//! `osimage.retry-for=SECONDS` (how long a failing request is retried, default 600),
//! `osimage.connections=N` (requests fetching ahead, 1 to 32, default 4) and
//! `osimage.fetch-cache=MiB` (bytes fetched ahead and not yet read, default 128; both
//! docs/STORE.md §7.2.1; a bad value fails the restore naming the parameter).
//!
//! `osimage.bench=dd`: after the unpack, dd writes as many bytes to the same disk and one
//! `OSIMAGE-BENCH` line gives both rates (docs/PERFORMANCE.md "Agent unpack against dd").

/// What auto mode does at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRestore {
    PowerOff,
    Reboot,
}

/// Parsed `osimage.*` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOptions {
    pub auto: bool,
    pub interactive: bool,
    pub shell: bool,
    pub force: bool,
    pub target: Option<String>,
    pub image_id: Option<String>,
    pub after: AfterRestore,
    pub wait_secs: u64,
    /// Restore an image without a recorded layout onto the default layout, without asking.
    pub default_layout: bool,
    /// Generalize the restored system (fresh machine-id, new SSH host keys).
    pub generalize: bool,
    /// Its hostname, or a rule with `{mac}`.
    pub hostname: Option<String>,
    /// Fresh filesystem UUIDs, partition GUIDs and block-stack (LVM, MD, LUKS) UUIDs,
    /// references rewritten.
    pub new_uuids: bool,
    /// Recorded disk → target device, for an image of several disks.
    pub map: Vec<(String, String)>,
    /// Per-machine files on another medium: `DEVICE` (its `overlay/` folder) or `DEVICE:DIR`.
    pub overlay: Option<String>,
    pub keyfile: Option<String>,
    /// The passphrase of LUKS containers made anew (`osimage.luks-keyfile=`, read like
    /// `keyfile`: a path on the boot medium, an absolute path, or `DEVICE:PATH`).
    pub luks_keyfile: Option<String>,
    /// A restored disk that will not boot is no failure (`osimage.allow-unbootable=1`).
    pub allow_unbootable: bool,
    /// Fresh identities derived from this seed (`osimage.seed=N`, `restore --seed`).
    pub seed: Option<u64>,
    /// The image's URL: a restore over the network (`osimage.source=`).
    pub source: Option<String>,
    /// How the network is set up (`osimage.net=`): `None` is DHCP.
    pub net: Option<String>,
    /// Extra CA certificates for an https:// source (`osimage.ca=`).
    pub ca: Option<String>,
    /// Seconds a failing request is retried (`osimage.retry-for=`).
    pub retry_for: Option<u64>,
    /// Requests fetching ahead (`osimage.connections=`), as written: checked when the
    /// source is opened, so a bad value is named rather than ignored.
    pub connections: Option<String>,
    /// MiB fetched ahead at most (`osimage.fetch-cache=`), as written.
    pub fetch_cache: Option<String>,
    /// `osimage.bench=dd`: time dd writing the unpack's bytes after it (issue #23).
    pub write_bench: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            auto: false,
            interactive: false,
            shell: false,
            force: false,
            target: None,
            image_id: None,
            after: AfterRestore::PowerOff,
            wait_secs: 60,
            default_layout: false,
            generalize: false,
            hostname: None,
            new_uuids: false,
            map: Vec::new(),
            overlay: None,
            keyfile: None,
            luks_keyfile: None,
            allow_unbootable: false,
            seed: None,
            source: None,
            net: None,
            ca: None,
            retry_for: None,
            connections: None,
            fetch_cache: None,
            write_bench: false,
        }
    }
}

impl AgentOptions {
    /// Unknown words are the kernel's or other programs': ignored. The last of a repeated
    /// parameter wins, as in the kernel.
    pub fn parse(cmdline: &str) -> Self {
        let mut o = AgentOptions::default();
        let on = |v: &str| matches!(v, "1" | "yes" | "true" | "on" | "");
        for word in cmdline.split_whitespace() {
            let Some(rest) = word.strip_prefix("osimage.") else {
                continue;
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            let value = value.trim_matches('"');
            match key {
                "auto" => o.auto = on(value),
                "interactive" => o.interactive = on(value),
                "shell" => o.shell = on(value),
                "force" => o.force = on(value),
                "default-layout" | "default_layout" => o.default_layout = on(value),
                "generalize" => o.generalize = on(value),
                "new-uuids" | "new_uuids" => o.new_uuids = on(value),
                "allow-unbootable" | "allow_unbootable" => o.allow_unbootable = on(value),
                "map" => {
                    o.map = value
                        .split(',')
                        .filter_map(|pair| pair.split_once('='))
                        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect()
                }
                "hostname" if !value.is_empty() => o.hostname = Some(value.to_string()),
                "target" if !value.is_empty() => o.target = Some(value.to_string()),
                "id" if !value.is_empty() => o.image_id = Some(value.to_ascii_lowercase()),
                "poweroff" => {
                    o.after = if value == "reboot" {
                        AfterRestore::Reboot
                    } else {
                        AfterRestore::PowerOff
                    }
                }
                "keyfile" if !value.is_empty() => o.keyfile = Some(value.to_string()),
                "luks-keyfile" | "luks_keyfile" if !value.is_empty() => {
                    o.luks_keyfile = Some(value.to_string())
                }
                "overlay" if !value.is_empty() => o.overlay = Some(value.to_string()),
                "wait" => o.wait_secs = value.parse().unwrap_or(o.wait_secs),
                "seed" => o.seed = value.parse().ok(),
                "source" if !value.is_empty() => o.source = Some(value.to_string()),
                "net" => o.net = Some(value.to_string()).filter(|v| v != "dhcp" && !v.is_empty()),
                "ca" if !value.is_empty() => o.ca = Some(value.to_string()),
                "retry-for" | "retry_for" => o.retry_for = value.parse().ok(),
                "connections" => o.connections = Some(value.to_string()),
                "fetch-cache" | "fetch_cache" => o.fetch_cache = Some(value.to_string()),
                "bench" => o.write_bench = value == "dd",
                _ => {}
            }
        }
        if o.interactive {
            o.auto = false;
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_menu_parameters() {
        let o = AgentOptions::parse(
            "BOOT_IMAGE=/x console=tty0 console=ttyS0,115200 osimage.id=ABCDEF osimage.auto=1 \
             osimage.target=/dev/vda osimage.force=1 osimage.poweroff=reboot osimage.wait=7 \
             osimage.keyfile=/dev/vdb:/keys/host.txt osimage.luks-keyfile=luks.txt",
        );
        assert_eq!(o.keyfile.as_deref(), Some("/dev/vdb:/keys/host.txt"));
        assert_eq!(o.luks_keyfile.as_deref(), Some("luks.txt"));
        assert!(o.auto && o.force && !o.shell);
        assert_eq!(o.target.as_deref(), Some("/dev/vda"));
        assert_eq!(o.image_id.as_deref(), Some("abcdef"));
        assert_eq!(o.after, AfterRestore::Reboot);
        assert_eq!(o.wait_secs, 7);
        assert!(!o.default_layout);
        assert!(AgentOptions::parse("osimage.default-layout=1").default_layout);
        assert!(!AgentOptions::parse("osimage.default-layout=0").default_layout);
        assert!(!o.allow_unbootable);
        assert!(AgentOptions::parse("osimage.allow-unbootable=1").allow_unbootable);
        assert!(!AgentOptions::parse("osimage.allow-unbootable=0").allow_unbootable);
        assert_eq!(AgentOptions::parse("osimage.seed=7").seed, Some(7));
        assert_eq!(AgentOptions::parse("osimage.seed=x").seed, None);
        assert!(AgentOptions::parse("osimage.bench=dd").write_bench);
        assert!(!AgentOptions::parse("osimage.bench=other").write_bench);
        assert!(!o.write_bench);
        assert_eq!(o.seed, None);
        let g = AgentOptions::parse(
            "quiet osimage.generalize=1 osimage.hostname=web-{mac} osimage.new-uuids=1",
        );
        assert!(g.new_uuids);
        assert_eq!(
            AgentOptions::parse("osimage.overlay=/dev/sdc1:/site-a")
                .overlay
                .as_deref(),
            Some("/dev/sdc1:/site-a")
        );
        let m = AgentOptions::parse("osimage.map=vda=/dev/sda,vdb=/dev/nvme0n1,bad");
        assert_eq!(
            m.map,
            vec![
                ("vda".to_string(), "/dev/sda".to_string()),
                ("vdb".to_string(), "/dev/nvme0n1".to_string())
            ]
        );
        assert!(!AgentOptions::parse("osimage.generalize=1").new_uuids);
        assert!(g.generalize);
        assert_eq!(g.hostname.as_deref(), Some("web-{mac}"));
        assert_eq!(AgentOptions::parse("osimage.hostname=").hostname, None);
    }

    #[test]
    fn parses_the_network_parameters() {
        let o = AgentOptions::parse(
            "osimage.auto=1 osimage.source=https://h/img/x.iso?X-Amz-Signature=a=b \
             osimage.net=eth0:10.0.0.5/24:10.0.0.1 osimage.ca=/osimage/ca.pem osimage.retry-for=30",
        );
        assert_eq!(
            o.source.as_deref(),
            Some("https://h/img/x.iso?X-Amz-Signature=a=b")
        );
        assert_eq!(o.net.as_deref(), Some("eth0:10.0.0.5/24:10.0.0.1"));
        assert_eq!(o.ca.as_deref(), Some("/osimage/ca.pem"));
        assert_eq!(o.retry_for, Some(30));
        assert_eq!(AgentOptions::parse("osimage.net=dhcp").net, None);
        assert_eq!(AgentOptions::parse("osimage.source=").source, None);
    }

    #[test]
    fn interactive_wins_and_defaults_hold() {
        let o = AgentOptions::parse(
            "osimage.auto=1 osimage.interactive=1 osimage.poweroff=1 osimage.wait=x",
        );
        assert!(!o.auto && o.interactive);
        assert_eq!(o.after, AfterRestore::PowerOff);
        assert_eq!(o.wait_secs, 60);
        assert_eq!(AgentOptions::parse(""), AgentOptions::default());
        assert!(!AgentOptions::parse("osimage.auto=0").auto);
    }
}
