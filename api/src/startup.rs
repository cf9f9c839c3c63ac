//! `Application`: binds the listener, connects and migrates the database, resolves
//! providers, and serves the route tree, with the embedded worker beside it when
//! `worker.embedded` is on. Tests build through here exactly as `main` does.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use futures::FutureExt;
use poem::{
    Endpoint, EndpointExt, Route, Server, get,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
    middleware::CookieJarManager,
    post,
    web::cookie::CookieKey,
};
use worker::{
    WorkerState,
    config::Settings,
    crypto::Keys,
    db::Database,
    jobs::JobQueue,
    metrics::MetricsListener,
    operations::OperationEvents,
    providers::{ProviderRegistry, presets},
};

use crate::{
    assets,
    demo_provider::{self, DemoProvider},
    limits::Limits,
    openapi,
    routes::{self, auth},
    state::AppState,
    tokens::TokenIssuer,
};

/// A built, not yet running, api.
pub struct Application {
    /// The port actually bound (`listen` may say 0).
    pub port: u16,
    /// Where `/metrics` is served (`metrics.listen`, which may say port 0).
    pub metrics_addr: std::net::SocketAddr,
    pub state: AppState,
    acceptor: TcpAcceptor,
    metrics: MetricsListener,
}

impl Application {
    /// Everything `main` does before serving.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        let acceptor = TcpListener::bind(settings.listen.to_string())
            .into_acceptor()
            .await
            .with_context(|| format!("listen: cannot bind {}", settings.listen))?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .context("the listener has no address")?;
        if settings.public_url.port() == Some(0) {
            settings
                .public_url
                .set_port(Some(port))
                .expect("http URLs have ports");
        }
        let settings = Arc::new(settings);
        let db = Database::connect(&settings, worker::config::Process::Api).await?;
        db.migrate().await?;
        let keys = Arc::new(Keys::load(&settings)?);
        let providers =
            Arc::new(ProviderRegistry::from_settings(&settings).context("configuring providers")?);
        providers.warm_up();
        let demo = providers.has_demo().then(|| {
            Arc::new(DemoProvider::new(
                keys.demo.clone(),
                presets::DEMO_CLIENT_ID,
                presets::DEMO_CLIENT_SECRET,
                &settings.redirect_uri("demo"),
            ))
        });
        let mut jobs = JobQueue::new(&db, settings.worker.concurrency, keys.clone());
        if settings.worker.embedded {
            jobs = jobs.run_own_jobs_in_process();
        }
        let metrics = MetricsListener::bind(settings.metrics.listen, "metrics.listen").await?;
        let events = OperationEvents::default();
        // Finishes by other processes (separate workers) wake long polls at once.
        match &db.pool {
            worker::db::DbPool::Postgres(pool) => {
                worker::finishes::listen_for_finishes(pool.clone(), events.clone());
            }
            worker::db::DbPool::Sqlite(_) if !settings.worker.embedded => {
                if let Some(file) = db.sqlite_file() {
                    worker::finishes::watch_sqlite_commits(
                        file.to_path_buf(),
                        db.reader.clone(),
                        events.clone(),
                    );
                }
            }
            worker::db::DbPool::Sqlite(_) => {}
        }
        let redis = crate::shared::Redis::from_settings(&settings)?;
        let state = AppState {
            session_cache: redis
                .clone()
                .map(crate::shared::sessions::SessionCache::new),
            db: db.conn.clone(),
            writer: db.writer.clone(),
            reader: db.reader.clone(),
            audit: worker::audit::AuditLog::start(db.writer.clone()),
            pool: db.pool.clone(),
            tokens: std::sync::Arc::new(TokenIssuer::new(&settings, &keys)?),
            limits: Arc::new(Limits::new(&settings.limits, redis)),
            hashing: worker::passwords::Hashing::new(
                settings.limits.password_hashing_concurrency(),
                worker::passwords::SLOT_WAIT,
            ),
            settings,
            providers,
            jobs,
            keys,
            events,
            demo,
        };
        Ok(Self {
            port,
            metrics_addr: metrics.addr,
            state,
            acceptor,
            metrics,
        })
    }

    /// Serves until `shutdown`, then drains: the server and the embedded worker
    /// (when on) stop together; the first to fail is reported.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let shutdown = shutdown.boxed().shared();
        let state = self.state.clone();
        tokio::spawn(
            self.metrics
                .serve(state.reader.pool().clone(), shutdown.clone()),
        );
        // Limiter maps forget addresses whose budgets refilled.
        let limits = state.limits.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                limits.forget_idle();
            }
        });
        tracing::info!(
            address = %format!("127.0.0.1:{}", self.port),
            public_url = %state.settings.public_url,
            embedded_worker = state.settings.worker.embedded,
            "api listening"
        );
        let server = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(
                routes(state.clone()),
                shutdown.clone(),
                Some(Duration::from_secs(10)),
            )
            .map(|r| r.context("the http server failed"));
        // Both run as tasks of the runtime: awaited from `main`, they would run on
        // its thread, beside the runtime's workers, and every job with them.
        let server = tokio::spawn(server).map(|run| run.context("the http server panicked")?);
        if !state.settings.worker.embedded {
            return server.await;
        }
        let worker_state = WorkerState {
            db: state.db.clone(),
            writer: state.writer.clone(),
            reader: state.reader.clone(),
            audit: state.audit.clone(),
            settings: state.settings.clone(),
            providers: state.providers.clone(),
            keys: state.keys.clone(),
            events: state.events.clone(),
        };
        let worker = worker::run(worker_state, state.jobs.clone(), shutdown);
        tokio::try_join!(server, worker).map(|_| ())
    }
}

