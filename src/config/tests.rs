use std::path::PathBuf;

use super::*;
use crate::graph::Graph;

const ISSUE_SHAPE: &str = r#"
[settings]                                   # every key optional
cache_dir = ".build-cache"
cache_volume = "flamenco-build-cache"
jobs = 4

[toolchains.go]
image = "flamenco-build/go:1.23"
dockerfile = "dockerfiles/toolchains/go.Dockerfile"
context = "dockerfiles/toolchains"
env = { GOCACHE = "/cache/go-build", GOMODCACHE = "/cache/go-mod", CGO_ENABLED = "0" }

[toolchains.node]
image = "flamenco-build/node:22"

[tasks.generate-go]
toolchain = "go"
run = "go run ./tools/gengo"
inputs = ["tools/**"]
outputs = ["pkg/api/openapi.gen.go"]

[tasks.webapp-static]
toolchain = "node"
run = "node build.mjs"
inputs = ["web/app/**"]
outputs = ["web/static"]

[tasks.manager]
toolchain = "go"
deps = ["generate-go", "webapp-static"]
run = "go build -o flamenco-manager ./cmd/flamenco-manager"
inputs = ["go.mod", "cmd/**", "internal/**", "pkg/**", "web/web.go"]
outputs = ["flamenco-manager"]
env = ["GOOS", "GOARCH", "LDFLAGS"]
network = false
"#;

fn parse(text: &str) -> Result<Config> {
    Config::parse(
        PathBuf::from("/p"),
        Source::new("flamenco-build.toml", text),
        false,
    )
}

fn errors(text: &str) -> Vec<String> {
    let r = parse(text).and_then(|c| Graph::new(&c).map(|_| c));
    match r {
        Err(Error::Config(ds)) => ds
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
        Err(e) => panic!("not a config error: {e}"),
        Ok(_) => panic!("config was accepted"),
    }
}

#[test]
fn the_issue_shape_parses() {
    let c = parse(ISSUE_SHAPE).unwrap();
    assert_eq!(c.settings.jobs, 4);
    assert_eq!(c.settings.cache_volume, "flamenco-build-cache");
    let go = &c.toolchains["go"];
    assert_eq!(go.env["CGO_ENABLED"], "0");
    assert_eq!(
        go.context.as_deref(),
        Some(std::path::Path::new("dockerfiles/toolchains"))
    );
    let m = &c.tasks["manager"];
    assert_eq!(m.deps, ["generate-go", "webapp-static"]);
    assert_eq!(m.env, ["GOOS", "GOARCH", "LDFLAGS"]);
    assert!(!m.network);
    assert_eq!(m.workdir, ".");
    let g = Graph::new(&c).unwrap();
    assert_eq!(g.order(), ["generate-go", "webapp-static", "manager"]);
    assert_eq!(
        g.plan(&c, &["webapp-static".into()]).unwrap(),
        ["webapp-static"]
    );
}

#[test]
fn the_builtin_flamenco_graph_is_valid() {
    let c = Config::parse(
        PathBuf::from("/p"),
        Source::new(flamenco::SOURCE_NAME, flamenco::GRAPH),
        true,
    )
    .unwrap();
    let g = Graph::new(&c).unwrap();
    for t in [
        "generate-go",
        "generate-py",
        "generate-js",
        "webapp-static",
        "manager",
        "worker",
    ] {
        assert!(c.tasks.contains_key(t), "{t} missing");
    }
    assert_eq!(
        c.tasks["manager"].deps,
        ["generate-go", "webapp-static", "addon-zip"]
    );
    assert_eq!(c.tasks["webapp-static"].deps, ["generate-js"]);
    assert_eq!(c.tasks["worker"].deps, ["generate-go"]);
    let order = g.order();
    let pos = |t: &str| order.iter().position(|x| x == t).unwrap();
    assert!(pos("generate-js") < pos("webapp-static"));
    assert!(pos("webapp-static") < pos("manager"));
}

#[test]
fn unknown_keys_point_at_their_line() {
    let text = ISSUE_SHAPE.replace("network = false", "network = false\ncolour = \"red\"");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("36:1: unknown key `colour`"), "{e:?}");
}

#[test]
fn unknown_toolchain_and_dependency() {
    let text = ISSUE_SHAPE
        .replace("toolchain = \"node\"", "toolchain = \"nodejs\"")
        .replace("deps = [\"generate-go\", ", "deps = [\"generate-gox\", ");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.starts_with("23:13: task `webapp-static` uses unknown toolchain `nodejs`")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("30:9: task `manager` depends on unknown task `generate-gox`")),
        "{e:?}"
    );
}

