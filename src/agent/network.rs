//! The network of a restore over the network (`osimage.source=URL`, docs/NETBOOT.md): the
//! interfaces brought up, then an address by DHCP (busybox `udhcpc` with
//! `rescue/udhcpc.script`, on each interface with a link until one gets a lease) or the static
//! one `osimage.net=IF:ADDR/PREFIX[:GATEWAY[:DNS]]` gives. rescue/init has loaded the network
//! drivers (`rescue/modules-net.list`) before the agent starts.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::console::Console;

const BUSYBOX: &str = "/bin/busybox";
const UDHCPC_SCRIPT: &str = "/osimage/udhcpc.script";
const SYS_NET: &str = "/sys/class/net";

/// An address the machine got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Up {
    pub interface: String,
    /// `ADDR/PREFIX`.
    pub address: String,
    /// The default gateway, or `none`.
    pub gateway: String,
}

impl Up {
    /// The console line tests and automation read.
    pub fn line(&self) -> String {
        format!(
            "OSIMAGE-NET-UP {} {} via {}",
            self.interface, self.address, self.gateway
        )
    }
}

/// A static address: `osimage.net=IF:ADDR/PREFIX[:GATEWAY[:DNS]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Static {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Option<Ipv4Addr>,
}

impl Static {
    /// Parses `osimage.net=`'s value; the error names what is wrong.
    pub fn parse(spec: &str) -> Result<Static, String> {
        let bad = |why: &str| format!("bad-net osimage.net={spec:?}: {why}");
        let mut parts = spec.split(':');
        let interface = parts.next().unwrap_or_default();
        if !is_interface_name(interface) {
            return Err(bad("the interface name comes first (eth0, ens3...)"));
        }
        let (addr, prefix) = parts
            .next()
            .and_then(|a| a.split_once('/'))
            .ok_or_else(|| bad("ADDR/PREFIX after the interface (10.0.0.5/24)"))?;
        let address = addr
            .parse()
            .map_err(|_| bad(&format!("{addr:?} is not an IPv4 address")))?;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| bad(&format!("prefix {prefix:?} is not 1 to 32")))?;
        let mut ip = |what: &str| -> Result<Option<Ipv4Addr>, String> {
            match parts.next().filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| bad(&format!("{what} {s:?} is not an IPv4 address"))),
            }
        };
        let gateway = ip("gateway")?;
        let dns = ip("DNS server")?;
        if parts.next().is_some() {
            return Err(bad("at most IF:ADDR/PREFIX:GATEWAY:DNS"));
        }
        Ok(Static {
            interface: interface.to_string(),
            address,
            prefix,
            gateway,
            dns,
        })
    }
}

/// A Linux interface name: 1 to 15 characters, no `/`, `:` or white space.
fn is_interface_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Brings the network up: `setting` is `osimage.net=`'s value (`None`: DHCP). Waits up to
/// `wait` for an interface with a link and a lease.
pub fn bring_up(setting: Option<&str>, wait: Duration, con: &Console) -> Result<Up, String> {
    let _ = ip(&["link", "set", "lo", "up"]);
    match setting {
        Some(spec) => {
            let s = Static::parse(spec)?;
            static_address(&s, wait)
        }
        None => dhcp(wait, con),
    }
}

