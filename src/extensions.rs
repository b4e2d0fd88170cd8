//! Extensions: static facts an operator supplies (a team, an environment, a platform flavour),
//! read from a directory of files (a mounted ConfigMap), `HODOMETER_EXTENSIONS` and
//! `--extension`, validated with every problem reported at once, and looked over by a privacy
//! guard that warns about values that look like names the privacy promise keeps inside.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::Path;

use crate::metrics::{Extension, ExtensionSource, Level, METRICS, Suspicion};
use crate::validate::Checker;

pub const MAX_EXTENSIONS: usize = 32;
pub const MAX_VALUE_BYTES: usize = 256;
pub const MAX_KEY_CHARS: usize = 63;
/// A file larger than this cannot hold a valid value, even with surrounding blanks; reading
/// stops there.
const MAX_FILE_BYTES: u64 = 4096;

pub const DIR_SETTING: &str = "--extensions-dir (HODOMETER_EXTENSIONS_DIR)";
pub const LIST_SETTING: &str = "HODOMETER_EXTENSIONS";
pub const FLAG_SETTING: &str = "--extension";
const ALL_SETTINGS: &str = "--extensions-dir, HODOMETER_EXTENSIONS and --extension";

/// An extension as written, before the sources are merged.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Given {
    key: String,
    level: Level,
    value: String,
}

/// Reads and validates every source, later ones winning: the directory, then
/// `HODOMETER_EXTENSIONS`, then each `--extension` in order. Every problem is recorded in `c`;
/// `None` if any was found. The result is sorted by key.
pub fn check(
    dir: Option<&Path>,
    list: Option<&str>,
    flags: &[String],
    c: &mut Checker,
) -> Option<Vec<Extension>> {
    // Each entry as checked (`None`: a problem, already recorded), in the order they apply.
    let mut entries: Vec<(Option<Given>, ExtensionSource)> = Vec::new();
    if let Some(dir) = dir {
        entries.extend(
            read_dir(dir, c)
                .into_iter()
                .map(|g| (g, ExtensionSource::Dir)),
        );
    }
    // An empty variable (or entry) is how a manifest leaves it unset.
    for entry in list
        .unwrap_or("")
        .split(',')
        .filter(|e| !e.trim().is_empty())
    {
        entries.push((check_entry(LIST_SETTING, entry, c), ExtensionSource::Env));
    }
    for entry in flags {
        entries.push((check_entry(FLAG_SETTING, entry, c), ExtensionSource::Flag));
    }
    let mut merged: BTreeMap<String, Extension> = BTreeMap::new();
    let mut all_valid = true;
    for (given, source) in entries {
        let Some(Given { key, level, value }) = given else {
            all_valid = false;
            continue;
        };
        let extension = Extension {
            key: key.clone(),
            level,
            value,
            source,
            suspicions: Vec::new(),
        };
        merged.insert(key, extension);
    }
    let count = merged.len();
    c.check(ALL_SETTINGS, &format!("{count} extensions"), |_| {
        if count > MAX_EXTENSIONS {
            Err(format!("at most {MAX_EXTENSIONS} extensions are allowed"))
        } else {
            Ok(())
        }
    })?;
    all_valid.then(|| merged.into_values().collect())
}

/// `key[@level]=value`, as `HODOMETER_EXTENSIONS` and `--extension` take it; the key's and the
/// value's problems are reported separately, so both show at once.
fn check_entry(setting: &'static str, entry: &str, c: &mut Checker) -> Option<Given> {
    let Some((spec, value)) = entry.split_once('=') else {
        return c.check(setting, entry, |_| {
            Err("expected key=value (or key@level=value)".to_string())
        });
    };
    let key = c.check(setting, entry, |_| parse_key_spec(spec));
    let value = c.check(setting, entry, |_| parse_value(value));
    let (key, level) = key?;
    Some(Given {
        key,
        level,
        value: value?,
    })
}

