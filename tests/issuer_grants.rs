//! Issue 9 end to end on 127.0.0.1: the issuer served by axum, raw HTTP. Password grant (claims,
//! one `invalid_grant` for every failure, lockout), refresh-token rotation and reuse detection,
//! user reload on refresh, revocation (RFC 7009) and introspection (RFC 7662) tables, tokens
//! checked by our `Verifier`, and 50 concurrent refreshes over two issuers sharing a real
//! `redis-server`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower_bearer::clock::ManualClock;
use tower_bearer::config::SecurityConfig;
use tower_bearer::issuer::clients::RegisteredClient;
use tower_bearer::issuer::config::{AuthMethod, GrantType};
use tower_bearer::issuer::limiter::LimiterConfig;
use tower_bearer::issuer::password::PasswordScheme;
use tower_bearer::issuer::store::RedisGrantStore;
use tower_bearer::issuer::users::{MemoryUserStore, User};
use tower_bearer::issuer::{AuthorizationServer, AuthorizationServerBuilder};
use tower_bearer::policy::{MemoryPolicyVersions, PolicyVersions};
use tower_bearer::verify::{IssuerConfig, Verifier};

use common::issuer::payload as claims;
use common::issuer::{HASH, PW, Reply, at_of, hash, post_form, rt_of, serve_issuer, token};
use common::redis_server::RedisServer;

fn users() -> MemoryUserStore {
    MemoryUserStore::from_users([
        User::new("1001", "alice")
            .with_tenant("acme")
            .with_pv(3)
            .with_roles(["user"])
            .with_permissions(["orders.read", "SCOPE_admin"])
            .with_password_hash(hash()),
        User::new("1002", "bob").with_password_hash(hash()),
        User::new("1003", "carol")
            .with_enabled(false)
            .with_password_hash(hash()),
        User::new("1004", "nopass"),
    ])
    .unwrap()
}

fn client(id: &str, grants: &[GrantType]) -> RegisteredClient {
    RegisteredClient::new(id, AuthMethod::ClientSecretBasic)
        .with_secret_hash(hash())
        .with_grant_types(grants.iter().copied())
        .with_scopes(["orders.read", "orders.write", "internal-service"])
        .with_audiences(["service-system"])
}

fn builder(base: &str, users: &MemoryUserStore) -> AuthorizationServerBuilder {
    let user_grants = [GrantType::Password, GrantType::RefreshToken];
    AuthorizationServer::builder(base)
        .audience(["eon-internal"])
        .password_grant(true)
        .with_user_store(Arc::new(users.clone()))
        .client(client("web", &user_grants))
        .client(client("other", &user_grants))
        .client(client("pwonly", &[GrantType::Password]))
        .client(client("svc", &[GrantType::ClientCredentials]))
        .client(client("rs", &[GrantType::ClientCredentials]).with_introspection(true))
        .client(
            RegisteredClient::new("public", AuthMethod::None)
                .with_grant_types([GrantType::Password])
                .with_scopes(["orders.read"]),
        )
}

async fn serve(
    configure: impl FnOnce(AuthorizationServerBuilder) -> AuthorizationServerBuilder,
    users: &MemoryUserStore,
) -> (AuthorizationServer, String) {
    serve_issuer(|base| configure(builder(base, users))).await
}

async fn login(base: &str, id: &str, user: &str, pw: &str) -> Reply {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    token(
        base,
        id,
        &format!(
            "grant_type=password&username={}&password={}",
            enc(user),
            enc(pw)
        ),
    )
    .await
}

async fn refresh(base: &str, id: &str, rt: &str) -> Reply {
    token(
        base,
        id,
        &format!("grant_type=refresh_token&refresh_token={rt}"),
    )
    .await
}

