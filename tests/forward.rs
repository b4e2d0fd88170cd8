//! Reaching the scheduler with only a kubeconfig: the real binary opens its own port-forward
//! through the simulator's Kubernetes stand-in (Service → EndpointSlice → Ready pod → WebSocket
//! `v4.channel.k8s.io`), over loopback. The stand-in is also checked against an outside client,
//! the official Python `kubernetes` package, so our client and our stand-in cannot agree on a
//! wrong protocol.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{BIN, SimProcess, Tmux, hodometer, row};
use serde_json::Value;

const CLUSTER_ID: &str = "6f1c1a9e-3a51-4c1e-9d43-5d3b8f0b2a11";

/// `hodometer collect` with a clean environment and only `KUBECONFIG` set.
fn collect_with_kubeconfig(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut all = vec!["collect", "--cluster-id", CLUSTER_ID];
    all.extend_from_slice(args);
    hodometer(&all)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run hodometer collect")
}

/// The event's properties without what differs between two sends of one snapshot.
fn comparable(output: &Output) -> serde_json::Map<String, Value> {
    let event = common::event(output);
    let mut properties = event["properties"].as_object().expect("properties").clone();
    properties.remove("time");
    properties.remove("$insert_id");
    properties
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn collect_with_only_a_kubeconfig_forwards_and_sends_what_a_direct_address_sends() {
    let sim = SimProcess::start_with_kube(&[]);
    let kubeconfig = sim.kubeconfig.clone().expect("kubeconfig");
    let forwarded = collect_with_kubeconfig(&kubeconfig, &["--level", "feature"]);
    assert!(
        stderr(&forwarded)
            .contains("port-forward to pod seldon-scheduler-0 via context hodometer-sim"),
        "{}",
        stderr(&forwarded)
    );
    let direct = collect_with_kubeconfig(
        &kubeconfig,
        &["--level", "feature", "--scheduler-port", &sim.port_arg()],
    );
    assert!(
        stderr(&direct).contains(&format!(
            "localhost:{} (port from --scheduler-port",
            sim.port
        )),
        "an explicit address wins: {}",
        stderr(&direct)
    );
    let (forwarded, direct) = (comparable(&forwarded), comparable(&direct));
    assert!(
        forwarded["model_count"].as_u64().is_some_and(|n| n > 0),
        "the scheduler's counts came through the forward: {forwarded:?}"
    );
    assert_eq!(forwarded, direct);

    // The table says which way the scheduler was reached.
    let table = collect_with_kubeconfig(&kubeconfig, &["--output", "table"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(
        text.lines().next(),
        Some("scheduler port-forward to pod seldon-scheduler-0 via context hodometer-sim"),
        "{text}"
    );
}

#[test]
fn scheduler_forward_with_an_address_or_without_kubernetes_is_a_configuration_error() {
    let out = hodometer(&[
        "collect",
        "--scheduler",
        "forward",
        "--scheduler-port",
        "9004",
    ])
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("drop --scheduler-port"),
        "{}",
        stderr(&out)
    );
    let out = hodometer(&["collect", "--scheduler", "forward", "--no-kube"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--no-kube"), "{}", stderr(&out));
}

/// The shipped inspector Role without the rule that mentions `without`.
fn role_without(dir: &Path, without: &str) -> std::path::PathBuf {
    let role = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/k8s/inspector-role.yaml"),
    )
    .expect("inspector role");
    let doc: Value = serde_saphyr::from_str(&role).expect("yaml");
    let mut doc = doc;
    let rules = doc["rules"].as_array_mut().expect("rules");
    let before = rules.len();
    rules.retain(|rule| !rule["resources"].to_string().contains(without));
    assert_eq!(rules.len(), before - 1, "one rule grants {without}");
    let path = dir.join(format!("role-{}.json", without.replace('/', "-")));
    std::fs::write(&path, doc.to_string()).expect("write role");
    path
}

#[test]
fn a_refused_forward_names_the_permission_and_the_way_around_it_and_collect_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (without, named) in [
        ("pods/portforward", "forbidden: get pods/portforward"),
        ("services", "forbidden: get services"),
        ("endpointslices", "forbidden: list endpointslices"),
    ] {
        let role = role_without(dir.path(), without);
        let sim = SimProcess::start_with_kube(&["--kube-rbac", role.to_str().expect("utf-8")]);
        let out = collect_with_kubeconfig(sim.kubeconfig.as_ref().expect("kubeconfig"), &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{without}: {err}");
        assert!(err.contains(named), "{without}: {err}");
        assert!(
            err.contains("kubectl port-forward -n seldon-mesh svc/seldon-scheduler 9004` and pass --scheduler-port 9004"),
            "{without}: {err}"
        );
        // What could be built is still printed: the event, without the scheduler's metrics.
        let event: Value = serde_json::from_slice(&out.stdout).expect("the event is printed");
        assert!(event["properties"]["cluster_id"].is_string());
    }

    // The shipped Role is enough, and the newer API servers' `create` is granted too.
    let role = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/k8s/inspector-role.yaml");
    let sim = SimProcess::start_with_kube(&["--kube-rbac", role.to_str().expect("utf-8")]);
    let out = collect_with_kubeconfig(
        sim.kubeconfig.as_ref().expect("kubeconfig"),
        &["--level", "resource"],
    );
    assert!(comparable(&out)["model_count"].is_u64(), "{}", stderr(&out));
}

#[test]
fn the_inspector_with_only_a_kubeconfig_follows_the_forward_and_reconnects_when_the_pod_is_replaced()
 {
    let sim = SimProcess::start_with_kube(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    // A long refresh: only the forward's own watch can bring the new pod in quickly.
    let command = format!(
        "{BIN} inspect --kubeconfig {} --level resource --refresh 60s --log-file {}; echo EXITED $?; sleep 60",
        sim.kubeconfig.as_ref().expect("kubeconfig").display(),
        dir.path().join("inspect.log").display(),
    );
    let tmux = Tmux::start("forward-replaced", &command);
    let screen = tmux.wait_for("the scheduler through the forward", |s| {
        s.contains("scheduler port-forward to pod seldon-scheduler-0 via context hodometer-sim")
            && s.contains(": connected")
            && !shown(s, "model_count").is_empty()
    });
    assert!(
        shown(&screen, "model_count").parse::<u64>().is_ok(),
        "the scheduler's count through the forward: {screen}"
    );

    let status = Command::new("kill")
        .args(["-USR1", &sim.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    tmux.wait_for("reconnecting", |s| s.contains("reconnecting: "));
    // The scheduler's own line (the Kubernetes line says "connected" too), and a refresh done
    // over the new forward.
    let screen = tmux.wait_for("the replaced pod, connected and refreshed", |s| {
        s.lines().any(|line| {
            line.contains(
                "scheduler port-forward to pod seldon-scheduler-1 via context hodometer-sim",
            ) && line.contains(": connected")
        }) && !s.contains("reconnecting")
            && s.contains("refreshed")
    });
    assert!(
        shown(&screen, "model_count").parse::<u64>().is_ok(),
        "the scheduler's count through the new forward: {screen}"
    );
    tmux.keys(&["q"]);
    tmux.wait_for("the inspector to exit", |s| s.contains("EXITED 0"));
}

/// The interpreter that has the official `kubernetes` package: `HODOMETER_PYTHON` (CI sets it
/// to its venv), else `python3`. `None` when there is none; CI (`HODOMETER_REQUIRE_PYTHON_KUBERNETES`)
/// never accepts that.
fn python_with_kubernetes() -> Option<String> {
    let python = std::env::var("HODOMETER_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import kubernetes.stream"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has {
        return Some(python);
    }
    assert!(
        std::env::var_os("HODOMETER_REQUIRE_PYTHON_KUBERNETES").is_none(),
        "{python} cannot import kubernetes: .ci/run installs it (pip install kubernetes)"
    );
    None
}

/// The bridge's stdout, taken from the guarded child.
fn bridge_stdout(bridge: &mut common::KillOnDrop) -> std::process::ChildStdout {
    bridge.stdout.take().expect("stdout")
}

/// A local port served by the Python client's `portforward`: each connection gets a new
/// WebSocket forward to the pod, bytes copied both ways.
const BRIDGE: &str = r#"
import select, socket, sys, threading
from kubernetes import client, config
from kubernetes.stream import portforward

config.load_kube_config(config_file=sys.argv[1])
api = client.CoreV1Api()
pod, port = sys.argv[2], int(sys.argv[3])

def carry(conn):
    pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "seldon-mesh", ports=str(port))
    remote = pf.socket(port)
    remote.setblocking(True)
    try:
        while True:
            ready, _, _ = select.select([conn, remote], [], [])
            for source, sink in ((conn, remote), (remote, conn)):
                if source in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    sink.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()
        remote.close()
        err = pf.error(port)
        if err:
            print("forward error:", err, file=sys.stderr, flush=True)

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print("bridge listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=carry, args=(conn,), daemon=True).start()
"#;

#[test]
fn the_official_python_client_reaches_the_scheduler_through_the_stand_ins_port_forward() {
    let Some(python) = python_with_kubernetes() else {
        println!("SKIPPED: no python with the kubernetes package (pip install kubernetes)");
        return;
    };
    let sim = SimProcess::start_with_kube(&[]);
    let kubeconfig = sim.kubeconfig.clone().expect("kubeconfig");
    // Killed however the test ends.
    let mut bridge = common::KillOnDrop::spawn(
        Command::new(&python)
            .args(["-c", BRIDGE])
            .arg(&kubeconfig)
            .args(["seldon-scheduler-0", "9004"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = bridge_stdout(&mut bridge);
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    lines.read_line(&mut line).expect("bridge line");
    let port = line
        .trim()
        .strip_prefix("bridge listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected bridge output {line:?}"))
        .to_string();
    // A real gRPC client (ours, with the address given) over the Python client's forward.
    let through_python = hodometer(&[
        "collect",
        "--no-kube",
        "--level",
        "feature",
        "--cluster-id",
        CLUSTER_ID,
        "--scheduler-port",
        &port,
    ])
    .output()
    .expect("collect");
    let direct = hodometer(&[
        "collect",
        "--no-kube",
        "--level",
        "feature",
        "--cluster-id",
        CLUSTER_ID,
        "--scheduler-port",
        &sim.port_arg(),
    ])
    .output()
    .expect("collect");
    let mut bridge = bridge.into_inner();
    let _ = bridge.kill();
    let output = bridge.wait_with_output().expect("bridge");
    let (through_python, direct) = (comparable(&through_python), comparable(&direct));
    assert!(
        through_python["model_count"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{through_python:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(through_python, direct);
}

/// The Python client sees a port the pod does not serve refused on the port's error channel,
/// as a kubelet reports it.
#[test]
fn the_python_client_reads_a_refused_port_on_its_error_channel() {
    let Some(python) = python_with_kubernetes() else {
        println!("SKIPPED: no python with the kubernetes package (pip install kubernetes)");
        return;
    };
    let sim = SimProcess::start_with_kube(&[]);
    let script = r#"
import sys
from kubernetes import client, config
from kubernetes.stream import portforward
config.load_kube_config(config_file=sys.argv[1])
api = client.CoreV1Api()
pf = portforward(api.connect_get_namespaced_pod_portforward, "seldon-scheduler-0", "seldon-mesh", ports="9999")
s = pf.socket(9999)
s.settimeout(5)
try:
    s.recv(1)
except Exception:
    pass
print("ERROR:", pf.error(9999))
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(sim.kubeconfig.as_ref().expect("kubeconfig"))
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ERROR: error forwarding port 9999 to pod seldon-scheduler-0"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One kubeconfig naming two simulated clusters, `cluster-a` (current) and `cluster-b`, each
/// with its own API server and token.
fn two_cluster_kubeconfig(dir: &Path, a: &SimProcess, b: &SimProcess) -> std::path::PathBuf {
    let read = |sim: &SimProcess| {
        let text = std::fs::read_to_string(sim.kubeconfig.as_ref().expect("kubeconfig"))
            .expect("read kubeconfig");
        let doc: Value = serde_saphyr::from_str(&text).expect("kubeconfig yaml");
        (
            doc["clusters"][0]["cluster"]["server"]
                .as_str()
                .expect("server")
                .to_string(),
            doc["users"][0]["user"]["token"]
                .as_str()
                .expect("token")
                .to_string(),
        )
    };
    let ((server_a, token_a), (server_b, token_b)) = (read(a), read(b));
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "cluster-a",
        "clusters": [
            {"name": "a", "cluster": {"server": server_a}},
            {"name": "b", "cluster": {"server": server_b}},
        ],
        "contexts": [
            {"name": "cluster-a", "context": {"cluster": "a", "user": "a", "namespace": "seldon-mesh"}},
            {"name": "cluster-b", "context": {"cluster": "b", "user": "b", "namespace": "seldon-mesh"}},
        ],
        "users": [
            {"name": "a", "user": {"token": token_a}},
            {"name": "b", "user": {"token": token_b}},
        ],
    });
    let path = dir.join("kubeconfig");
    std::fs::write(&path, doc.to_string()).expect("write kubeconfig");
    let mut permissions = std::fs::metadata(&path).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    std::fs::set_permissions(&path, permissions).expect("chmod");
    path
}

/// The model count a direct `collect` reads from `sim`.
fn model_count(sim: &SimProcess) -> u64 {
    let out = hodometer(&[
        "collect",
        "--no-kube",
        "--level",
        "resource",
        "--scheduler-port",
        &sim.port_arg(),
    ])
    .output()
    .expect("collect");
    comparable(&out)["model_count"]
        .as_u64()
        .expect("model_count")
}

/// The value column of a metric's row, as the inspector draws it ("" when there is no row).
fn shown(screen: &str, metric: &str) -> String {
    let Some(row) = screen
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{metric} ")))
    else {
        return String::new();
    };
    row.split('│')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .last()
        .unwrap_or("")
        .to_string()
}

#[test]
fn switching_context_in_the_inspector_shows_the_other_clusters_counts_and_id_and_nothing_mixed() {
    let counts = |models| hodometer::sim::population::Counts {
        models,
        servers: 2,
        pipelines: 3,
        experiments: 1,
    };
    let (a, _) = SimProcess::generated(counts(11), 1, true);
    let (b, _) = SimProcess::generated(counts(37), 2, true);
    let (models_a, models_b) = (model_count(&a), model_count(&b));
    assert_ne!(models_a, models_b);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = two_cluster_kubeconfig(dir.path(), &a, &b);
    let command = format!(
        "{BIN} inspect --kubeconfig {} --level resource --refresh 60s --log-file {}; echo EXITED $?; sleep 60",
        kubeconfig.display(),
        dir.path().join("inspect.log").display(),
    );
    let tmux = Tmux::start_sized("forward-context", &command, (160, 48));
    // A capture can catch a frame half drawn: wait for the value itself.
    let on_a = tmux.wait_for("cluster A's count through its forward", |s| {
        s.contains("via context cluster-a")
            && s.contains(": connected")
            && shown(s, "model_count") == models_a.to_string()
    });
    let id_a = shown(&on_a, "cluster_id");

    tmux.keys(&["c"]);
    tmux.wait_for("the contexts", |s| {
        s.contains("switch context") && s.contains("cluster-a (in use)")
    });
    tmux.keys(&["j", "Enter"]);
    // The stand-in serves no namespace list: the namespace is typed, the context's is offered.
    tmux.wait_for("the namespace field", |s| {
        s.contains("cannot list the namespaces") && s.contains("> seldon-mesh")
    });
    tmux.keys(&["Enter"]);
    let on_b = tmux.wait_for("cluster B's count through its forward", |s| {
        s.contains("via context cluster-b")
            && s.contains(": connected")
            && s.contains("Kubernetes context cluster-b")
            && s.contains("namespace seldon-mesh")
            && shown(s, "model_count") == models_b.to_string()
            && !s.contains("collecting")
    });
    let id_b = shown(&on_b, "cluster_id");
    assert_ne!(id_a, id_b, "cluster B's event never carries cluster A's id");
    assert!(on_b.contains(&format!("cluster id {id_b}")), "{on_b}");
    assert!(
        !on_b.contains(&id_a),
        "nothing of cluster A is left on screen:\n{on_b}"
    );
    // No trend carried over from A: B's count has not "changed" from A's.
    let table_row = row(&on_b, "model_count").split('│').next().unwrap_or("");
    assert!(
        !table_row.contains('+') && !table_row.contains("ago"),
        "{on_b}"
    );

    // Back to A: its own id again.
    tmux.keys(&["c"]);
    tmux.wait_for("the contexts", |s| {
        s.contains("cluster-b (in use)") || s.contains("switch context")
    });
    tmux.keys(&["k", "Enter"]);
    tmux.wait_for("the namespace field", |s| s.contains("> seldon-mesh"));
    tmux.keys(&["Enter"]);
    let back = tmux.wait_for("cluster A again", |s| {
        s.contains("via context cluster-a")
            && s.contains(": connected")
            && shown(s, "model_count") == models_a.to_string()
            && !s.contains("collecting")
    });
    assert_eq!(shown(&back, "cluster_id"), id_a, "{back}");
    tmux.keys(&["q"]);
    tmux.wait_for("the inspector to exit", |s| s.contains("EXITED 0"));
}

#[test]
fn with_an_explicit_scheduler_address_the_switch_says_it_cannot_move_it() {
    let sim = SimProcess::start_with_kube(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "{BIN} inspect --kubeconfig {} --scheduler-port {} --refresh 60s --log-file {}; echo EXITED $?; sleep 60",
        sim.kubeconfig.as_ref().expect("kubeconfig").display(),
        sim.port,
        dir.path().join("inspect.log").display(),
    );
    let tmux = Tmux::start_sized("forward-fixed", &command, (160, 48));
    tmux.wait_for("the direct address", |s| {
        s.contains(&format!(
            "scheduler localhost:{} (port from --scheduler-port",
            sim.port
        )) && s.contains("connected")
    });
    tmux.keys(&["c"]);
    tmux.wait_for("the refusal", |s| {
        s.contains("switching the context cannot move it") && !s.contains("switch context ")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the inspector to exit", |s| s.contains("EXITED 0"));
}

#[test]
fn the_inspector_names_a_refused_forward_and_the_way_around_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let role = role_without(dir.path(), "pods/portforward");
    let sim = SimProcess::start_with_kube(&["--kube-rbac", role.to_str().expect("utf-8")]);
    let command = format!(
        "{BIN} inspect --kubeconfig {} --refresh 60s --log-file {}; echo EXITED $?; sleep 60",
        sim.kubeconfig.as_ref().expect("kubeconfig").display(),
        dir.path().join("inspect.log").display(),
    );
    let tmux = Tmux::start_sized("forward-refused", &command, (160, 48));
    tmux.wait_for("the refusal and the fallback", |s| {
        let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
        flat.contains(
            "down: port-forward refused: forbidden: get pods/portforward on \"seldon-scheduler-0\"",
        ) && flat.contains(
            "or forward by hand: `kubectl port-forward -n seldon-mesh svc/seldon-scheduler 9004`",
        )
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the inspector to exit", |s| s.contains("EXITED 0"));
}

#[test]
fn the_demo_reaches_its_scheduler_through_the_port_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let command = format!(
        "XDG_STATE_HOME={} {BIN} demo --refresh 1s; echo EXITED $?; sleep 60",
        dir.path().display()
    );
    let tmux = Tmux::start_sized("forward-demo", &command, (160, 48));
    tmux.wait_for("the demo's scheduler through the forward", |s| {
        s.contains("scheduler port-forward to pod seldon-scheduler-0 via context hodometer-demo")
            && s.contains(": connected")
            && shown(s, "model_count").parse::<u64>().is_ok()
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the demo to exit", |s| s.contains("EXITED 0"));
}

#[test]
fn mutual_tls_goes_through_the_forward_to_the_scheduler_mtls_port_as_localhost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    let kubeconfig = dir.path().join("kubeconfig");
    // Started here, its three "listening" lines read and its stdout kept open while it runs.
    let mut sim = common::KillOnDrop::spawn(
        hodometer(&[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-dir",
            tls.to_str().expect("utf-8"),
            "--kube-listen",
            "127.0.0.1:0",
            "--kubeconfig-out",
            kubeconfig.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null()),
    );
    let mut lines = BufReader::new(sim.stdout.take().expect("stdout"));
    for _ in 0..3 {
        let mut line = String::new();
        lines.read_line(&mut line).expect("a listening line");
        assert!(line.contains("listening on"), "{line}");
    }
    let file = |name: &str| tls.join(name).to_str().expect("utf-8").to_string();
    let (key, cert, ca) = (file("client.key"), file("client.crt"), file("ca.crt"));
    let out = collect_with_kubeconfig(
        &kubeconfig,
        &[
            "--level",
            "resource",
            "--tls",
            "--tls-client-key",
            &key,
            "--tls-client-cert",
            &cert,
            "--tls-client-ca",
            &ca,
        ],
    );
    assert!(
        stderr(&out).contains("port-forward to pod seldon-scheduler-0"),
        "{}",
        stderr(&out)
    );
    assert!(
        comparable(&out)["model_count"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
}
