//! Flamenco's own task graph, used when a project has no flamenco-build.toml. It is kept as TOML so
//! that it goes through exactly the same parsing and validation as a user's file.

/// The name diagnostics about the built-in graph are reported under.
pub const SOURCE_NAME: &str = "<built-in Flamenco graph>";

/// The graph itself; see the comments at its top for how it maps onto Flamenco's build.
pub const GRAPH: &str = include_str!("flamenco.toml");
