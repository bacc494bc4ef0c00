//! `docs/operations.md` stays true:
//!
//! 1. every key the `security` parser accepts is listed in it: the key paths are read from the
//!    configuration structs themselves (a recording serde `Deserializer` walks
//!    [`SecurityConfig`] field by field), so a key added to a struct and not to the guide fails
//!    here;
//! 2. every command in it runs: each ```` ```sh ```` block is executed with `sh -eu` against a
//!    real issuer (the guide's own YAML), its management listener and a real `redis-server`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use tokio::net::TcpListener;
use tower_bearer::config::SecurityConfig;
use tower_bearer::issuer::AuthorizationServer;

const GUIDE: &str = include_str!("../docs/operations.md");

type Error = de::value::Error;

/// Walks the configuration along `route`, records the fields of the struct at its end.
struct Rec<'a> {
    route: &'a [String],
    found: &'a RefCell<BTreeSet<Vec<String>>>,
    here: Vec<String>,
}

impl<'de> Deserializer<'de> for Rec<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("leaf"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        let mut here = self.here;
        let last = here.pop().unwrap_or_default();
        here.push(format!("{last}[]"));
        v.visit_seq(One {
            rec: Some(Rec {
                route: self.route,
                found: self.found,
                here,
            }),
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        let depth = self.here.len();
        if self.route.len() == depth {
            for f in fields {
                let mut p = self.here.clone();
                p.push((*f).to_owned());
                self.found.borrow_mut().insert(p);
            }
            return Err(de::Error::custom("recorded"));
        }
        let key = self.route[depth].trim_end_matches("[]").to_owned();
        v.visit_map(OneKey {
            key: Some(key.clone()),
            rec: Some(Rec {
                route: self.route,
                found: self.found,
                here: {
                    let mut h = self.here.clone();
                    h.push(key);
                    h
                },
            }),
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct map enum identifier ignored_any
    }
}

struct One<'a> {
    rec: Option<Rec<'a>>,
}

impl<'de> SeqAccess<'de> for One<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.rec.take() {
            Some(r) => seed.deserialize(r).map(Some),
            None => Ok(None),
        }
    }
}

struct OneKey<'a> {
    key: Option<String>,
    rec: Option<Rec<'a>>,
}

impl<'de> MapAccess<'de> for OneKey<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.key.take() {
            Some(k) => seed
                .deserialize(de::value::StringDeserializer::<Error>::new(k))
                .map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(self.rec.take().expect("value after key"))
    }
}

/// Every key path of `security` that the derived parsers accept (`a.b[].c`).
fn parser_keys() -> BTreeSet<String> {
    let found = RefCell::new(BTreeSet::new());
    let mut done: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(route) = todo.pop() {
        if !done.insert(route.clone()) {
            continue;
        }
        let before: BTreeSet<Vec<String>> = found.borrow().clone();
        let _ = SecurityConfig::deserialize(Rec {
            route: &route,
            found: &found,
            here: Vec::new(),
        });
        for p in found.borrow().difference(&before) {
            todo.push(p.clone());
        }
    }
    let all = found.into_inner();
    all.iter()
        .map(|p| {
            // Seq markers are added while walking; the recorded leaf names are plain.
            p.join(".")
        })
        .collect()
}

/// Keys behind `#[serde(flatten)]` or a hand-written `Deserialize` (the recorder cannot walk
/// through those): listed here, and checked to be accepted by the parser below.
const BY_HAND: &[&str] = &[
    "internal-token.enabled",
    "internal-token.skip-clients",
    "internal-token.clients",
    "internal-token.clients[].name",
    "resource-server.internal-only.service-token.rule",
    "resource-server.internal-only.service-token.claim",
    "resource-server.internal-only.service-token.value",
];

/// The fields of `internal-token`'s flattened client (also in each `internal-token.clients[]`).
fn flattened_client_keys() -> Vec<String> {
    let found = RefCell::new(BTreeSet::new());
    let _ = tower_bearer::config::ClientSection::deserialize(Rec {
        route: &[],
        found: &found,
        here: Vec::new(),
    });
    let fields: Vec<String> = found
        .into_inner()
        .into_iter()
        .map(|p| p.join("."))
        .collect();
    let mut out = Vec::new();
    for f in fields {
        out.push(format!("internal-token.{f}"));
        out.push(format!("internal-token.clients[].{f}"));
    }
    out
}

