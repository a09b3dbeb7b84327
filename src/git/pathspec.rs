//! A task's input globs as git pathspecs, so that `git log` can say when its inputs last changed.

use crate::config::InputSet;

/// `:(glob)` pathspecs (relative to the project root, where `git -C root` runs) matching what the
/// globs match: a pattern also stands for everything below it, `!pattern` becomes an
/// `:(exclude)`, and `{a,b}` (which git's globs lack) is expanded. Empty when nothing is included.
pub(crate) fn pathspecs(inputs: &InputSet) -> Vec<String> {
    let mut specs = Vec::new();
    let mut any_include = false;
    for pattern in &inputs.patterns {
        let (magic, body) = match pattern.strip_prefix('!') {
            Some(rest) => ("exclude,glob", rest),
            None => {
                any_include = true;
                ("glob", pattern.as_str())
            }
        };
        for b in expand_braces(body) {
            if !b.ends_with("**") {
                specs.push(format!(":({magic}){b}/**"));
            }
            specs.push(format!(":({magic}){b}"));
        }
    }
    if !any_include {
        specs.clear();
    }
    specs
}

/// `a{b,c{d,e}}` → `ab`, `acd`, `ace`; an escaped or unbalanced brace stays as written.
fn expand_braces(s: &str) -> Vec<String> {
    let bytes = s.as_bytes();
    let mut open = None;
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => {
                if depth == 0 {
                    open = Some(i);
                    commas.clear();
                }
                depth += 1;
            }
            b',' if depth == 1 => commas.push(i),
            b'}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let start = open.expect("an open brace");
                    let (head, tail) = (&s[..start], &s[i + 1..]);
                    let mut cuts = vec![start];
                    cuts.extend(&commas);
                    cuts.push(i);
                    let mut out = Vec::new();
                    for w in cuts.windows(2) {
                        let alt = format!("{head}{}{tail}", &s[w[0] + 1..w[1]]);
                        out.extend(expand_braces(&alt));
                    }
                    return out;
                }
            }
            _ => {}
        }
        i += 1;
    }
    vec![s.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(p: &[&str]) -> Vec<String> {
        let set = InputSet::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        pathspecs(&set)
    }

    #[test]
    fn globs_folders_and_exclusions() {
        assert_eq!(
            specs(&["go.mod", "internal/**", "!internal/**/*.gen.go"]),
            [
                ":(glob)go.mod/**",
                ":(glob)go.mod",
                ":(glob)internal/**",
                ":(exclude,glob)internal/**/*.gen.go/**",
                ":(exclude,glob)internal/**/*.gen.go",
            ]
        );
        assert!(specs(&[]).is_empty());
    }

    #[test]
    fn braces_are_expanded() {
        assert_eq!(
            expand_braces("a/{b,c{d,e}}.go"),
            ["a/b.go", "a/cd.go", "a/ce.go"]
        );
        assert_eq!(expand_braces("x{y"), ["x{y"]);
        assert_eq!(expand_braces("a\\{b,c}"), ["a\\{b,c}"]);
    }
}
