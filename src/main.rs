use std::io::{IsTerminal, Write};

use clap::Parser;

fn main() {
    fixed_mmap_threshold();
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
        let _ = writeln!(std::io::stderr(), "{}", e.report());
        std::process::exit(e.exit_code());
    }
}

/// glibc raises its mmap threshold each time a large block is freed (up to 32 MiB); after that,
/// the multipart chunks of an S3 upload (several MiB each, allocated inside opendal) came from the
/// heap and stayed in its arenas: a 200 MB upload peaked at 45–51 MB of RSS instead of 38. A fixed
/// threshold keeps large blocks mapped and returns them when freed; at 512 KiB the 256 KiB buffers
/// of hashing and copying stay on the heap, where they are reused.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only sets a parameter of the allocator; this runs first thing in main,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn fixed_mmap_threshold() {}