#[test]
fn cycles_are_printed_whole() {
    let text = ISSUE_SHAPE.replace(
        "run = \"node build.mjs\"",
        "deps = [\"manager\"]\nrun = \"node build.mjs\"",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("dependency cycle: manager -> webapp-static -> manager"),
        "{e:?}"
    );
}

#[test]
fn duplicate_outputs_empty_run_bad_glob_and_escapes() {
    let text = ISSUE_SHAPE
        .replace(
            "outputs = [\"web/static\"]",
            "outputs = [\"web/static\", \"flamenco-manager\"]",
        )
        .replace("run = \"go run ./tools/gengo\"", "run = \"  \"")
        .replace(
            "inputs = [\"tools/**\"]",
            "inputs = [\"tools/[\", \"../secrets\"]",
        );
    let e = errors(&text);
    assert!(
        e.iter()
            .any(|m| m.contains("both claim output `flamenco-manager`")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("`generate-go` has an empty `run`")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains("cannot parse glob `tools/[`")),
        "{e:?}"
    );
    let text = ISSUE_SHAPE.replace("inputs = [\"tools/**\"]", "inputs = [\"../secrets\"]");
    assert!(errors(&text)[0].contains("escapes the project root"));
    let text = ISSUE_SHAPE.replace("outputs = [\"web/static\"]", "outputs = [\"/etc\"]");
    assert!(errors(&text)[0].contains("is absolute"));
}

#[test]
fn sizes_read_as_docker_reads_them() {
    let text = ISSUE_SHAPE
        .replace(
            "jobs = 4",
            "jobs = 4\ncache_max_size = \"5GB\"\ncache_max_age = \"12h\"",
        )
        .replace(
            "network = false",
            "network = false\nmemory = \"256MB\"\ncpus = 1.5",
        );
    let c = parse(&text).unwrap();
    assert_eq!(c.settings.cache_max_size, 5 << 30);
    assert_eq!(
        c.settings.cache_max_age,
        std::time::Duration::from_secs(12 * 3600)
    );
    assert_eq!(c.tasks["manager"].memory, Some(256 << 20));
    assert_eq!(c.tasks["manager"].cpus, Some(1.5));
    for (v, want) in [
        ("512m", 512u64 << 20),
        ("1.5GiB", 3 << 29),
        ("100", 100),
        ("64 KB", 64 << 10),
    ] {
        let t = ISSUE_SHAPE.replace(
            "network = false",
            &format!("network = false\nmemory = \"{v}\""),
        );
        let got = parse(&t).map(|c| c.tasks["manager"].memory);
        if want >= 4 << 20 {
            assert_eq!(got.unwrap(), Some(want), "{v}");
        } else {
            assert!(got.is_err(), "{v} is below the 4MB minimum");
        }
    }
    let e = errors(&ISSUE_SHAPE.replace("network = false", "network = false\nmemory = \"lots\""));
    assert!(e[0].contains("`memory` is not a size"), "{e:?}");
}

