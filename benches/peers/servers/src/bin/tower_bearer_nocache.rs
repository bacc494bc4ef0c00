//! tower-bearer's `JwtAuthLayer` with the verified-token cache off.
fn main() {
    peer_servers::serve(|| Box::pin(async { peer_servers::tower_bearer_app(0) }));
}