/// The route tree with its middleware.
pub fn routes(state: AppState) -> impl Endpoint {
    let api = openapi::service(state.settings.public_base());
    let cors = crate::security::cors(&state.settings);
    let document = openapi::document(&api);
    let allowed = std::sync::Arc::new(openapi::AllowedMethods::from_spec(&document));
    let mut app = Route::new()
        .at("/", get(routes::index::index))
        .at("/favicon.ico", get(assets::favicon))
        .at("/healthz", get(routes::health::healthz))
        .at("/readyz", get(routes::health::readyz))
        .at("/.well-known/jwks.json", get(routes::jwks::jwks))
        .at(
            "/api/openapi.json",
            get(openapi::document_endpoint(document)),
        )
        .nest("/api/docs", api.swagger_ui())
        .at("/auth/:provider/login", get(auth::login::login))
        .at(
            "/auth/:provider/callback",
            get(auth::callback::callback).post(auth::callback::callback_post),
        )
        .at("/auth/:provider/one-tap", post(auth::one_tap::one_tap))
        .at("/auth/preloader", get(auth::preloader::preloader))
        .at("/auth/success", get(auth::success::success))
        .at("/auth/error", get(auth::error::error))
        .at("/auth/logout", post(auth::logout::logout))
        .nest("/static", assets::endpoint())
        // The JSON API keeps full paths (`/api/...`, `/auth/status`).
        .nest_no_strip(
            "/api",
            poem::IntoEndpoint::into_endpoint(api)
                .with_if(cors.is_some(), cors.unwrap_or_default()),
        )
        .nest_no_strip(
            "/auth/status",
            openapi::service(state.settings.public_base()),
        );
    if state.demo.is_some() {
        app = app.nest("/demo-provider", demo_provider::routes());
    }
    let cookie_key = CookieKey::derive_from(&state.keys.cookie);
    app.with(CookieJarManager::with_key(cookie_key))
        .around(move |next, req| crate::json_errors::json_errors(next, req, allowed.clone()))
        .around(crate::security::security_headers)
        .around(crate::body_limit::limit_body)
        .around(crate::request_log::log_request)
        .data(state)
}