/// One extension per file: the file name is `key` or `key@level`, the content is the value.
/// Names starting with a dot are skipped: hidden files, and the `..data` link and timestamped
/// directory through which a mounted ConfigMap swaps its content at once.
///
/// Only a directory nobody else can change is read (see [`trusted_dir`]), and only entries that
/// resolve inside it (as a ConfigMap's links through `..data` do): a link another user planted
/// towards a file of ours would otherwise be read, shown and published.
fn read_dir(dir: &Path, c: &mut Checker) -> Vec<Option<Given>> {
    let shown = dir.display().to_string();
    let Some((real_dir, entries)) = c.check(DIR_SETTING, &shown, |_| {
        let real_dir = trusted_dir(dir)?;
        let entries =
            std::fs::read_dir(&real_dir).map_err(|e| format!("cannot read the directory: {e}"))?;
        Ok::<_, String>((real_dir, entries))
    }) else {
        return vec![None];
    };
    let mut read = Vec::new();
    let mut paths = Vec::new();
    for entry in entries {
        let listed = c.check(DIR_SETTING, &shown, |_| {
            entry.map_err(|e| format!("cannot list the directory: {e}"))
        });
        match listed {
            Some(entry) => paths.push(entry.path()),
            None => read.push(None),
        }
    }
    // The listing order is the file system's; sorting keeps the report stable.
    paths.sort();
    for path in paths {
        let shown = path.display().to_string();
        let Some(file_name) = path.file_name() else {
            continue;
        };
        if file_name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let name = file_name.to_str();
        let Some(name) = c.check(DIR_SETTING, &shown, |_| {
            name.ok_or_else(|| "the file name is not UTF-8".to_string())
        }) else {
            read.push(None);
            continue;
        };
        let spec = c.check(DIR_SETTING, &shown, |_| parse_key_spec(name));
        let value = c.check(DIR_SETTING, &shown, |_| read_value(&path, &real_dir));
        let (Some((key, level)), Some(value)) = (spec, value) else {
            read.push(None);
            continue;
        };
        let twice = read.iter().flatten().any(|g: &Given| g.key == key);
        let unique = c.check(DIR_SETTING, &shown, |_| {
            if twice {
                Err(format!("the key {key} is given by two files"))
            } else {
                Ok(())
            }
        });
        read.push(unique.map(|()| Given { key, level, value }));
    }
    read
}

/// The directory's real path, when nobody but its owner (this user or root) can change it, or
/// it is on a read-only mount (a ConfigMap volume: a world-writable directory mounted
/// read-only).
fn trusted_dir(dir: &Path) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(dir).map_err(|e| format!("cannot read the directory: {e}"))?;
    let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read the directory: {e}"))?;
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let owned = meta.uid() == me || meta.uid() == 0;
    let writable_by_others = meta.mode() & 0o022 != 0;
    if (owned && !writable_by_others) || read_only_mount(&real) {
        return Ok(real);
    }
    Err(format!(
        "the directory belongs to uid {} with mode {:04o}: only a directory of this user (uid \
         {me}) or root that no one else may write, or a read-only mount, is read",
        meta.uid(),
        meta.mode() & 0o7777
    ))
}

fn read_only_mount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(name) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path and a zeroed statvfs for the kernel to fill.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::statvfs(name.as_ptr(), &mut stat) };
    done == 0 && stat.f_flag & libc::ST_RDONLY != 0
}

/// A file's content as a value. A symbolic link (as a mounted ConfigMap's keys are) is followed
/// only when it resolves inside `dir` (the directory's real path); a FIFO or device is refused
/// without blocking on it.
fn read_value(path: &Path, dir: &Path) -> Result<String, String> {
    let real = std::fs::canonicalize(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !real.starts_with(dir) {
        return Err(format!(
            "it resolves to {}, outside the directory: refusing to read it",
            real.display()
        ));
    }
    let file = crate::private_fs::open_regular_following(&real, false).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            "not a regular file: each extension is one file".to_string()
        } else {
            format!("cannot read it: {e}")
        }
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("the value is longer than {MAX_VALUE_BYTES} bytes"));
    }
    let text = String::from_utf8(bytes).map_err(|_| "the value is not valid UTF-8".to_string())?;
    parse_value(&text)
}

/// `key` or `key@level`: the key as the event names it (after `ext.`) and its level.
pub fn parse_key_spec(spec: &str) -> Result<(String, Level), String> {
    let (key, level) = match spec.trim().split_once('@') {
        Some((key, level)) => (key, parse_extension_level(level)?),
        None => (spec.trim(), Level::Cluster),
    };
    parse_key(key)?;
    Ok((key.to_string(), level))
}

fn parse_extension_level(text: &str) -> Result<Level, String> {
    match Level::parse(text) {
        Some(Level::Off) => Err("level off would never share it: leave the extension out".into()),
        Some(level) => Ok(level),
        None => Err(format!(
            "unknown level {text:?} after @: expected cluster, resource or feature"
        )),
    }
}

