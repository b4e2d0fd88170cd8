//! README.md must agree with the code: its metrics table is the code's table, and every option
//! and environment variable `--help` shows is documented.

use clap::CommandFactory;
use hodometer::cmd::Cli;
use hodometer::metrics::markdown_table;

const START: &str = "<!-- metrics-table:start (generated from src/metrics/table.rs; tests/readme.rs checks it) -->\n";
const END: &str = "<!-- metrics-table:end -->";

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

#[test]
fn readme_metrics_table_is_the_code_table() {
    let text = readme();
    let start = text.find(START).expect("metrics table start marker") + START.len();
    let end = text[start..].find(END).expect("metrics table end marker") + start;
    let documented = &text[start..end];
    let expected = markdown_table();
    if documented != expected {
        if std::env::var_os("UPDATE_README").is_some() {
            let updated = format!("{}{}{}", &text[..start], expected, &text[end..]);
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"), updated)
                .expect("write README");
        }
        panic!(
            "README's metrics table differs from src/metrics/table.rs; run `UPDATE_README=1 cargo test --test readme` to regenerate it.\n--- README\n{documented}\n--- code\n{expected}"
        );
    }
}

/// Whether `text` names `--long` in code: `` `--long` ``, `` `--long N` `` or
/// `` `--long` / `--other` ``; a longer flag that merely starts with it (`--kube-context` for
/// `--kube`) does not count.
fn documents_flag(text: &str, long: &str) -> bool {
    let flag = format!("`--{long}");
    text.match_indices(&flag).any(|(at, _)| {
        matches!(
            text[at + flag.len()..].chars().next(),
            Some('`' | ' ' | '/')
        )
    })
}

#[test]
fn a_flag_is_documented_only_by_its_own_name() {
    let table = "| `--kube-context` | `--tls` / `--security-protocol` | `--models N` | `--once/` |";
    assert!(!documents_flag(table, "kube"));
    assert!(documents_flag(table, "kube-context"));
    assert!(documents_flag(table, "tls"));
    assert!(documents_flag(table, "security-protocol"));
    assert!(documents_flag(table, "models"));
    assert!(documents_flag(table, "once"));
    assert!(!documents_flag(table, "model"));
    assert!(!documents_flag(table, "tls-client-key"));
    assert!(!documents_flag("`--kube", "kube"));
}

#[test]
fn every_option_and_environment_variable_is_documented() {
    let text = readme();
    let cli = Cli::command();
    for sub in cli.get_subcommands() {
        for arg in sub.get_arguments() {
            if arg.is_hide_set() {
                continue;
            }
            if let Some(long) = arg.get_long() {
                if long == "help" {
                    continue;
                }
                assert!(
                    documents_flag(&text, long),
                    "README does not document `--{long}` of `{}`",
                    sub.get_name()
                );
            }
            if let Some(env) = arg.get_env() {
                let env = format!("`{}`", env.to_string_lossy());
                assert!(text.contains(&env), "README does not document {env}");
            }
        }
    }
    assert!(
        text.contains("`DO_NOT_TRACK"),
        "README does not document DO_NOT_TRACK"
    );
}

#[test]
fn readme_names_the_test_command_ci_runs() {
    let ci =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).expect(".ci/run");
    let text = readme();
    let command = "cargo test --locked";
    assert!(text.contains(command), "README must give the test command");
    assert!(
        ci.contains(command),
        ".ci/run must run README's test command"
    );
}

#[test]
fn the_extensions_row_links_to_a_section_that_exists() {
    assert!(markdown_table().contains("](#extensions)"));
    assert!(readme().contains("\n## Extensions\n"));
}
