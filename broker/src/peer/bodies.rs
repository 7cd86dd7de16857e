//! Every peer request's body is read under the peer-body budget and the body deadline before
//! anything else looks at it, whether or not the port is authenticated: a sender that is slow,
//! or not a broker at all, holds at most its lookahead until it has sent what it declared.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::PeerError;
use crate::memory::{declared_length, read_body, BodyRules, Budget};

/// What the middleware needs.
#[derive(Clone)]
pub struct PeerBodies {
    pub budget: Budget,
    pub rules: BodyRules,
}

/// Axum middleware (`middleware::from_fn_with_state(bodies, read_peer_bodies)`): the body's
/// memory stays reserved until the route has answered.
pub async fn read_peer_bodies(State(bodies): State<PeerBodies>, request: Request, next: Next) -> Response {
    let (head, body) = request.into_parts();
    match read_body(body, declared_length(&head.headers), bodies.rules, &bodies.budget).await {
        Ok(held) => {
            let response = next.run(Request::from_parts(head, Body::from(held.bytes))).await;
            drop(held.reservation);
            response
        }
        Err(e) => PeerError::from(e).into_response(),
    }
}
