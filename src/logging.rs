//! Logs go to stderr (stdout carries command output), as text on a terminal and JSON otherwise;
//! the inspector, which owns the terminal, logs to a private file instead.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::private_fs::{self, Existing};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub level: tracing::Level,
    /// `None`: text on a terminal, JSON otherwise.
    pub format: Option<LogFormat>,
}

impl LogSettings {
    /// `info`, in the format that suits where logs go: what the peers (`sim`, `receive`, `demo`)
    /// use.
    pub const INFO: LogSettings = LogSettings {
        level: tracing::Level::INFO,
        format: None,
    };
}

pub fn init(settings: &LogSettings) {
    let terminal = std::io::stderr().is_terminal();
    install(settings, terminal, std::io::stderr);
}

/// Logs to a file, never to the screen: `explicit` when given (`--log-file`), else
/// `inspect.log` in the per-user state directory, else a fresh private temporary file. The file
/// is appended to, created 0600, never through a symlink (see `private_fs`). Returns the path
/// used, for the help screen.
pub fn init_to_file(settings: &LogSettings, explicit: Option<&Path>) -> std::io::Result<PathBuf> {
    let (file, path) = match explicit {
        Some(path) => (
            private_fs::open_private(path, Existing::Append)?,
            path.to_path_buf(),
        ),
        None => default_log_file()?,
    };
    install(settings, false, Mutex::new(file));
    Ok(path)
}

/// `inspect.log` in the per-user state directory; if that cannot be used (no home, read-only,
/// planted), a fresh private temporary file, so the inspector still starts.
fn default_log_file() -> std::io::Result<(std::fs::File, PathBuf)> {
    let in_state_dir = private_fs::state_dir().and_then(|dir| {
        private_fs::private_dir(&dir).ok()?;
        let path = dir.join("inspect.log");
        let file = private_fs::open_private(&path, Existing::Append).ok()?;
        Some((file, path))
    });
    match in_state_dir {
        Some(found) => Ok(found),
        None => private_fs::fresh_temp_file("hodometer-inspect-", ".log"),
    }
}

/// Text-format fields, every value (messages, `%error`, `?debug`) through the one sanitiser:
/// a log line read on a terminal must not carry a server's control or bidi characters, nor a
/// line break that forges another line.
fn sanitized_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let value = format!("{value:?}");
        let value = crate::sanitize::text(&value);
        if field.name() == "message" {
            write!(writer, "{value}")
        } else {
            write!(writer, "{field}={value}")
        }
    })
    .delimited(" ")
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
    // kube's client logs every failed request as an error of its own; hodometer reports each of
    // them, with the API server and the cause, so they would only say the same thing twice.
    let filter = EnvFilter::new(format!("warn,kube_client=off,hodometer={}", settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(terminal)
        .with_target(false);
    // A second init (tests calling into the library twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(sanitized_fields()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
