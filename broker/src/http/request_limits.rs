//! Our own limits on a request's head (see [`crate::limits::MAX_URI_BYTES`] and
//! [`crate::limits::MAX_HEADER_BYTES`]), checked before routing. They sit below hyper's, so an
//! over-long target or over-large headers get a JSON answer like every other error instead of
//! hyper's empty one.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::limits::{MAX_HEADER_BYTES, MAX_URI_BYTES};

/// Axum middleware (`middleware::from_fn(within_request_limits)`).
pub async fn within_request_limits(request: Request, next: Next) -> Response {
    match check(&request) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

fn check(request: &Request) -> Result<(), ApiError> {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong { limit: MAX_URI_BYTES });
    }
    // As they were on the wire: `name: value\r\n`.
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge { limit: MAX_HEADER_BYTES });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    #[test]
    fn the_limits_are_inclusive() {
        let at_limit = format!("/{}", "a".repeat(MAX_URI_BYTES - 1));
        let ok = Request::builder().uri(at_limit.as_str()).body(Body::empty()).expect("request");
        assert!(check(&ok).is_ok());
        let over = Request::builder().uri(format!("{at_limit}a")).body(Body::empty()).expect("request");
        assert!(matches!(check(&over), Err(ApiError::UriTooLong { .. })));
        let value = "v".repeat(MAX_HEADER_BYTES);
        let big = Request::builder().uri("/").header("x-big", value).body(Body::empty()).expect("request");
        assert!(matches!(check(&big), Err(ApiError::HeadersTooLarge { .. })));
    }
}
