//! `hodometer receive`: an endpoint for published events.

use std::process::ExitCode;

use crate::logging::{self, LogSettings};
pub use crate::receive::ReceiveArgs;
use crate::receive::Receiver;

pub async fn run(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    logging::init(&LogSettings::INFO);
    let (record, store) = (config.record, config.store.clone());
    let receiver = Receiver::bind(config).await?;
    super::announce(format_args!(
        "hodometer receive: listening on {}",
        receiver.local_addr()?
    ))?;
    tracing::info!(
        %record,
        store = %store.map_or_else(|| "memory".into(), |path| path.display().to_string()),
        "receiver ready"
    );
    receiver.serve(super::shutdown_signal()).await?;
    tracing::info!("receiver stopped");
    Ok(ExitCode::SUCCESS)
}
