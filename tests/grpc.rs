//! tonic end-to-end: a real gRPC server (tonic-health) behind the security layers on 127.0.0.1,
//! called by a real tonic client.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::json;
use tonic::Code;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower_bearer::authz::{AccessRules, Requirement, Rule};
use tower_bearer::claims::CurrentUser;
use tower_bearer::jwks::{Algorithm, RemoteOptions};
use tower_bearer::signing::SigningKey;
use tower_bearer::stack::SecurityLayer;
use tower_bearer::{IssuerConfig, Verifier};

const AUD: &str = "grpc-api";

/// Starts a health server behind `SecurityLayer`; records the subject each handler call saw.
async fn server(verifier: Verifier, rules: AccessRules) -> (String, Arc<Mutex<Vec<String>>>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let record = tower::layer::layer_fn(move |inner| {
        let s = s.clone();
        tower::util::MapRequest::new(inner, move |req: http::Request<tonic::body::Body>| {
            let sub = req
                .extensions()
                .get::<CurrentUser>()
                .and_then(|u| u.subject().map(str::to_owned))
                .unwrap_or_else(|| "anonymous".into());
            s.lock().unwrap().push(sub);
            req
        })
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(SecurityLayer::new(verifier, rules))
            .layer(record)
            .add_service(health)
            .serve_with_incoming(tokio_stream_shim(listener))
            .await
            .unwrap();
    });
    (format!("http://{addr}"), seen)
}

/// `TcpListener` as the incoming stream tonic wants.
fn tokio_stream_shim(
    listener: tokio::net::TcpListener,
) -> impl tonic::codegen::tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener)
}

async fn check(url: &str, token: Option<&str>) -> Result<ServingStatus, tonic::Status> {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    client.check(req).await.map(|r| r.into_inner().status())
}

fn rules(health_scope: Option<&str>) -> AccessRules {
    let req = match health_scope {
        Some(s) => Requirement::Scope(s.into()),
        None => Requirement::PermitAll,
    };
    AccessRules::builder()
        .rule(Rule::new("/grpc.health.v1.Health/**", req))
        .build()
        .unwrap()
}

#[tokio::test]
async fn grpc_statuses_and_current_user() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(idp.issuer(), idp.jwks_url()))
        .audience(AUD)
        .build()
        .unwrap();
    let (url, seen) = server(verifier, rules(Some("health.read"))).await;
    let now = now();
    let token = |scope: &str| {
        key.sign(&json!({"iss": idp.issuer(), "aud": AUD, "sub": "alice", "scope": scope, "exp": now + 300}))
            .unwrap()
    };

    let err = check(&url, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.metadata().get("www-authenticate").is_some());

    let err = check(&url, Some("not.a.jwt")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let err = check(&url, Some(&token("other"))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    assert_eq!(
        check(&url, Some(&token("health.read"))).await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["alice"],
        "the handler saw the verified user, and only once"
    );
}

#[tokio::test]
async fn health_can_be_exempted_and_unavailable_keys_are_14() {
    // Exempt health checks: anonymous passes.
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let idp = Idp::start(jwks_of(&[&key])).await;
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(idp.issuer(), idp.jwks_url()))
        .audience(AUD)
        .build()
        .unwrap();
    let (url, _) = server(verifier, rules(None)).await;
    assert_eq!(check(&url, None).await.unwrap(), ServingStatus::Serving);

    // Identity provider down: UNAVAILABLE.
    let dead = reserve_addr();
    let verifier = Verifier::builder()
        .issuer(IssuerConfig::jwks_uri(
            format!("http://{dead}"),
            format!("http://{dead}/jwks"),
        ))
        .audience(AUD)
        .remote_options(RemoteOptions {
            first_fetch_wait: Duration::from_millis(500),
            ..RemoteOptions::default()
        })
        .build()
        .unwrap();
    let (url, _) = server(verifier, rules(Some("health.read"))).await;
    let t = key
        .sign(&json!({"iss": format!("http://{dead}"), "aud": AUD, "sub": "a", "exp": now() + 60}))
        .unwrap();
    let err = check(&url, Some(&t)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}
