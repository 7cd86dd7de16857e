//! Several brokers as one cluster: who the brokers are, how a new broker joins the Raft
//! group, and the broker-to-broker calls on the peer port.

mod formation;
mod node_id;
mod peer_api;
mod peers;
mod produce_forwarding;
mod record_frames;
mod topology;

pub use formation::form_cluster;
pub use node_id::load_or_create_node_id;
pub use peer_api::{router as peer_router, ActivityReport, PositionsRequest, RegistrationNotice};
pub use peers::Peers;
pub use produce_forwarding::produce_to_leader;
pub use record_frames::{decode_frames, encode_frames};
pub use topology::topology;
