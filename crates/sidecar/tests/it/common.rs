//! What the proxy tests share: the upstream that echoes the identity headers, and a
//! loopback server for it.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::HeaderMap;

/// The audience of the test provider's tokens.
pub const AUD: &str = "orders-api";

/// The upstream: echoes the X-Auth-* headers it received.
pub async fn echo(headers: HeaderMap) -> Json<BTreeMap<String, String>> {
    Json(
        headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-auth-"))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("?").to_owned()))
            .collect(),
    )
}

/// Serves `router` on a random loopback port; gives the port.
pub async fn serve(router: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    port
}
