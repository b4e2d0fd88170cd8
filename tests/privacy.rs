//! Nothing that names a workload, the namespace or a model definition's secret may leave.

mod common;

use common::{SimProcess, collect, example_scenario};
use hodometer::sim::population::{Counts, Scenario};
use hodometer::sim::service::{FAKE_STORAGE_SECRET, SIM_NAMESPACE};

fn assert_clean(what: &str, text: &str, names: &[String]) {
    for forbidden in [
        FAKE_STORAGE_SECRET,
        SIM_NAMESPACE,
        "hodometer-sim-access-key",
        "gs://",
        "minio",
    ] {
        assert!(
            !text.contains(forbidden),
            "{what} contains {forbidden:?}:\n{text}"
        );
    }
    for name in names {
        assert!(
            !text.contains(name.as_str()),
            "{what} contains the name {name:?}:\n{text}"
        );
    }
}

fn names(scenario: &Scenario) -> Vec<String> {
    let mut names: Vec<String> = scenario.models.iter().map(|m| m.name.clone()).collect();
    names.extend(scenario.servers.iter().map(|s| s.name.clone()));
    names.extend(scenario.pipelines.iter().map(|p| p.name.clone()));
    names.extend(scenario.experiments.iter().map(|e| e.name.clone()));
    names
}

#[test]
fn payload_and_trace_logs_never_carry_names_namespaces_or_secrets() {
    let path = example_scenario();
    let scenario = Scenario::load(&path).expect("example scenario");
    let sim = SimProcess::start(&["--scenario", path.to_str().expect("utf-8")]);
    for output in ["json", "table"] {
        let out = collect(
            &sim.port_arg(),
            &[
                "--level",
                "feature",
                "--log-level",
                "trace",
                "--output",
                output,
            ],
            &[],
        );
        assert!(out.status.success());
        if output == "json" {
            assert_clean(
                "payload",
                &String::from_utf8_lossy(&out.stdout),
                &names(&scenario),
            );
        }
        assert_clean(
            "logs",
            &String::from_utf8_lossy(&out.stderr),
            &names(&scenario),
        );
    }
}

#[test]
fn generated_population_leaks_nothing_either() {
    let counts = Counts {
        models: 300,
        servers: 12,
        pipelines: 30,
        experiments: 6,
    };
    let (sim, scenario) = SimProcess::generated(counts, 42, false);
    let out = collect(
        &sim.port_arg(),
        &["--level", "feature", "--log-level", "trace"],
        &[],
    );
    let payload = String::from_utf8_lossy(&out.stdout);
    let event: serde_json::Value = serde_json::from_str(&payload).expect("event");
    let expected_models = scenario.models.iter().filter(|m| !m.deleted).count();
    assert_eq!(event["properties"]["model_count"], expected_models);
    assert_clean("payload", &payload, &names(&scenario));
    assert_clean(
        "logs",
        &String::from_utf8_lossy(&out.stderr),
        &names(&scenario),
    );
}
