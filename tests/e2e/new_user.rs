//! Issue 16, "What a new user tripped over": each thing a new user met, tried the way they met it.

use crate::support::{Project, require_toolchain_images};

/// Three tasks, each writing about 1 MB of its own (so no blob is shared): `a` and `b` from
/// inputs a test leaves alone, `w` from `src/w.txt`, which it changes. The cache holds 3.5 MB.
fn three_megabytes() -> Project {
    let mut tasks = String::new();
    for t in ["a", "b", "w"] {
        tasks.push_str(&format!(
            "[tasks.{t}]\ntoolchain = \"go\"\n\
             run = \"cat src/{t}.txt > {t}.out && yes {t} | head -c 1000000 >> {t}.out\"\n\
             inputs = [\"src/{t}.txt\"]\noutputs = [\"{t}.out\"]\n\n"
        ));
    }
    let p = Project::tiny(&tasks);
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[settings]\n",
        "[settings]\ncache_max_size = 3500000\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();
    for t in ["a", "b", "w"] {
        p.write(&format!("src/{t}.txt"), &format!("{t} 1\n"));
    }
    p
}

/// The entries the cache holds per task, from `cache-status --json`.
fn entries(p: &Project) -> Vec<(String, u64)> {
    let s = p.run(&["cache-status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task"].as_str().unwrap().to_string(),
                t["entries"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn trimming_keeps_what_the_last_build_used() {
    // Issue 16: an up-to-date hit did not refresh its entry's last use (within the hour), so the
    // trim after a one-file change evicted the entries that had just hit. Failed on main before
    // this change: `a`, the oldest by its stored last use, was evicted, and `w`'s replaced entry
    // stayed.
    require_toolchain_images();
    let p = three_megabytes();
    // Last uses are in seconds: `a` and `b` are saved a second before `w`, as a real build's
    // first tasks are, and the next build comes a second later.
    let second = || std::thread::sleep(std::time::Duration::from_millis(1100));
    p.build(&["build-incremental", "a", "b"]).ok();
    second();
    p.build(&["build-incremental"]).ok();
    second();
    p.write("src/w.txt", "w 2\n");
    let b = p.build(&["build-incremental"]).ok();
    assert!(b.up_to_date("a") && b.up_to_date("b"), "{}", b.run.all());
    assert!(b.ran("w"), "{}", b.run.all());
    let e = entries(&p);
    assert_eq!(
        e,
        [("a".into(), 1), ("b".into(), 1), ("w".into(), 1)],
        "the cache keeps what the last build used, and drops `w`'s replaced entry"
    );
    let b = p.build(&["build-incremental"]).ok();
    for t in ["a", "b", "w"] {
        assert!(b.up_to_date(t), "{t}: {}", b.run.all());
    }
}

#[test]
fn cache_status_counts_every_hit_and_reads_like_a_person_wrote_it() {
    // Issue 16: `time saved 0.0s` although tasks were up to date (an up-to-date hit was not
    // counted), `30days`, and KB-sized entries shown as `0.0 MB`.
    require_toolchain_images();
    let p = Project::tiny(
        "[tasks.big]\ntoolchain = \"go\"\nrun = \"head -c 10000 /dev/zero > big.out\"\n\
         outputs = [\"big.out\"]\n\n\
         [tasks.small]\ntoolchain = \"go\"\nrun = \"echo hello > small.out\"\n\
         outputs = [\"small.out\"]\n",
    );
    p.build(&["build-incremental"]).ok();
    let b = p.build(&["build-incremental"]).ok();
    assert!(
        b.up_to_date("big") && b.up_to_date("small"),
        "{}",
        b.run.all()
    );
    let s = p.run(&["cache-status"]).ok();
    let lines: Vec<&str> = s.stdout.lines().collect();
    assert_eq!(lines[0], "Build Cache Status:");
    assert_eq!(lines[1], "  Targets cached: 2");
    assert_eq!(
        lines[4],
        "  Limits: 5.0 GB (5,368,709,120 bytes) max size, entries unused for 30 days dropped"
    );
    let task_line = |line: &str, head: &str| {
        let rest = line
            .strip_prefix(head)
            .unwrap_or_else(|| panic!("`{line}` should start with `{head}`"));
        let (ago, saved) = rest.split_once(" ago, time saved ").unwrap();
        assert!(
            ago.ends_with('s') && ago[..ago.len() - 1].parse::<u64>().is_ok(),
            "{line}"
        );
        let saved: f64 = saved.strip_suffix('s').unwrap().parse().unwrap();
        assert!(saved > 0.0, "the up-to-date hit saved its run time: {line}");
    };
    task_line(
        lines[5],
        "  big              1 entry          9.8 KB  last used ",
    );
    task_line(
        lines[6],
        "  small            1 entry             6 B  last used ",
    );
    assert_eq!(lines.len(), 7, "{}", s.stdout);
    let j = p.run(&["cache-status", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    for t in v["tasks"].as_array().unwrap() {
        assert!(t["saved_ms"].as_u64().unwrap() > 0, "{t}");
    }
}

#[test]
fn a_dry_run_after_clean_cache_names_every_dependency_that_would_run_first() {
    // Issue 16 reported `manager: would run after generate-go`, its other dependencies left out.
    // A task that depends on several tasks that would run names them all.
    require_toolchain_images();
    let p = Project::tiny(
        "[tasks.a]\ntoolchain = \"go\"\nrun = \"echo a > a.out\"\noutputs = [\"a.out\"]\n\n\
         [tasks.b]\ntoolchain = \"go\"\nrun = \"echo b > b.out\"\noutputs = [\"b.out\"]\n\n\
         [tasks.c]\ntoolchain = \"go\"\ndeps = [\"b\", \"a\"]\n\
         run = \"cat a.out b.out > c.out\"\noutputs = [\"c.out\"]\n\n\
         [tasks.d]\ntoolchain = \"go\"\ndeps = [\"c\"]\nrun = \"cp c.out d.out\"\n\
         outputs = [\"d.out\"]\n",
    );
    p.run(&["build-optimized"]).ok();
    p.run(&["clean-cache"]).ok();
    for mode in ["build-optimized", "build-incremental"] {
        let r = p.run(&[mode, "--dry-run"]).ok();
        assert_eq!(
            r.all(),
            "dry-run: a: would run: never built with this cache\n\
             dry-run: b: would run: never built with this cache\n\
             dry-run: c: would run after b, a (the key depends on what they produce)\n\
             dry-run: d: would run after c (the key depends on what they produce)\n\
             dry-run: 4 of 4 tasks would run; nothing was changed\n",
            "{mode}"
        );
    }
}

/// The project `tiny` makes, with `line` put first in its `[settings]` (line 2).
fn with_setting(line: &str) -> Project {
    let p = Project::tiny(
        "[tasks.t]\ntoolchain = \"go\"\nrun = \"echo > t.out\"\noutputs = [\"t.out\"]\n",
    );
    let cfg = p.path().join("flamenco-build.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replacen("[settings]\n", &format!("[settings]\n{line}\n"), 1);
    std::fs::write(&cfg, text).unwrap();
    p
}

#[test]
fn config_errors_say_error_once_in_toml_words_and_suggest_a_key() {
    // Issue 16: `error: …: error:` twice, `expected i64` (a Rust type), and no "did you mean"
    // for an unknown key.
    let cases = [
        (
            "cache_max_sise = \"4MB\"",
            "2:1: error: unknown key `cache_max_sise`; did you mean `cache_max_size`?",
            "^",
        ),
        (
            "jobs = \"four\"",
            "2:8: error: invalid type: string \"four\", expected an integer",
            "       ^",
        ),
        (
            "cache_max_size = true",
            "2:18: error: expected a size: a number of bytes, or a string such as \"5GB\"",
            "                 ^",
        ),
    ];
    for (line, says, caret) in cases {
        let p = with_setting(line);
        let r = p.run(&["graph"]);
        assert_eq!(r.code, 2, "{}", r.all());
        let cfg = p.path().canonicalize().unwrap().join("flamenco-build.toml");
        assert_eq!(
            r.stderr,
            format!("{}:{says}\n  |\n2 | {line}\n  | {caret}\n", cfg.display()),
        );
    }
}

/// `source <(flamenco-build completions bash)` defines the completion, and it completes the
/// subcommands; the man page renders; neither needs a project.
#[test]
fn bash_completions_load_and_complete_subcommands() {
    let bin = env!("CARGO_BIN_EXE_flamenco-build");
    let complete = |word: &str| {
        let script = format!(
            "source <('{bin}' completions bash) || exit 9\n\
             complete -p flamenco-build >/dev/null || exit 8\n\
             COMP_WORDS=(flamenco-build {word}); COMP_CWORD=1\n\
             COMP_LINE=\"flamenco-build {word}\"; COMP_POINT=${{#COMP_LINE}}\n\
             _flamenco__build flamenco-build {word} flamenco-build\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        words.sort();
        words
    };
    assert_eq!(complete("build-o"), ["build-optimized"]);
    assert_eq!(complete("cache-"), ["cache-status", "cache-verify"]);
    // The mage names are accepted, not offered (they would double every suggestion).
    assert_eq!(complete("clean"), ["clean-all", "clean-cache"]);
    let man = std::process::Command::new(bin).arg("man").output().unwrap();
    assert!(man.status.success());
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.contains(".TH flamenco-build 1"), "{man}");
    assert!(man.contains("build\\-optimized"), "{man}");
}
