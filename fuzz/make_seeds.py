#!/usr/bin/env python3
"""Writes the checked-in seed corpora (fuzz/seeds/<target>/): valid and near-valid inputs.

Run from the repository root: `python3 fuzz/make_seeds.py [VECTORS_DIR]` (default
../shared/vectors; the Wycheproof / JOSE cookbook inputs are skipped when it is absent).
The layouts are the targets' own (see the doc comment of each target).
"""
import base64, hashlib, json, os, shutil, sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
vectors = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(root), "..", "..", "shared", "vectors")
seeds = {}

def add(target, name, data):
    seeds.setdefault(target, {})[name] = data if isinstance(data, bytes) else data.encode()

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()

# bearer: sel uri \n header...
add("bearer", "header", b"\x00/orders\nBearer abc.def.ghi")
add("bearer", "scheme_case", b"\x00/\nbEaReR   abc-_~+/==")
add("bearer", "basic", b"\x00/\nBasic dXNlcjpwdw==")
add("bearer", "two_headers", b"\x00/\nBearer a\nBearer b")
add("bearer", "query", b"\x01/orders?x=1&access_token=abc%2Edef\n")
add("bearer", "query_and_header", b"\x01/?access_token=abc\nBearer abc")
add("bearer", "too_large", b"\x02/\nBearer 0123456789abcdefXYZ")

# verify (arbitrary tokens): sel 0/1 raw text, sel 2/3 header \xff payload \xff signature
claims = {"iss": "https://auth.example", "aud": "orders", "sub": "alice", "exp": 4000000000, "iat": 1699999000}
hdr_ed = {"alg": "EdDSA", "kid": "fuzz-ed25519", "typ": "JWT"}
add("verify", "segments_ed", b"\x02" + compact(hdr_ed) + b"\xff" + compact(claims) + b"\xff" + bytes(64))
add("verify", "segments_rs", b"\x03" + compact({"alg": "RS256", "kid": "fuzz-rsa", "typ": "at+jwt"}) + b"\xff"
    + compact(dict(claims, jti="j1")) + b"\xff" + bytes(256))
add("verify", "none", b"\x00" + (b64u(compact({"alg": "none"})) + "." + b64u(compact(claims)) + ".").encode())
add("verify", "jwe_form", b"\x00eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d")
add("verify", "json_serialization", b"\x01" + compact({"payload": "e30", "signatures": []}))
sig_path = os.path.join(vectors, "wycheproof", "json_web_signature_test.json")
if os.path.exists(sig_path):
    groups = json.load(open(sig_path))["testGroups"]
    picked = 0
    for gi in (0, 1, 2, 6, 22):
        for t in groups[gi]["tests"][:2]:
            if isinstance(t.get("jws"), str):
                add("verify", f"wycheproof_{t['tcId']}", b"\x00" + t["jws"].encode())
                picked += 1

# verify_signed: sel header \xff payload (signed here with the fixed-kid test keys)
def signed(name, sel, header, payload):
    h = header if isinstance(header, bytes) else compact(header)
    p = payload if isinstance(payload, bytes) else compact(payload)
    add("verify_signed", name, bytes([sel]) + h + b"\xff" + p)

signed("valid_ed", 0, hdr_ed, dict(claims, roles=["admin"], scope="orders.read", uid="u-1", tenant="acme", pv=3))
signed("valid_es", 2, {"alg": "ES256", "kid": "fuzz-p256"}, dict(claims, aud=["orders", "x"], nbf=1699999000))
signed("valid_rs", 6, {"alg": "RS256", "kid": "fuzz-rsa", "typ": "JWT"}, claims)
signed("valid_other_issuer", 4, {"alg": "ES256", "kid": "fuzz-other"}, dict(claims, iss="https://other.example"))
signed("strict_valid", 1, {"alg": "EdDSA", "kid": "fuzz-ed25519", "typ": "at+jwt"},
       dict(claims, jti="j-1", realm_access={"roles": ["admin"]}, org={"id": "acme"}, authorities=["ROLE_x"],
            scp=["a", "b"], client_id="svc", permissions=["orders:read"]))
signed("expired", 0, hdr_ed, dict(claims, exp=1600000000))
signed("not_yet", 0, hdr_ed, dict(claims, nbf=1800000000))
signed("wrong_aud", 0, hdr_ed, dict(claims, aud="billing"))
signed("crit", 0, dict(hdr_ed, crit=["exp"]), claims)
signed("b64_false", 0, dict(hdr_ed, b64=False, crit=["b64"]), claims)
signed("embedded_jwk", 1, dict(hdr_ed, typ="at+jwt", jwk={"kty": "OKP", "crv": "Ed25519", "x": "AA"}), dict(claims, jti="j"))
signed("duplicate_member", 0, hdr_ed, b'{"iss":"https://auth.example","aud":"orders","exp":4000000000,"sub":"a","sub":"b"}')
signed("float_exp", 0, hdr_ed, b'{"iss":"https://auth.example","aud":"orders","exp":4e9,"iat":1.5e9,"pv":"7"}')
signed("no_kid", 0, {"alg": "EdDSA"}, claims)
signed("not_json", 0, hdr_ed, b"not json")