#[test]
fn malformed_toml_points_at_the_line() {
    let e = errors("[settings]\njobs = 4\n[tasks.x\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("3:"), "{e:?}");
    let e = errors("[settings]\njobs = \"four\"\n");
    assert!(e[0].starts_with("2:8:"), "{e:?}");
}

/// Hostile configurations: parsing and validation never panic, and every error has a location.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Pieces a mutation splices in: TOML syntax, keys, and values that validation must reject.
    const TOKENS: &[&str] = &[
        "[",
        "]",
        "=",
        "\"",
        "'",
        "{",
        "}",
        ",",
        "\n",
        "#",
        "[[tasks]]",
        "[tasks.x]",
        "[toolchains.y]",
        "[settings]",
        "deps = [\"manager\"]",
        "deps = [\"nope\"]",
        "toolchain = \"zzz\"",
        "run = \"\"",
        "inputs = [\"../escape\"]",
        "inputs = [\"/abs\"]",
        "inputs = [\"a/[\"]",
        "outputs = [\"flamenco-manager\"]",
        "outputs = [\"..\"]",
        "jobs = -1",
        "jobs = 99999999999999999999",
        "memory = \"lots\"",
        "cpus = -2.0",
        "cache_max_size = \"x\"",
        "cache_max_age = \"forever\"",
        "env = [\"1BAD\"]",
        "network = \"yes\"",
        "user = \"root\"",
        "é",
        "\u{0}",
        "\u{feff}",
        "\"\"\"",
        "'''",
        "\\",
        "\r\n",
        "= =",
        "a.b.c = 1",
    ];

    fn check(text: &str) {
        let lines = text.split('\n').count();
        match Config::parse(PathBuf::from("/p"), Source::new("f.toml", text), false)
            .and_then(|c| Graph::new(&c).map(|_| ()))
        {
            Ok(()) => {}
            Err(Error::Config(ds)) => {
                assert!(!ds.is_empty());
                for d in ds {
                    assert!(
                        d.line >= 1 && d.line <= lines + 1 && d.column >= 1,
                        "bad location {d:?} in {text:?}"
                    );
                    assert!(!d.message.is_empty());
                }
            }
            Err(e) => panic!("not a configuration error: {e} for {text:?}"),
        }
    }

    fn cases() -> u32 {
        std::env::var("FB_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text(text in "\\PC{0,400}") {
            check(&text);
        }

        #[test]
        fn mutated_valid_configs(ops in proptest::collection::vec((0usize..3, any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0usize..40), 1..10)) {
            let mut text = ISSUE_SHAPE.to_string();
            for (op, at, tok, len) in ops {
                let mut pos = at.index(text.len() + 1);
                while !text.is_char_boundary(pos) {
                    pos -= 1;
                }
                match op {
                    0 => text.insert_str(pos, TOKENS[tok.index(TOKENS.len())]),
                    1 => {
                        let mut end = (pos + len).min(text.len());
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        text.replace_range(pos..end, "");
                    }
                    _ => {
                        // Repeat a line somewhere else: duplicate keys and tables.
                        let lines: Vec<&str> = text.lines().collect();
                        let line = lines[tok.index(lines.len())].to_string();
                        text.insert_str(pos, &format!("\n{line}\n"));
                    }
                }
            }
            check(&text);
        }
    }
}

#[test]
fn the_builtin_graph_reads_as_flamencos_build() {
    let c = Config::parse(
        PathBuf::from("/p"),
        Source::new(flamenco::SOURCE_NAME, flamenco::GRAPH),
        true,
    )
    .unwrap();
    insta::assert_snapshot!("builtin_graph", Graph::new(&c).unwrap().to_text(&c));
}

