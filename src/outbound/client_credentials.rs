//! [`ClientCredentials`]: the OAuth 2.0 client credentials grant (RFC 6749 §4.4).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};

use super::error::{FetchError, OAuthError, OAuthErrorCode, sanitize};
use super::token::{AccessToken, Secret, TokenRequest, TokenSource};
use crate::clock::{SharedClock, SystemClock};
use crate::error::ConfigError;
use crate::http_client::{BoxFuture, HttpClient, HttpClientConfig, HyperClient};

/// How the client authenticates to the token endpoint (RFC 6749 §2.3.1).
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::ClientAuth;
///
/// assert_eq!(ClientAuth::default(), ClientAuth::SecretBasic);
/// assert_eq!(ClientAuth::parse("client_secret_post").unwrap(), ClientAuth::SecretPost);
/// assert!(ClientAuth::parse("private_key_jwt").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the id and secret form-urlencoded first.
    #[default]
    SecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    SecretPost,
}

impl ClientAuth {
    /// Parses `client_secret_basic` or `client_secret_post`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::ClientAuth;
    ///
    /// assert_eq!(ClientAuth::parse("client_secret_basic").unwrap(), ClientAuth::SecretBasic);
    /// assert!(ClientAuth::parse("basic").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `client-auth`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "client_secret_basic" => Ok(Self::SecretBasic),
            "client_secret_post" => Ok(Self::SecretPost),
            other => Err(ConfigError::Invalid {
                name: "client-auth",
                reason: format!(
                    "`{}`: expected client_secret_basic or client_secret_post",
                    sanitize(other, 64)
                ),
            }),
        }
    }
}

/// The form parameter that carries the audience.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::AudienceParameter;
///
/// assert_eq!(AudienceParameter::default().as_str(), "audience");
/// assert_eq!(AudienceParameter::parse("resource").unwrap(), AudienceParameter::Resource);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AudienceParameter {
    /// `audience` (Auth0-style).
    #[default]
    Audience,
    /// `resource` (RFC 8707): the value must be an absolute URI without a fragment.
    Resource,
}

impl AudienceParameter {
    /// The parameter name.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::AudienceParameter;
    ///
    /// assert_eq!(AudienceParameter::Resource.as_str(), "resource");
    /// assert_eq!(AudienceParameter::Audience.as_str(), "audience");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audience => "audience",
            Self::Resource => "resource",
        }
    }

    /// Parses `audience` or `resource`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::AudienceParameter;
    ///
    /// assert_eq!(AudienceParameter::parse("audience").unwrap(), AudienceParameter::Audience);
    /// assert!(AudienceParameter::parse("aud").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `audience-parameter`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "audience" => Ok(Self::Audience),
            "resource" => Ok(Self::Resource),
            other => Err(ConfigError::Invalid {
                name: "audience-parameter",
                reason: format!("`{}`: expected audience or resource", sanitize(other, 64)),
            }),
        }
    }
}

/// Where the token endpoint is.
#[derive(Debug, Clone)]
enum Endpoint {
    Url(Uri),
    Discovery(Arc<str>),
}

