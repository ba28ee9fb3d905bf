//! Removing the snapshot when the capture is interrupted. SIGINT, SIGTERM and SIGHUP are
//! blocked in the capturing thread (and so in every worker it starts, which inherit the mask)
//! and taken by one thread with `sigtimedwait`: it runs the cleanup, then exits with
//! 128 + the signal as the default action would. Without this, Ctrl-C or `systemctl stop`
//! would leave the snapshot (and its mounts) behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::Cleanup;

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// While alive, an interrupt cleans up; dropping it restores the signal mask.
pub(super) struct Guard {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    old: libc::sigset_t,
}

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        for sig in SIGNALS {
            libc::sigaddset(&mut s, sig);
        }
        s
    }
}

impl Guard {
    pub(super) fn start(cleanup: Arc<Mutex<Option<Cleanup>>>) -> Guard {
        let blocked = set();
        // SAFETY: a zeroed sigset_t is a valid output buffer; pthread_sigmask only reads
        // `blocked` and writes `old`.
        let old = unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut old);
            old
        };
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("snapshot-signals".into())
            .spawn(move || wait(&flag, &cleanup))
            .ok();
        Guard { done, thread, old }
    }
}

/// Polls for a blocked signal until `done`.
fn wait(done: &AtomicBool, cleanup: &Mutex<Option<Cleanup>>) {
    let s = set();
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    while !done.load(Ordering::Relaxed) {
        // SAFETY: `s` and `timeout` are valid; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(&s, std::ptr::null_mut(), &timeout) };
        if sig > 0 {
            eprintln!("osimage: interrupted (signal {sig}): removing the snapshot");
            // Waits for a snapshot still being made (its maker holds the lock).
            if let Some(mut c) = cleanup.lock().ok().and_then(|mut g| g.take())
                && let Err(e) = c.run()
            {
                eprintln!("osimage: {e}");
            }
            std::process::exit(128 + sig);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // SAFETY: restores the mask saved in `start`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}
