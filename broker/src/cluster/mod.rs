//! Several brokers as one cluster (membership): who the brokers are and how each reaches the
//! others, this broker's node id, how a new broker joins the Raft group (and the peer routes
//! for it), and the framing of records in peer bodies.

mod formation;
mod node_id;
mod peer_api;
mod peers;
mod record_frames;
mod ring_agreement;
mod topology;

pub use formation::form_cluster;
pub use node_id::load_or_create_node_id;
pub use peer_api::router as peer_router;
pub use peers::Peers;
pub use record_frames::{decode_frames, encode_frames};
pub use ring_agreement::{agree_ring, disagreement};
pub use topology::topology;
