//! `api`: the social-signin web tier. With `worker.embedded = true` (the default) it
//! also runs the worker in-process; operators set it to false and run `worker`s.

use std::path::PathBuf;

use api::startup::Application;
use clap::Parser;
use worker::{config::Settings, shutdown, telemetry};

/// Serve social-signin.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (default: `signin.toml` when present).
    #[arg(long, env = "SIGNIN_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(settings.log.format);
    let app = Application::build(settings).await?;
    app.run(shutdown::signal()).await
}
