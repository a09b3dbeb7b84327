use std::io::{IsTerminal, Write};

use clap::Parser;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLAMENCO_BUILD_LOG")
        // Our own warnings only: a dependency's (a signer's, say) may print a signed URL.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("flamenco_build=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let cli = flamenco_build::cli::Cli::parse();
    if let Err(e) = cli.execute() {
        // Not eprintln!: after SIGHUP the terminal may be gone, and the exit code must stay.
        let _ = writeln!(std::io::stderr(), "error: {e}");
        std::process::exit(e.exit_code());
    }
}
