//! Saying plainly that a task failed because the network could not be reached. Go, yarn, git and
//! curl each report it their own way, usually as a DNS error deep in a long line; a failed task's
//! log tail is searched for those shapes and the hosts they name.

/// One way a tool says a host could not be reached: the text just before the host's name, and
/// what it means.
struct Shape {
    before: &'static str,
    meaning: &'static str,
}

const DNS: &str = "its name did not resolve";
const SHAPES: &[Shape] = &[
    // Go: `dial tcp: lookup proxy.golang.org on 127.0.0.11:53: no such host` (or
    // `server misbehaving`, `Temporary failure in name resolution`, `i/o timeout`).
    Shape {
        before: "dial tcp: lookup ",
        meaning: DNS,
    },
    // Node (yarn, npm): `getaddrinfo ENOTFOUND registry.yarnpkg.com`, `EAI_AGAIN` when no DNS
    // server answers at all.
    Shape {
        before: "getaddrinfo ENOTFOUND ",
        meaning: DNS,
    },
    Shape {
        before: "getaddrinfo EAI_AGAIN ",
        meaning: DNS,
    },
    // git, curl: `Could not resolve host: github.com`.
    Shape {
        before: "Could not resolve host: ",
        meaning: DNS,
    },
    // Go and Node with a name that resolved but no route: `dial tcp 1.2.3.4:443: connect: network
    // is unreachable`, `connect ENETUNREACH 1.2.3.4:443`.
    Shape {
        before: "connect ENETUNREACH ",
        meaning: "no route to it",
    },
];

/// The hosts the log says could not be reached, each once, in the order first seen, with why.
pub(crate) fn unreachable(lines: &[String]) -> Vec<(String, &'static str)> {
    let mut found: Vec<(String, &'static str)> = Vec::new();
    for line in lines {
        for shape in SHAPES {
            let mut rest = line.as_str();
            while let Some(at) = rest.find(shape.before) {
                rest = &rest[at + shape.before.len()..];
                let host = host_at(rest);
                if !host.is_empty() && !found.iter().any(|(h, _)| h == host) {
                    found.push((host.to_string(), shape.meaning));
                }
            }
        }
        if line.contains("dial tcp ") && line.contains("network is unreachable") {
            let host = go_request_host(line).unwrap_or("an address");
            if !found.iter().any(|(h, _)| h == host) {
                found.push((host.to_string(), "no route to it"));
            }
        }
    }
    found
}

/// The line that ends a failed task's report when its log shows the network could not be
/// reached; None when it does not.
pub(crate) fn note(task: &str, network: bool, lines: &[String]) -> Option<String> {
    let hosts = unreachable(lines);
    if hosts.is_empty() {
        return None;
    }
    let tried: Vec<String> = hosts
        .iter()
        .take(5)
        .map(|(h, why)| format!("{h} ({why})"))
        .collect();
    let tried = tried.join(", ");
    Some(match network {
        true => format!(
            "offline: task `{task}` needs the network (network = true) and could not reach \
             {tried}; the Docker engine's containers have no working network or DNS here. \
             Build it where they do, or once online so that its downloads land in the cache volume"
        ),
        false => format!(
            "offline: task `{task}` tried to reach {tried}, but it runs without a network \
             (network = false); declare `network = true` if it must download"
        ),
    })
}

/// A host name or address at the start of `s`: up to the first character no host has.
fn host_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
        .unwrap_or(s.len());
    // `lookup proxy.golang.org on 127.0.0.11:53` stops at the space; a trailing `:` (Go's
    // `lookup host: no such host`) or a port is not part of the name.
    let host = &s[..end];
    let host = host.trim_end_matches(':');
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The host of Go's `Get "https://HOST/...":` in a line, if any.
fn go_request_host(line: &str) -> Option<&str> {
    let at = line.find("://")?;
    let rest = &line[at + 3..];
    let host = host_at(rest);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    #[test]
    fn go_module_download_without_dns() {
        let log = lines(
            "go: downloading github.com/labstack/echo/v4 v4.13.3\n\
             go: github.com/labstack/echo/v4@v4.13.3: Get \"https://proxy.golang.org/github.com/labstack/echo/v4/@v/v4.13.3.mod\": dial tcp: lookup proxy.golang.org on 127.0.0.11:53: server misbehaving\n\
             go: github.com/a/b@v1: Get \"https://proxy.golang.org/a\": dial tcp: lookup proxy.golang.org: no such host",
        );
        assert_eq!(unreachable(&log), [("proxy.golang.org".to_string(), DNS)]);
        let n = note("worker", true, &log).unwrap();
        assert!(
            n.starts_with("offline: task `worker` needs the network"),
            "{n}"
        );
        assert!(
            n.contains("proxy.golang.org (its name did not resolve)"),
            "{n}"
        );
    }

    #[test]
    fn yarn_and_git_and_no_route() {
        let log = lines(
            "error An unexpected error occurred: \"https://registry.yarnpkg.com/vue: getaddrinfo EAI_AGAIN registry.yarnpkg.com\".\n\
             fatal: unable to access 'https://github.com/x/y/': Could not resolve host: github.com\n\
             Get \"https://sum.golang.org/lookup/x\": dial tcp 142.250.1.1:443: connect: network is unreachable",
        );
        let hosts: Vec<String> = unreachable(&log).into_iter().map(|(h, _)| h).collect();
        assert_eq!(
            hosts,
            ["registry.yarnpkg.com", "github.com", "sum.golang.org"]
        );
    }

    #[test]
    fn a_task_without_network_is_told_to_declare_it() {
        let log = lines("getaddrinfo ENOTFOUND registry.npmjs.org");
        let n = note("webapp", false, &log).unwrap();
        assert!(n.contains("network = false"), "{n}");
        assert!(n.contains("registry.npmjs.org"), "{n}");
    }

    #[test]
    fn other_failures_get_no_note() {
        let log = lines("main.go:3:1: syntax error\nlookup table full\ndial tcp is fine");
        assert_eq!(note("t", true, &log), None);
        assert_eq!(note("t", true, &[]), None);
        assert_eq!(host_at(""), "");
        assert_eq!(host_at("::"), "");
    }
}