/// The client credentials grant (RFC 6749 §4.4) against one token endpoint.
///
/// POSTs `grant_type=client_credentials` (plus `scope` and the audience parameter) as
/// `application/x-www-form-urlencoded` through the crate's [`HttpClient`], authenticates with
/// [`ClientAuth`], checks `token_type` is `Bearer` (any case), reads `expires_in` (the
/// configured default lifetime when absent), and maps RFC 6749 §5.2 error bodies to
/// [`OAuthError`]. The secret never appears in `Debug` output or logs.
///
/// # Example
///
/// ```
/// use tower_bearer::outbound::{AudienceParameter, ClientAuth, ClientCredentials, TokenRequest, TokenSource};
///
/// let source = ClientCredentials::builder("orders", "s3cr3t")
///     .token_url("http://127.0.0.1:9000/oauth2/token")
///     .client_auth(ClientAuth::SecretPost)
///     .audience_parameter(AudienceParameter::Resource)
///     .build()
///     .unwrap();
/// assert!(!format!("{source:?}").contains("s3cr3t"));
/// // RFC 8707: a resource must be an absolute URI.
/// assert!(source.check_request(&TokenRequest::new("https://system.example/", "")).is_ok());
/// assert!(source.check_request(&TokenRequest::new("service-system", "")).is_err());
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    client_id: Arc<str>,
    secret: Secret,
    endpoint: Endpoint,
    auth: ClientAuth,
    audience_parameter: AudienceParameter,
    default_lifetime: Duration,
    http: Arc<dyn HttpClient>,
    clock: SharedClock,
    discovered: Mutex<Option<Uri>>,
    /// `Basic …`, built once.
    basic: Option<HeaderValue>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("ClientCredentials")
            .field("client_id", &i.client_id)
            .field("client_secret", &i.secret)
            .field("endpoint", &i.endpoint)
            .field("client_auth", &i.auth)
            .field("audience_parameter", &i.audience_parameter)
            .field("default_lifetime", &i.default_lifetime)
            .finish_non_exhaustive()
    }
}

