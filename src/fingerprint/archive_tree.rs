//! What an archive holds, as a tree in memory: the model that its links are resolved against.
//!
//! A link's text says little: `d/o/d/o/../../..` looks two levels deep and, through `o/d -> ..`,
//! climbs out of the project. So links are resolved component by component through the links
//! the archive itself holds, never through the host file system, and must stay inside the project.

use std::collections::HashMap;
use std::path::Path;

/// One path of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir,
    File,
    Symlink(String),
}

/// Links are not followed more often than this in one resolution (the kernel's ELOOP is 40).
const MAX_HOPS: u32 = 40;

/// The paths of an archive, project-relative with `/`.
#[derive(Debug, Default)]
pub(crate) struct ArchiveTree {
    nodes: HashMap<String, Node>,
}

impl ArchiveTree {
    pub(crate) fn get(&self, rel: &str) -> Option<&Node> {
        self.nodes.get(rel)
    }

    /// Adds `rel`; refuses (with the reason) a path below a file or a link of the tree, and a
    /// path the tree holds already (a folder may be named twice).
    pub(crate) fn add(&mut self, rel: &str, node: Node) -> Result<(), String> {
        for (i, _) in rel.match_indices('/') {
            let parent = &rel[..i];
            match self.nodes.get(parent) {
                None | Some(Node::Dir) => {}
                Some(other) => return Err(stands_where_a_folder_is(other, parent)),
            }
        }
        match (self.nodes.get(rel), &node) {
            (None, _) | (Some(Node::Dir), Node::Dir) => {}
            (Some(Node::Dir), _) => {
                return Err(format!(
                    "a folder stands where a file is expected (`{rel}`)"
                ));
            }
            (Some(other), Node::Dir) => return Err(stands_where_a_folder_is(other, rel)),
            (Some(_), _) => return Err(format!("`{rel}` appears twice in the archive")),
        }
        self.nodes.insert(rel.to_string(), node);
        Ok(())
    }

    /// Where the link at `rel` with `target` leads, project-relative, following the tree's links
    /// on the way; an error when it leaves the project or loops.
    pub(crate) fn resolve_link(&self, rel: &str, target: &str) -> Result<String, String> {
        let mut at: Vec<String> = rel.split('/').map(String::from).collect();
        at.pop();
        let mut hops = 0;
        match self.walk(&mut at, target, &mut hops) {
            Ok(()) => Ok(at.join("/")),
            Err(Stop::Outside) if hops == 0 => {
                Err(format!("symlink points outside the workspace ({target})"))
            }
            Err(Stop::Outside) => Err(format!(
                "symlink points outside the workspace ({target}, followed through the archive's own links)"
            )),
            Err(Stop::Loop) => Err(format!("symlinks loop ({target})")),
        }
    }

    fn walk(&self, at: &mut Vec<String>, target: &str, hops: &mut u32) -> Result<(), Stop> {
        if target.starts_with('/') {
            return Err(Stop::Outside);
        }
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    at.pop().ok_or(Stop::Outside)?;
                }
                name => {
                    at.push(name.to_string());
                    if let Some(Node::Symlink(next)) = self.nodes.get(&at.join("/")) {
                        *hops += 1;
                        if *hops > MAX_HOPS {
                            return Err(Stop::Loop);
                        }
                        at.pop();
                        self.walk(at, next, hops)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn has_links(&self) -> bool {
        self.nodes.values().any(|n| matches!(n, Node::Symlink(_)))
    }

    /// The tree of what a folder holds (its files, folders and links, none followed), with paths
    /// relative to it: a staging folder, to see the outputs of a task together.
    pub(crate) fn of_folder(dir: &Path) -> std::io::Result<ArchiveTree> {
        let mut tree = ArchiveTree::default();
        let mut todo = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, rel)) = todo.pop() {
            for e in std::fs::read_dir(&path)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let kind = e.file_type()?;
                let node = if kind.is_dir() {
                    todo.push((e.path(), child.clone()));
                    Node::Dir
                } else if kind.is_symlink() {
                    Node::Symlink(std::fs::read_link(e.path())?.to_string_lossy().into_owned())
                } else {
                    Node::File
                };
                tree.nodes.insert(child, node);
            }
        }
        Ok(tree)
    }

    /// Checks every link of the tree (in path order); the first that leaves the project, with why.
    pub(crate) fn check_links(&self) -> Result<(), (String, String)> {
        let mut links: Vec<(&String, &String)> = self
            .nodes
            .iter()
            .filter_map(|(rel, n)| match n {
                Node::Symlink(t) => Some((rel, t)),
                _ => None,
            })
            .collect();
        links.sort();
        for (rel, target) in links {
            self.resolve_link(rel, target)
                .map_err(|why| (rel.clone(), why))?;
        }
        Ok(())
    }
}

/// Why a resolution stopped.
enum Stop {
    Outside,
    Loop,
}

fn stands_where_a_folder_is(node: &Node, rel: &str) -> String {
    let what = match node {
        Node::Symlink(_) => "a symbolic link",
        _ => "a file",
    };
    format!("{what} stands where a folder is expected (`{rel}`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, Node)]) -> ArchiveTree {
        let mut t = ArchiveTree::default();
        for (rel, n) in entries {
            t.add(rel, n.clone()).unwrap();
        }
        t
    }

    fn link(t: &str) -> Node {
        Node::Symlink(t.to_string())
    }

    #[test]
    fn links_resolve_through_the_links_of_the_tree() {
        let t = tree(&[
            ("o", Node::Dir),
            ("o/d", link("..")),
            ("o/sub", Node::Dir),
            ("o/sub/f", Node::File),
            ("o/s", link("sub")),
        ]);
        assert_eq!(t.resolve_link("o/a", "s/f").unwrap(), "o/sub/f");
        assert_eq!(t.resolve_link("o/a", "d/o/d/o/sub").unwrap(), "o/sub");
        assert_eq!(t.resolve_link("o/a", "../x/../y").unwrap(), "y");
        // The text stays inside (it looks 4 levels down, then 3 up); the resolution leaves.
        let err = t.resolve_link("o/L", "d/o/d/o/../../../etc").unwrap_err();
        assert!(err.contains("outside the workspace"), "{err}");
        assert!(t.resolve_link("o/a", "/etc").is_err());
        let looped = tree(&[("a", link("b")), ("b", link("a"))]);
        assert!(looped.check_links().unwrap_err().1.contains("loop"));
    }

    #[test]
    fn a_folder_reads_as_its_tree_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), "f").unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("a/up")).unwrap();
        let t = ArchiveTree::of_folder(dir.path()).unwrap();
        assert_eq!(t.get("a"), Some(&Node::Dir));
        assert_eq!(t.get("a/b/f"), Some(&Node::File));
        assert_eq!(t.get("a/up"), Some(&link("..")));
        assert!(t.has_links());
        assert!(t.resolve_link("x/l", "../a/up/../y").is_err());
    }

    #[test]
    fn nothing_is_added_below_a_file_or_a_link_or_twice() {
        let mut t = tree(&[("o", Node::Dir), ("o/f", Node::File), ("o/l", link("."))]);
        assert!(
            t.add("o/f/x", Node::File)
                .unwrap_err()
                .contains("a file stands")
        );
        assert!(
            t.add("o/l/x", Node::File)
                .unwrap_err()
                .contains("a symbolic link stands")
        );
        assert!(t.add("o/f", Node::File).unwrap_err().contains("twice"));
        assert!(
            t.add("o", Node::File)
                .unwrap_err()
                .contains("a folder stands")
        );
        t.add("o", Node::Dir).unwrap();
    }
}
