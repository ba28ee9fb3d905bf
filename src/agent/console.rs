//! Output on every console at once: with `console=tty0 console=ttyS0,115200` the kernel's
//! `/dev/console` is only the last one (the serial port), yet the report must reach the
//! screen too. The active consoles are listed in `/sys/class/tty/console/active`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// The consoles the agent writes to.
pub struct Console {
    outputs: Vec<File>,
}

impl Console {
    /// Opens each active console; none (outside the rescue environment) → standard output.
    pub fn open() -> Self {
        let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
        let mut outputs = Vec::new();
        let mut seen = Vec::new();
        for name in active.split_whitespace() {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            if let Ok(f) = OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
                .open(format!("/dev/{name}"))
            {
                outputs.push(f);
            }
        }
        Console { outputs }
    }

    /// Writes one line everywhere.
    pub fn line(&self, text: &str) {
        if self.outputs.is_empty() {
            println!("{text}");
            return;
        }
        for mut f in &self.outputs {
            let _ = f.write_all(format!("{text}\n").as_bytes());
        }
    }
}
