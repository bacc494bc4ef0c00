//! No authentication: the upper bound.
use axum::routing::get;
use axum::Router;

fn main() {
    peer_servers::serve(|| {
        Box::pin(async {
            Router::new().route("/hello", get(|| async { peer_servers::hello("anonymous") }))
        })
    });
}
