//! `POST /v1/tokens/revoke` on the discovery port (SPEC §13): refuses a token before its
//! expiry, on every broker, through Raft. Needs a token with `admin` on `*`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::{finish, read_small_body, SharedState};
use crate::auth::{Access, Need, MAX_TOKEN_ID};
use crate::consensus::cluster_state::{Command, CommandResult};
use crate::consensus::revocations::{Revoked, MAX_REVOKED_TOKENS};
use crate::error::ApiError;

pub fn routes() -> Router<SharedState> {
    Router::new().route("/v1/tokens/revoke", post(revoke))
}

/// `{"id": jti, "expiresAt": exp?}`: without `expiresAt` the revocation is kept a year
/// (`UNKNOWN_EXPIRY_KEPT_SECS`), since the broker cannot know when the token would expire.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RevokeBody {
    id: String,
    #[serde(default)]
    expires_at: Option<u64>,
}

#[tracing::instrument(name = "revoke token", skip_all)]
async fn revoke(
    State(app): State<SharedState>,
    access: Access,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let result = async {
        access.require(Need::Cluster)?;
        let held = read_small_body(&app, &headers, body).await?;
        let body: RevokeBody = serde_json::from_slice(&held.bytes).map_err(|e| {
            ApiError::BadRequest(format!("the body must be JSON {{\"id\": token id, \"expiresAt\": seconds?}}: {e}"))
        })?;
        if body.id.is_empty() || body.id.len() > MAX_TOKEN_ID {
            return Err(ApiError::BadRequest(format!("id must be 1 to {MAX_TOKEN_ID} characters")));
        }
        let now = crate::peer::now_ms() / 1000;
        let command = Command::RevokeToken { id: body.id.clone(), until: body.expires_at, now };
        match app.raft.propose(command).await? {
            CommandResult::TokenRevoked(Revoked::Yes) => {
                tracing::info!(token = %body.id, expires_at = ?body.expires_at, "token revoked");
                Ok(Json(serde_json::json!({"revoked": body.id, "expiresAt": body.expires_at})).into_response())
            }
            CommandResult::TokenRevoked(Revoked::ListFull) => Err(ApiError::RevocationsFull(format!(
                "{MAX_REVOKED_TOKENS} tokens are revoked and none has expired yet: rotate the signing key instead"
            ))),
            other => Err(ApiError::Internal(format!("a revocation was applied as {other:?}"))),
        }
    }
    .await;
    finish(&app, "revoke_token", result)
}
