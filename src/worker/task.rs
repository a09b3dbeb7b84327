//! A lease's `Command` back in our terms: the task the Docker executor runs. Only the shape our
//! client sends is accepted (`sh -c RUN`, a `container-image` of `reference@image-id`); anything
//! else is refused as INVALID_ARGUMENT so the engine does not retry it.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;

use super::status::Refusal;
use crate::cache::is_safe_rel;
use crate::config::{InputSet, OutputPath, Task};
use crate::fingerprint::action::{CONTAINER_IMAGE, CPUS, MEMORY};

/// What a lease runs.
#[derive(Debug, Clone)]
pub(crate) struct LeaseTask {
    pub(crate) task: Task,
    /// The `container-image` property as sent: `reference@image-id`.
    pub(crate) image: String,
    pub(crate) image_id: String,
    pub(crate) env: Vec<(String, String)>,
}

/// The task of `command`, named `name` (labels and messages), on the action's platform.
#[allow(deprecated)]
pub(crate) fn task_of(
    name: &str,
    action: &re::Action,
    command: &re::Command,
) -> Result<LeaseTask, Refusal> {
    let run = match command.arguments.as_slice() {
        [sh, c, run] if sh == "sh" && c == "-c" => run.clone(),
        other => {
            return Err(Refusal::invalid(format!(
                "this worker runs only `sh -c RUN` commands, not {other:?}"
            )));
        }
    };
    // The platform is the Action's since REAPI 2.2; older clients put it in the Command.
    let platform = action
        .platform
        .as_ref()
        .or(command.platform.as_ref())
        .cloned()
        .unwrap_or_default();
    let p = Platform::of(&platform)?;
    let (image, image_id) = split_image(&p.image)?;
    let task = Task {
        name: name.to_string(),
        description: None,
        toolchain: image.to_string(),
        deps: Vec::new(),
        run,
        workdir: workdir(&command.working_directory)?,
        inputs: InputSet::new(&[]).map_err(|(_, e)| Refusal::invalid(e))?,
        outputs: outputs(command)?,
        env: Vec::new(),
        network: p.network,
        memory: p.memory,
        cpus: p.cpus,
        local_only: false,
        span: None,
        dep_spans: Vec::new(),
        input_spans: Vec::new(),
    };
    Ok(LeaseTask {
        task,
        image_id: image_id.to_string(),
        image: p.image,
        env: command
            .environment_variables
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect(),
    })
}

/// The platform properties a worker acts on.
struct Platform {
    image: String,
    network: bool,
    memory: Option<u64>,
    cpus: Option<f64>,
}

