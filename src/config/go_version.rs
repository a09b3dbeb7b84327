//! The built-in graph's Go toolchain follows the project's go.mod. Go refuses a module whose `go`
//! line is newer than itself (with `GOTOOLCHAIN=local` it cannot fetch a newer one), and new
//! go.mod syntax such as a `tool` block needs a new Go, so the image is picked by the minor
//! version go.mod asks for: the newer of its `go` and `toolchain` lines.

use std::path::Path;

use super::Config;

/// The Go minor versions `scripts/toolchain-images.sh` makes images for (`flamenco-build/go:1.N`).
pub(crate) const OLDEST_MADE: u32 = 23;
pub(crate) const NEWEST_MADE: u32 = 26;

/// go.mod is a small text file; anything much larger is not one.
const MAX_GO_MOD: u64 = 4 * 1024 * 1024;

/// What go.mod asks for: the Go version as written and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GoRequirement {
    pub(crate) minor: u32,
    /// As written, without the `go` prefix of a toolchain name: `1.26.2`.
    pub(crate) version: String,
    /// `go` or `toolchain`.
    pub(crate) directive: &'static str,
}

/// The newest Go go.mod's `go` and `toolchain` lines ask for (Go 1.x only).
pub(crate) fn required(go_mod: &str) -> Option<GoRequirement> {
    let mut best: Option<GoRequirement> = None;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let (directive, version) = match (words.next(), words.next(), words.next()) {
            (Some("go"), Some(v), None) => ("go", v),
            (Some("toolchain"), Some(v), None) => match v.strip_prefix("go") {
                Some(v) => ("toolchain", v),
                None => continue,
            },
            _ => continue,
        };
        let Some(minor) = minor_of(version) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| minor > b.minor) {
            best = Some(GoRequirement {
                minor,
                version: version.to_string(),
                directive,
            });
        }
    }
    best
}

/// The minor version of `1.N`, `1.N.P`, `1.NrcK`, `1.N.P-suffix`; None for anything else.
fn minor_of(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("1.")?;
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    digits.parse().ok()
}

/// The image for a requirement, and why: `("flamenco-build/go:1.26", "go 1.26.2 in go.mod")`.
/// Below the oldest image made, the oldest builds it (Go builds older modules).
pub(crate) fn image_for(req: &GoRequirement) -> (String, String) {
    let written = match req.directive {
        "toolchain" => format!("toolchain go{} in go.mod", req.version),
        _ => format!("go {} in go.mod", req.version),
    };
    if req.minor < OLDEST_MADE {
        return (
            format!("flamenco-build/go:1.{OLDEST_MADE}"),
            format!("{written}; 1.{OLDEST_MADE} is the oldest Go image made"),
        );
    }
    let image = format!("flamenco-build/go:1.{}", req.minor);
    if req.minor > NEWEST_MADE {
        let made =
            format!("scripts/toolchain-images.sh makes Go 1.{OLDEST_MADE} to 1.{NEWEST_MADE}");
        return (image, format!("{written}; {made}"));
    }
    (image, written)
}

/// Points the built-in graph's `go` toolchain at the image of the Go the project's go.mod asks
/// for. A go.mod that is missing, a link, too large or without a version leaves the default.
pub(crate) fn follow_go_mod(config: &mut Config) {
    let Some(tc) = config.toolchains.get_mut("go") else {
        return;
    };
    match read_go_mod(&config.root).as_deref().and_then(required) {
        Some(req) => {
            let (image, why) = image_for(&req);
            tc.image = image;
            tc.why = why;
        }
        None => tc.why = "the built-in graph's default: no Go version in go.mod".into(),
    }
}

