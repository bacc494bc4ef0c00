//! End-to-end for `InjectBearerMiddleware`: a real token endpoint, real destinations recording
//! the `Authorization` they receive, and a reqwest client with the middleware; all on 127.0.0.1.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use common::serve;
use http::Extensions;
use http_body_util::Full;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use serde_json::json;
use tower_bearer::clock::ManualClock;
use tower_bearer::http_client::{HttpClientConfig, HyperClient};
use tower_bearer::outbound::{
    ClientCredentials, InjectBearerMiddleware, InjectError, OutboundError, RetryPolicy, SkipBearer,
    TokenClient, TokenManager,
};

const AUD: &str = "service-system";
const SCOPE: &str = "internal-service";
const T0: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// The token endpoint: `tok-1`, `tok-2`, ... or `invalid_client` when told to refuse.

struct TokenServer {
    url: String,
    requests: Arc<AtomicUsize>,
    refuse: Arc<AtomicBool>,
}

#[derive(Clone)]
struct TokenState {
    requests: Arc<AtomicUsize>,
    refuse: Arc<AtomicBool>,
}

async fn token_endpoint(State(s): State<TokenState>, body: Bytes) -> Response {
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    assert!(
        std::str::from_utf8(&body)
            .unwrap()
            .contains("grant_type=client_credentials")
    );
    if s.refuse.load(Ordering::SeqCst) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    axum::Json(json!({
        "access_token": format!("tok-{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

impl TokenServer {
    async fn start() -> Self {
        let state = TokenState {
            requests: Arc::default(),
            refuse: Arc::default(),
        };
        let app = Router::new()
            .route("/oauth2/token", post(token_endpoint))
            .with_state(state.clone());
        Self {
            url: format!("{}/oauth2/token", serve(app).await),
            requests: state.requests,
            refuse: state.refuse,
        }
    }
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Destinations.

type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Records `(path, Authorization)` of every request. `/redirect?to=URL` answers 307 to `URL`;
/// `/refuse` always answers 401 `invalid_token`; anything else answers 401 `invalid_token` to
/// the `Authorization` in `refuse`, else 200 with the request body.
struct Destination {
    base: String,
    seen: Seen,
    refuse: Arc<Mutex<Option<String>>>,
}

fn invalid_token() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            "www-authenticate",
            r#"Bearer realm="api", error="invalid_token""#,
        )],
        "",
    )
        .into_response()
}

impl Destination {
    async fn start() -> Self {
        let seen: Seen = Arc::default();
        let refuse: Arc<Mutex<Option<String>>> = Arc::default();
        let (s, r) = (seen.clone(), refuse.clone());
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                s.lock()
                    .unwrap()
                    .push((uri.path().to_owned(), auth.clone()));
                match uri.path() {
                    "/redirect" => {
                        let to = uri.query().unwrap().strip_prefix("to=").unwrap().to_owned();
                        (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response()
                    }
                    "/refuse" => invalid_token(),
                    _ if auth.is_some() && *r.lock().unwrap() == auth => invalid_token(),
                    _ => (StatusCode::OK, body).into_response(),
                }
            }
        });
        Self {
            base: serve(app).await,
            seen,
            refuse,
        }
    }
    /// The `Authorization` of every request so far.
    fn auth(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }
    fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture.

/// Runs after the injection middleware: records whether `Authorization` is marked sensitive.
#[derive(Clone, Default)]
struct SensitiveProbe(Arc<Mutex<Vec<bool>>>);

impl Middleware for SensitiveProbe {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: reqwest::Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Pin<
        Box<
            dyn Future<Output = reqwest_middleware::Result<reqwest::Response>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        if let Some(v) = req.headers().get("authorization") {
            self.0.lock().unwrap().push(v.is_sensitive());
        }
        next.run(req, extensions)
    }
}

struct Fixture {
    server: TokenServer,
    listed: Destination,
    other: Destination,
    clock: ManualClock,
    manager: TokenManager,
}

