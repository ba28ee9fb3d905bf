//! What an interrupted capture undoes (issue #24 item 2): SIGINT, SIGTERM, SIGHUP (and
//! SIGPIPE, see `SIGNALS`) are
//! blocked in the capturing thread (and so in every worker it starts, which inherit the mask)
//! and taken by one thread with `sigtimedwait`: it runs the cleanups registered so far, newest
//! first (the temporary image and work folder beside the output, then a `--snapshot`'s
//! snapshot), then exits with 128 + the signal as the default action would. Without this,
//! Ctrl-C or `systemctl stop` would leave `.osimage-partial-*` (the system's contents, mode
//! 0600) and the snapshot with its mounts behind. The reading commands of a store version use
//! it too, so an interrupt deletes their Read lock (docs/STORE.md §5.1). A child process does
//! not inherit the blocked mask: the standard library's spawn clears it before the exec.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// SIGPIPE too: `main` gives it its default action (stop when the reader goes away), which
/// in the middle of a capture would kill it with its temporary files in place. Blocked, a
/// write to a closed pipe fails with EPIPE instead and the signal waits, pending on the thread
/// that wrote, until the capture is over (done or cleaned up) and the mask is restored; a
/// SIGPIPE sent to the process is taken here like the others.
const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE];

/// A cleanup: what it removes (for the message) and how; it may give the exit status (a
/// capture whose commit completed meanwhile exits 0, see `commit_watch`).
type Action = (String, Box<dyn FnOnce() -> Option<i32> + Send>);

/// The cleanups an interrupt runs, by registration number.
#[derive(Default)]
struct Actions {
    next: u64,
    list: Vec<(u64, Action)>,
}

/// While alive, an interrupt runs the registered cleanups and exits; dropping it restores
/// the signal mask.
pub struct Interrupts {
    actions: Arc<Mutex<Actions>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    old: libc::sigset_t,
}

/// A registered cleanup; dropping it unregisters it (the thing was removed the normal way).
pub struct OnInterrupt {
    actions: Arc<Mutex<Actions>>,
    id: u64,
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

impl Interrupts {
    /// Blocks the signals in this thread (threads started later inherit it) and starts the
    /// thread that takes them.
    pub fn start() -> Interrupts {
        let blocked = set();
        // SAFETY: a zeroed sigset_t is a valid output buffer; pthread_sigmask only reads
        // `blocked` and writes `old`.
        let old = unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, &mut old);
            old
        };
        let done = Arc::new(AtomicBool::new(false));
        let actions = Arc::new(Mutex::new(Actions::default()));
        let (flag, list) = (Arc::clone(&done), Arc::clone(&actions));
        let thread = std::thread::Builder::new()
            .name("capture-signals".into())
            .spawn(move || wait(&flag, &list))
            .ok();
        Interrupts {
            actions,
            done,
            thread,
            old,
        }
    }

    /// Runs `undo` if a signal arrives before the returned registration is dropped. `what`
    /// names what it removes (empty: not named in the message).
    pub fn on_interrupt(&self, what: String, undo: impl FnOnce() + Send + 'static) -> OnInterrupt {
        self.on_interrupt_status(what, move || {
            undo();
            None
        })
    }

    /// [`Interrupts::on_interrupt`] for a cleanup that may decide the exit status: when it
    /// returns one, the process exits with it instead of 128 + the signal (the last such
    /// cleanup to run decides).
    pub fn on_interrupt_status(
        &self,
        what: String,
        undo: impl FnOnce() -> Option<i32> + Send + 'static,
    ) -> OnInterrupt {
        let mut a = self.actions.lock().unwrap_or_else(|p| p.into_inner());
        let id = a.next;
        a.next += 1;
        a.list.push((id, (what, Box::new(undo))));
        OnInterrupt {
            actions: Arc::clone(&self.actions),
            id,
        }
    }
}

impl Drop for OnInterrupt {
    fn drop(&mut self) {
        let mut a = self.actions.lock().unwrap_or_else(|p| p.into_inner());
        a.list.retain(|(id, _)| *id != self.id);
    }
}

/// Polls for a blocked signal until `done`.
fn wait(done: &AtomicBool, actions: &Mutex<Actions>) {
    let s = set();
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    while !done.load(Ordering::Relaxed) {
        // SAFETY: `s` and `timeout` are valid; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(&s, std::ptr::null_mut(), &timeout) };
        if sig > 0 {
            let list = {
                let mut a = actions.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::take(&mut a.list)
            };
            // an action without a name (a sweep behind the named ones) is not listed
            let names: Vec<&str> = list
                .iter()
                .rev()
                .map(|(_, (w, _))| w.as_str())
                .filter(|w| !w.is_empty())
                .collect();
            if names.is_empty() {
                eprintln!("osimage: interrupted (signal {sig})");
            } else {
                eprintln!(
                    "osimage: interrupted (signal {sig}): removing {}",
                    names.join(", ")
                );
            }
            let mut status = 128 + sig;
            for (_, (_, undo)) in list.into_iter().rev() {
                if let Some(s) = undo() {
                    status = s;
                }
            }
            std::process::exit(status);
        }
    }
}

impl Drop for Interrupts {
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