fn static_address(s: &Static, wait: Duration) -> Result<Up, String> {
    let deadline = Instant::now() + wait;
    while !Path::new(SYS_NET).join(&s.interface).exists() {
        if Instant::now() >= deadline {
            return Err(format!(
                "no-network interface {} not found (interfaces: {})",
                s.interface,
                list_or_none(&interfaces())
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let address = format!("{}/{}", s.address, s.prefix);
    ip(&["link", "set", &s.interface, "up"])?;
    // the agent may run again from the rescue shell: the address of the last run goes first
    let _ = ip(&["-4", "addr", "flush", "dev", &s.interface]);
    ip(&["-4", "addr", "add", &address, "dev", &s.interface])?;
    if let Some(gw) = s.gateway {
        ip(&[
            "-4",
            "route",
            "add",
            "default",
            "via",
            &gw.to_string(),
            "dev",
            &s.interface,
        ])?;
    }
    if let Some(dns) = s.dns {
        std::fs::write("/etc/resolv.conf", format!("nameserver {dns}\n"))
            .map_err(|e| format!("no-network /etc/resolv.conf: {e}"))?;
    }
    wait_for_carrier(&s.interface, deadline);
    Ok(Up {
        interface: s.interface.clone(),
        address,
        gateway: s.gateway.map_or("none".into(), |g| g.to_string()),
    })
}

/// DHCP on every interface with a link, in name order, until one gets a lease or `wait`
/// has passed.
fn dhcp(wait: Duration, con: &Console) -> Result<Up, String> {
    let deadline = Instant::now() + wait;
    let mut raised = Vec::<String>::new();
    let mut tried = Vec::<String>::new();
    let mut said_waiting = false;
    loop {
        let now = interfaces();
        for i in &now {
            if !raised.contains(i) {
                let _ = ip(&["link", "set", i, "up"]);
                raised.push(i.clone());
            }
        }
        for i in now.iter().filter(|i| carrier(i)) {
            match udhcpc(i) {
                Ok(up) => return Ok(up),
                Err(e) => {
                    if !tried.contains(i) {
                        con.line(&format!("osimage: DHCP on {i}: {e}"));
                        tried.push(i.clone());
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(if now.is_empty() {
                format!(
                    "no-network (no network interface after {} s: the rescue kernel has no \
                     driver for this NIC; /run/osimage-modules.log says what loaded)",
                    wait.as_secs()
                )
            } else {
                format!(
                    "no-network (no DHCP lease after {} s on {}; osimage.net=IF:ADDR/PREFIX:GATEWAY \
                     sets an address by hand)",
                    wait.as_secs(),
                    list_or_none(&now)
                )
            });
        }
        if !said_waiting {
            con.line(&format!(
                "osimage: waiting for a network link and a DHCP lease (interfaces: {})",
                list_or_none(&now)
            ));
            said_waiting = true;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// One DHCP exchange on `interface` (busybox udhcpc: 5 discovers 2 s apart, then gives up).
fn udhcpc(interface: &str) -> Result<Up, String> {
    let record = Path::new("/run/osimage").join(format!("net-{interface}"));
    let _ = std::fs::create_dir_all("/run/osimage");
    let _ = std::fs::remove_file(&record);
    let out = Command::new(BUSYBOX)
        .args([
            "udhcpc",
            "-i",
            interface,
            "-q",
            "-n",
            "-t",
            "5",
            "-T",
            "2",
            "-s",
            UDHCPC_SCRIPT,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {BUSYBOX} udhcpc: {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let last = said.lines().last().unwrap_or("").trim();
        return Err(format!("no lease ({}{last})", exit_text(&out.status)));
    }
    let text = std::fs::read_to_string(&record)
        .map_err(|e| format!("udhcpc got a lease but {}: {e}", record.display()))?;
    parse_record(interface, &text)
        .ok_or_else(|| format!("{} says {:?}", record.display(), text.trim()))
}

fn exit_text(s: &std::process::ExitStatus) -> String {
    match s.code() {
        Some(c) => format!("exit {c}: "),
        None => "killed: ".into(),
    }
}

/// `rescue/udhcpc.script`'s record: `ADDR/PREFIX GATEWAY`.
pub fn parse_record(interface: &str, text: &str) -> Option<Up> {
    let mut w = text.split_whitespace();
    let address = w.next()?.to_string();
    let (a, p) = address.split_once('/')?;
    a.parse::<Ipv4Addr>().ok()?;
    p.parse::<u8>().ok().filter(|p| *p <= 32)?;
    Some(Up {
        interface: interface.to_string(),
        address,
        gateway: w.next().unwrap_or("none").to_string(),
    })
}

/// The machine's network interfaces but loopback, in name order.
fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(SYS_NET)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn carrier(interface: &str) -> bool {
    std::fs::read_to_string(Path::new(SYS_NET).join(interface).join("carrier"))
        .is_ok_and(|s| s.trim() == "1")
}

fn wait_for_carrier(interface: &str, deadline: Instant) {
    while !carrier(interface) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// `busybox ip ARGS`; the error carries what it said.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new(BUSYBOX)
        .arg("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("no-network cannot run {BUSYBOX} ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "no-network ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_settings_parse_and_bad_ones_name_the_problem() {
        let s = Static::parse("eth0:10.0.0.5/24:10.0.0.1:10.0.0.53").unwrap();
        assert_eq!(s.interface, "eth0");
        assert_eq!(s.address, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(s.prefix, 24);
        assert_eq!(s.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(s.dns, Some(Ipv4Addr::new(10, 0, 0, 53)));
        let bare = Static::parse("ens3:192.168.1.9/16").unwrap();
        assert_eq!((bare.gateway, bare.dns), (None, None));
        for (spec, says) in [
            ("10.0.0.5/24", "interface name"),
            ("eth0:10.0.0.5", "ADDR/PREFIX"),
            ("eth0:10.0.0.500/24", "not an IPv4 address"),
            ("eth0:10.0.0.5/33", "prefix"),
            ("eth0:10.0.0.5/24:gw", "gateway"),
            ("eth0:10.0.0.5/24:10.0.0.1:10.0.0.2:x", "at most"),
            ("eth0/x:10.0.0.5/24", "interface name"),
        ] {
            let e = Static::parse(spec).unwrap_err();
            assert!(e.starts_with("bad-net ") && e.contains(says), "{spec}: {e}");
        }
    }

    #[test]
    fn the_script_record_is_read_and_checked() {
        let up = parse_record("eth0", "10.0.2.15/24 10.0.2.2\n").unwrap();
        assert_eq!(up.line(), "OSIMAGE-NET-UP eth0 10.0.2.15/24 via 10.0.2.2");
        assert_eq!(
            parse_record("eth0", "10.0.2.15/24").unwrap().gateway,
            "none"
        );
        assert_eq!(parse_record("eth0", ""), None);
        assert_eq!(parse_record("eth0", "10.0.2.15 x"), None);
        assert_eq!(parse_record("eth0", "10.0.2.15/40 x"), None);
    }
}
