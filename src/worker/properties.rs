//! What a worker advertises: `OSFamily=linux` and, for every tag its engine holds, a
//! `container-image` = `{tag}@{image id}`, the value our client's actions ask for. BuildGrid
//! matches an action to a worker holding every property the action names.

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
        let tags = i.repo_tags.into_iter();
        let tags = tags.filter(|t| only.is_empty() || only.contains(t));
        (tags.collect(), i.id)
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
