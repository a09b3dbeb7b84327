//! What a worker advertises: `OSFamily=linux` and, for every tag its engine holds (but the content
//! tags beside a toolchain's tag), a `container-image` = `{tag}@{image id}`, the value our
//! client's actions ask for. BuildGrid matches an action to a worker holding every property the
//! action names.

use bollard::query_parameters::ListImagesOptionsBuilder;

use crate::error::Result;
use crate::executor::DockerEngine;
use crate::fingerprint::action::CONTAINER_IMAGE;

/// BuildGrid matches on every subset of a worker's properties (a powerset): past this many
/// images the worker says so, since each one doubles the server's work at registration.
const MANY_IMAGES: usize = 12;

/// The device properties of a worker on `engine`, sorted, each once; only the references in
/// `only` when it names any (`--image`).
pub(crate) async fn device_properties(
    engine: &DockerEngine,
    only: &[String],
) -> Result<Vec<(String, String)>> {
    let opts = ListImagesOptionsBuilder::new().build();
    let images = engine
        .docker
        .list_images(Some(opts))
        .await
        .map_err(engine.err("listing the engine's images"))?;
    let tagged = images.into_iter().map(|i| {
        let tags = if only.is_empty() {
            without_content_tags(i.repo_tags)
        } else {
            i.repo_tags
                .into_iter()
                .filter(|t| only.contains(t))
                .collect()
        };
        (tags, i.id)
    });
    let props = properties_of(tagged);
    if props.len() > MANY_IMAGES + 1 {
        tracing::warn!(
            images = props.len() - 1,
            "this engine holds many tagged images; the server matches workers on every subset \
             of their properties (BuildGrid may take minutes to register this worker): name the \
             toolchain images with --image"
        );
    }
    Ok(props)
}

/// An image's tags without the content tags `scripts/toolchain-images.sh` gives next to a
/// toolchain's name (`go:1.23-c2e1e9741904a` beside `go:1.23`): actions name the toolchain's tag,
/// and every property offered doubles BuildGrid's work when the worker registers.
fn without_content_tags(tags: Vec<String>) -> Vec<String> {
    let is_content_of = |t: &str, alias: &str| {
        t.strip_prefix(alias)
            .and_then(|rest| rest.strip_prefix("-c"))
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    tags.iter()
        .filter(|t| !tags.iter().any(|alias| is_content_of(t, alias)))
        .cloned()
        .collect()
}

fn properties_of(images: impl Iterator<Item = (Vec<String>, String)>) -> Vec<(String, String)> {
    let mut props = vec![("OSFamily".to_string(), "linux".to_string())];
    let mut values: Vec<String> = images
        .flat_map(|(tags, id)| {
            tags.into_iter()
                .filter(|t| t != "<none>:<none>")
                .map(move |t| format!("{t}@{id}"))
        })
        .collect();
    values.sort();
    values.dedup();
    props.extend(values.into_iter().map(|v| (CONTAINER_IMAGE.to_string(), v)));
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_tags_beside_their_toolchain_tag_are_not_offered() {
        let tags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            without_content_tags(tags(&["go:1.23", "go:1.23-c2e1e9741904a", "go:x"])),
            tags(&["go:1.23", "go:x"])
        );
        // Alone, a content tag is the only name the image has: kept.
        assert_eq!(
            without_content_tags(tags(&["go:1.23-c2e1e9741904a"])),
            tags(&["go:1.23-c2e1e9741904a"])
        );
        assert_eq!(
            without_content_tags(tags(&["go:1.23", "go:1.23-cnothex"])),
            tags(&["go:1.23", "go:1.23-cnothex"])
        );
    }

    #[test]
    fn every_tag_is_an_image_property_with_its_id() {
        let images = vec![
            (
                vec!["go:1.23".to_string(), "go:latest".to_string()],
                "sha256:1".to_string(),
            ),
            (vec!["<none>:<none>".to_string()], "sha256:2".to_string()),
        ];
        let p = properties_of(images.into_iter());
        assert_eq!(
            p,
            vec![
                ("OSFamily".to_string(), "linux".to_string()),
                (CONTAINER_IMAGE.to_string(), "go:1.23@sha256:1".to_string()),
                (
                    CONTAINER_IMAGE.to_string(),
                    "go:latest@sha256:1".to_string()
                ),
            ]
        );
    }
}
