//! The files `schedule install` writes: a systemd service + timer (systemd.service(5),
//! systemd.timer(5)), or an /etc/cron.d file (crontab(5)) where systemd is not running. Each
//! starts with a marker comment holding the schedule as JSON, which `schedule list` reads back.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::calendar::Calendar;
use super::job::Job;

/// The first line of every file osimage writes for a schedule.
pub const MARKER: &str = "# osimage-schedule: ";

/// What the marker records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The `--every` value as given.
    pub every: String,
    pub job: Job,
}

/// `osimage-NAME` (unit names get `.service` / `.timer`; the cron file has no suffix, since
/// cron ignores files in cron.d whose names hold a dot).
pub fn base_name(name: &str) -> String {
    format!("osimage-{name}")
}

/// The marker line (with its newline).
pub fn marker(i: &Installed) -> Result<String, String> {
    serde_json::to_string(i)
        .map(|j| format!("{MARKER}{j}\n"))
        .map_err(|e| format!("recording the schedule: {e}"))
}

/// Reads the marker back from a file's text, if it has one.
pub fn read_marker(text: &str) -> Option<Installed> {
    let line = text.lines().next()?;
    serde_json::from_str(line.strip_prefix(MARKER)?).ok()
}

/// The service: one run of the job; failures show as the unit's failed state, output goes to
/// the journal. `man` says whether the osimage-schedule(1) page is installed: only then does
/// `Documentation=` name it (`systemd-analyze verify` fails on a page it cannot find).
pub fn service(i: &Installed, exe: &Path, man: bool) -> Result<String, String> {
    let job = &i.job;
    let mut argv = vec![exe.as_os_str().to_owned()];
    argv.extend(job.run_args());
    let exec = argv
        .iter()
        .map(systemd_quote)
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    Ok(format!(
        "{marker}# Written by `osimage schedule install`; remove with `osimage schedule remove {name}`.\n\
         [Unit]\n\
         Description=osimage scheduled capture {name}\n\
         {doc}\
         After=local-fs.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         # A background job: the machine's own work comes first.\n\
         Nice=10\n\
         IOSchedulingClass=idle\n",
        marker = marker(i)?,
        name = job.name,
        doc = if man {
            "Documentation=man:osimage-schedule(1)\n"
        } else {
            ""
        },
    ))
}

/// The timer: `OnCalendar` from `--every`; `Persistent` so a run missed while the machine
/// was off happens at the next boot.
pub fn timer(i: &Installed, cal: &Calendar) -> Result<String, String> {
    Ok(format!(
        "{marker}# Written by `osimage schedule install`; remove with `osimage schedule remove {name}`.\n\
         [Unit]\n\
         Description=osimage scheduled capture {name} ({cal})\n\
         \n\
         [Timer]\n\
         OnCalendar={cal}\n\
         Persistent=true\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        marker = marker(i)?,
        name = i.job.name,
        cal = cal.on_calendar(),
    ))
}

/// The cron.d file: runs as root at the same times; cron has no journal, so the output is
/// appended to `log`.
pub fn cron_file(i: &Installed, cal: &Calendar, exe: &Path, log: &Path) -> Result<String, String> {
    let mut argv = vec![exe.as_os_str().to_owned()];
    argv.extend(i.job.run_args());
    let cmd = argv
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    Ok(format!(
        "{marker}# Written by `osimage schedule install`; remove with `osimage schedule remove {name}`.\n\
         SHELL=/bin/sh\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         {fields} root nice -n 10 {cmd} >>{log} 2>&1\n",
        marker = marker(i)?,
        name = i.job.name,
        fields = cal.cron_fields(),
        log = shell_quote(log.as_os_str())?,
    ))
}

/// Where a cron run's output is appended: `/var/log/osimage-NAME.log`.
pub fn cron_log(name: &str) -> PathBuf {
    Path::new("/var/log").join(format!("{}.log", base_name(name)))
}

/// The logrotate(8) snippet for a cron schedule's log (/etc/logrotate.d/osimage-NAME): weekly,
/// eight kept, compressed. Each run opens the log anew (`>>`), so no copytruncate.
pub fn logrotate(i: &Installed, log: &Path) -> Result<String, String> {
    Ok(format!(
        "{marker}# Written by `osimage schedule install`; remove with `osimage schedule remove {name}`.\n\
         {log} {{\n\
         \tweekly\n\
         \trotate 8\n\
         \tcompress\n\
         \tdelaycompress\n\
         \tmissingok\n\
         \tnotifempty\n\
         }}\n",
        marker = marker(i)?,
        name = i.job.name,
        log = printable(log.as_os_str())?,
    ))
}

/// An argument as text a unit file or cron line can hold: UTF-8, no control characters.
fn printable(a: &std::ffi::OsStr) -> Result<&str, String> {
    let s = a
        .to_str()
        .ok_or_else(|| format!("{a:?}: not UTF-8; a unit file or cron line cannot hold it"))?;
    if s.chars().any(char::is_control) {
        return Err(format!(
            "{s:?}: holds a control character; a unit file or cron line cannot hold it"
        ));
    }
    Ok(s)
}

/// systemd.service(5) "Command lines": double quotes with C escapes; `%` starts a specifier
/// and `$` a variable, so both are doubled.
fn systemd_quote(a: &OsString) -> Result<String, String> {
    let s = printable(a)?;
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            '%' => q.push_str("%%"),
            '$' => q.push_str("$$"),
            _ => q.push(c),
        }
    }
    q.push('"');
    Ok(q)
}

/// For /bin/sh: single quotes ('\'' for a quote). crontab(5): an unescaped `%` ends the
/// command, so it gets a backslash (cron removes it).
fn shell_quote(a: &std::ffi::OsStr) -> Result<String, String> {
    let s = printable(a)?;
    Ok(format!(
        "'{}'",
        s.replace('\'', r"'\''").replace('%', r"\%")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_survive_systemd_and_shell_quoting() {
        assert_eq!(
            systemd_quote(&"/a b/\"x\"%n$HOME\\".into()).unwrap(),
            r#""/a b/\"x\"%%n$$HOME\\""#
        );
        assert_eq!(
            shell_quote("it's 100%".as_ref()).unwrap(),
            r"'it'\''s 100\%'"
        );
        assert!(systemd_quote(&"a\nb".into()).is_err());
        assert!(shell_quote(std::ffi::OsStr::new("a\tb")).is_err());
    }
}