async fn setup() -> Fixture {
    let server = TokenServer::start().await;
    let (listed, other) = (Destination::start().await, Destination::start().await);
    let clock = ManualClock::new(T0);
    let source = ClientCredentials::builder("svc", "secret")
        .token_url(&server.url)
        .http_client(Arc::new(
            HyperClient::new(HttpClientConfig::default()).unwrap(),
        ))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let manager = TokenManager::builder()
        .client(
            TokenClient::new("orders", source)
                .with_audience(AUD)
                .with_scope(SCOPE)
                .with_destination(&listed.base)
                .unwrap()
                .with_skip_clients(["payments-gateway"]),
        )
        .clock(Arc::new(clock.clone()))
        .retry(RetryPolicy {
            max_attempts: 2,
            attempt_timeout: Duration::from_secs(2),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    Fixture {
        server,
        listed,
        other,
        clock,
        manager,
    }
}

fn client(middleware: InjectBearerMiddleware) -> ClientWithMiddleware {
    client_with(middleware, SensitiveProbe::default())
}

fn client_with(middleware: InjectBearerMiddleware, probe: SensitiveProbe) -> ClientWithMiddleware {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    ClientBuilder::new(http)
        .with(middleware)
        .with(probe)
        .build()
}

fn inject_error(err: reqwest_middleware::Error) -> InjectError {
    match err {
        reqwest_middleware::Error::Middleware(e) => e
            .downcast_ref::<InjectError>()
            .cloned()
            .unwrap_or_else(|| panic!("not an InjectError: {e}")),
        other @ reqwest_middleware::Error::Reqwest(_) => {
            panic!("expected a middleware error, got {other:?}")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn tokens_go_only_to_listed_destinations_through_one_client() {
    let Fixture {
        server,
        listed,
        other,
        manager,
        ..
    } = setup().await;
    let probe = SensitiveProbe::default();
    let client = client_with(InjectBearerMiddleware::new(manager), probe.clone());
    for _ in 0..3 {
        let res = client
            .get(listed.url("/internal/ping"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let res = client.get(other.url("/public")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(listed.auth(), vec![Some("Bearer tok-1".to_owned()); 3]);
    assert_eq!(other.auth(), vec![None; 3], "the token leaked");
    assert_eq!(*probe.0.lock().unwrap(), vec![true; 3], "marked sensitive");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn skip_extension_existing_header_override_and_skip_clients() {
    let Fixture {
        server,
        listed,
        manager,
        ..
    } = setup().await;
    let middleware = InjectBearerMiddleware::new(manager);
    let plain = client(middleware.clone());

    // SkipBearer skips one request.
    plain
        .get(listed.url("/skipped"))
        .with_extension(SkipBearer)
        .send()
        .await
        .unwrap();
    // An existing Authorization is left alone.
    plain
        .get(listed.url("/own"))
        .bearer_auth("mine")
        .send()
        .await
        .unwrap();
    // The next request without either gets the token.
    plain.get(listed.url("/next")).send().await.unwrap();
    // ... and with override, the token replaces an existing header.
    client(middleware.clone().with_override(true))
        .get(listed.url("/overridden"))
        .bearer_auth("mine")
        .send()
        .await
        .unwrap();
    // A client named in skip-clients gets nothing.
    client(middleware.with_client_name("payments-gateway"))
        .get(listed.url("/payments"))
        .send()
        .await
        .unwrap();

    assert_eq!(
        listed.paths(),
        ["/skipped", "/own", "/next", "/overridden", "/payments"]
    );
    assert_eq!(
        listed.auth(),
        vec![
            None,
            Some("Bearer mine".to_owned()),
            Some("Bearer tok-1".to_owned()),
            Some("Bearer tok-1".to_owned()),
            None,
        ]
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn strict_mode_refuses_unlisted_origins_before_sending() {
    let Fixture {
        server,
        listed,
        other,
        manager,
        ..
    } = setup().await;
    let strict = client(InjectBearerMiddleware::new(manager).with_strict(true));
    let err = strict.get(other.url("/public")).send().await.unwrap_err();
    match inject_error(err) {
        InjectError::UnlistedDestination { origin } => assert_eq!(origin, other.base),
        e => panic!("{e:?}"),
    }
    // Strict refuses even a request carrying its own Authorization.
    let err = strict
        .get(other.url("/public"))
        .bearer_auth("mine")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        inject_error(err),
        InjectError::UnlistedDestination { .. }
    ));
    assert!(other.auth().is_empty(), "nothing was sent");
    assert_eq!(server.requests(), 0);
    // Listed destinations still work.
    let res = strict.get(listed.url("/x")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(listed.auth(), vec![Some("Bearer tok-1".to_owned())]);
}

#[tokio::test]
async fn no_token_no_request() {
    let Fixture {
        server,
        listed,
        manager,
        ..
    } = setup().await;
    server.refuse.store(true, Ordering::SeqCst);
    let err = client(InjectBearerMiddleware::new(manager))
        .get(listed.url("/internal/ping"))
        .send()
        .await
        .unwrap_err();
    match inject_error(err) {
        InjectError::Token { client, source } => {
            assert_eq!(&*client, "orders");
            // invalid_client is permanent: one attempt.
            assert!(matches!(source, OutboundError::Fetch { attempts: 1, .. }));
        }
        e => panic!("{e:?}"),
    }
    assert!(listed.auth().is_empty(), "nothing was sent");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn reactive_mode_refreshes_a_refused_token_and_retries_once() {
    let Fixture {
        server,
        listed,
        clock,
        manager,
        ..
    } = setup().await;
    let reactive = client(InjectBearerMiddleware::new(manager).with_reactive(true));
    *listed.refuse.lock().unwrap() = Some("Bearer tok-1".into());
    let res = reactive
        .post(listed.url("/internal/orders"))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        "payload",
        "the retry carried the body"
    );
    assert_eq!(
        listed.auth(),
        vec![Some("Bearer tok-1".into()), Some("Bearer tok-2".into())]
    );
    assert_eq!(server.requests(), 2);

    // Refused again: one retry only, and at most one invalidation per slot per interval.
    *listed.refuse.lock().unwrap() = Some("Bearer tok-2".into());
    let res = reactive.get(listed.url("/x")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(listed.auth().len(), 3, "no retry within the interval");
    assert_eq!(server.requests(), 2);

    // A body that cannot be cloned (a stream) is not retried: the 401 comes back, and the
    // next request carries the new token.
    clock.advance(Duration::from_secs(10));
    let res = reactive
        .post(listed.url("/stream"))
        .body(reqwest::Body::wrap(Full::new(Bytes::from_static(b"once"))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(listed.auth().len(), 4);
    let res = reactive.get(listed.url("/y")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(listed.auth()[4].as_deref(), Some("Bearer tok-3"));
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn cross_origin_redirects_do_not_leak_the_token() {
    let Fixture {
        server,
        listed,
        other,
        manager,
        ..
    } = setup().await;
    let client = client(InjectBearerMiddleware::new(manager).with_reactive(true));

    // Listed → other origin: the first hop has the token, the other origin never sees it.
    let to = other.url("/landing");
    let res = client
        .get(listed.url(&format!("/redirect?to={to}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.url().as_str(), to);
    assert_eq!(listed.auth(), vec![Some("Bearer tok-1".to_owned())]);
    assert_eq!(other.paths(), ["/landing"]);
    assert_eq!(other.auth(), vec![None], "the token leaked on a redirect");

    // Same host, another port, back to the listed origin: once dropped, it stays dropped.
    let back = listed.url("/back");
    let res = client
        .get(listed.url(&format!(
            "/redirect?to={}",
            other.url(&format!("/redirect?to={back}"))
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(listed.auth()[1..], [Some("Bearer tok-1".to_owned()), None]);
    assert_eq!(other.auth()[1..], [None]);

    // A same-origin redirect keeps it.
    let res = client
        .get(listed.url(&format!("/redirect?to={}", listed.url("/same"))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        listed.auth()[3..],
        [
            Some("Bearer tok-1".to_owned()),
            Some("Bearer tok-1".to_owned())
        ]
    );

    // A 401 `invalid_token` from the other origin (which never saw the token) neither
    // invalidates it nor triggers a retry.
    let res = client
        .get(listed.url(&format!("/redirect?to={}", other.url("/refuse"))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(listed.auth().len(), 6);
    assert_eq!(other.auth()[2..], [None]);
    client.get(listed.url("/after")).send().await.unwrap();
    assert_eq!(listed.auth()[6].as_deref(), Some("Bearer tok-1"));
    assert_eq!(server.requests(), 1);
}
