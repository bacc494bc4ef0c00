//! tonic: the same layers wrap a tonic server; handlers read [`CurrentUser`] from the request.
//!
//! For `content-type: application/grpc*` requests the layers answer with trailers-only gRPC
//! statuses (what `tonic::Status::into_http` produces): `UNAUTHENTICATED` (16) for missing or bad
//! credentials, `PERMISSION_DENIED` (7) when a rule refuses, `UNAVAILABLE` (14) while signing keys
//! cannot be loaded; the `www-authenticate` challenge is kept as metadata.
//!
//! ```text
//! Server::builder()
//!     .layer(SecurityLayer::new(verifier, rules))
//!     .add_service(MyServer::new(my_service))
//! ```
//!
//! gRPC paths are `/<package>.<Service>/<Method>`, so rules match them like any path. To exempt
//! health checks, put a permit-all rule first:
//! `{ path: "/grpc.health.v1.Health/**", permit-all: true }` (YAML) or
//! `Rule::new("/grpc.health.v1.Health/**", Requirement::PermitAll)`.
//!
//! # Example
//!
//! ```
//! use tower_bearer::integrations::tonic::RequestExt;
//!
//! fn handler(req: &tonic::Request<()>) -> Result<String, tonic::Status> {
//!     let user = req.current_user()?;
//!     Ok(user.subject().unwrap_or_default().to_owned())
//! }
//! let req = tonic::Request::new(());
//! let err = handler(&req).unwrap_err();
//! assert_eq!(err.code(), tonic::Code::Internal); // no layer in front
//! ```

use tonic::{Code, Status};

use crate::claims::{Authentication, CurrentUser};
use crate::error::{AuthError, GrpcCode};

/// Reads the verified user from a `tonic::Request`.
///
/// # Example
///
/// ```
/// use tower_bearer::claims::Authentication;
/// use tower_bearer::integrations::tonic::RequestExt;
///
/// let mut req = tonic::Request::new(());
/// req.extensions_mut().insert(Authentication::Anonymous);
/// assert!(req.optional_user().unwrap().is_none());
/// assert_eq!(req.current_user().unwrap_err().code(), tonic::Code::Unauthenticated);
/// ```
pub trait RequestExt {
    /// The user; `UNAUTHENTICATED` when the request is anonymous, `INTERNAL` naming the layer
    /// when no authentication layer ran (a mis-wired server must not look anonymous).
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::{Authentication, ClaimMapping};
    /// use tower_bearer::integrations::tonic::RequestExt;
    /// use tower_bearer::CurrentUser;
    ///
    /// # let claims = serde_json::json!({"iss": "i", "sub": "alice", "exp": 2000000000, "aud": "api"});
    /// # let user = CurrentUser::from_claims(claims.as_object().unwrap().clone(), &ClaimMapping::default().compile()).unwrap();
    /// let mut req = tonic::Request::new(());
    /// req.extensions_mut().insert(Authentication::User(user));
    /// assert_eq!(req.current_user().unwrap().subject(), Some("alice"));
    /// ```
    ///
    /// # Errors
    ///
    /// The `tonic::Status` to return from the handler.
    fn current_user(&self) -> Result<&CurrentUser, Status>;
    /// The user, `None` when anonymous.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_bearer::claims::Authentication;
    /// use tower_bearer::integrations::tonic::RequestExt;
    ///
    /// let mut req = tonic::Request::new(());
    /// assert_eq!(req.optional_user().unwrap_err().code(), tonic::Code::Internal); // no layer ran
    /// req.extensions_mut().insert(Authentication::Anonymous);
    /// assert!(req.optional_user().unwrap().is_none());
    /// ```
    ///
    /// # Errors
    ///
    /// `INTERNAL` when no authentication layer ran.
    fn optional_user(&self) -> Result<Option<&CurrentUser>, Status>;
}

impl<T> RequestExt for tonic::Request<T> {
    fn current_user(&self) -> Result<&CurrentUser, Status> {
        self.optional_user()?
            .ok_or_else(|| Status::unauthenticated("authentication required"))
    }

    fn optional_user(&self) -> Result<Option<&CurrentUser>, Status> {
        match self.extensions().get::<Authentication>() {
            Some(Authentication::User(u)) => Ok(Some(u)),
            Some(Authentication::Anonymous) => Ok(None),
            None => Err(Status::internal(
                "JwtAuthLayer is missing in front of this service: no authentication was performed",
            )),
        }
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        let code = match e.grpc_code() {
            GrpcCode::Unauthenticated => Code::Unauthenticated,
            GrpcCode::PermissionDenied => Code::PermissionDenied,
            GrpcCode::Unavailable => Code::Unavailable,
            GrpcCode::InvalidArgument => Code::InvalidArgument,
        };
        let mut status = Status::new(code, e.description());
        if let Some(challenge) = e.www_authenticate(None, false) {
            if let Ok(v) = challenge.to_str().unwrap_or_default().parse() {
                status.metadata_mut().insert("www-authenticate", v);
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenError;

    #[test]
    fn status_mapping() {
        let s: Status = AuthError::InvalidToken(TokenError::Expired).into();
        assert_eq!(s.code(), Code::Unauthenticated);
        assert_eq!(
            s.metadata().get("www-authenticate").unwrap(),
            r#"Bearer error="invalid_token""#
        );
        let s: Status = AuthError::AccessDenied.into();
        assert_eq!(s.code(), Code::PermissionDenied);
    }
}