#[test]
fn every_security_key_is_in_the_operations_guide() {
    let mut keys = parser_keys();
    assert!(keys.len() > 80, "the walk found too few keys: {keys:?}");
    assert!(keys.contains("authorization-server.clients[].client-secrets[].expires-at"));
    assert!(keys.contains("authorization-server.refresh-endpoint.allow-get"));
    keys.extend(BY_HAND.iter().map(|s| (*s).to_owned()));
    keys.extend(flattened_client_keys());
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !GUIDE.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md does not list these `security` keys:\n{}",
        missing
            .iter()
            .map(|k| format!("  `{k}`"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("{} keys checked", keys.len());
}

#[test]
fn hand_listed_keys_are_accepted_by_the_parser() {
    let yaml = r#"
security:
  resource-server:
    issuer: https://auth.example
    jwks-uri: https://auth.example/jwks
    audience: a
    internal-only: { service-token: { claim: gty, value: client-credentials } }
  internal-token:
    enabled: true
    skip-clients: [x]
    clients:
      - { name: orders, client-id: a, client-secret: test-only, token-url: "http://127.0.0.1:1/t" }
"#;
    SecurityConfig::from_yaml(yaml).unwrap();
    let bad = yaml.replace("skip-clients", "skip-clientz");
    assert!(SecurityConfig::from_yaml(&bad).is_err());
}

// ---------------------------------------------------------------------------------------------
// Every command of the guide runs.

/// The YAML block of the guide marked `# operations-test-config`.
fn guide_yaml() -> String {
    let start = GUIDE
        .find("# operations-test-config")
        .expect("the guide's example configuration");
    let block_start = GUIDE[..start].rfind("```yaml\n").unwrap() + "```yaml\n".len();
    let end = start + GUIDE[start..].find("```").unwrap();
    GUIDE[block_start..end].to_owned()
}

fn sh_blocks() -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = GUIDE;
    while let Some(i) = rest.find("```sh\n") {
        let body = &rest[i + 6..];
        let end = body.find("```").unwrap();
        out.push(body[..end].to_owned());
        rest = &body[end..];
    }
    out
}

struct Redis(std::process::Child, u16, std::path::PathBuf);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.2);
    }
}

fn redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A directory of its own: the guide's commands switch AOF on.
    let dir = std::env::temp_dir().join(format!("tb-ops-doc-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Redis(child, port, dir);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    panic!("redis-server did not start");
}

async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_the_operations_guide_runs() {
    let redis = redis();
    // The guide's configuration, on a free port (its `issuer` is rewritten to it).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let yaml = guide_yaml().replace("http://127.0.0.1:9000", &base);
    let env = |name: &str| match name {
        "ADMIN_CLIENT_SECRET" => Some("test-only-admin-secret".to_owned()),
        "WEB_CLIENT_SECRET" => Some("test-only-web-secret".to_owned()),
        "WEB_CLIENT_SECRET_NEXT" => Some("test-only-web-secret-next".to_owned()),
        _ => None,
    };
    let cfg = SecurityConfig::from_yaml_with_env(&yaml, env).unwrap();
    let server = AuthorizationServer::from_security_config(&cfg)
        .await
        .unwrap();
    let app = server.router();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let (manage, _m) = serve(server.management_router().unwrap()).await;

    let blocks = sh_blocks();
    assert!(blocks.len() >= 3, "{blocks:?}");
    for (i, block) in blocks.iter().enumerate() {
        let out = tokio::task::spawn_blocking({
            let block = block.clone();
            let (base, manage) = (base.clone(), manage.clone());
            let port = redis.1;
            move || {
                Command::new("sh")
                    .arg("-euc")
                    .arg(&block)
                    .env("AS", base)
                    .env("MANAGE", manage)
                    .env("REDIS_PORT", port.to_string())
                    .env("ADMIN_CLIENT_SECRET", "test-only-admin-secret")
                    .env("WEB_CLIENT_SECRET", "test-only-web-secret")
                    .env("WEB_CLIENT_SECRET_NEXT", "test-only-web-secret-next")
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("--- block {i} ---\n{block}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
        assert!(out.status.success(), "block {i} failed:\n{block}\n{stderr}");
    }
}