/// Builds [`ClientCredentials`]. See [`ClientCredentials::builder`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::outbound::ClientCredentials;
///
/// let err = ClientCredentials::builder("orders", "secret").build().unwrap_err();
/// assert_eq!(err.to_string(), "missing setting: token-url or discovery");
/// let ok = ClientCredentials::builder("orders", "secret")
///     .discovery("https://auth.example")
///     .default_lifetime(Duration::from_secs(120))
///     .build();
/// assert!(ok.is_ok());
/// ```
#[must_use]
pub struct ClientCredentialsBuilder {
    client_id: String,
    secret: Secret,
    token_url: Option<String>,
    discovery: Option<String>,
    auth: ClientAuth,
    audience_parameter: AudienceParameter,
    default_lifetime: Duration,
    http: Option<Arc<dyn HttpClient>>,
    http_config: HttpClientConfig,
    clock: SharedClock,
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.secret)
            .field("token_url", &self.token_url)
            .field("discovery", &self.discovery)
            .field("client_auth", &self.auth)
            .field("audience_parameter", &self.audience_parameter)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Starts a builder for `client_id` with `client_secret`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::ClientCredentials;
    ///
    /// let source = ClientCredentials::builder("orders", "secret").token_url("https://auth.example/token").build().unwrap();
    /// assert_eq!(source.client_id(), "orders");
    /// ```
    pub fn builder(
        client_id: impl Into<String>,
        client_secret: impl Into<Arc<str>>,
    ) -> ClientCredentialsBuilder {
        ClientCredentialsBuilder {
            client_id: client_id.into(),
            secret: Secret::new(client_secret),
            token_url: None,
            discovery: None,
            auth: ClientAuth::default(),
            audience_parameter: AudienceParameter::default(),
            default_lifetime: Duration::from_secs(300),
            http: None,
            http_config: HttpClientConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The client id.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::ClientCredentials;
    ///
    /// let source = ClientCredentials::builder("billing", "secret").discovery("https://auth.example").build().unwrap();
    /// assert_eq!(source.client_id(), "billing");
    /// ```
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    async fn endpoint(inner: &Inner) -> Result<Uri, FetchError> {
        match &inner.endpoint {
            Endpoint::Url(uri) => Ok(uri.clone()),
            Endpoint::Discovery(issuer) => {
                if let Some(uri) = lock(&inner.discovered).clone() {
                    return Ok(uri);
                }
                let uri = discover(&*inner.http, issuer).await?;
                *lock(&inner.discovered) = Some(uri.clone());
                Ok(uri)
            }
        }
    }

    async fn fetch_inner(inner: Arc<Inner>, req: TokenRequest) -> Result<AccessToken, FetchError> {
        check_audience(inner.audience_parameter, &req).map_err(FetchError::Config)?;
        let uri = Self::endpoint(&inner).await?;
        let mut form = String::with_capacity(128);
        push_pair(&mut form, "grant_type", "client_credentials");
        if let Some(scope) = req.scope() {
            push_pair(&mut form, "scope", scope);
        }
        if let Some(audience) = req.audience() {
            push_pair(&mut form, inner.audience_parameter.as_str(), audience);
        }
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        match inner.auth {
            ClientAuth::SecretBasic => {
                if let Some(basic) = &inner.basic {
                    builder = builder.header(header::AUTHORIZATION, basic.clone());
                }
            }
            ClientAuth::SecretPost => {
                push_pair(&mut form, "client_id", &inner.client_id);
                push_pair(&mut form, "client_secret", inner.secret.expose());
            }
        }
        let request = builder
            .body(Bytes::from(form))
            .map_err(|e| FetchError::Config(e.to_string()))?;
        let sent_at = inner.clock.now_unix();
        let response = inner.http.send(request).await.map_err(FetchError::Http)?;
        parse_token_response(&response, sent_at, inner.default_lifetime)
    }
}

impl ClientCredentialsBuilder {
    /// The token endpoint URL (`token-url`).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use http::{Request, Response, Uri};
    /// # use tower_bearer::error::{ConfigError, HttpError};
    /// # use tower_bearer::http_client::{BoxFuture, HttpClient};
    /// # use tower_bearer::outbound::{ClientCredentials, TokenRequest, TokenSource};
    /// # #[derive(Debug)]
    /// # struct Fake(&'static str, Mutex<Option<Request<Bytes>>>);
    /// # impl HttpClient for Fake {
    /// #     fn send(&self, req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>> {
    /// #         *self.1.lock().unwrap() = Some(req);
    /// #         let body = Bytes::from_static(self.0.as_bytes());
    /// #         Box::pin(async move { Ok(Response::new(body)) })
    /// #     }
    /// #     fn check_url(&self, url: &str) -> Result<Uri, ConfigError> { Ok(url.parse().unwrap()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let fake = Arc::new(Fake(r#"{"access_token":"abc","token_type":"Bearer","expires_in":60}"#, Mutex::new(None)));
    /// # let sent = |f: &Fake| f.1.lock().unwrap().take().unwrap();
    /// # let body = |f: &Fake| String::from_utf8(sent(f).into_body().to_vec()).unwrap();
    /// let source = ClientCredentials::builder("orders", "secret")
    ///     .token_url("https://auth.example/oauth2/token")
    ///     .http_client(fake.clone())
    ///     .build()
    ///     .unwrap();
    /// source.fetch(&TokenRequest::new("", "")).await.unwrap();
    /// assert_eq!(sent(&fake).uri(), "https://auth.example/oauth2/token");
    /// # }
    /// ```
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// Finds the token endpoint by OIDC discovery of `issuer` (`token_endpoint` of
    /// `{issuer}/.well-known/openid-configuration`, whose `issuer` must equal this one).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::ClientCredentials;
    ///
    /// let builder = ClientCredentials::builder("orders", "secret").discovery("https://auth.example");
    /// assert!(builder.build().is_ok()); // nothing is fetched before the first token
    /// let both = ClientCredentials::builder("orders", "secret").discovery("https://auth.example").token_url("https://auth.example/token");
    /// assert!(both.build().is_err());
    /// ```
    pub fn discovery(mut self, issuer: impl Into<String>) -> Self {
        self.discovery = Some(issuer.into());
        self
    }

    /// `client_secret_basic` (default) or `client_secret_post`.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::ClientAuth;
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use http::{Request, Response, Uri};
    /// # use tower_bearer::error::{ConfigError, HttpError};
    /// # use tower_bearer::http_client::{BoxFuture, HttpClient};
    /// # use tower_bearer::outbound::{ClientCredentials, TokenRequest, TokenSource};
    /// # #[derive(Debug)]
    /// # struct Fake(&'static str, Mutex<Option<Request<Bytes>>>);
    /// # impl HttpClient for Fake {
    /// #     fn send(&self, req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>> {
    /// #         *self.1.lock().unwrap() = Some(req);
    /// #         let body = Bytes::from_static(self.0.as_bytes());
    /// #         Box::pin(async move { Ok(Response::new(body)) })
    /// #     }
    /// #     fn check_url(&self, url: &str) -> Result<Uri, ConfigError> { Ok(url.parse().unwrap()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let fake = Arc::new(Fake(r#"{"access_token":"abc","token_type":"Bearer","expires_in":60}"#, Mutex::new(None)));
    /// # let sent = |f: &Fake| f.1.lock().unwrap().take().unwrap();
    /// # let body = |f: &Fake| String::from_utf8(sent(f).into_body().to_vec()).unwrap();
    /// let source = ClientCredentials::builder("orders", "s3cr3t")
    ///     .token_url("https://auth.example/token")
    ///     .client_auth(ClientAuth::SecretPost)
    ///     .http_client(fake.clone())
    ///     .build()
    ///     .unwrap();
    /// source.fetch(&TokenRequest::new("", "")).await.unwrap();
    /// assert!(body(&fake).contains("client_secret=s3cr3t"));
    /// # }
    /// ```
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// `audience` (default) or `resource` (RFC 8707).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::AudienceParameter;
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use http::{Request, Response, Uri};
    /// # use tower_bearer::error::{ConfigError, HttpError};
    /// # use tower_bearer::http_client::{BoxFuture, HttpClient};
    /// # use tower_bearer::outbound::{ClientCredentials, TokenRequest, TokenSource};
    /// # #[derive(Debug)]
    /// # struct Fake(&'static str, Mutex<Option<Request<Bytes>>>);
    /// # impl HttpClient for Fake {
    /// #     fn send(&self, req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>> {
    /// #         *self.1.lock().unwrap() = Some(req);
    /// #         let body = Bytes::from_static(self.0.as_bytes());
    /// #         Box::pin(async move { Ok(Response::new(body)) })
    /// #     }
    /// #     fn check_url(&self, url: &str) -> Result<Uri, ConfigError> { Ok(url.parse().unwrap()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let fake = Arc::new(Fake(r#"{"access_token":"abc","token_type":"Bearer","expires_in":60}"#, Mutex::new(None)));
    /// # let sent = |f: &Fake| f.1.lock().unwrap().take().unwrap();
    /// # let body = |f: &Fake| String::from_utf8(sent(f).into_body().to_vec()).unwrap();
    /// let source = ClientCredentials::builder("orders", "secret")
    ///     .token_url("https://auth.example/token")
    ///     .audience_parameter(AudienceParameter::Resource)
    ///     .http_client(fake.clone())
    ///     .build()
    ///     .unwrap();
    /// source.fetch(&TokenRequest::new("https://system.example/", "")).await.unwrap();
    /// assert!(body(&fake).contains("resource=https%3A%2F%2Fsystem.example%2F"));
    /// # }
    /// ```
    pub fn audience_parameter(mut self, parameter: AudienceParameter) -> Self {
        self.audience_parameter = parameter;
        self
    }

    /// The lifetime assumed when the answer has no `expires_in`. Default 300 s.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::clock::ManualClock;
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use http::{Request, Response, Uri};
    /// # use tower_bearer::error::{ConfigError, HttpError};
    /// # use tower_bearer::http_client::{BoxFuture, HttpClient};
    /// # use tower_bearer::outbound::{ClientCredentials, TokenRequest, TokenSource};
    /// # #[derive(Debug)]
    /// # struct Fake(&'static str, Mutex<Option<Request<Bytes>>>);
    /// # impl HttpClient for Fake {
    /// #     fn send(&self, req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>> {
    /// #         *self.1.lock().unwrap() = Some(req);
    /// #         let body = Bytes::from_static(self.0.as_bytes());
    /// #         Box::pin(async move { Ok(Response::new(body)) })
    /// #     }
    /// #     fn check_url(&self, url: &str) -> Result<Uri, ConfigError> { Ok(url.parse().unwrap()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let fake = Arc::new(Fake(r#"{"access_token":"abc","token_type":"Bearer","expires_in":60}"#, Mutex::new(None)));
    /// # let sent = |f: &Fake| f.1.lock().unwrap().take().unwrap();
    /// # let body = |f: &Fake| String::from_utf8(sent(f).into_body().to_vec()).unwrap();
    /// # let fake = Arc::new(Fake(r#"{"access_token":"abc","token_type":"Bearer"}"#, Mutex::new(None)));
    /// let source = ClientCredentials::builder("orders", "secret")
    ///     .token_url("https://auth.example/token")
    ///     .default_lifetime(Duration::from_secs(120))
    ///     .clock(Arc::new(ManualClock::new(1_700_000_000)))
    ///     .http_client(fake)
    ///     .build()
    ///     .unwrap();
    /// let token = source.fetch(&TokenRequest::new("", "")).await.unwrap(); // no `expires_in`
    /// assert_eq!(token.expires_at_unix(), 1_700_000_120);
    /// # }
    /// ```
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// The HTTP client (default: a [`HyperClient`] with [`http_client_config`](Self::http_client_config)).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use http::{Request, Response, Uri};
    /// # use tower_bearer::error::{ConfigError, HttpError};
    /// # use tower_bearer::http_client::{BoxFuture, HttpClient};
    /// # use tower_bearer::outbound::{ClientCredentials, TokenRequest, TokenSource};
    /// # #[derive(Debug)]
    /// # struct Fake(&'static str, Mutex<Option<Request<Bytes>>>);
    /// # impl HttpClient for Fake {
    /// #     fn send(&self, req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>> {
    /// #         *self.1.lock().unwrap() = Some(req);
    /// #         let body = Bytes::from_static(self.0.as_bytes());
    /// #         Box::pin(async move { Ok(Response::new(body)) })
    /// #     }
    /// #     fn check_url(&self, url: &str) -> Result<Uri, ConfigError> { Ok(url.parse().unwrap()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let fake = Arc::new(Fake(r#"{"access_token":"abc","token_type":"Bearer","expires_in":60}"#, Mutex::new(None)));
    /// # let sent = |f: &Fake| f.1.lock().unwrap().take().unwrap();
    /// # let body = |f: &Fake| String::from_utf8(sent(f).into_body().to_vec()).unwrap();
    /// let source = ClientCredentials::builder("orders", "secret")
    ///     .token_url("https://auth.example/token")
    ///     .http_client(fake.clone())
    ///     .build()
    ///     .unwrap();
    /// let token = source.fetch(&TokenRequest::new("system", "read")).await.unwrap();
    /// assert_eq!(token.value(), "abc");
    /// assert!(body(&fake).contains("grant_type=client_credentials"));
    /// # }
    /// ```
    pub fn http_client(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.http = Some(client);
        self
    }

    /// Settings of the default HTTP client.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bearer::http_client::HttpClientConfig;
    /// use tower_bearer::outbound::ClientCredentials;
    ///
    /// let config = HttpClientConfig { timeout: Duration::from_secs(3), ..HttpClientConfig::default() };
    /// let source = ClientCredentials::builder("orders", "secret")
    ///     .token_url("https://auth.example/token")
    ///     .http_client_config(config)
    ///     .build();
    /// assert!(source.is_ok());
    /// ```
    pub fn http_client_config(mut self, config: HttpClientConfig) -> Self {
        self.http_config = config;
        self
    }

    /// The clock `expires_in` is counted on (default: the system clock).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::clock::ManualClock;
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use http::{Request, Response, Uri};
    /// # use tower_bearer::error::{ConfigError, HttpError};
    /// # use tower_bearer::http_client::{BoxFuture, HttpClient};
    /// # use tower_bearer::outbound::{ClientCredentials, TokenRequest, TokenSource};
    /// # #[derive(Debug)]
    /// # struct Fake(&'static str, Mutex<Option<Request<Bytes>>>);
    /// # impl HttpClient for Fake {
    /// #     fn send(&self, req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>> {
    /// #         *self.1.lock().unwrap() = Some(req);
    /// #         let body = Bytes::from_static(self.0.as_bytes());
    /// #         Box::pin(async move { Ok(Response::new(body)) })
    /// #     }
    /// #     fn check_url(&self, url: &str) -> Result<Uri, ConfigError> { Ok(url.parse().unwrap()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let fake = Arc::new(Fake(r#"{"access_token":"abc","token_type":"Bearer","expires_in":60}"#, Mutex::new(None)));
    /// # let sent = |f: &Fake| f.1.lock().unwrap().take().unwrap();
    /// # let body = |f: &Fake| String::from_utf8(sent(f).into_body().to_vec()).unwrap();
    /// let source = ClientCredentials::builder("orders", "secret")
    ///     .token_url("https://auth.example/token")
    ///     .clock(Arc::new(ManualClock::new(1_700_000_000)))
    ///     .http_client(fake)
    ///     .build()
    ///     .unwrap();
    /// let token = source.fetch(&TokenRequest::new("", "")).await.unwrap();
    /// assert_eq!(token.expires_at_unix(), 1_700_000_060); // `expires_in: 60`
    /// # }
    /// ```
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and builds the source.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::outbound::ClientCredentials;
    ///
    /// assert!(ClientCredentials::builder("orders", "secret").token_url("https://auth.example/token").build().is_ok());
    /// assert!(ClientCredentials::builder("orders", "").token_url("https://auth.example/token").build().is_err());
    /// assert!(ClientCredentials::builder("orders", "secret").build().is_err()); // no endpoint
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the client id or secret is empty, when neither or both of the
    /// token URL and discovery are set, when a URL is refused by the HTTP client's policy,
    /// or when the default HTTP client cannot be built.
    pub fn build(self) -> Result<ClientCredentials, ConfigError> {
        if self.client_id.is_empty() {
            return Err(ConfigError::Missing("client-id"));
        }
        if self.secret.expose().is_empty() {
            return Err(ConfigError::Missing("client-secret"));
        }
        if self.default_lifetime.is_zero() {
            return Err(ConfigError::Invalid {
                name: "default-lifetime",
                reason: "must be positive".into(),
            });
        }
        let http: Arc<dyn HttpClient> = match self.http {
            Some(http) => http,
            None => Arc::new(HyperClient::new(self.http_config)?),
        };
        let endpoint = match (self.token_url, self.discovery) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "token-url",
                    reason: "set either token-url or discovery, not both".into(),
                });
            }
            (None, None) => return Err(ConfigError::Missing("token-url or discovery")),
            (Some(url), None) => Endpoint::Url(http.check_url(&url)?),
            (None, Some(issuer)) => {
                http.check_url(&issuer)?;
                Endpoint::Discovery(issuer.into())
            }
        };
        let basic = match self.auth {
            ClientAuth::SecretBasic => {
                let mut userpass = String::new();
                form_urlencode(&self.client_id, &mut userpass);
                userpass.push(':');
                form_urlencode(self.secret.expose(), &mut userpass);
                let mut value =
                    HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(userpass)))
                        .map_err(|_| ConfigError::Invalid {
                            name: "client-secret",
                            reason: "cannot be encoded".into(),
                        })?;
                value.set_sensitive(true);
                Some(value)
            }
            ClientAuth::SecretPost => None,
        };
        Ok(ClientCredentials {
            inner: Arc::new(Inner {
                client_id: self.client_id.into(),
                secret: self.secret,
                endpoint,
                auth: self.auth,
                audience_parameter: self.audience_parameter,
                default_lifetime: self.default_lifetime,
                http,
                clock: self.clock,
                discovered: Mutex::new(None),
                basic,
            }),
        })
    }
}

