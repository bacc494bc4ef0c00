//! The one small HTTP client for JWKS, discovery and token endpoint calls.
//!
//! [`HyperClient`] (hyper + rustls with the aws-lc-rs provider) enforces a timeout per call, a
//! body size cap, a `User-Agent`, refuses `http://` except to loopback addresses (unless
//! explicitly allowed), and never follows a redirect to another origin. Replace it by
//! implementing [`HttpClient`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_bearer::http_client::{HttpClient, HttpClientConfig, HyperClient};
//!
//! let client = HyperClient::new(HttpClientConfig {
//!     timeout: Duration::from_secs(2),
//!     ..Default::default()
//! })
//! .unwrap();
//! assert!(client.check_url("http://127.0.0.1:9000/jwks").is_ok());
//! assert!(client.check_url("http://idp.example.com/jwks").is_err());
//! assert!(client.check_url("https://idp.example.com/jwks").is_ok());
//! ```

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::{ConfigError, HttpError};

/// A boxed, `Send + 'static` future, as returned by [`HttpClient::send`] and key sources.
///
/// # Example
///
/// ```
/// use tower_bearer::http_client::BoxFuture;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let fut: BoxFuture<'static, u32> = Box::pin(async { 42 });
/// assert_eq!(fut.await, 42);
/// # }
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one HTTP request and returns the whole response.
///
/// Implementations must apply their own timeouts and size limits.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response, Uri};
/// use tower_bearer::error::{ConfigError, HttpError};
/// use tower_bearer::http_client::{parse_url, BoxFuture, HttpClient};
///
/// /// Answers every request with an empty JWK set.
/// #[derive(Debug)]
/// struct Canned;
///
/// impl HttpClient for Canned {
///     fn send(&self, _req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>> {
///         Box::pin(async { Ok(Response::new(Bytes::from_static(br#"{"keys":[]}"#))) })
///     }
///     fn check_url(&self, url: &str) -> Result<Uri, ConfigError> {
///         parse_url(url, false)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let req = Request::get("https://idp.example/jwks").body(Bytes::new()).unwrap();
/// let res = Canned.send(req).await.unwrap();
/// assert_eq!(res.body().as_ref(), br#"{"keys":[]}"#);
/// # }
/// ```
pub trait HttpClient: Send + Sync + fmt::Debug + 'static {
    /// Sends `req`; the response body is complete.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use bytes::Bytes;
    /// use tower_bearer::http_client::{HttpClient, HttpClientConfig, HyperClient};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = HyperClient::new(HttpClientConfig::default()).unwrap();
    /// let req = http::Request::get("https://idp.example/oauth2/jwks").body(Bytes::new()).unwrap();
    /// let res = client.send(req).await.unwrap();
    /// assert!(res.status().is_success());
    /// # }
    /// ```
    fn send(&self, req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>>;

    /// Checks that a URL may be called (scheme and host policy).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::http_client::{HttpClient, HttpClientConfig, HyperClient};
    ///
    /// let client = HyperClient::new(HttpClientConfig::default()).unwrap();
    /// let uri = client.check_url("https://idp.example/jwks").unwrap();
    /// assert_eq!(uri.host(), Some("idp.example"));
    /// assert!(client.check_url("ftp://idp.example/jwks").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the refused URL.
    fn check_url(&self, url: &str) -> Result<Uri, ConfigError>;
}

/// Settings of [`HyperClient`] (`security.http-client` in YAML).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_bearer::http_client::HttpClientConfig;
///
/// let config = HttpClientConfig::default();
/// assert_eq!(config.timeout, Duration::from_secs(5));
/// assert_eq!(config.max_body_bytes, 1024 * 1024);
/// assert!(!config.allow_insecure_http);
/// ```
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Per-call timeout, connect included. Default 5 s.
    pub timeout: Duration,
    /// Largest accepted response body. Default 1 MiB.
    pub max_body_bytes: usize,
    /// A PEM file of extra trusted CA certificates, added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Allow `http://` to non-loopback hosts. Default `false`.
    pub allow_insecure_http: bool,
    /// The `User-Agent` sent with every call.
    pub user_agent: String,
    /// Same-origin redirects followed for GET (cross-origin ones are always refused). Default 3.
    pub max_redirects: usize,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
            ca_file: None,
            allow_insecure_http: false,
            user_agent: concat!("tower-bearer/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_redirects: 3,
        }
    }
}

