//! `-o/--output`: one flag, the same words on every command that prints data (`json`, `yaml`,
//! `table`, as kubectl). Each command says which it offers and which is its default; YAML is
//! always a view of the JSON document the command would print, so the two never disagree. A leaf
//! module.

use clap::{Args, ValueEnum};

use crate::validate::Checker;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
    // For people; `text`, `consent show`'s old name for it, still works.
    #[value(alias = "text")]
    Table,
}

impl OutputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Yaml => "yaml",
            OutputFormat::Table => "table",
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct OutputArgs {
    /// Output format: json, yaml or table (which a command offers, and its default, are in its
    /// help).
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}

impl OutputArgs {
    /// The format asked for, else `default`; one the command does not offer is a usage error,
    /// recorded in `c`.
    pub fn check(
        &self,
        c: &mut Checker,
        offered: &[OutputFormat],
        default: OutputFormat,
    ) -> Option<OutputFormat> {
        let format = self.output.unwrap_or(default);
        c.check("--output", format.as_str(), |_| {
            if offered.contains(&format) {
                Ok(format)
            } else {
                let names: Vec<&str> = offered.iter().map(|f| f.as_str()).collect();
                Err(format!("this command prints {}", names.join(" or ")))
            }
        })
    }
}

/// `--dry-run[=client]`, as kubectl: print what would be written instead of writing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    // Write it (the same as no flag).
    None,
    // Print the object; nothing is sent to the cluster.
    Client,
}

#[derive(Clone, Debug, Args)]
pub struct DryRunArgs {
    /// Write nothing: print the object that would be written (--dry-run is --dry-run=client;
    /// none writes).
    #[arg(
        long,
        value_enum,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client",
        value_name = "STRATEGY"
    )]
    pub dry_run: Option<DryRun>,
}

impl DryRunArgs {
    pub fn is_dry_run(&self) -> bool {
        self.dry_run == Some(DryRun::Client)
    }
}

/// `json` (a JSON document) as YAML: the same document, block style.
pub fn json_to_yaml(json: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not a JSON document: {e}"))?;
    value_to_yaml(&value)
}

/// A JSON value as a YAML document, for a person's terminal: characters a terminal would obey
/// (controls, bidi, zero-width) are shown escaped by the one sanitiser, never emitted.
pub fn value_to_yaml(value: &serde_json::Value) -> Result<String, String> {
    let yaml = serde_saphyr::to_string(value).map_err(|e| format!("cannot write YAML: {e}"))?;
    Ok(crate::sanitize::lines(&yaml).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_reads_back_as_the_same_document() {
        // Strings that look like numbers, booleans or nothing stay strings.
        let json = r#"{"event":"collect metrics","properties":{"ip":"0","token":"e9","yes":"true","none":"null","n":3,"f":1.5,"b":false,"weird":"a: b # c\n- d","dollar":"$insert_id"}}"#;
        let yaml = json_to_yaml(json).expect("yaml");
        let back: serde_json::Value = serde_saphyr::from_str(&yaml).expect("parses");
        let original: serde_json::Value = serde_json::from_str(json).expect("json");
        assert_eq!(back, original, "{yaml}");
    }

    #[test]
    fn a_format_the_command_does_not_offer_is_a_usage_error() {
        let args = OutputArgs {
            output: Some(OutputFormat::Table),
        };
        let mut c = Checker::default();
        assert_eq!(
            args.check(
                &mut c,
                &[OutputFormat::Json, OutputFormat::Yaml],
                OutputFormat::Json
            ),
            None
        );
        let text = c.finish().expect_err("refused").to_string();
        assert!(text.contains("json or yaml"), "{text}");
        let none = OutputArgs { output: None };
        let mut c = Checker::default();
        assert_eq!(
            none.check(&mut c, &[OutputFormat::Json], OutputFormat::Json),
            Some(OutputFormat::Json)
        );
    }
}