impl TokenSource for ClientCredentials {
    fn fetch(&self, request: &TokenRequest) -> BoxFuture<'static, Result<AccessToken, FetchError>> {
        Box::pin(Self::fetch_inner(self.inner.clone(), request.clone()))
    }

    fn check_request(&self, request: &TokenRequest) -> Result<(), ConfigError> {
        check_audience(self.inner.audience_parameter, request).map_err(|reason| {
            ConfigError::Invalid {
                name: "audience",
                reason,
            }
        })
    }

    fn identity(&self) -> String {
        let endpoint = match &self.inner.endpoint {
            Endpoint::Url(uri) => uri.to_string(),
            Endpoint::Discovery(issuer) => format!("discovery:{issuer}"),
        };
        format!(
            "client_credentials {endpoint} {} {}",
            self.inner.client_id,
            self.inner.audience_parameter.as_str()
        )
    }
}

/// RFC 8707 §2: a `resource` is an absolute URI without a fragment.
fn check_audience(parameter: AudienceParameter, req: &TokenRequest) -> Result<(), String> {
    match (parameter, req.audience()) {
        (AudienceParameter::Resource, Some(resource)) if !is_absolute_uri(resource) => {
            Err(format!(
                "resource `{}` must be an absolute URI without a fragment (RFC 8707)",
                sanitize(resource, 200)
            ))
        }
        _ => Ok(()),
    }
}