/// The default [`HttpClient`]: hyper over rustls (aws-lc-rs), system roots plus `ca_file`.
///
/// # Example
///
/// ```
/// use tower_bearer::http_client::{HttpClient, HttpClientConfig, HyperClient};
///
/// let client = HyperClient::new(HttpClientConfig::default()).unwrap();
/// assert!(client.check_url("http://localhost:8080/jwks").is_ok());
/// assert!(client.check_url("http://idp.example/jwks").is_err());
/// ```
#[derive(Clone)]
pub struct HyperClient {
    inner: Arc<HyperInner>,
}

struct HyperInner {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    config: HttpClientConfig,
}

impl fmt::Debug for HyperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl HyperClient {
    /// Builds the client. Loads the system root certificates and `ca_file` once.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::http_client::{HttpClient, HttpClientConfig, HyperClient};
    ///
    /// let client = HyperClient::new(HttpClientConfig {
    ///     allow_insecure_http: true,
    ///     ..Default::default()
    /// })
    /// .unwrap();
    /// assert!(client.check_url("http://idp.example/jwks").is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `ca_file` cannot be read or holds no certificate, or when no root
    /// certificate is available at all.
    pub fn new(config: HttpClientConfig) -> Result<Self, ConfigError> {
        let https = https_connector(&config)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            inner: Arc::new(HyperInner { client, config }),
        })
    }

    /// The settings this client was built with.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::http_client::{HttpClientConfig, HyperClient};
    ///
    /// let client = HyperClient::new(HttpClientConfig { max_redirects: 0, ..Default::default() }).unwrap();
    /// assert_eq!(client.config().max_redirects, 0);
    /// ```
    pub fn config(&self) -> &HttpClientConfig {
        &self.inner.config
    }

    async fn send_inner(
        inner: Arc<HyperInner>,
        req: Request<Bytes>,
    ) -> Result<Response<Bytes>, HttpError> {
        let cfg = &inner.config;
        let method = req.method().clone();
        let (mut parts, body) = req.into_parts();
        check_uri(&parts.uri, cfg.allow_insecure_http)
            .map_err(|e| HttpError::Refused(e.to_string()))?;
        parts.headers.entry(header::USER_AGENT).or_insert_with(|| {
            http::HeaderValue::from_str(&cfg.user_agent)
                .unwrap_or(http::HeaderValue::from_static("tower-bearer"))
        });
        let mut uri = parts.uri.clone();
        for _ in 0..=cfg.max_redirects {
            let mut req = Request::from_parts(parts.clone(), Full::new(body.clone()));
            *req.uri_mut() = uri.clone();
            let fut = inner.client.request(req);
            let resp = tokio::time::timeout(cfg.timeout, async {
                let resp = fut.await.map_err(|e| HttpError::Connect(error_chain(&e)))?;
                let (head, body) = resp.into_parts();
                let body = Limited::new(body, cfg.max_body_bytes)
                    .collect()
                    .await
                    .map_err(|e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            HttpError::BodyTooLarge(cfg.max_body_bytes)
                        } else {
                            HttpError::Connect(e.to_string())
                        }
                    })?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(head, body))
            })
            .await
            .map_err(|_| HttpError::Timeout(cfg.timeout))??;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            if method != Method::GET {
                return Err(HttpError::Redirect("redirect on a non-GET request"));
            }
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or(HttpError::Redirect("redirect without location"))?;
            uri = same_origin_target(&uri, location)?;
        }
        Err(HttpError::Redirect("too many redirects"))
    }
}

impl HttpClient for HyperClient {
    fn send(&self, req: Request<Bytes>) -> BoxFuture<'static, Result<Response<Bytes>, HttpError>> {
        Box::pin(Self::send_inner(self.inner.clone(), req))
    }

    fn check_url(&self, url: &str) -> Result<Uri, ConfigError> {
        parse_url(url, self.inner.config.allow_insecure_http)
    }
}