/// `[a-z0-9][a-z0-9_.-]{0,62}`, and not the name of a metric.
pub fn parse_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
    if !first_ok || !rest_ok || key.len() > MAX_KEY_CHARS {
        return Err(format!(
            "the key {key:?} is not valid: lower-case letters, digits, '_', '.' and '-', starting \
             with a letter or digit, at most {MAX_KEY_CHARS} characters"
        ));
    }
    if METRICS.iter().any(|m| m.name == key) {
        return Err(format!(
            "the key {key:?} is the name of a metric: choose another"
        ));
    }
    Ok(())
}

/// Blanks around the value are dropped (a ConfigMap value usually ends with a newline); what is
/// left must be non-empty, at most 256 bytes and free of control characters.
pub fn parse_value(text: &str) -> Result<String, String> {
    let value = text.trim();
    if value.is_empty() {
        Err("the value is empty".into())
    } else if value.len() > MAX_VALUE_BYTES {
        Err(format!("the value is longer than {MAX_VALUE_BYTES} bytes"))
    } else if value.chars().any(char::is_control) {
        Err("the value contains a control character".into())
    } else {
        Ok(value.to_string())
    }
}

/// The extensions with what the privacy guard notices about each value, given the namespace
/// the collection read.
pub fn guarded(extensions: &[Extension], namespace: &str) -> Vec<Extension> {
    extensions
        .iter()
        .map(|ext| Extension {
            suspicions: suspicions(&ext.value, namespace),
            ..ext.clone()
        })
        .collect()
}

/// Logs what the privacy guard noticed: a warning per suspicion, naming the extension but not
/// its value.
pub fn log_warnings(extensions: &[Extension]) {
    for warning in extensions.iter().flat_map(Extension::warnings) {
        tracing::warn!("{warning}");
    }
}

/// What in `value` looks like something that identifies a cluster, a machine or a person: each
/// kind once, in a fixed order. Heuristics that err towards warning: the operator decides.
pub fn suspicions(value: &str, namespace: &str) -> Vec<Suspicion> {
    let mut found = Vec::new();
    let is_namespace = |text: &str| !namespace.is_empty() && text.eq_ignore_ascii_case(namespace);
    if is_namespace(value.trim()) {
        found.push(Suspicion::Namespace);
    }
    for token in tokens(value) {
        let kind = if is_ipv4(token) {
            Suspicion::Ipv4Address
        } else if is_ipv6(token) {
            Suspicion::Ipv6Address
        } else if is_email(token) {
            Suspicion::EmailAddress
        } else if is_dotted_host_name(token) {
            Suspicion::HostName
        } else if is_namespace(token) {
            Suspicion::Namespace
        } else {
            continue;
        };
        found.push(kind);
    }
    found.sort();
    found.dedup();
    found
}

/// The words of a value, split at anything an address or a name cannot contain; a trailing dot
/// or colon (the end of a sentence) is not part of the word.
fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| !(c.is_alphanumeric() || ".:-_@%+".contains(c)))
        .map(|t| t.trim_end_matches(['.', ':']))
        .filter(|t| !t.is_empty())
}

fn is_ipv4(token: &str) -> bool {
    token.parse::<Ipv4Addr>().is_ok() || token.parse::<SocketAddrV4>().is_ok()
}

fn is_ipv6(token: &str) -> bool {
    // A zone (`fe80::1%eth0`) is not part of the address.
    let address = token.split_once('%').map_or(token, |(a, _)| a);
    address.contains(':') && address.parse::<Ipv6Addr>().is_ok()
}

fn is_email(token: &str) -> bool {
    token
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && is_dotted_host_name(domain))
}