/// `scheme ":" rest` (RFC 3986 §4.3), no fragment, no whitespace or controls.
pub(crate) fn is_absolute_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.contains('#')
        && s.chars().all(|c| c.is_ascii_graphic())
}

/// Appends `s` encoded as `application/x-www-form-urlencoded` (WHATWG URL §5.2): ASCII
/// alphanumerics and `*-._` as they are, space as `+`, every other byte as `%XX`.
pub(crate) fn form_urlencode(s: &str, out: &mut String) {
    out.extend(form_urlencoded::byte_serialize(s.as_bytes()));
}

fn push_pair(form: &mut String, name: &str, value: &str) {
    if !form.is_empty() {
        form.push('&');
    }
    form_urlencode(name, form);
    form.push('=');
    form_urlencode(value, form);
}

/// `Retry-After` as delay-seconds (capped at one day); HTTP dates are ignored.
fn retry_after(resp: &Response<Bytes>) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(86_400)))
}

fn parse_token_response(
    resp: &Response<Bytes>,
    sent_at: u64,
    default_lifetime: Duration,
) -> Result<AccessToken, FetchError> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
        error_description: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct TokenBody {
        access_token: Option<String>,
        token_type: Option<String>,
        expires_in: Option<serde_json::Value>,
    }

    let status = resp.status();
    if status != StatusCode::OK {
        let retry_after = retry_after(resp);
        return Err(match serde_json::from_slice::<ErrorBody>(resp.body()) {
            Ok(body) if !status.is_success() => FetchError::OAuth(OAuthError {
                status,
                code: OAuthErrorCode::parse(&body.error),
                description: body.error_description.map(|d| sanitize(&d, 200)),
                retry_after,
            }),
            _ => FetchError::Status {
                status,
                retry_after,
            },
        });
    }
    let body: TokenBody = serde_json::from_slice(resp.body())
        .map_err(|e| FetchError::InvalidResponse(format!("not a token response: {e}")))?;
    let value = body
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| FetchError::InvalidResponse("no access_token".into()))?;
    let token_type = body.token_type.unwrap_or_default();
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(FetchError::TokenType(sanitize(&token_type, 32)));
    }
    let lifetime = match body.expires_in {
        None | Some(serde_json::Value::Null) => default_lifetime.as_secs(),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .ok_or_else(|| FetchError::InvalidResponse("negative expires_in".into()))?,
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| FetchError::InvalidResponse("expires_in is not a number".into()))?,
        Some(_) => {
            return Err(FetchError::InvalidResponse(
                "expires_in is not a number".into(),
            ));
        }
    };
    Ok(AccessToken::with_type(
        value,
        token_type,
        sent_at.saturating_add(lifetime),
    ))
}

