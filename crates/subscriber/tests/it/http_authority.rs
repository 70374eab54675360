//! The HTTP authorities against small axum servers on port 0.
#![cfg(feature = "http-authority")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use revocast_core::http::{ErrorBody, REVOCATION_ROUTE, RevocationStatus};
use revocast_subscriber::{
    Authority, AuthorityError, ConfirmQuery, HttpAuthority, IntrospectionAuthority,
};
use serde_json::json;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn query<'a>(jti: &'a str, token: Option<&'a str>) -> ConfirmQuery<'a> {
    ConfirmQuery {
        jti,
        exp: Some(1),
        sub: None,
        iat: None,
        token,
        sid: None,
    }
}

#[tokio::test]
async fn publisher_http_authority_maps_200_404_and_errors() {
    let answer = |jti: &str, revoked: bool| RevocationStatus {
        jti: jti.to_owned(),
        revoked,
        exp: revoked.then_some(1),
        sub: None,
        revoked_at: revoked.then_some(1),
        reason: None,
        version: 3,
        epoch: None,
    };
    let app = Router::new().route(
        REVOCATION_ROUTE,
        get(move |Path(jti): Path<String>| async move {
            match jti.as_str() {
                "revoked" | "a/b c" => (StatusCode::OK, Json(json!(answer(&jti, true)))),
                "broken" => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!(ErrorBody::new("oops", "broken"))),
                ),
                // The case the CLI client and this authority used to read apart: a
                // "not revoked" about another jti.
                "mismatch" => (StatusCode::NOT_FOUND, Json(json!(answer("other", false)))),
                _ => (StatusCode::NOT_FOUND, Json(json!(answer(&jti, false)))),
            }
        }),
    );
    let base = serve(app).await;
    let auth = HttpAuthority::new(format!("{base}/"));
    let timeout = std::time::Duration::from_secs(10);
    let ask = |jti: &'static str| {
        let auth = auth.clone();
        async move {
            tokio::time::timeout(timeout, auth.confirm(query(jti, None)))
                .await
                .unwrap()
        }
    };
    let revoked = ask("revoked").await.unwrap();
    assert!(revoked.revoked);
    assert_eq!(revoked.version, Some(3), "the answer's version is read");
    assert!(
        ask("a/b c").await.unwrap().revoked,
        "jti is percent-encoded"
    );
    assert!(!ask("fine").await.unwrap().revoked);
    assert!(matches!(
        ask("broken").await,
        Err(AuthorityError::Failed(_))
    ));
    // A 404 that is not the authority's answer is an error, never "not revoked":
    // `.` and `..` are dot segments that URL normalisation removes, so the request
    // reaches another route (regression: a revoked token with jti `.` was accepted).
    for jti in [".", "..", "mismatch"] {
        assert!(
            matches!(ask(jti).await, Err(AuthorityError::Failed(_))),
            "{jti}"
        );
    }
    let elsewhere = HttpAuthority::new(format!("{base}/not-the-publisher"));
    assert!(matches!(
        elsewhere.confirm(query("fine", None)).await,
        Err(AuthorityError::Failed(_))
    ));
    let nobody = HttpAuthority::new("http://127.0.0.1:1");
    assert!(matches!(
        nobody.confirm(query("x", None)).await,
        Err(AuthorityError::Unreachable(_))
    ));
}

#[tokio::test]
async fn introspection_authority_reads_active() {
    let app = Router::new().route(
        "/introspect",
        post(|Form(form): Form<std::collections::HashMap<String, String>>| async move {
            Json(json!({ "active": form.get("token").map(String::as_str) == Some("live-token") }))
        }),
    );
    let base = serve(app).await;
    let auth = IntrospectionAuthority::new(format!("{base}/introspect"), "rs", "secret");
    assert!(
        !auth
            .confirm(query("j", Some("live-token")))
            .await
            .unwrap()
            .revoked
    );
    assert!(
        auth.confirm(query("j", Some("dead-token")))
            .await
            .unwrap()
            .revoked
    );
    assert!(matches!(
        auth.confirm(query("j", None)).await,
        Err(AuthorityError::Failed(_))
    ));
}
