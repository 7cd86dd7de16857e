//! When the cluster grows: brokers that joined beyond the ring (a longer
//! `RUNNEL_BROKER_NAMES`, or a StatefulSet's new pods) are taken in by a resize once they are
//! ready, the next ordinals first, as many at once as are ready in a row. A resize waits for
//! the previous one to finish (every older partition sealed, no broker leaving).

use crate::consensus::cluster_state::{BrokerState, ClusterState, Command};

/// The resize to propose now, if any; `ready` says whether a broker has been healthy long
/// enough to take partitions.
pub fn growth(state: &ClusterState, ready: impl Fn(u32) -> bool) -> Option<Command> {
    let ring = state.layout.current_ring()?;
    if state.resize_under_way().is_some() {
        return None;
    }
    let joining = |o: &u32| state.brokers.get(o).is_some_and(|b| b.state == BrokerState::Joining) && ready(*o);
    let joined = (ring.brokers()..).take_while(joining).count() as u32;
    (joined > 0).then(|| Command::Resize { generation: state.layout.generation(), brokers: ring.brokers() + joined })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::partitioning::Ring;

    fn three_and_joiners(joiners: &[u32]) -> ClusterState {
        let mut s = ClusterState::default();
        s.apply(Command::AgreeRing { ring: Ring::new(3, 2), names: ["a", "b", "c"].map(String::from).to_vec() });
        for &ordinal in joiners {
            s.apply(Command::AddBroker { ordinal, name: format!("b{ordinal}") });
        }
        s
    }

    #[test]
    fn ready_joiners_in_a_row_from_the_ring_s_end_are_taken_in() {
        let s = three_and_joiners(&[3, 4, 5]);
        assert_eq!(growth(&s, |_| true), Some(Command::Resize { generation: 0, brokers: 6 }));
        assert_eq!(growth(&s, |o| o != 4), Some(Command::Resize { generation: 0, brokers: 4 }), "4 is not ready");
        assert_eq!(growth(&s, |o| o != 3), None, "5 and 4 wait for 3");
        assert_eq!(growth(&three_and_joiners(&[4]), |_| true), None, "no broker 3 yet");
        assert_eq!(growth(&three_and_joiners(&[]), |_| true), None);
    }

    #[test]
    fn a_resize_waits_for_the_previous_one_to_finish() {
        let mut s = three_and_joiners(&[3, 4]);
        s.apply(Command::Resize { generation: 0, brokers: 4 });
        assert_eq!(growth(&s, |_| true), None, "generation 0 is not sealed yet");
        for partition in 0..6 {
            s.apply(Command::Seal { partition, epoch: 0, ends: BTreeMap::new() });
        }
        assert_eq!(growth(&s, |_| true), Some(Command::Resize { generation: 1, brokers: 5 }));
    }
}
