//! A broker's Raft node id. It is random and stored with the data, so a broker whose disk
//! was wiped comes back under a new id: Raft never mistakes it for the member it replaced
//! (which may have voted or acknowledged entries the new disk does not hold).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;

pub fn load_or_create_node_id(home: &Path) -> std::io::Result<u64> {
    let path = home.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: not a node id ({e})", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // RandomState is seeded from the OS's randomness for every new instance.
            let id = RandomState::new().build_hasher().finish().max(1);
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, id.to_string())?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(home)?.sync_all()?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_kept_and_a_wiped_home_gets_a_new_one() {
        let home = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_node_id(home.path()).expect("create");
        assert_eq!(load_or_create_node_id(home.path()).expect("load"), first);
        let wiped = tempfile::tempdir().expect("tempdir");
        assert_ne!(load_or_create_node_id(wiped.path()).expect("create"), first);
        std::fs::write(home.path().join("node_id"), "garbage").expect("write");
        assert!(load_or_create_node_id(home.path()).is_err(), "a damaged id is an error, not a new identity");
    }
}
