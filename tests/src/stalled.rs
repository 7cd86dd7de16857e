//! Produce requests that stop sending, as a slow or hostile client's do.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::BrokerProcess;

/// How a stalled produce starts.
#[derive(Debug, Clone, Copy)]
pub enum Stall {
    /// A chunked request that never sends a chunk.
    Chunked,
    /// A request declaring `declared` bytes of body that sends `sent` of them.
    Declared { declared: usize, sent: usize },
}

/// Opens a connection to `broker`'s producer port, sends a produce head and the start of its
/// body as `stall` says, then nothing more; the connection is the caller's to hold or drop.
pub async fn stalled_produce(broker: &BrokerProcess, stall: Stall) -> TcpStream {
    let mut stream = TcpStream::connect((broker.ip, 9251)).await.expect("connect to the producer port");
    let (framing, sent) = match stall {
        Stall::Chunked => ("transfer-encoding: chunked".to_string(), 0),
        Stall::Declared { declared, sent } => (format!("content-length: {declared}"), sent),
    };
    let head = format!("POST /v1/topic/slow/messages HTTP/1.1\r\nhost: b\r\n{framing}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send a head");
    stream.write_all(&vec![b'x'; sent]).await.expect("send the start of the body");
    stream
}
