//! The reference inputs of the conformance check: small, fixed, and exercising the
//! corners a policy must get right (uneven capabilities, a delta short of the quorum,
//! a harmful delta, a zero score, a pool that doesn't divide evenly).

use crate::check::u128_pb;
use crate::{PluginKind, pb};

fn key(i: u8) -> Vec<u8> {
    vec![i; 32]
}

pub fn input(kind: PluginKind) -> pb::PolicyInput {
    let kind = match kind {
        PluginKind::Sharding => pb::policy_input::Kind::Sharding(pb::ShardingInput {
            round: 1,
            seed: (0..32).collect(),
            item_count: 1_000,
            nodes: (1..=5)
                .map(|i| pb::ShardingNode {
                    node: key(i),
                    capability: u64::from(i),
                })
                .collect(),
        }),
        PluginKind::Scoring => pb::policy_input::Kind::Scoring(pb::ScoringInput {
            round: 1,
            quorum: 3,
            max_score: 1_000_000_000,
            deltas: vec![
                delta(1, &[120, 80, 100, 95]),
                delta(2, &[-50, -20, -70]),
                delta(3, &[500, 400]),
                delta(4, &[i64::MAX, 10, 12, 11, i64::MIN]),
            ],
        }),
        PluginKind::Reward => pb::policy_input::Kind::Reward(pb::RewardInput {
            round: 1,
            pool: Some(u128_pb(1_000_003)),
            nodes: [0, 5, 7, 11]
                .into_iter()
                .zip(1..)
                .map(|(score, i)| pb::NodeScore {
                    node: key(i),
                    score,
                })
                .collect(),
        }),
    };
    pb::PolicyInput { kind: Some(kind) }
}

fn delta(id: u8, measurements: &[i64]) -> pb::DeltaMeasurements {
    pb::DeltaMeasurements {
        delta_id: vec![id],
        measurements: measurements.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_inputs_keep_the_host_promises() {
        for kind in PluginKind::ALL {
            let input = input(kind);
            assert_eq!(crate::check::input(&input), Ok(()), "{kind}");
            assert_eq!(PluginKind::of_input(&input), Some(kind));
        }
    }
}
