//! `hodometer inspect`: the interactive inspector (and bare `hodometer` on a terminal).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::{CommonArgs, PublishArgs, RouteArgs};
use crate::logging;
use crate::tui::{self, InspectConfig};
use crate::validate::{Checker, ConfigErrors, parse_duration};

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub route: RouteArgs,
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Time between background refreshes (r refreshes at once).
    #[arg(long, default_value = "5s")]
    pub refresh: String,
    /// Where the inspector writes its logs (never over the screen).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

impl InspectArgs {
    pub fn validate(&self) -> Result<InspectConfig, ConfigErrors> {
        let mut c = Checker::default();
        let settings = self.common.check(&mut c, "localhost");
        let publish = self.publish.check(&mut c);
        let refresh = c.check("--refresh", &self.refresh, parse_duration);
        let mut config = c.finish_with(|| {
            Some(InspectConfig {
                settings: settings?,
                publish: publish?,
                refresh: refresh?,
                log_file: self.log_file.clone(),
            })
        })?;
        self.route.apply(&self.common, &mut config.settings)?;
        Ok(config)
    }
}

pub async fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    if let Some(code) = super::require_terminal() {
        return Ok(code);
    }
    let log_file = logging::init_to_file(&config.settings.log, config.log_file.as_deref())?;
    tui::run(config, &log_file).await?;
    Ok(ExitCode::SUCCESS)
}
