//! tower-bearer's `JwtAuthLayer` with its verified-token cache (the default).
fn main() {
    peer_servers::serve(|| Box::pin(async { peer_servers::tower_bearer_app(100_000) }));
}
