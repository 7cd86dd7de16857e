//! What a connection beyond the limit gets.

use tokio::net::TcpStream;

const BODY: &str = r#"{"error":"too_many_connections","message":"the broker has as many connections open as it allows (RUNNEL_MAX_CONNECTIONS): retry shortly, or reuse connections","retriable":true}"#;

/// Writes a JSON 503 (if the socket takes it at once: a new socket's buffer is empty) and
/// closes the connection, without a task or a wait.
pub(super) fn refuse(stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(response.as_bytes());
}
