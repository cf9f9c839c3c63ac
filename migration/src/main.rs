//! `migration [up|down|status|fresh|refresh|reset] [-u DATABASE_URL]`: apply the
//! schema by hand, with sea-orm-migration's own command line (`migration --help`).
//! The URL is `-u`, else `DATABASE_URL`, else `SIGNIN_DATABASE_URL` (what the api
//! and worker read), else the default SQLite file.

use migration::Migrator;

fn main() {
    if std::env::var_os("DATABASE_URL").is_none() {
        let url = std::env::var("SIGNIN_DATABASE_URL")
            .unwrap_or_else(|_| "sqlite://signin.db?mode=rwc".to_owned());
        // SAFETY: the process has one thread here; the runtime starts below.
        unsafe { std::env::set_var("DATABASE_URL", url) };
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
        .block_on(sea_orm_migration::cli::run_cli(Migrator));
}