/// The project's go.mod, when it is a regular file of the project (never through a link: nothing
/// outside the project is read).
fn read_go_mod(root: &Path) -> Option<String> {
    let path = root.join("go.mod");
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_GO_MOD {
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAMENCO_SHAPE: &str = "module projects.blender.org/studio/flamenco\n\n\
        go 1.26.2\n\nrequire (\n\tgithub.com/a/b v1.2.3\n)\n\n\
        tool (\n\tgithub.com/golang/mock/mockgen\n\tgithub.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen\n)\n";

    #[test]
    fn the_go_line_picks_the_minor_version() {
        let r = required(FLAMENCO_SHAPE).unwrap();
        assert_eq!(
            (r.minor, r.version.as_str(), r.directive),
            (26, "1.26.2", "go")
        );
        assert_eq!(
            image_for(&r),
            (
                "flamenco-build/go:1.26".to_string(),
                "go 1.26.2 in go.mod".to_string()
            )
        );
    }

    #[test]
    fn a_newer_toolchain_line_wins() {
        let r = required("module m\ngo 1.24\ntoolchain go1.25.3 // pinned\n").unwrap();
        assert_eq!(r.minor, 25);
        assert_eq!(image_for(&r).1, "toolchain go1.25.3 in go.mod");
        let r = required("module m\ngo 1.25.1\ntoolchain go1.24.0\n").unwrap();
        assert_eq!((r.minor, r.directive), (25, "go"));
    }

    #[test]
    fn versions_of_every_shape_and_none() {
        for (v, m) in [("1.26", 26), ("1.26.2", 26), ("1.27rc1", 27), ("1.9", 9)] {
            assert_eq!(minor_of(v), Some(m), "{v}");
        }
        for v in ["2.0", "1.", "1.x", "", "1.123456789012"] {
            assert_eq!(minor_of(v), None, "{v}");
        }
        assert_eq!(required("module m\ntoolchain default\n"), None);
        assert_eq!(required("module m\n// go 1.30\n"), None);
        assert_eq!(required("go 1.22 extra\n"), None);
    }

    #[test]
    fn an_old_go_line_takes_the_oldest_image() {
        let r = required("go 1.21\n").unwrap();
        let (image, why) = image_for(&r);
        assert_eq!(image, "flamenco-build/go:1.23");
        assert!(why.starts_with("go 1.21 in go.mod"), "{why}");
    }
}

#[cfg(test)]
mod load_tests {
    use crate::config::Config;

    fn load_with_go_mod(text: Option<&str>) -> Config {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = text {
            std::fs::write(dir.path().join("go.mod"), text).unwrap();
        }
        Config::load(dir.path()).unwrap()
    }

    #[test]
    fn the_builtin_graph_takes_the_go_image_go_mod_asks_for() {
        let c = load_with_go_mod(Some(
            "module m\n\ngo 1.26.2\n\ntool (\n\tgithub.com/a/b\n)\n",
        ));
        let go = &c.toolchains["go"];
        assert_eq!(go.image, "flamenco-build/go:1.26");
        assert_eq!(go.why, "go 1.26.2 in go.mod");
        let text = crate::graph::Graph::new(&c).unwrap().to_text(&c);
        assert!(
            text.contains("image: flamenco-build/go:1.26 (go 1.26.2 in go.mod)"),
            "{text}"
        );
        assert_eq!(c.toolchains["java"].image, "flamenco-build/java:11");
    }

    #[test]
    fn without_a_go_mod_the_default_stays_and_says_why() {
        let c = load_with_go_mod(None);
        assert_eq!(c.toolchains["go"].image, "flamenco-build/go:1.23");
        assert!(c.toolchains["go"].why.contains("no Go version in go.mod"));
    }

    #[test]
    fn a_go_mod_link_is_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("go.mod"), "go 1.25\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("go.mod"), dir.path().join("go.mod"))
            .unwrap();
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(c.toolchains["go"].image, "flamenco-build/go:1.23");
    }

    #[test]
    fn a_project_file_pins_its_own_image_whatever_go_mod_says() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("go.mod"), "go 1.26.2\n").unwrap();
        let toml = "[toolchains.go]\nimage = \"my/go:1.22\"\n[tasks.t]\ntoolchain = \"go\"\nrun = \"true\"\noutputs = [\"o\"]\n";
        std::fs::write(dir.path().join(crate::config::CONFIG_FILE), toml).unwrap();
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(c.toolchains["go"].image, "my/go:1.22");
        assert_eq!(c.toolchains["go"].why, "set in flamenco-build.toml");
    }
}
