//! The files in launch/ parse and everything they reference exists: the
//! launch files (Python AST and XML, read without ROS 2), the node configs
//! (validated as `sarm run` validates them), the parameter YAML and the
//! Zenoh configs (loaded by Zenoh's own parser).

mod common;

use std::path::{Path, PathBuf};

use sarm_ros::node::config::NodeConfig;
use sarm_ros::zenoh_link::ZenohSessionConfig;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn launch() -> PathBuf {
    repo().join("launch")
}

#[test]
fn launch_files_parse_and_their_references_exist() {
    let out = common::run_python("check_launch.py", &launch());
    let files: serde_json::Map<String, Value> = serde_json::from_str(&out).unwrap();
    assert!(files.contains_key("sarm.launch.py") && files.contains_key("sarm.launch.xml"));
    for (name, info) in &files {
        let refs: Vec<&str> = info["references"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(!refs.is_empty(), "{name} references no file");
        for r in refs {
            assert!(
                launch().join(r).exists(),
                "{name} references {r}, which is missing"
            );
        }
        let args: Vec<&str> = info["arguments"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for a in ["config", "bundle", "robot_id", "transport"] {
            assert!(args.contains(&a), "{name} lacks the launch argument {a}");
        }
    }
    assert!(files["sarm.launch.py"]["functions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "generate_launch_description"));
    assert_eq!(files["sarm.launch.xml"]["root"], "launch");
}

#[test]
fn node_configs_validate_and_name_existing_files() {
    let mut n = 0;
    for entry in std::fs::read_dir(launch()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let mut cfg =
                NodeConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // Presets name bundles from the repository root, where `sarm run` is started
            // (the test's working directory is ros/).
            if let Some(p) = cfg
                .policy
                .bundle
                .as_mut()
                .filter(|p| p.is_relative() && !p.exists())
            {
                *p = repo().join(&*p);
            }
            cfg.validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let bundle = if cfg.bundle.is_absolute() {
                cfg.bundle.clone()
            } else {
                repo().join(&cfg.bundle)
            };
            assert!(
                bundle.join("bundle.toml").exists(),
                "{}: bundle {} is missing",
                path.display(),
                cfg.bundle.display()
            );
            if let Some(z) = &cfg.transport.zenoh_config {
                assert!(z.exists(), "{}: {}", path.display(), z.display());
            }
            n += 1;
        }
    }
    assert!(n >= 2, "launch/default.toml and launch/aloha.toml");
}

#[test]
fn zenoh_configs_load_and_params_yaml_parses() {
    let mut n = 0;
    for entry in std::fs::read_dir(launch().join("zenoh")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json5") {
            ZenohSessionConfig {
                file: Some(path.clone()),
                ..Default::default()
            }
            .to_config()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2);
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(launch().join("sarm_params.yaml")).unwrap())
            .unwrap();
    let params = &yaml["sarm"]["ros__parameters"];
    for k in ["config", "bundle", "robot_id", "transport"] {
        assert!(params.get(k).is_some(), "sarm_params.yaml lacks {k}");
    }
}