#[test]
fn diagnostics_quote_the_line() {
    let text = ISSUE_SHAPE.replace("deps = [\"generate-go\", ", "deps = [\"generate-gox\", ");
    let e = match parse(&text) {
        Err(Error::Config(ds)) => ds[0].to_string(),
        _ => panic!("accepted"),
    };
    insta::assert_snapshot!(e, @r#"
    flamenco-build.toml:30:9: error: task `manager` depends on unknown task `generate-gox`
       |
    30 | deps = ["generate-gox", "webapp-static"]
       |         ^
    "#);
}

// Issue 10 finding 6: a project that names no cache volume gets its own, named from its root.
// Failed on main before this change: every such project got the machine-wide
// `flamenco-build-cache`.
#[test]
fn the_default_cache_volume_is_the_projects_own() {
    let text = "[toolchains.go]\nimage = \"go\"\n[tasks.t]\ntoolchain = \"go\"\nrun = \"true\"\noutputs = [\"o\"]\n";
    let at = |root: &str| {
        Config::parse(PathBuf::from(root), Source::new("f.toml", text), false)
            .unwrap()
            .settings
            .cache_volume
    };
    let (a, b) = (at("/work/a"), at("/work/b"));
    assert_ne!(a, b);
    assert_eq!(a, at("/work/a"), "the same project, the same volume");
    let hex = a.strip_prefix("flamenco-build-cache-").unwrap();
    assert!(hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    let shared = format!("[settings]\ncache_volume = \"shared\"\n{text}");
    let c = Config::parse(
        PathBuf::from("/work/a"),
        Source::new("f.toml", shared),
        false,
    );
    assert_eq!(c.unwrap().settings.cache_volume, "shared");
}

/// The message of each error of `text`, as `line:column: message`.
fn error_of(text: &str) -> String {
    errors(text).join("\n")
}

#[test]
fn the_cache_folder_is_never_the_root_an_ancestor_slash_or_home() {
    // Issue 10 finding 3: `cache_dir` may not be the project root, an ancestor of it, `/`, or
    // $HOME. Failed on main before this change: every one of these was accepted (and
    // `clean-cache` then emptied the project's `metadata/` or `/tmp`).
    let home = std::env::var("HOME").expect("HOME is set");
    for dir in [".", "./", "sub/..", "/p", "/p/", "..", "/", "//", &home] {
        let text = ISSUE_SHAPE.replace(
            "cache_dir = \".build-cache\"",
            &format!("cache_dir = \"{dir}\""),
        );
        let e = error_of(&text);
        assert!(
            e.starts_with("3:13: `cache_dir` "),
            "cache_dir = {dir:?} should be refused at its value: {e}"
        );
    }
    for dir in [".build-cache/", "./cache", "/elsewhere/cache", "../p-cache"] {
        let text = ISSUE_SHAPE.replace(
            "cache_dir = \".build-cache\"",
            &format!("cache_dir = \"{dir}\""),
        );
        assert!(parse(&text).is_ok(), "cache_dir = {dir:?} is fine");
    }
}

#[test]
fn no_output_or_input_is_in_git_or_the_cache_folder() {
    // Issue 10 finding 4: no output or input may be `.git`, lie inside a `.git` folder or inside
    // the cache folder, and no output may contain them, however `cache_dir` is written. Failed
    // on main before this change: `.git/hooks/pre-commit` was accepted and placed as a hook, an
    // output in `.build-cache/metadata/` was accepted, and an absolute cache_dir skipped the check.
    let outputs = |cache_dir: &str, output: &str| {
        ISSUE_SHAPE
            .replace(
                "cache_dir = \".build-cache\"",
                &format!("cache_dir = \"{cache_dir}\""),
            )
            .replace(
                "outputs = [\"flamenco-manager\"]",
                &format!("outputs = [\"{output}\"]"),
            )
    };
    for (cache_dir, output) in [
        (".build-cache", ".git/hooks/pre-commit"),
        (".build-cache", ".git"),
        (".build-cache", "./.git/"),
        (".build-cache", "vendor/lib/.git/config"),
        (".build-cache", "pkg/.git/*.gen.go"),
        (".build-cache", "*"),
        (".build-cache", ".build-cache/metadata/victim.meta.json"),
        (".build-cache", ".build-cache"),
        ("./.build-cache/", ".build-cache/x"),
        ("/p/cache", "cache"),
        ("/p/./cache/", "cache/artifacts"),
        ("/p/sub/../cache", "cache/**"),
        ("out/cache", "out"),
        ("/p/out/cache", "out"),
        ("out/cache", "out/*"),
    ] {
        let e = error_of(&outputs(cache_dir, output));
        assert!(
            e.starts_with("33:12: task `manager`: output "),
            "output {output:?} with cache_dir {cache_dir:?} should be refused: {e}"
        );
    }
    for (cache_dir, output) in [
        ("/p/cache", "cachex"),
        ("out/cache", "out/bin"),
        (".build-cache", ".gitignore"),
        (".build-cache", "pkg/*.gen.go"),
    ] {
        assert!(
            parse(&outputs(cache_dir, output)).is_ok(),
            "output {output:?} with cache_dir {cache_dir:?} is fine"
        );
    }
    let inputs = |input: &str| {
        ISSUE_SHAPE.replace(
            "inputs = [\"tools/**\"]",
            &format!("inputs = [\"tools/**\", \"{input}\"]"),
        )
    };
    for input in [
        ".git/config",
        ".git",
        "a/.git/**",
        ".build-cache/**",
        ".build-cache",
    ] {
        let e = error_of(&inputs(input));
        assert!(
            e.starts_with("19:23: task `generate-go`: input "),
            "input {input:?} should be refused: {e}"
        );
    }
    // An exclude may name them: it only takes files away.
    assert!(parse(&inputs("!.git/**")).is_ok());
}

#[test]
fn task_names_are_safe_single_path_components() {
    // Issue 10 finding 5: a task name is a safe file name (no `.`/`..`, no separator, no control
    // character, at most 100 bytes). Failed on main before this change: `.`, `..` and a
    // 300-character name were accepted (`.` put the task's archives in the cache folder itself).
    let long = "a".repeat(300);
    for name in [".", "..", long.as_str(), "a/b", "a\\\\b", "tab\\tname", ""] {
        let text = ISSUE_SHAPE.replace("[tasks.manager]", &format!("[tasks.\"{name}\"]"));
        let e = error_of(&text);
        assert!(
            e.contains("is not a valid task name"),
            "task name {name:?} should be refused: {e}"
        );
        assert!(e.starts_with("28:8: "), "located at the name: {e}");
    }
    let ok = "a".repeat(100);
    let text = ISSUE_SHAPE.replace("[tasks.manager]", &format!("[tasks.{ok}]"));
    assert!(parse(&text).is_ok());
    let text = ISSUE_SHAPE.replace("[toolchains.node]", "[toolchains.\"..\"]");
    assert!(error_of(&text).contains("`..` is not a valid toolchain name"));
}

#[test]
fn values_docker_would_refuse_are_config_errors() {
    // Issue 10 finding 14: a `cache_volume` Docker rejects and a `run` with a NUL byte are located
    // config errors. Failed on main before this change: `-weird` and `..` were accepted as volume
    // names, and a NUL in `run` passed validation (the engine failed later).
    for volume in ["-weird", "..", ".hidden", "a", "x/y", "_x"] {
        let text = ISSUE_SHAPE.replace(
            "cache_volume = \"flamenco-build-cache\"",
            &format!("cache_volume = \"{volume}\""),
        );
        let e = error_of(&text);
        assert!(
            e.starts_with("4:16: `cache_volume` "),
            "volume {volume:?} should be refused: {e}"
        );
    }
    for volume in ["flamenco-build-cache", "v1", "a.b_c-d", "0cache"] {
        let text = ISSUE_SHAPE.replace(
            "cache_volume = \"flamenco-build-cache\"",
            &format!("cache_volume = \"{volume}\""),
        );
        assert!(parse(&text).is_ok(), "volume {volume:?} is fine");
    }
    let text = ISSUE_SHAPE.replace("run = \"node build.mjs\"", "run = \"node\\u0000build.mjs\"");
    let e = error_of(&text);
    assert!(
        e.starts_with("24:7: task `webapp-static`: `run` contains a NUL byte"),
        "{e}"
    );
}

#[test]
fn validation_scales_to_twenty_thousand_tasks() {
    // Issue 10 finding 15: validation is linear in tasks and globs. Failed on main before this
    // change: validating this config took minutes (all pairs of outputs, dependency lookups in
    // a list); a chain this long also risks a recursive cycle search's stack.
    const N: usize = 20_000;
    let mut text = String::from("[toolchains.go]\nimage = \"go\"\n");
    for i in 0..N {
        // Some globs (one at the root, above every other output), most outputs literal.
        let glob = match i {
            0 => ", \"*.gen.go\"".to_string(),
            i if i % 50 == 0 => format!(", \"gen/t{i}/*.go\""),
            _ => String::new(),
        };
        text.push_str(&format!(
            "[tasks.t{i}]\ntoolchain = \"go\"\nrun = \"true\"\ninputs = [\"src/t{i}\"]\n\
             outputs = [\"out/t{i}\"{glob}]\n"
        ));
        if i > 0 {
            text.push_str(&format!("deps = [\"t{}\"]\n", i - 1));
        }
    }
    let c = parse(&text).unwrap();
    let g = Graph::new(&c).unwrap();
    let expected: Vec<String> = (0..N).map(|i| format!("t{i}")).collect();
    assert_eq!(g.order(), expected);
    assert_eq!(g.plan(&c, &["t2".into()]).unwrap(), ["t0", "t1", "t2"]);
    // A cycle at the end of the chain is still found, and one output claimed twice.
    let text = text
        .replacen("[tasks.t0]\n", "[tasks.t0]\ndeps = [\"t19999\"]\n", 1)
        .replace("\"out/t7\"", "\"out/t5/x\"");
    let e = error_of(&text);
    assert!(
        e.contains("tasks `t5` and `t7` both claim output `out/t5/x` (`out/t5`)"),
        "{e}"
    );
    let c = parse(&text.replace("\"out/t5/x\"", "\"out/t7\"")).unwrap();
    let Err(Error::Config(ds)) = Graph::new(&c) else {
        panic!("the cycle was not found");
    };
    assert!(
        ds[0]
            .message
            .starts_with("dependency cycle: t0 -> t19999 -> t19998")
    );
}

#[test]
fn the_remote_executor_is_a_grpc_url_and_local_only_a_task_setting() {
    let text = format!(
        "{}\n[remote]\nexecutor = \"grpcs://exec.example:443\"\nqueue_timeout = \"30s\"\n",
        ISSUE_SHAPE.replace("network = false", "network = false\nlocal_only = true")
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.remote.executor.as_deref(),
        Some("grpcs://exec.example:443")
    );
    assert_eq!(c.remote.queue_timeout, std::time::Duration::from_secs(30));
    assert!(c.tasks["manager"].local_only);
    for bad in ["http://exec:80", "exec:8980"] {
        let e = errors(&format!("{ISSUE_SHAPE}\n[remote]\nexecutor = \"{bad}\"\n")).join("\n");
        assert!(e.contains("not a remote executor URL"), "{e}");
    }
    let e = errors(&format!(
        "{ISSUE_SHAPE}\n[remote]\nqueue_timeout = \"soon\"\n"
    ))
    .join("\n");
    assert!(e.contains("`queue_timeout` is not a duration"), "{e}");
}