impl Platform {
    fn of(platform: &re::Platform) -> Result<Platform, Refusal> {
        let mut p = Platform {
            image: String::new(),
            network: false,
            memory: None,
            cpus: None,
        };
        for prop in &platform.properties {
            let bad = || {
                Refusal::invalid(format!(
                    "platform property {}=`{}` is not understood",
                    prop.name, prop.value
                ))
            };
            match prop.name.as_str() {
                CONTAINER_IMAGE => p.image = prop.value.clone(),
                "OSFamily" if prop.value.eq_ignore_ascii_case("linux") => {}
                "network" => match prop.value.as_str() {
                    "none" => p.network = false,
                    "bridge" => p.network = true,
                    _ => return Err(bad()),
                },
                // The bounds a task's own settings have (config/validate/tasks.rs): Docker
                // would refuse less memory, and a NaN or infinite CPU count means nothing.
                MEMORY => match prop.value.parse::<u64>() {
                    Ok(m) if m >= 4 << 20 => p.memory = Some(m),
                    _ => return Err(bad()),
                },
                CPUS => match prop.value.parse::<f64>() {
                    Ok(c) if c > 0.0 && c <= 1024.0 => p.cpus = Some(c),
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            }
        }
        if p.image.is_empty() {
            return Err(Refusal::invalid(format!(
                "the action names no `{CONTAINER_IMAGE}` platform property"
            )));
        }
        Ok(p)
    }
}

/// `reference@image-id` → (reference, image ID); a reference may hold an `@` of its own.
fn split_image(value: &str) -> Result<(&str, &str), Refusal> {
    match value.rsplit_once('@') {
        Some((r, id)) if !r.is_empty() && id.starts_with("sha256:") => Ok((r, id)),
        _ => Err(Refusal::invalid(format!(
            "{CONTAINER_IMAGE} `{value}` is not `reference@sha256:…`"
        ))),
    }
}

fn workdir(dir: &str) -> Result<String, Refusal> {
    match dir.trim_end_matches('/') {
        "" | "." => Ok(".".into()),
        d if is_safe_rel(d) => Ok(d.to_string()),
        d => Err(Refusal::invalid(format!(
            "working directory `{d}` is not a relative path inside the input root"
        ))),
    }
}

/// The declared outputs: `output_paths` (REAPI 2.1), else the older files and folders lists.
#[allow(deprecated)]
fn outputs(command: &re::Command) -> Result<Vec<OutputPath>, Refusal> {
    let paths: Vec<&String> = if command.output_paths.is_empty() {
        command
            .output_files
            .iter()
            .chain(&command.output_directories)
            .collect()
    } else {
        command.output_paths.iter().collect()
    };
    paths
        .into_iter()
        .map(|p| OutputPath::new(p).map_err(|e| Refusal::invalid(format!("output `{p}`: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Manifest;
    use crate::fingerprint::action::{ActionSpec, task_action};
    use crate::worker::status::INVALID_ARGUMENT;
    use std::collections::BTreeMap;

    fn action(network: bool, workdir: &str) -> crate::fingerprint::action::TaskAction {
        let inputs = Manifest::new();
        let mut env = BTreeMap::new();
        env.insert("GOOS".to_string(), "linux".to_string());
        let outputs = vec!["bin/app".to_string(), "dist/**/*.js".to_string()];
        task_action(&ActionSpec {
            run: "go build -o bin/app",
            workdir,
            outputs: &outputs,
            env,
            image: "flamenco-build/go:1.23",
            image_id: "sha256:abc",
            network,
            memory: None,
            cpus: None,
            inputs: &inputs,
        })
    }

    #[test]
    fn the_limits_reach_the_task_the_container_is_made_for() {
        let inputs = Manifest::new();
        let a = task_action(&ActionSpec {
            run: "true",
            workdir: ".",
            outputs: &[],
            env: BTreeMap::new(),
            image: "go",
            image_id: "sha256:1",
            network: false,
            memory: Some(256 << 20),
            cpus: Some(0.5),
            inputs: &inputs,
        });
        let t = task_of("r", &a.action, &a.command).unwrap();
        assert_eq!(t.task.memory, Some(256 << 20));
        assert_eq!(t.task.cpus, Some(0.5));
        let bad = |name: &str, value: &str| {
            let mut act = a.action.clone();
            let props = &mut act.platform.as_mut().unwrap().properties;
            props.iter_mut().find(|p| p.name == name).unwrap().value = value.into();
            task_of("r", &act, &a.command).unwrap_err().code
        };
        for (name, value) in [
            ("memory", "12"),
            ("memory", "-1"),
            ("cpus", "NaN"),
            ("cpus", "0"),
        ] {
            assert_eq!(bad(name, value), INVALID_ARGUMENT, "{name}={value}");
        }
    }

    #[test]
    fn our_own_actions_map_back_onto_their_task() {
        let a = action(true, "web/app");
        let t = task_of("remote", &a.action, &a.command).unwrap();
        assert_eq!(t.task.run, "go build -o bin/app");
        assert_eq!(t.task.workdir, "web/app");
        assert!(t.task.network);
        assert_eq!(t.image_id, "sha256:abc");
        assert_eq!(t.image, "flamenco-build/go:1.23@sha256:abc");
        assert_eq!(t.task.toolchain, "flamenco-build/go:1.23");
        assert_eq!(t.env, vec![("GOOS".to_string(), "linux".to_string())]);
        let outs: Vec<&str> = t.task.outputs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(outs, ["bin/app", "dist/**/*.js"]);
        let a = action(false, ".");
        let t = task_of("remote", &a.action, &a.command).unwrap();
        assert_eq!(t.task.workdir, ".");
        assert!(!t.task.network);
    }

    #[test]
    fn other_shapes_are_refused_for_good() {
        let a = action(false, ".");
        let mut c = a.command.clone();
        c.arguments = vec!["make".into(), "all".into()];
        let e = task_of("remote", &a.action, &c).unwrap_err();
        assert_eq!(e.code, INVALID_ARGUMENT);
        let mut c = a.command.clone();
        c.working_directory = "../up".into();
        assert_eq!(
            task_of("r", &a.action, &c).unwrap_err().code,
            INVALID_ARGUMENT
        );
        let mut act = a.action.clone();
        act.platform.as_mut().unwrap().properties[1].value = "go:1.23".into();
        let e = task_of("r", &act, &a.command).unwrap_err();
        assert!(e.message.contains("reference@sha256"), "{}", e.message);
    }

    #[test]
    fn a_reference_with_a_digest_keeps_it() {
        assert_eq!(
            split_image("go@sha256:1@sha256:2").unwrap(),
            ("go@sha256:1", "sha256:2")
        );
    }
}
