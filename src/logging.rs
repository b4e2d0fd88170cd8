//! Logs go to stderr (stdout carries command output), as text on a terminal and JSON otherwise;
//! the inspector, which owns the terminal, logs to a file instead.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

pub fn init(settings: &LogSettings) {
    let terminal = std::io::stderr().is_terminal();
    install(settings, terminal, std::io::stderr);
}

/// Logs to `path` (appending), never to the screen.
pub fn init_to_file(settings: &LogSettings, path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    install(settings, false, Mutex::new(file));
    Ok(())
}

fn install<W>(settings: &LogSettings, terminal: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let format = settings.format.unwrap_or(if terminal {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    // Our own level applies to hodometer; dependencies only speak up when something is wrong.
    let filter = EnvFilter::new(format!("warn,hodometer={}", settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(terminal)
        .with_target(false);
    // A second init (tests calling into the library twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