fn assert_invalid_grant(r: &Reply) {
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json["error"], "invalid_grant", "{r:?}");
    assert_eq!(r.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn password_grant_issues_user_claims_that_our_verifier_accepts() {
    let users = users();
    let (_server, base) = serve(|b| b, &users).await;
    let r = login(&base, "web", "alice", PW).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.headers["cache-control"], "no-store");
    // Internal scopes never reach a user token.
    assert_eq!(r.json["scope"], "orders.read orders.write");
    let at = at_of(&r);
    let rt = rt_of(&r);
    let c = claims(&at);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["uid"], "1001");
    assert_eq!(c["tenant"], "acme");
    assert_eq!(c["pv"], 3);
    assert_eq!(c["roles"], serde_json::json!(["user"]));
    assert_eq!(
        c["permissions"],
        serde_json::json!(["orders.read", "SCOPE_admin"])
    );
    assert_eq!(
        c["authorities"],
        serde_json::json!(["ROLE_user", "orders.read"])
    );
    assert_eq!(c["aud"], "eon-internal");
    assert_eq!(c["amr"], serde_json::json!(["pwd"]));
    assert_eq!(c["client_id"], "web");
    assert_eq!(c["sid"].as_str().unwrap(), rt.split('.').next().unwrap());
    assert!(c["auth_time"].as_u64().unwrap() > 1_700_000_000);
    assert!(c.get("gty").is_none());

    let verifier = Verifier::builder()
        .issuer(IssuerConfig::discovery(base.clone()))
        .audience("eon-internal")
        .typ("at+jwt")
        .build()
        .unwrap();
    let user = verifier.verify(&at).await.unwrap();
    assert_eq!(user.subject(), Some("alice"));
    assert_eq!(user.user_id(), Some("1001"));
    assert_eq!(user.tenant(), Some("acme"));
    assert_eq!(user.policy_version(), Some(3));
    assert_eq!(user.roles(), ["user"]);

    // Asked scopes are intersected with the client's; internal ones dropped.
    let r = token(
        &base,
        "web",
        "grant_type=password&username=alice&password=correct+horse&scope=orders.read+internal-service+nope",
    )
    .await;
    assert_eq!(r.json["scope"], "orders.read", "{r:?}");
    let r = token(
        &base,
        "web",
        "grant_type=password&username=alice&password=correct+horse&scope=internal-service",
    )
    .await;
    assert_eq!(r.json["error"], "invalid_scope", "{r:?}");

    // The bcrypt hash was upgraded to argon2id at the first login.
    assert_eq!(
        users.get("1001").unwrap().password_hash.unwrap().scheme(),
        PasswordScheme::Argon2
    );
    assert_eq!(login(&base, "web", "alice", PW).await.status, 200);

    // A client without refresh_token gets no refresh token; client_credentials never does.
    let r = login(&base, "pwonly", "bob", PW).await;
    assert_eq!(r.status, 200);
    assert!(r.json.get("refresh_token").is_none());
    let r = token(&base, "svc", "grant_type=client_credentials").await;
    assert_eq!(r.status, 200);
    assert!(r.json.get("refresh_token").is_none());
}

