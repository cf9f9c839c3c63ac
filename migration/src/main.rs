//! `migration [up|down|status] [DATABASE_URL]`: apply the schema by hand.
//! The URL defaults to `SIGNIN_DATABASE_URL`, then the embedded default SQLite file.

use anyhow::{Context, bail};
use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::Database;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| "up".to_owned());
    let url = args
        .next()
        .or_else(|| std::env::var("SIGNIN_DATABASE_URL").ok())
        .unwrap_or_else(|| "sqlite://signin.db?mode=rwc".to_owned());
    let db = Database::connect(&url)
        .await
        .context("connecting to the database")?;
    match command.as_str() {
        "up" => Migrator::up(&db, None).await?,
        "down" => Migrator::down(&db, Some(1)).await?,
        "status" => Migrator::status(&db).await?,
        other => bail!("unknown command `{other}`: expected up, down or status"),
    }
    Ok(())
}
