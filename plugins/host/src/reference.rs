//! The reference inputs of the conformance check: small, fixed, and exercising the
//! corners a policy must get right (uneven capabilities, a delta short of the quorum,
//! a harmful delta, a zero score, a pool that doesn't divide evenly).

use crate::check::u128_pb;
use crate::column::to_column;
use crate::pb::NODE_KEY_LEN as KEY_LEN;
use crate::{PluginKind, pb};

/// The keys `[1; 32]`, `[2; 32]`, ..., `[count; 32]`, concatenated.
fn node_keys(count: u8) -> prost::bytes::Bytes {
    (1..=count)
        .flat_map(|i| [i; KEY_LEN])
        .collect::<Vec<u8>>()
        .into()
}

pub fn input(kind: PluginKind) -> pb::PolicyInput {
    let kind = match kind {
        PluginKind::Sharding => pb::policy_input::Kind::Sharding(pb::ShardingInput {
            round: 1,
            seed: (0..32).collect(),
            item_count: 1_000,
            node_keys: node_keys(5),
            capabilities: to_column(1..=5u64).into(),
        }),
        PluginKind::Scoring => {
            let deltas: [&[i64]; 4] = [
                &[120, 80, 100, 95],
                &[-50, -20, -70],
                &[500, 400],
                &[i64::MAX, 10, 12, 11, i64::MIN],
            ];
            pb::policy_input::Kind::Scoring(pb::ScoringInput {
                round: 1,
                quorum: 3,
                max_score: 1_000_000_000,
                measurement_counts: to_column(deltas.iter().map(|delta| delta.len() as u32)).into(),
                measurements: to_column(deltas.concat()).into(),
            })
        }
        PluginKind::Reward => pb::policy_input::Kind::Reward(pb::RewardInput {
            round: 1,
            pool: Some(u128_pb(1_000_003)),
            node_keys: node_keys(4),
            scores: to_column([0u64, 5, 7, 11]).into(),
        }),
    };
    pb::PolicyInput { kind: Some(kind) }
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