#[tokio::test]
async fn every_login_failure_is_the_same_invalid_grant() {
    let users = users();
    let (_server, base) = serve(|b| b, &users).await;
    let mut bodies = Vec::new();
    for (user, pw) in [
        ("nobody", PW),              // unknown user
        ("alice", "wrong"),          // wrong password
        ("carol", PW),               // disabled
        ("nopass", PW),              // no password hash
        ("ALICE", PW),               // usernames are exact
        ("alice", &"x".repeat(100)), // longer than bcrypt's 72 bytes: refused, never truncated
    ] {
        let r = login(&base, "web", user, pw).await;
        assert_invalid_grant(&r);
        bodies.push(r.body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

    // Not a login failure: malformed requests and clients that may not use the grant.
    let r = token(&base, "web", "grant_type=password&username=alice").await;
    assert_eq!(r.json["error"], "invalid_request");
    let r = login(&base, "svc", "alice", PW).await;
    assert_eq!(r.json["error"], "unauthorized_client");
    let r = token(
        &base,
        "", // a public client: no secret
        "grant_type=password&client_id=public&username=alice&password=correct+horse",
    )
    .await;
    assert_eq!(r.json["error"], "unauthorized_client", "{r:?}");
    let r = post_form(
        &format!("{base}/oauth2/token?password=x"),
        "web",
        "grant_type=password&username=alice&password=correct+horse",
    )
    .await;
    assert_eq!(r.json["error"], "invalid_request");

    // Switched off: the grant does not exist (and is not advertised).
    let (off, base_off) = serve(|b| b.password_grant(false), &users).await;
    let r = login(&base_off, "web", "alice", PW).await;
    assert_eq!(r.json["error"], "unsupported_grant_type");
    let grants = off.metadata()["grant_types_supported"].clone();
    assert_eq!(grants, serde_json::json!(["client_credentials"]));
}

#[tokio::test]
async fn a_username_locks_after_repeated_failures_then_recovers() {
    let users = users();
    let clock = ManualClock::new(1_800_000_000);
    let limits = LimiterConfig::default()
        .with_free_failures(2)
        .with_lock_after(4)
        .with_base_backoff(Duration::from_secs(1))
        .with_lock_duration(Duration::from_secs(600));
    let c = clock.clone();
    let (_server, base) = serve(move |b| b.clock(Arc::new(c)).user_limits(limits), &users).await;
    for _ in 0..4 {
        assert_invalid_grant(&login(&base, "web", "alice", "wrong").await);
        clock.advance(Duration::from_secs(9)); // past each backoff, not past the lock
    }
    // Locked: even the right password gets the same invalid_grant.
    let locked = login(&base, "web", "alice", PW).await;
    assert_invalid_grant(&locked);
    // Another user is not affected.
    assert_eq!(login(&base, "web", "bob", PW).await.status, 200);
    clock.advance(Duration::from_secs(601));
    assert_eq!(login(&base, "web", "alice", PW).await.status, 200);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let users = users();
    let (server, base) = serve(|b| b, &users).await;
    let first = rt_of(&login(&base, "web", "alice", PW).await);
    let r = refresh(&base, "web", &first).await;
    assert_eq!(r.status, 200, "{r:?}");
    let second = rt_of(&r);
    assert_ne!(first, second);
    assert_eq!(first.split('.').next(), second.split('.').next());
    let r = refresh(&base, "web", &second).await;
    let third = rt_of(&r);

    // The first token again: reuse. The family is revoked; the current head fails too.
    assert_invalid_grant(&refresh(&base, "web", &first).await);
    assert_invalid_grant(&refresh(&base, "web", &third).await);
    assert_invalid_grant(&refresh(&base, "web", &third).await);
    let stats = server.grant_store().stats(0).await.unwrap();
    assert_eq!(stats.reuse_detected, 1);
    // Garbage and unknown tokens: the same invalid_grant.
    assert_invalid_grant(&refresh(&base, "web", "garbage").await);
    assert_invalid_grant(
        &refresh(
            &base,
            "web",
            &format!("{}.{}", "A".repeat(22), "B".repeat(43)),
        )
        .await,
    );
}

#[tokio::test]
async fn refresh_rules_client_binding_scopes_lifetimes_and_user_reload() {
    let users = users();
    let clock = ManualClock::new(1_800_000_000);
    let c = clock.clone();
    let versions = Arc::new(MemoryPolicyVersions::new());
    let v = versions.clone();
    let (server, base) = serve(
        move |b| {
            b.clock(Arc::new(c))
                .with_policy_versions(v)
                .refresh_token_lifetimes(Duration::from_secs(100), Duration::from_secs(1000))
        },
        &users,
    )
    .await;
    let rt = rt_of(&login(&base, "web", "alice", PW).await);

    // Another client: invalid_grant, and the token still works for its own client.
    assert_invalid_grant(&refresh(&base, "other", &rt).await);
    // Widening: invalid_scope, and the token is not used up.
    let r = token(
        &base,
        "web",
        &format!("grant_type=refresh_token&refresh_token={rt}&scope=orders.read+internal-service"),
    )
    .await;
    assert_eq!(r.json["error"], "invalid_scope", "{r:?}");
    // Narrowing works.
    let r = token(
        &base,
        "web",
        &format!("grant_type=refresh_token&refresh_token={rt}&scope=orders.read"),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(claims(&at_of(&r))["scope"], "orders.read");
    let rt = rt_of(&r);

    // A role change and a policy-version bump reach the next refresh.
    users.set_roles("1001", ["admin"]);
    let pv = server.bump_policy_version("1001").await.unwrap();
    assert_eq!(pv, 4); // one more than the user store's 3
    assert_eq!(versions.current("1001").await.unwrap(), Some(4));
    let r = refresh(&base, "web", &rt).await;
    let c = claims(&at_of(&r));
    assert_eq!(c["roles"], serde_json::json!(["admin"]));
    assert_eq!(c["authorities"][0], "ROLE_admin");
    assert_eq!(c["pv"], 4);
    let rt = rt_of(&r);

    // Idle lifetime: 100 s without a refresh ends the family.
    clock.advance(Duration::from_secs(101));
    assert_invalid_grant(&refresh(&base, "web", &rt).await);

    // A disabled user: invalid_grant and the family is revoked (re-enabling does not revive it).
    let rt = rt_of(&login(&base, "web", "alice", PW).await);
    users.set_enabled("1001", false);
    assert_invalid_grant(&refresh(&base, "web", &rt).await);
    users.set_enabled("1001", true);
    assert_invalid_grant(&refresh(&base, "web", &rt).await);
    // A removed user: the same.
    let rt = rt_of(&login(&base, "web", "bob", PW).await);
    assert!(users.remove("1002"));
    assert_invalid_grant(&refresh(&base, "web", &rt).await);
}

async fn introspect(base: &str, id: &str, tok: &str) -> Reply {
    post_form(
        &format!("{base}/oauth2/introspect"),
        id,
        &format!("token={tok}"),
    )
    .await
}

async fn revoke(base: &str, id: &str, body: &str) -> Reply {
    post_form(&format!("{base}/oauth2/revoke"), id, body).await
}

#[tokio::test]
async fn revocation_and_introspection_tables() {
    let users = users();
    let (server, base) = serve(|b| b, &users).await;
    let meta = server.metadata();
    assert_eq!(meta["revocation_endpoint"], format!("{base}/oauth2/revoke"));
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{base}/oauth2/introspect")
    );
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["client_credentials", "password", "refresh_token"])
    );

    let r = login(&base, "web", "alice", PW).await;
    let (at, rt) = (at_of(&r), rt_of(&r));
    let svc_at = at_of(&token(&base, "svc", "grant_type=client_credentials").await);

    // Introspection: only `introspection: true` clients.
    let r = introspect(&base, "web", &at).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (403, Some("unauthorized_client"))
    );
    let r = post_form(&format!("{base}/oauth2/introspect"), "nobody", "token=x").await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let r = introspect(&base, "rs", &at).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["cache-control"], "no-store");
    let j = &r.json;
    assert_eq!(j["active"], true);
    assert_eq!(j["client_id"], "web");
    assert_eq!(j["username"], "alice");
    assert_eq!(j["sub"], "alice");
    assert_eq!(j["uid"], "1001");
    assert_eq!(j["tenant"], "acme");
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["iss"], base);
    assert_eq!(j["aud"], "eon-internal");
    assert_eq!(j["scope"], "orders.read orders.write");
    for k in ["exp", "iat", "jti"] {
        assert!(j.get(k).is_some(), "{k}");
    }
    let r = introspect(&base, "rs", &rt).await;
    assert_eq!(r.json["active"], true, "{r:?}");
    assert_eq!(r.json["token_type"], "refresh_token");
    assert_eq!(r.json["username"], "alice");
    let r = introspect(&base, "rs", &svc_at).await;
    assert_eq!(r.json["active"], true);
    assert!(r.json.get("username").is_none());

    // Inactive is exactly {"active":false}.
    let forged = {
        let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
        let mut c = claims(&at);
        c["sub"] = "mallory".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        parts.join(".")
    };
    let other_key =
        tower_bearer::signing::SigningKey::generate(tower_bearer::jwks::Algorithm::RS256)
            .unwrap()
            .sign(&claims(&at))
            .unwrap();
    for t in ["garbage", "a.b.c", forged.as_str(), other_key.as_str()] {
        let r = introspect(&base, "rs", t).await;
        assert_eq!(r.body.as_bytes(), br#"{"active":false}"#, "{t}");
    }

    // Revocation: garbage, unknown and missing-hint tokens are 200.
    for body in [
        "token=garbage",
        "token=a.b.c&token_type_hint=refresh_token",
        "token=x&token_type_hint=nonsense",
    ] {
        let r = revoke(&base, "web", body).await;
        assert_eq!(r.status, 200, "{body}");
        assert!(r.body.is_empty());
        assert_eq!(r.headers["cache-control"], "no-store");
    }
    let r = revoke(&base, "web", "token_type_hint=access_token").await;
    assert_eq!(r.json["error"], "invalid_request");
    let r = revoke(&base, "nobody", "token=x").await;
    assert_eq!(r.status, 401);

    // Another client's tokens are not revoked.
    assert_eq!(
        revoke(&base, "other", &format!("token={at}")).await.status,
        200
    );
    assert_eq!(
        revoke(&base, "other", &format!("token={rt}")).await.status,
        200
    );
    assert_eq!(introspect(&base, "rs", &at).await.json["active"], true);
    assert_eq!(introspect(&base, "rs", &rt).await.json["active"], true);

    // The access token: its jti goes on the revocation list (hint honoured or not).
    assert_eq!(
        revoke(
            &base,
            "web",
            &format!("token={at}&token_type_hint=refresh_token")
        )
        .await
        .status,
        200
    );
    assert_eq!(
        introspect(&base, "rs", &at).await.body.as_bytes(),
        br#"{"active":false}"#
    );
    let jti = claims(&at)["jti"].as_str().unwrap().to_owned();
    assert!(
        server
            .grant_store()
            .is_jti_revoked(&jti, tower_bearer_now())
            .await
            .unwrap()
    );
    // The refresh token still works: revoking an access token does not end the family.
    let r = refresh(&base, "web", &rt).await;
    assert_eq!(r.status, 200);
    let (at2, rt2) = (at_of(&r), rt_of(&r));
    assert_eq!(introspect(&base, "rs", &rt).await.json["active"], false); // used
    // The refresh token: the whole family ends, and access tokens carrying its sid go inactive.
    assert_eq!(
        revoke(
            &base,
            "web",
            &format!("token={rt2}&token_type_hint=refresh_token")
        )
        .await
        .status,
        200
    );
    assert_eq!(
        introspect(&base, "rs", &rt2).await.body.as_bytes(),
        br#"{"active":false}"#
    );
    assert_eq!(
        introspect(&base, "rs", &at2).await.body.as_bytes(),
        br#"{"active":false}"#
    );
    assert_invalid_grant(&refresh(&base, "web", &rt2).await);
    // A token signed by a key since retired still introspects as active.
    let old_kid = server.keys().signing_key().kid().to_owned();
    server.keys().rotate_now().await.unwrap();
    assert_ne!(server.keys().signing_key().kid(), old_kid);
    assert_eq!(introspect(&base, "rs", &svc_at).await.json["active"], true);
    // Once the key is removed, its tokens are inactive.
    server.keys().remove(&old_kid).await.unwrap();
    assert_eq!(
        introspect(&base, "rs", &svc_at).await.body.as_bytes(),
        br#"{"active":false}"#
    );
    // POST only.
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for path in ["/oauth2/revoke", "/oauth2/introspect"] {
        let res = client
            .request(
                http::Request::get(format!("{base}{path}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{path}");
        assert_eq!(res.headers()["allow"], "POST");
    }
    // Revoking again is still 200.
    assert_eq!(
        revoke(&base, "web", &format!("token={rt2}")).await.status,
        200
    );
}

fn tower_bearer_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn users_from_yaml_log_in() {
    let yaml = format!(
        r#"
security:
  authorization-server:
    issuer: http://127.0.0.1:1
    password-grant: {{ enabled: true }}
    clients:
      - {{ client-id: web, client-secret: "correct horse", grant-types: [password, refresh_token], scopes: [orders.read] }}
    users:
      - {{ username: alice, password-hash: "{HASH}", uid: "1001", tenant: acme, roles: [user], permissions: [orders.read] }}
      - {{ username: dave, password-hash: "{HASH}", enabled: false }}
"#
    );
    let cfg = SecurityConfig::from_yaml(&yaml).unwrap();
    let server = AuthorizationServer::from_security_config(&cfg)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = server.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let r = login(&base, "web", "alice", PW).await;
    assert_eq!(r.status, 200, "{r:?}");
    let c = claims(&at_of(&r));
    assert_eq!(
        (c["uid"].as_str(), c["tenant"].as_str()),
        (Some("1001"), Some("acme"))
    );
    assert_invalid_grant(&login(&base, "web", "dave", PW).await);
}

/// Refreshes until the store answers again (503 while the connection is being re-made).
async fn refresh_after_restart(base: &str, rt: &str) -> Reply {
    for _ in 0..50 {
        let r = refresh(base, "web", rt).await;
        assert_ne!(r.status, 500, "{r:?}");
        if r.status != 503 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the store did not come back");
}

#[tokio::test]
async fn redis_restart_with_aof_keeps_grants_without_it_asks_for_a_new_login() {
    for aof in [true, false] {
        let mut redis = RedisServer::start_with(aof);
        let users = users();
        let store = RedisGrantStore::connect(&redis.url(), "restart-test")
            .await
            .unwrap();
        let (_s, base) = serve(|b| b.with_grant_store(Arc::new(store)), &users).await;
        let rt = rt_of(&login(&base, "web", "alice", PW).await);
        redis.restart();
        let r = refresh_after_restart(&base, &rt).await;
        if aof {
            assert_eq!(r.status, 200, "with AOF the family survives: {r:?}");
        } else {
            assert_invalid_grant(&r);
            assert_eq!(login(&base, "web", "alice", PW).await.status, 200);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refreshes_over_two_issuers_sharing_redis() {
    let redis = RedisServer::start();
    let users = users();
    let mut bases = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let store = RedisGrantStore::connect(&redis.url(), "grants-test")
            .await
            .unwrap();
        let (s, base) = serve(|b| b.with_grant_store(Arc::new(store)), &users).await;
        servers.push(s);
        bases.push(base);
    }
    let rt = rt_of(&login(&bases[0], "web", "alice", PW).await);
    // A first rotation across replicas works.
    let rt = rt_of(&refresh(&bases[1], "web", &rt).await);

    let mut tasks = Vec::new();
    for i in 0..50 {
        let base = bases[i % 2].clone();
        let rt = rt.clone();
        tasks.push(tokio::spawn(
            async move { refresh(&base, "web", &rt).await },
        ));
    }
    let mut ok = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => ok.push(rt_of(&r)),
            _ => {
                assert_invalid_grant(&r);
                refused += 1;
            }
        }
    }
    assert_eq!((ok.len(), refused), (1, 49));
    // The 49 replays were reuse: the family is revoked, the winner's token fails too.
    assert_invalid_grant(&refresh(&bases[0], "web", &ok[0]).await);
    assert_invalid_grant(&refresh(&bases[1], "web", &ok[0]).await);
    let fam = rt.split('.').next().unwrap();
    let rec = servers[0]
        .grant_store()
        .get_family(fam, tower_bearer_now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, tower_bearer::issuer::store::FamilyState::Revoked);
    assert!(
        servers[1]
            .grant_store()
            .stats(tower_bearer_now())
            .await
            .unwrap()
            .reuse_detected
            >= 1
    );
}

#[tokio::test]
async fn store_redis_from_config_shares_revocations() {
    let redis = RedisServer::start();
    let yaml = format!(
        r#"
security:
  redis: {{ url: "{}", key-prefix: cfgtest }}
  authorization-server:
    issuer: http://127.0.0.1:1
    store: redis
    password-grant: {{ enabled: true }}
    clients:
      - {{ client-id: web, client-secret: "correct horse", grant-types: [password, refresh_token], scopes: [orders.read] }}
    users:
      - {{ username: alice, password-hash: "{HASH}", uid: "1001" }}
"#,
        redis.url()
    );
    let cfg = SecurityConfig::from_yaml(&yaml).unwrap();
    let a = AuthorizationServer::from_security_config(&cfg)
        .await
        .unwrap();
    let b = AuthorizationServer::from_security_config(&cfg)
        .await
        .unwrap();
    let mut bases = Vec::new();
    for s in [&a, &b] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        bases.push(format!("http://{}", listener.local_addr().unwrap()));
        let app = s.router();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let rt = rt_of(&login(&bases[0], "web", "alice", PW).await);
    let rt2 = rt_of(&refresh(&bases[1], "web", &rt).await);
    assert_eq!(
        revoke(&bases[0], "web", &format!("token={rt2}"))
            .await
            .status,
        200
    );
    assert_invalid_grant(&refresh(&bases[1], "web", &rt2).await);

    // The policy version goes to the Redis source the services read (same security.redis).
    assert_eq!(a.bump_policy_version("1001").await.unwrap(), 1);
    let services = cfg.redis_policy_versions().await.unwrap();
    assert_eq!(services.current("1001").await.unwrap(), Some(1));
    let r = login(&bases[1], "web", "alice", PW).await;
    assert_eq!(claims(&at_of(&r))["pv"], 1);
}
