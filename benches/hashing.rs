//! Input hashing throughput: a 200 MB input tree hashed with no stat cache (every file read), as
//! a task key needs it. Prints MB/s with the page cache warm and, when this process may drop the
//! page cache (root), cold from disk too. A benchmark, not a test: `cargo bench --bench hashing`.

use std::io::Write;
use std::time::Instant;

use flamenco_build::config::InputSet;
use flamenco_build::fingerprint::{InputFiles, StatCache};

const FILES: usize = 1600;
const FILE_SIZE: usize = 128 * 1024; // 1600 × 128 KiB = 200 MiB

fn main() {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target".into()))
        .unwrap();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut block = vec![0u8; FILE_SIZE];
    for i in 0..FILES {
        let sub = dir.path().join(format!("src/p{:02}", i % 40));
        std::fs::create_dir_all(&sub).unwrap();
        for b in block.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b.copy_from_slice(&seed.to_le_bytes()[..b.len()]);
        }
        std::fs::File::create(sub.join(format!("f{i:04}.bin")))
            .unwrap()
            .write_all(&block)
            .unwrap();
    }
    let total = (FILES * FILE_SIZE) as f64;
    let inputs = InputSet::new(&["src/**".to_string()]).unwrap();
    let run = |label: &str| {
        let started = Instant::now();
        let files = InputFiles::collect(dir.path(), &inputs, &[]).unwrap().files;
        let digests = StatCache::in_memory().digest_all(&files).unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(digests.len(), FILES);
        println!(
            "hashing {label}: {:.0} MB in {:.3} s = {:.2} GB/s ({} files, walk included, {} threads)",
            total / 1e6,
            secs,
            total / secs / 1e9,
            FILES,
            rayon::current_num_threads()
        );
    };
    run("cold stat cache, warm page cache");
    run("cold stat cache, warm page cache (again)");
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    if dropped {
        run("cold stat cache, cold page cache");
    } else {
        println!("hashing cold from disk: skipped (cannot drop the page cache without root)");
    }
}