async fn discover(http: &dyn HttpClient, issuer: &str) -> Result<Uri, FetchError> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        issuer: String,
        token_endpoint: Option<String>,
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let uri = http
        .check_url(&url)
        .map_err(|e| FetchError::Config(e.to_string()))?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::ACCEPT, "application/json")
        .body(Bytes::new())
        .map_err(|e| FetchError::Config(e.to_string()))?;
    let resp = http
        .send(req)
        .await
        .map_err(|e| FetchError::Discovery(e.to_string()))?;
    if resp.status() != StatusCode::OK {
        return Err(FetchError::Discovery(format!(
            "discovery answered {}",
            resp.status()
        )));
    }
    let meta: Metadata = serde_json::from_slice(resp.body())
        .map_err(|e| FetchError::Discovery(format!("discovery document: {e}")))?;
    if meta.issuer != issuer {
        return Err(FetchError::Config(
            "discovery document names another issuer".into(),
        ));
    }
    let endpoint = meta
        .token_endpoint
        .ok_or_else(|| FetchError::Config("discovery document has no token_endpoint".into()))?;
    http.check_url(&endpoint)
        .map_err(|e| FetchError::Config(format!("discovered token_endpoint refused: {e}")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        let mut out = String::new();
        form_urlencode(s, &mut out);
        out
    }

    #[test]
    fn form_encoding() {
        assert_eq!(enc("a:b%c"), "a%3Ab%25c");
        assert_eq!(enc("A z~*-._/+="), "A+z%7E*-._%2F%2B%3D");
        assert_eq!(enc("é"), "%C3%A9");
        let mut form = String::new();
        push_pair(&mut form, "grant_type", "client_credentials");
        push_pair(&mut form, "scope", "a b");
        assert_eq!(form, "grant_type=client_credentials&scope=a+b");
        let secret = "p@ss w%rd&x=1+é";
        push_pair(&mut form, "client_secret", secret);
        let back: Vec<(String, String)> = form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(back[2], ("client_secret".into(), secret.into()));
    }

    #[test]
    fn absolute_uris() {
        assert!(is_absolute_uri("https://api.example/"));
        assert!(is_absolute_uri("urn:example:system"));
        assert!(!is_absolute_uri("service-system"));
        assert!(!is_absolute_uri("https://api.example/#frag"));
        assert!(!is_absolute_uri("1http://x"));
        assert!(!is_absolute_uri("https:"));
        assert!(!is_absolute_uri("https://a b"));
    }

    fn resp(status: u16, body: &str, retry: Option<&str>) -> Response<Bytes> {
        let mut b = Response::builder().status(status);
        if let Some(r) = retry {
            b = b.header("retry-after", r);
        }
        b.body(Bytes::from(body.to_owned())).unwrap()
    }

    #[test]
    fn token_responses() {
        let d = Duration::from_secs(300);
        let t = parse_token_response(
            &resp(
                200,
                r#"{"access_token":"x","token_type":"bEaReR","expires_in":60}"#,
                None,
            ),
            1000,
            d,
        )
        .unwrap();
        assert_eq!((t.value(), t.expires_at_unix()), ("x", 1060));
        let t = parse_token_response(
            &resp(200, r#"{"access_token":"x","token_type":"Bearer"}"#, None),
            1000,
            d,
        )
        .unwrap();
        assert_eq!(t.expires_at_unix(), 1300);
        let t = parse_token_response(
            &resp(
                200,
                r#"{"access_token":"x","token_type":"Bearer","expires_in":"90"}"#,
                None,
            ),
            1000,
            d,
        )
        .unwrap();
        assert_eq!(t.expires_at_unix(), 1090);
        let e = parse_token_response(
            &resp(200, r#"{"access_token":"x","token_type":"mac"}"#, None),
            0,
            d,
        )
        .unwrap_err();
        assert!(matches!(e, FetchError::TokenType(ref t) if t == "mac") && e.is_permanent());
        let e = parse_token_response(&resp(200, "<html>", None), 0, d).unwrap_err();
        assert!(matches!(e, FetchError::InvalidResponse(_)) && !e.is_permanent());
        let e = parse_token_response(
            &resp(
                401,
                r#"{"error":"invalid_client","error_description":"bad\nsecret"}"#,
                None,
            ),
            0,
            d,
        )
        .unwrap_err();
        match &e {
            FetchError::OAuth(o) => {
                assert_eq!(o.code, OAuthErrorCode::InvalidClient);
                assert_eq!(o.description.as_deref(), Some("badsecret"));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_permanent());
        let e = parse_token_response(&resp(503, "down", Some("7")), 0, d).unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(!e.is_permanent());
        let e = parse_token_response(&resp(404, "", None), 0, d).unwrap_err();
        assert!(e.is_permanent());
    }
}