/// At least two DNS labels and a top-level label of letters only, so version numbers such as
/// `1.2.3` or `v1.2` do not count.
fn is_dotted_host_name(token: &str) -> bool {
    let labels: Vec<&str> = token.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|top| top.len() >= 2 && top.chars().all(|c| c.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(
        dir: Option<&Path>,
        list: Option<&str>,
        flags: &[&str],
    ) -> Result<Vec<Extension>, crate::validate::ConfigErrors> {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let mut c = Checker::default();
        let extensions = check(dir, list, &flags, &mut c);
        c.finish_with(|| extensions)
    }

    fn pairs(extensions: &[Extension]) -> Vec<(&str, Level, &str, ExtensionSource)> {
        extensions
            .iter()
            .map(|e| (e.key.as_str(), e.level, e.value.as_str(), e.source))
            .collect()
    }

    #[test]
    fn later_sources_win_and_each_keeps_its_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("team"), "from-dir\n").expect("write");
        std::fs::write(dir.path().join("env@resource"), "staging").expect("write");
        std::fs::write(dir.path().join("tier"), "gold").expect("write");
        let extensions = checked(
            Some(dir.path()),
            Some("team=from-env, env=prod,flavour=k3s"),
            &["flavour@feature=eks", "flavour=gke"],
        )
        .expect("valid");
        assert_eq!(
            pairs(&extensions),
            vec![
                ("env", Level::Cluster, "prod", ExtensionSource::Env),
                ("flavour", Level::Cluster, "gke", ExtensionSource::Flag),
                ("team", Level::Cluster, "from-env", ExtensionSource::Env),
                ("tier", Level::Cluster, "gold", ExtensionSource::Dir),
            ]
        );
    }

    #[test]
    fn a_value_may_hold_equals_signs_and_an_empty_list_is_nothing() {
        let extensions = checked(None, Some(" , "), &["query@resource=a=b"]).expect("valid");
        assert_eq!(
            pairs(&extensions),
            vec![("query", Level::Resource, "a=b", ExtensionSource::Flag)]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Bad Key"), "x").expect("write");
        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        std::fs::write(dir.path().join("latin1"), [0xe9u8]).expect("write");
        std::fs::write(dir.path().join("big"), "x".repeat(5000)).expect("write");
        std::fs::write(dir.path().join("dup"), "a").expect("write");
        std::fs::write(dir.path().join("dup@feature"), "b").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let errors = checked(
            Some(dir.path()),
            Some("node_count=3,noequals,ok@off=1"),
            &[
                "long=".to_string().as_str(),
                &format!("long2={}", "é".repeat(129)),
                "bell=a\u{7}b",
                "lvl@loud=x",
                "_x=1",
            ],
        )
        .expect_err("invalid");
        let text = errors.to_string();
        for needle in [
            "Bad Key",
            "empty",
            "not valid UTF-8",
            "longer than 256 bytes",
            "given by two files",
            "not a regular file",
            "is the name of a metric",
            "expected key=value",
            "level off would never share it",
            "control character",
            "unknown level \"loud\"",
            "\"_x\" is not valid",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        // 5 files + sub, 3 list entries, 5 flags: one problem each (`long2` is > 256 bytes).
        assert_eq!(errors.0.len(), 14, "{text}");
    }

    #[test]
    fn more_than_32_extensions_is_an_error() {
        let flags: Vec<String> = (0..=MAX_EXTENSIONS).map(|i| format!("k{i}=v")).collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let text = checked(None, None, &flags)
            .expect_err("33 is too many")
            .to_string();
        assert!(text.contains("at most 32 extensions"), "{text}");
        assert!(checked(None, None, &flags[..MAX_EXTENSIONS]).is_ok());
    }

    #[test]
    fn keys_follow_the_pattern() {
        for good in ["a", "0", "team", "a.b-c_d", &"a".repeat(63)] {
            assert!(parse_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "A",
            "-a",
            ".a",
            "a b",
            "é",
            "a/b",
            &"a".repeat(64),
            "cluster_id",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_key_spec("team@Resource"),
            Ok(("team".into(), Level::Resource))
        );
    }

    #[test]
    fn a_missing_directory_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let text = checked(Some(&missing), None, &[])
            .expect_err("missing")
            .to_string();
        assert!(text.contains("cannot read the directory"), "{text}");
        assert!(text.contains("HODOMETER_EXTENSIONS_DIR"), "{text}");
    }

    #[test]
    fn the_guard_notices_each_kind() {
        let ns = "ml-prod";
        let cases: [(&str, &[Suspicion]); 12] = [
            ("10.1.2.3", &[Suspicion::Ipv4Address]),
            ("db at 10.1.2.3:5432.", &[Suspicion::Ipv4Address]),
            ("fe80::1%eth0", &[Suspicion::Ipv6Address]),
            ("[2001:db8::7]:443", &[Suspicion::Ipv6Address]),
            ("alice@example.com", &[Suspicion::EmailAddress]),
            ("api.internal.example", &[Suspicion::HostName]),
            ("see grafana.acme.io/d", &[Suspicion::HostName]),
            ("ml-prod", &[Suspicion::Namespace]),
            ("ML-PROD", &[Suspicion::Namespace]),
            ("team ml-prod", &[Suspicion::Namespace]),
            (
                "ops@acme.com on 10.0.0.1",
                &[Suspicion::Ipv4Address, Suspicion::EmailAddress],
            ),
            ("2.9.1", &[]),
        ];
        for (value, expected) in cases {
            assert_eq!(suspicions(value, ns), expected, "{value}");
        }
        for harmless in ["v1.2", "platform-team", "eks", "12:30", "gold tier", "1.31"] {
            assert!(suspicions(harmless, ns).is_empty(), "{harmless}");
        }
    }
}
