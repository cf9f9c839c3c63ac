//! `api`: the social-signin web tier. With `worker.embedded = true` (the default) it
//! also runs the worker in-process; operators set it to false and run `worker`s.

use std::path::PathBuf;

use api::startup::Application;
use clap::Parser;
use worker::{config::Settings, shutdown, telemetry};

/// mimalloc instead of glibc's malloc: allocation was a sixth of the api's CPU
/// under load, much of it glibc's consolidation and free-list work
/// (docs/benchmarks.md, eleventh sitting).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serve social-signin.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (default: `signin.toml` when present).
    #[arg(long, env = "SIGNIN_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Operator commands against the configured database.
    #[command(subcommand)]
    Admin(api::admin::AdminCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    let _logs = telemetry::init(settings.log.format);
    if let Some(Command::Admin(command)) = cli.command {
        return api::admin::run(settings, command).await;
    }
    let app = Application::build(settings).await?;
    app.run(shutdown::signal()).await
}
