//! The `osimage` command: the command-line front-end (`cli`) over the library, which does
//! the work. The restore agent (`osimage rescue-agent`) is the library's other front-end.

mod cli;

fn main() {
    // Like every Unix tool, stop quietly when the reader of stdout goes away
    // (`osimage completions bash | head`, `osimage list IMG | less` quit early): Rust ignores
    // SIGPIPE by default, which turns that into a write error or a panic in a library.
    // SAFETY: called first, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(cli::main());
}
