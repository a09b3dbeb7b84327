//! What a shell and `man` need: completions (clap_complete) and a man page (clap_mangen), both
//! generated from the same definition as the parser, so they never drift from it.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;
use crate::error::{Error, Result};

/// Writes the completion script for `shell` to stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "flamenco-build", &mut script);
    let mut out = std::io::stdout().lock();
    let written = out.write_all(&script).and_then(|()| out.flush());
    quiet_on_closed_pipe(written).map_err(Error::io("writing the completions", "stdout"))
}

/// Writes the man page (roff) to stdout.
pub(crate) fn man_page() -> Result<()> {
    let mut out = std::io::stdout().lock();
    let written = clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .and_then(|()| out.flush());
    quiet_on_closed_pipe(written).map_err(Error::io("writing the man page", "stdout"))
}

/// A reader that stopped early (`| head`) is not an error, as for any Unix filter.
fn quiet_on_closed_pipe(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
