//! A response body that keeps its memory reserved until it has been sent (or dropped).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};

use super::Reservation;

struct Held {
    body: Body,
    _reservation: Reservation,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// `body`, holding `reservation` until the connection has written it or gave up.
pub fn hold_until_sent(body: Body, reservation: Reservation) -> Body {
    Body::new(Held { body, _reservation: reservation })
}
