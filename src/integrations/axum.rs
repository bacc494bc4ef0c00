//! axum: [`CurrentUser`] and `Option<CurrentUser>` extractors, and `IntoResponse` for
//! [`AuthError`].
//!
//! Both extractors answer 500 naming the layer when no
//! [`Authentication`] marker is present: a router that forgot the layer must not look
//! anonymous. `CurrentUser` on an anonymous request (optional mode) answers 401.
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_bearer::claims::CurrentUser;
//!
//! async fn me(user: CurrentUser) -> String {
//!     user.subject().unwrap_or_default().to_owned()
//! }
//! async fn greet(user: Option<CurrentUser>) -> String {
//!     match user {
//!         Some(u) => format!("hello {}", u.subject().unwrap_or("?")),
//!         None => "hello stranger".into(),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tower::ServiceExt;
//! let app: Router = Router::new().route("/me", get(me)).route("/greet", get(greet));
//! // No JwtAuthLayer in front: the extractor refuses to guess.
//! let res = app
//!     .oneshot(http::Request::get("/greet").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 500);
//! # }
//! ```

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::authn::DefaultRejection;
use crate::claims::{Authentication, CurrentUser};
use crate::error::AuthError;

/// Why the [`CurrentUser`] extractor refused.
///
/// # Example
///
/// ```
/// use axum::response::IntoResponse;
/// use tower_bearer::integrations::axum::CurrentUserRejection;
///
/// let res = CurrentUserRejection::Unauthenticated.into_response();
/// assert_eq!(res.status(), 401);
/// assert_eq!(CurrentUserRejection::MissingLayer.into_response().status(), 500);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CurrentUserRejection {
    /// No `Authentication` marker: `JwtAuthLayer` is not in front of this route.
    #[error("JwtAuthLayer is missing in front of this route: no authentication was performed")]
    MissingLayer,
    /// The request is anonymous (optional mode) and this handler needs a user.
    #[error("authentication required")]
    Unauthenticated,
}

impl IntoResponse for CurrentUserRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingLayer => {
                tracing::error!("CurrentUser extractor used without JwtAuthLayer");
                (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
            }
            Self::Unauthenticated => AuthError::AuthenticationRequired.into_response(),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        DefaultRejection::default().build(&self, false)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = CurrentUserRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::User(user)) => Ok(user.clone()),
            other => Err(refusal(other.is_some())),
        }
    }
}

/// The extractor's refusals, out of the handler's hot path: `Unauthenticated` when the request
/// is anonymous, else `MissingLayer`.
#[cold]
#[inline(never)]
fn refusal(anonymous: bool) -> CurrentUserRejection {
    if anonymous {
        CurrentUserRejection::Unauthenticated
    } else {
        CurrentUserRejection::MissingLayer
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = CurrentUserRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::User(user)) => Ok(Some(user.clone())),
            Some(Authentication::Anonymous) => Ok(None),
            None => Err(refusal(false)),
        }
    }
}