/// An HTTPS (and loopback HTTP) connector: rustls with the aws-lc-rs provider, the system roots
/// plus `config.ca_file`, connect timeout and `TCP_NODELAY` — what [`HyperClient`] uses, for
/// callers that build their own hyper client (e.g. with an outbound injection layer).
///
/// # Example
///
/// ```
/// use tower_bearer::http_client::{https_connector, HttpClientConfig};
///
/// let connector = https_connector(&HttpClientConfig::default()).unwrap();
/// let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
///     hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///         .build(connector);
/// # let _ = client;
/// ```
///
/// # Errors
///
/// [`ConfigError`] when `ca_file` cannot be read or holds no certificate.
pub fn https_connector(
    config: &HttpClientConfig,
) -> Result<HttpsConnector<HttpConnector>, ConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // The system roots are read once per process, however many clients are built.
    static SYSTEM_ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    let mut roots = SYSTEM_ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                // A broken system certificate must not stop the client; it is simply not trusted.
                let _ = roots.add(cert);
            }
            roots
        })
        .clone();
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ConfigError::Invalid {
                name: "ca-file",
                reason: format!("{}: {e}", path.display()),
            })?;
            roots.add(cert).map_err(|e| ConfigError::Invalid {
                name: "ca-file",
                reason: format!("{}: {e}", path.display()),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(ConfigError::Invalid {
                name: "ca-file",
                reason: format!("{}: no certificate found", path.display()),
            });
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| ConfigError::Crypto("rustls protocol versions"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.timeout));
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Parses `url` and applies the scheme policy.
///
/// # Example
///
/// ```
/// use tower_bearer::error::ConfigError;
/// use tower_bearer::http_client::parse_url;
///
/// assert_eq!(parse_url("https://idp.example/jwks", false).unwrap().path(), "/jwks");
/// assert!(parse_url("http://[::1]:8080/jwks", false).is_ok());
/// assert!(matches!(
///     parse_url("http://idp.example/jwks", false),
///     Err(ConfigError::InsecureUrl(_))
/// ));
/// ```
///
/// # Errors
///
/// [`ConfigError::InvalidUrl`] or [`ConfigError::InsecureUrl`].
pub fn parse_url(url: &str, allow_insecure_http: bool) -> Result<Uri, ConfigError> {
    let uri: Uri = url.parse().map_err(|_| ConfigError::InvalidUrl {
        url: redact_userinfo(url),
        reason: "not a valid URL",
    })?;
    check_uri(&uri, allow_insecure_http)?;
    Ok(uri)
}

/// `url` without its user info (a password may be there): `redis://:pw@host` →
/// `redis://***@host`; text that is not a URL is not echoed at all.
pub(crate) fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None if url.contains('@') => "<not a URL>".to_owned(),
        None => url.to_owned(),
    }
}

fn check_uri(uri: &Uri, allow_insecure_http: bool) -> Result<(), ConfigError> {
    let invalid = |reason| ConfigError::InvalidUrl {
        url: redact_userinfo(&uri.to_string()),
        reason,
    };
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid("user info is not allowed"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_insecure_http || is_loopback(host) => Ok(()),
        Some("http") => Err(ConfigError::InsecureUrl(uri.to_string())),
        _ => Err(invalid("scheme must be https or http")),
    }
}

/// `localhost` or a loopback IP literal (`127.0.0.0/8`, `::1`).
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Resolves a `Location` against `base`, refusing another origin.
fn same_origin_target(base: &Uri, location: &str) -> Result<Uri, HttpError> {
    let target: Uri = if location.starts_with('/') && !location.starts_with("//") {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(
            location
                .parse()
                .map_err(|_| HttpError::Redirect("invalid location"))?,
        );
        Uri::from_parts(parts).map_err(|_| HttpError::Redirect("invalid location"))?
    } else {
        location
            .parse()
            .map_err(|_| HttpError::Redirect("invalid location"))?
    };
    if origin(&target) != origin(base) {
        return Err(HttpError::Redirect("cross-origin redirect"));
    }
    Ok(target)
}

/// `(scheme, host, port)` with default ports filled in.
pub(crate) fn origin(uri: &Uri) -> Option<(String, String, u16)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some((scheme, host, port))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        assert!(parse_url("http://127.0.0.1:1/x", false).is_ok());
        assert!(parse_url("http://[::1]:1/x", false).is_ok());
        assert!(parse_url("http://localhost/x", false).is_ok());
        assert!(matches!(
            parse_url("http://10.0.0.1/x", false),
            Err(ConfigError::InsecureUrl(_))
        ));
        assert!(parse_url("http://10.0.0.1/x", true).is_ok());
        assert!(parse_url("ftp://a/x", true).is_err());
        assert!(parse_url("https://user:pw@a/x", false).is_err());
        assert!(parse_url("/relative", false).is_err());
    }

    #[test]
    fn redirects_stay_on_origin() {
        let base: Uri = "https://idp.example/jwks".parse().unwrap();
        assert_eq!(
            same_origin_target(&base, "/keys").unwrap(),
            "https://idp.example/keys"
        );
        assert!(same_origin_target(&base, "https://idp.example:443/k").is_ok());
        assert!(same_origin_target(&base, "https://evil.example/k").is_err());
        assert!(same_origin_target(&base, "//evil.example/k").is_err());
        assert!(same_origin_target(&base, "http://idp.example/k").is_err());
    }
}