# jwks: sel json
add("jwks", "ed25519", b"\x00" + compact({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "use": "sig",
                                                     "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}))
add("jwks", "empty", b"\x00" + compact({"keys": []}))
add("jwks", "not_a_set", b"\x01[1,2,3]")
for rel, sel in (("jose-cookbook/jwk/3_1.ec_public_key.json", 2), ("jose-cookbook/jwk/3_3.rsa_public_key.json", 1),
                 ("jose-cookbook/jwk/3_5.symmetric_key_mac_computation.json", 3)):
    p = os.path.join(vectors, rel)
    if os.path.exists(p):
        add("jwks", os.path.basename(rel).split(".")[0], bytes([sel]) + compact({"keys": [json.load(open(p))]}))
key_path = os.path.join(vectors, "wycheproof", "json_web_key_test.json")
if os.path.exists(key_path):
    for gi, g in enumerate(json.load(open(key_path))["testGroups"][:5]):
        add("jwks", f"wycheproof_set_{gi}", bytes([gi % 4]) + compact(g["private"]))

# authz: sel method ' ' path (sel: user = sel % 5, bit 7 = through http::Uri)
for name, data in {
    "public": b"\x00GET /public/a/b", "health": b"\x00GET /health/", "admin_post": b"\x01POST /admin/users",
    "admin_delete_root": b"\x02DELETE /admin", "internal": b"\x83GET /internal/sync?x=1",
    "reports": b"\x04GET /reports/r-1/export/", "encoded_dot": b"\x01GET /a/%2e%2e/admin",
    "dot_dot": b"\x00GET /public/../admin", "orders": b"\x01PUT /orders/o-1/items/2",
    "utf8": b"\x01GET /caf%C3%A9/%e2%82%ac", "extension": b"\x01post /admin/x",
}.items():
    add("authz", name, data)

# config: YAML
design = """listen: 127.0.0.1:8080
security:
  http-client: { timeout-seconds: 5, allow-insecure-http: false }
  resource-server:
    issuer: https://auth.eon.internal
    jwks-uri: http://127.0.0.1:9000/oauth2/jwks
    audience: [eon-internal]
    algorithms: [RS256, ES256, EdDSA]
    leeway-seconds: ${NUM}
    typ: at+jwt
    required-claims: [sub, client_id, jti]
    claims: { user-id: uid, roles: realm_access.roles, permissions: permissions, tenant: tenant, merge-authorities-claim: ${BOOL} }
    token-cache: { max-entries: 100000 }
    internal-only:
      scope: internal-service
      paths: ["/internal/**"]
      service-token: { claim: gty, value: client-credentials }
    policy-version: { max-staleness-seconds: 5 }
    rules:
      - { path: "/public/**", permit-all: true }
      - { path: "/admin/**", methods: [POST, DELETE], any-role: [admin] }
      - { path: "/reports/{id}", scope: reports.read }
      - { path: "/**", authenticated: true }
    default: deny
  internal-token:
    enabled: true
    client-id: internal-service-client
    client-secret: ${SECRET}
    token-url: http://127.0.0.1:9000/oauth2/token
    scope: internal-service
    audience: service-system
    audience-parameter: audience
    client-auth: client_secret_basic
    refresh-ahead-seconds: 60
    destinations: ["http://127.0.0.1:9002"]
    skip-clients: [payments-gateway]
  redis: { url: "redis://127.0.0.1:${PORT}", key-prefix: tower-bearer }
"""
add("config", "design", design)
add("config", "minimal", "security:\n  redis: { url: redis://localhost }\n")
add("config", "unknown_key", "security:\n  resource-server: { issuer: x, jwks-uri: y, bogus: 1 }\n")
add("config", "unset_var", "security:\n  redis: { url: \"${NOPE}\" }\n")
add("config", "anchors", "a: &a [1, 2]\nsecurity:\n  resource-server:\n    issuer: i\n    audience: *a\n")
add("config", "clients", "security:\n  internal-token:\n    clients:\n      - { name: orders, client-id: o, client-secret: s, token-url: http://127.0.0.1/t, destinations: [http://127.0.0.1:1] }\n")

# redis_value: sel 0 raw value; sel 1 clear_fp \n plaintext
def fp(token):
    return hashlib.sha256(token.encode()).hexdigest()[:32]

payload = {"v": 1, "token": "abc", "token_type": "Bearer", "expires_at": 1900000000, "refresh_at": 1899999940, "fingerprint": fp("abc")}
add("redis_value", "valid_plain", b"\x01" + fp("abc").encode() + b"\n" + compact(payload))
add("redis_value", "fp_mismatch", b"\x01" + fp("abd").encode() + b"\n" + compact(payload))
add("redis_value", "version_2", b"\x01" + fp("abc").encode() + b"\n" + compact(dict(payload, v=2)))
add("redis_value", "raw_value", b"\x00" + fp("abc").encode() + b":" + base64.b64encode(bytes(40)).rstrip(b"="))
add("redis_value", "raw_short", b"\x00x:AAAA")


def add2(target, name, text):
    """The first character is the selector byte; the rest is UTF-8, but for the reply-item
    markers \\xfe (nil) and \\xfd (integer), written raw."""
    data = bytes([ord(text[0])]) + text[1:].encode()
    add(target, name, data.replace("\xfe".encode(), b"\xfe").replace("\xfd".encode(), b"\xfd"))

# token_endpoint: sel bit 7 clear: auth lines \n\n body (direct); set: requests split by \0 (router)
def basic(id_, secret):
    return "Basic " + base64.b64encode(f"{id_}:{secret}".encode()).decode()

SVC = basic("svc", "fuzz-secret-basic")
FORM = "Content-Type: application/x-www-form-urlencoded"
add2("token_endpoint", "d_basic", f"\x00{SVC}\n\ngrant_type=client_credentials&scope=orders.read")
add2("token_endpoint", "d_basic_same_id", f"\x00{SVC}\n\nclient_id=svc&grant_type=client_credentials")
add2("token_endpoint", "d_basic_other_id", f"\x00{SVC}\n\nclient_id=poster")
add2("token_endpoint", "d_two_methods", f"\x00{SVC}\n\nclient_secret=x&client_id=svc")
add2("token_endpoint", "d_two_headers", f"\x00{SVC}\n{SVC}\n\n")
add2("token_endpoint", "d_post", "\x00\n\nclient_id=poster&client_secret=fuzz-secret-post&grant_type=client_credentials")
add2("token_endpoint", "d_id_only", "\x00\n\nclient_id=public&grant_type=password&username=alice&password=fuzz-password")
add2("token_endpoint", "d_repeat", "\x00\n\nclient_id=a&client_id=a&resource=r1&resource=r2")
add2("token_endpoint", "d_bearer", "\x00Bearer abc\n\n")
add2("token_endpoint", "d_encoded", "\x00" + basic("my%3Aclient", "p%2Bw%25d+x%3A") + "\t \n\n")
add2("token_endpoint", "d_bad_b64", "\x00bAsIc  c3ZjOmZ1enotc2VjcmV0LWJhc2lj=\n\n")
add2("token_endpoint", "d_round_trip", "\x40\n\nmy:client id\np+w%d x:\u00e9")

def req(method, path, headers, body):
    return f"{method} {path}\n" + "".join(h + "\n" for h in headers) + "\n" + body

cc = req("POST", "/oauth2/token", [FORM, "Authorization: " + SVC], "grant_type=client_credentials&scope=orders.read&audience=orders")
pw = req("POST", "/oauth2/token", [FORM, "Authorization: " + SVC], "grant_type=password&username=alice&password=fuzz-password&scope=orders.read")
rt = lambda tok: req("POST", "/oauth2/token", [FORM, "Authorization: " + SVC], f"grant_type=refresh_token&refresh_token={tok}")
add2("token_endpoint", "r_client_credentials", "\x80" + cc)
add2("token_endpoint", "r_post_client", "\x81" + req("POST", "/oauth2/token", [FORM],
    "grant_type=client_credentials&client_id=poster&client_secret=fuzz-secret-post"))
add2("token_endpoint", "r_public_password", "\x80" + req("POST", "/oauth2/token", [FORM],
    "grant_type=password&client_id=public&username=alice&password=fuzz-password&scope=profile"))
add2("token_endpoint", "r_refresh_reuse", "\x80" + "\0".join([pw, rt("@RT@"), rt("@RT1@"), rt("@RT@")]))
ac = lambda extra: req("POST", "/oauth2/token", [FORM], "grant_type=authorization_code&client_id=public&code=fuzz-code"
    "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" + extra)
add2("token_endpoint", "r_code_replay", "\x80" + "\0".join([ac(""), ac(""), req("POST", "/oauth2/token", [FORM],
    "grant_type=refresh_token&client_id=public&refresh_token=@RT@")]))
add2("token_endpoint", "r_code_svc", "\x80" + req("POST", "/oauth2/token", [FORM, "Authorization: " + SVC],
    "grant_type=authorization_code&code=fuzz-code-svc&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
add2("token_endpoint", "r_get", "\x80" + req("GET", "/oauth2/token", [], ""))
add2("token_endpoint", "r_query_secret", "\x80" + req("POST", "/oauth2/token?client_secret=x", [FORM, "Authorization: " + SVC], "grant_type=client_credentials"))
add2("token_endpoint", "r_json_body", "\x80" + req("POST", "/oauth2/token", ["Content-Type: application/json", "Authorization: " + SVC], "{}"))
add2("token_endpoint", "r_wrong_secret", "\x81" + req("POST", "/oauth2/token", [FORM, "Authorization: " + basic("svc", "nope")], "grant_type=client_credentials"))
add2("token_endpoint", "r_revoke_introspect", "\x80" + "\0".join([cc,
    req("POST", "/oauth2/introspect", [FORM, "Authorization: " + SVC], "token=@AT@"),
    req("POST", "/oauth2/revoke", [FORM, "Authorization: " + SVC], "token=@AT@&token_type_hint=access_token")]))

# grant_records: sel, then \n-separated Redis reply items
fields = ["client", "web", "user", "1001", "scopes", "orders.read profile", "auth_time", "1700000000",
          "created", "1700000000", "last_used", "1700000100", "idle_exp", "1700003700", "abs_exp",
          "1700086400", "idle_ttl", "3600", "state", "active", "gen", "1", "head", "x" * 43]
items = lambda *xs: "\n".join(xs)
add2("grant_records", "family", "\x00" + items(*fields))
add2("grant_records", "family_revoked_dup", "\x00" + items(*fields, "state", "revoked", "gen", "+2"))
add2("grant_records", "family_missing", "\x00" + items(*fields[:-6]))
add2("grant_records", "rotated", "\x01" + items("rotated", "1700003700", *fields))
add2("grant_records", "reused", "\x01" + items("reused", "1", *fields))
add2("grant_records", "rotated_short", "\x01rotated")
add2("grant_records", "not_found", "\x01not_found")
add2("grant_records", "lookup", "\x02" + items("current", *fields))
add2("grant_records", "lookup_used_nil_item", "\x02" + items("used", *fields[:4]) + "\n\xfe")
add2("grant_records", "lookup_nil", "\x82")
code = compact({"client_id": "web", "user_id": "1001", "redirect_uri": "https://app.example/cb", "scopes": ["a"],
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
                "nonce": None, "auth_time": 1700000000}).decode()
add2("grant_records", "code_taken", "\x03" + items("taken", code))
add2("grant_records", "code_reused", "\x03" + items("reused", "0123456789abcdefABCDEF"))
add2("grant_records", "code_int", "\x03" + items("taken") + "\n\xfd42")
add2("grant_records", "refresh_token", "\x04" + "0123456789abcdefABCDEF." + "A" * 42 + "_")
add2("grant_records", "refresh_family_contains_secret", "\x04012689" + "A" * 46 + "abcdEz." + "A" * 43)
add2("grant_records", "refresh_bad", "\x04" + "short." + "A" * 43)

# claims_json: a token's claims text (the scanner against serde_json)
add("claims_json", "token", compact({"iss": "https://auth.example", "aud": ["orders", "billing"], "sub": "alice",
    "uid": 1001, "scope": "a b", "roles": ["user", "admin"], "exp": 1700000300, "iat": 1.7e9, "nbf": -0.0,
    "x": {"y": [{"z": None, "t": True, "f": False}]}}))
add("claims_json", "escapes", r'{"s":"a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\ud83d\ude00","\u0061":1}')
add("claims_json", "surrogates", r'{"a":"\ud83d","b":"\ude00","c":"\ud83d\u0041"}')
add("claims_json", "numbers", '{"n":[0,-0,01,-1,1.5,1e400,-1e400,1E-5,18446744073709551616,-9223372036854775809,1.,.5]}')
add("claims_json", "duplicates", '{"a":{"b":1,"b":2},"\u0061":1}')
add("claims_json", "private_number", '{"exp":{"$serde_json::private::Number":"1"}}')
add("claims_json", "deep", "[" * 127 + "]" * 127)
add("claims_json", "whitespace", ' \t\n\r{ "a" : [ 1 , { } ] } \x0c')

for target, files in seeds.items():
    d = os.path.join(root, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(files)} seeds")
