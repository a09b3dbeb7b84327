//! The `[toolchains.*]` tables.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::Spanned;

use super::Check;
use super::values::{NAME_RULE, is_env_name, is_name};
use crate::config::Toolchain;
use crate::config::file::ToolchainFile;

pub(super) fn toolchains(
    check: &mut Check,
    file: BTreeMap<Spanned<String>, Spanned<ToolchainFile>>,
) -> BTreeMap<String, Toolchain> {
    let mut toolchains = BTreeMap::new();
    for (name, tc) in file {
        let tc = toolchain(check, name, tc.into_inner());
        toolchains.insert(tc.name.clone(), tc);
    }
    toolchains
}

fn toolchain(check: &mut Check, name: Spanned<String>, tc: ToolchainFile) -> Toolchain {
    let name_span = name.span();
    let name = name.into_inner();
    if !is_name(&name) {
        check.err(
            name_span,
            format!("`{name}` is not a valid toolchain name {NAME_RULE}"),
        );
    }
    if tc.image.get_ref().trim().is_empty() {
        check.err(
            tc.image.span(),
            format!("toolchain `{name}` has an empty `image`"),
        );
    }
    nul_bytes(check, &name, &tc);
    let env = env(check, tc.env);
    if let (Some(ctx), None) = (&tc.context, &tc.dockerfile) {
        check.err(
            ctx.span(),
            format!("toolchain `{name}` has a `context` but no `dockerfile`"),
        );
    }
    let dockerfile = tc.dockerfile.map(|d| PathBuf::from(d.into_inner()));
    let context = tc
        .context
        .map(|c| PathBuf::from(c.into_inner()))
        .or_else(|| {
            dockerfile
                .as_ref()
                .and_then(|d| d.parent().map(PathBuf::from))
        });
    Toolchain {
        name,
        image: tc.image.into_inner(),
        why: String::new(),
        dockerfile,
        context,
        build_args: tc.build_args,
        env,
        version_command: tc.version_command.map(|v| v.into_inner()),
    }
}

fn env(check: &mut Check, env: BTreeMap<Spanned<String>, String>) -> BTreeMap<String, String> {
    let mut checked = BTreeMap::new();
    for (k, v) in env {
        if !is_env_name(k.get_ref()) {
            check.err(
                k.span(),
                format!("`{}` is not a valid environment variable name", k.get_ref()),
            );
        }
        checked.insert(k.into_inner(), v);
    }
    checked
}

/// NUL bytes where the engine needs a C string (a command, an image reference, an env value).
fn nul_bytes(check: &mut Check, name: &str, tc: &ToolchainFile) {
    for (what, value) in [
        ("image", Some(&tc.image)),
        ("version_command", tc.version_command.as_ref()),
    ] {
        if let Some(v) = value.filter(|v| v.get_ref().contains('\0')) {
            let message = format!("toolchain `{name}`: `{what}` contains a NUL byte");
            check.err(v.span(), message);
        }
    }
    for (k, v) in &tc.env {
        if v.contains('\0') {
            let message = format!(
                "toolchain `{name}`: the value of `{}` contains a NUL byte",
                k.get_ref()
            );
            check.err(k.span(), message);
        }
    }
}
