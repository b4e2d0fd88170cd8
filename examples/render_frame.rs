//! Benchmark: time to render one full inspector frame (SPEC 6) into an off-screen buffer.
//!
//!     cargo run --release --example render_frame [WIDTH HEIGHT FRAMES]   (default 160 48 2000)

use std::time::{Duration, Instant, SystemTime};

use hodometer::metrics::{Level, METRICS, Reading, Snapshot, Value, ValueType};
use hodometer::tui::app::{App, Info, TREND_SAMPLES};
use hodometer::tui::ui::render;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn main() {
    let args: Vec<u16> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (width, height) = (
        args.first().copied().unwrap_or(160),
        args.get(1).copied().unwrap_or(48),
    );
    let frames = u32::from(args.get(2).copied().unwrap_or(2000));

    // Trends on: a full sparkline's worth of changing numbers for every numeric metric.
    let snapshot = |step: u64| {
        let mut snapshot = Snapshot::unknown("benchmark");
        for m in METRICS {
            let value = match m.value_type {
                ValueType::Uuid | ValueType::Text => Value::Text(format!("{}-value", m.name)),
                ValueType::Bool => Value::Bool(true),
                ValueType::Integer => Value::Integer(12_345 + step % 7),
                ValueType::Float => Value::Float(123.5 + (step % 5) as f64),
            };
            snapshot.set(m.id, Reading::Known(value));
        }
        snapshot
    };
    let info = Info {
        cluster_id: "6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11".into(),
        scheduler: "localhost:9004".into(),
        scheduler_port_from: None,
        kube: "context bench".into(),
        kubeconfig: None,
        endpoints: vec!["http://127.0.0.1:8001/".into()],
        log_file: "/tmp/hodometer-inspect.log".into(),
        refresh_every: Duration::from_secs(5),
        do_not_track: false,
        scheduler_fixed_by: None,
    };
    let mut app = App::new(info, Level::Feature, "tok".into(), SystemTime::now());
    for step in 0..TREND_SAMPLES as u64 {
        app.on_snapshot(snapshot(step));
    }

    // The off-screen backend cannot fail to create.
    let Ok(mut terminal) = Terminal::<TestBackend>::new(TestBackend::new(width, height));
    let start = Instant::now();
    for _ in 0..frames {
        if terminal.draw(|frame| render(&app, frame)).is_err() {
            eprintln!("draw failed");
            return;
        }
    }
    let per_frame = start.elapsed() / frames;
    println!("{width}x{height}: {frames} frames, {per_frame:?} per frame");
}
