//! `hodometer completion SHELL` and `hodometer man`: generated from the command line itself
//! (clap_complete, clap_mangen), so they always list the flags this binary has.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completion(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::command(), "hodometer", &mut script);
    write_stdout(&script)
}

/// The manual page: `hodometer` and each command, one page (roff).
pub fn man() -> anyhow::Result<ExitCode> {
    // The page's title line holds one line of version: the number (`--version` adds the rest).
    let command = super::command().version(env!("CARGO_PKG_VERSION"));
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("hodometer {}", sub.get_name());
        // Each command as its own section: its synopsis, description and options.
        writeln!(page, ".SH \"{}\"", name.to_uppercase())?;
        let section = clap_mangen::Man::new(sub.clone().bin_name(name));
        section.render_synopsis_section(&mut page)?;
        section.render_description_section(&mut page)?;
        section.render_options_section(&mut page)?;
        section.render_subcommands_section(&mut page)?;
    }
    man.render_extra_section(&mut page)?;
    man.render_version_section(&mut page)?;
    write_stdout(&page)
}

/// Writes the generated text; a reader that stopped early (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
