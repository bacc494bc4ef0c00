//! The HTML pages of the authorization endpoint: login, consent, error. Server-rendered, no
//! JavaScript, every echoed value HTML-escaped, and every page sent with `Cache-Control:
//! no-store`, `X-Frame-Options: DENY` and a strict CSP (`default-src 'none'`, `frame-ancestors
//! 'none'`, forms only to this server and the pending request's redirect origin).

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

/// Escapes `s` for HTML text and double-quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The security headers of every answer of the endpoint (pages and redirects).
pub(crate) fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The style of the pages, allowed by its hash in the CSP.
const STYLE: &str = "body{font-family:sans-serif;max-width:28em;margin:3em auto;padding:0 1em}\
label,input,button{display:block;margin:.4em 0}input{width:100%}\
.error{color:#a00}ul{padding-left:1.2em}";

fn style_hash() -> String {
    use base64::Engine as _;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(d.as_ref())
    )
}

/// A page: `status`, escaped-by-caller `body` inside a minimal document. `form_target` is the
/// extra `form-action` source (the redirect URI's origin) since a form post answered with a
/// redirect to the client is checked against `form-action` too.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    body: &str,
    form_target: Option<&str>,
) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    );
    let mut res = Response::new(Body::from(html));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    let mut csp = format!(
        "default-src 'none'; style-src {}; form-action 'self'",
        style_hash()
    );
    if let Some(t) = form_target {
        csp.push(' ');
        csp.push_str(t);
    }
    csp.push_str("; frame-ancestors 'none'; base-uri 'none'");
    let csp = HeaderValue::from_str(&csp).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
    });
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    res
}

/// The 400 page for a request that cannot be answered at the redirect URI (bad `client_id` or
/// `redirect_uri`, expired session, ...): never a redirect.
pub(crate) fn error_page(status: StatusCode, error: &str, description: &str) -> Response {
    let body = format!(
        "<p class=\"error\" id=\"error\">{}</p>\n<p>{}</p>",
        escape(error),
        escape(description)
    );
    page(status, "Authorization request refused", &body, None)
}

/// What the login page shows.
pub(crate) struct LoginPage<'a> {
    pub(crate) action: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) rid: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) username: &'a str,
    pub(crate) error: Option<&'a str>,
    pub(crate) form_target: Option<&'a str>,
}

pub(crate) fn login(p: &LoginPage<'_>) -> Response {
    let error = p.error.map_or(String::new(), |e| {
        format!("<p class=\"error\" id=\"error\">{}</p>\n", escape(e))
    });
    let body = format!(
        "<p>Sign in to continue to <strong id=\"client\">{client}</strong>.</p>\n{error}\
<form method=\"post\" action=\"{action}\" autocomplete=\"on\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
<input type=\"hidden\" name=\"rid\" value=\"{rid}\">\n\
<label for=\"username\">Username</label>\n\
<input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" required value=\"{username}\">\n\
<label for=\"password\">Password</label>\n\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
<button type=\"submit\" id=\"sign-in\">Sign in</button>\n</form>",
        client = escape(p.client_id),
        action = escape(p.action),
        csrf = escape(p.csrf),
        rid = escape(p.rid),
        username = escape(p.username),
    );
    let status = if p.error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(status, "Sign in", &body, p.form_target)
}

/// What the consent page shows.
pub(crate) struct ConsentPage<'a> {
    pub(crate) action: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) rid: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) username: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) form_target: Option<&'a str>,
}

pub(crate) fn consent(p: &ConsentPage<'_>) -> Response {
    let scopes: String = if p.scopes.is_empty() {
        "<li>(no scope)</li>".to_owned()
    } else {
        p.scopes
            .iter()
            .map(|s| format!("<li class=\"scope\">{}</li>", escape(s)))
            .collect()
    };
    let body = format!(
        "<p><strong id=\"client\">{client}</strong> asks for access to your account \
(<span id=\"user\">{user}</span>):</p>\n<ul>{scopes}</ul>\n\
<form method=\"post\" action=\"{action}\">\n\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
<input type=\"hidden\" name=\"rid\" value=\"{rid}\">\n\
<button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">Allow</button>\n\
<button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button>\n</form>",
        client = escape(p.client_id),
        user = escape(p.username),
        action = escape(p.action),
        csrf = escape(p.csrf),
        rid = escape(p.rid),
    );
    page(StatusCode::OK, "Allow access?", &body, p.form_target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_echoed() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn pages_carry_the_security_headers() {
        let res = error_page(StatusCode::BAD_REQUEST, "invalid_request", "<b>");
        let h = res.headers();
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }
}
