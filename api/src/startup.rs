//! `Application`: binds the listener, connects and migrates the database, resolves
//! providers, and serves the route tree, with the embedded worker beside it when
//! `worker.embedded` is on. Tests build through here exactly as `main` does.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use futures::FutureExt;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Route, Server, get,
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
                worker::finishes::watch_sqlite_commits(
                    db.reader.get_sqlite_connection_pool().clone(),
                    db.reader.clone(),
                    events.clone(),
                );
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
        tokio::spawn(self.metrics.serve(state.reader.clone(), shutdown.clone()));
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
        .around(move |next, req| json_errors(next, req, allowed.clone()))
        .around(crate::security::security_headers)
        .around(crate::body_limit::limit_body)
        .around(log_request)
        .data(state)
}

/// JSON routes answer every error in one shape, `{"error":{"code","message"}}`,
/// including the ones poem and poem-openapi produce themselves (a body that does
/// not parse, an unknown path, a wrong method), and are never cached.
async fn json_errors<E: Endpoint>(
    next: E,
    req: poem::Request,
    allowed: std::sync::Arc<openapi::AllowedMethods>,
) -> poem::Result<poem::Response> {
    let is_json_route = crate::error::is_json_route(req.uri().path());
    // Kept for a 405's `Allow` (a `Uri` clone shares its bytes).
    let uri = req.uri().clone();
    let mut parse_code = None;
    let response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(error) => {
            parse_code = crate::error::parse_error_code(&error);
            error.into_response()
        }
    };
    if !is_json_route {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(
        poem::http::header::CACHE_CONTROL,
        poem::http::HeaderValue::from_static("no-store"),
    );
    if parts.status == poem::http::StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allowed
            .of(uri.path())
            .and_then(|a| poem::http::HeaderValue::from_str(a).ok())
    {
        parts.headers.insert(poem::http::header::ALLOW, allow);
    }
    let is_json = parts
        .headers
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if parts.status.is_success() || parts.status.is_redirection() || is_json {
        return Ok(poem::Response::from_parts(parts, body));
    }
    let text = body.into_string().await.unwrap_or_default();
    if let Some((code, message)) = parse_code.filter(|_| parts.status == 400) {
        return Ok(json_error(parts, code, message.to_owned()));
    }
    let code = match parts.status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        _ => "error",
    };
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_owned()
    } else {
        text
    };
    Ok(json_error(parts, code, message))
}

/// `parts` with the body `{"error":{"code","message"}}`.
fn json_error(mut parts: poem::ResponseParts, code: &str, message: String) -> poem::Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    parts.headers.insert(
        poem::http::header::CONTENT_TYPE,
        poem::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    parts.headers.remove(poem::http::header::CONTENT_LENGTH);
    poem::Response::from_parts(parts, poem::Body::from_json(body).unwrap_or_default())
}

/// One line per request: method, path (never the query: it carries codes and
/// state), status and latency.
async fn log_request<E: Endpoint>(next: E, req: poem::Request) -> poem::Result<poem::Response> {
    // Labels are static strings where they can be: this runs on every request.
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", http.method = method, http.path = %req.uri().path());
    let result = tracing::Instrument::instrument(next.call(req), span.clone()).await;
    let response = match result {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    let _enter = span.enter();
    let status = status_label(response.status());
    let route = route_label(&response);
    metrics::counter!("signin_http_requests_total", "method" => method, "route" => route.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("signin_http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        http.status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(response)
}

fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status as a label, without an allocation for the common ones.
fn status_label(status: poem::http::StatusCode) -> std::borrow::Cow<'static, str> {
    let common = match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        303 => "303",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        410 => "410",
        429 => "429",
        500 => "500",
        503 => "503",
        other => return std::borrow::Cow::Owned(other.to_string()),
    };
    std::borrow::Cow::Borrowed(common)
}

/// The route template poem matched (its `PathPattern`, left on the response), so
/// metric labels stay few: `:provider` becomes `{provider}`, and a request no route
/// matched is `other`.
fn route_label(response: &poem::Response) -> std::borrow::Cow<'static, str> {
    match response.data::<poem::PathPattern>() {
        Some(pattern) => std::borrow::Cow::Owned(template(&pattern.0)),
        None => std::borrow::Cow::Borrowed("other"),
    }
}

/// `/auth/:provider/login` as `/auth/{provider}/login`.
fn template(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for (i, segment) in pattern.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match segment.strip_prefix(':') {
            Some(name) => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
            None => out.push_str(segment),
        }
    }
    if out.is_empty() { "/".to_owned() } else { out }
}
