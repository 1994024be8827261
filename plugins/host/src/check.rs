//! The host-side checks: what the host promises a plugin about its input, and what
//! every output must satisfy before anything uses it.
//!
//! These checks, not the plugins, carry the ledger's guarantees: a policy may be
//! unfair, but it can't assign an item twice, invent a score, or create or lose a
//! single base unit of the reward pool.

use crate::pb;
use crate::pb::{policy_input, policy_output};

/// Checks an output against the input it answers.
pub fn output(input: &pb::PolicyInput, output: &pb::PolicyOutput) -> Result<(), String> {
    match (&input.kind, &output.kind) {
        (Some(policy_input::Kind::Sharding(i)), Some(policy_output::Kind::Sharding(o))) => {
            sharding(i, o)
        }
        (Some(policy_input::Kind::Scoring(i)), Some(policy_output::Kind::Scoring(o))) => {
            scoring(i, o)
        }
        (Some(policy_input::Kind::Reward(i)), Some(policy_output::Kind::Reward(o))) => reward(i, o),
        (_, None) => Err("the output names no policy kind".into()),
        (_, Some(_)) => Err("the output is of another policy kind than the input".into()),
    }
}

/// The shards cover `[0, item_count)` exactly once, and each names an input node.
pub fn sharding(input: &pb::ShardingInput, output: &pb::ShardingOutput) -> Result<(), String> {
    let nodes = input.nodes.len();
    let mut shards: Vec<&pb::Shard> = output.shards.iter().collect();
    for shard in &shards {
        if shard.node_index as usize >= nodes {
            return Err(format!(
                "a shard goes to node index {}, but only {nodes} nodes are eligible",
                shard.node_index
            ));
        }
        if shard.count == 0 {
            return Err(format!("the shard at item {} is empty", shard.start));
        }
    }
    shards.sort_unstable_by_key(|shard| shard.start);
    let mut next = 0u64;
    for shard in shards {
        if shard.start < next {
            return Err(format!("item {} is assigned twice", shard.start));
        }
        if shard.start > next {
            return Err(format!("item {next} is assigned to no node"));
        }
        next = shard
            .start
            .checked_add(shard.count)
            .ok_or("a shard ends past 2^64")?;
    }
    if next < input.item_count {
        return Err(format!("item {next} is assigned to no node"));
    }
    if next > input.item_count {
        return Err(format!(
            "shards reach item {}, but the dataset has {} items",
            next - 1,
            input.item_count
        ));
    }
    Ok(())
}

/// Exactly one score per delta, each in `[0, max_score]`, and 0 below the quorum.
pub fn scoring(input: &pb::ScoringInput, output: &pb::ScoringOutput) -> Result<(), String> {
    if output.scores.len() != input.deltas.len() {
        return Err(format!(
            "{} scores for {} deltas",
            output.scores.len(),
            input.deltas.len()
        ));
    }
    let quorum = input.quorum.max(1) as usize;
    for (index, (delta, &score)) in input.deltas.iter().zip(&output.scores).enumerate() {
        if score > input.max_score {
            return Err(format!(
                "delta {index} scored {score}, above the maximum {}",
                input.max_score
            ));
        }
        if delta.measurements.len() < quorum && score != 0 {
            return Err(format!(
                "delta {index} has {} measurements, short of the quorum of {quorum}, yet scored {score}",
                delta.measurements.len()
            ));
        }
    }
    Ok(())
}

/// One amount per node; a zero score gets 0; the amounts sum exactly to the pool, or
/// to 0 when every score is 0 (the pool then carries over).
pub fn reward(input: &pb::RewardInput, output: &pb::RewardOutput) -> Result<(), String> {
    if output.amounts.len() != input.nodes.len() {
        return Err(format!(
            "{} amounts for {} nodes",
            output.amounts.len(),
            input.nodes.len()
        ));
    }
    let pool = u128_of(input.pool.as_ref());
    let mut total_score = 0u128;
    let mut total = 0u128;
    for (index, (node, amount)) in input.nodes.iter().zip(&output.amounts).enumerate() {
        let amount = u128_of(Some(amount));
        if node.score == 0 && amount != 0 {
            return Err(format!("node {index} scored 0, yet gets {amount}"));
        }
        total_score += u128::from(node.score);
        total = total
            .checked_add(amount)
            .ok_or("the amounts sum past 2^128")?;
    }
    let expected = if total_score == 0 { 0 } else { pool };
    if total != expected {
        return Err(format!(
            "the amounts sum to {total}, but must sum to {expected} (pool {pool})"
        ));
    }
    Ok(())
}

/// What the host promises every plugin about its input; a violation is a host bug.
pub fn input(input: &pb::PolicyInput) -> Result<(), String> {
    match &input.kind {
        None => Err("the input names no policy kind".into()),
        Some(policy_input::Kind::Sharding(i)) => {
            if i.seed.len() != 32 {
                return Err("the seed is not 32 bytes".into());
            }
            if i.item_count > 0 && i.nodes.is_empty() {
                return Err("items but no eligible node".into());
            }
            if i.nodes.iter().any(|n| n.capability == 0) {
                return Err("a node has capability 0".into());
            }
            let capabilities = i
                .nodes
                .iter()
                .map(|n| u128::from(n.capability))
                .sum::<u128>();
            if capabilities > u128::from(u64::MAX) {
                return Err("capabilities sum past 2^64".into());
            }
            ascending(i.nodes.iter().map(|n| n.node.as_slice()))
        }
        Some(policy_input::Kind::Scoring(_)) => Ok(()),
        Some(policy_input::Kind::Reward(i)) => {
            let scores = i.nodes.iter().map(|n| u128::from(n.score)).sum::<u128>();
            if scores > u128::from(u64::MAX) {
                return Err("scores sum past 2^64".into());
            }
            ascending(i.nodes.iter().map(|n| n.node.as_slice()))
        }
    }
}

fn ascending<'a>(keys: impl Iterator<Item = &'a [u8]>) -> Result<(), String> {
    let mut previous: Option<&[u8]> = None;
    for key in keys {
        if previous.is_some_and(|previous| previous >= key) {
            return Err("nodes are not in strictly ascending key order".into());
        }
        previous = Some(key);
    }
    Ok(())
}

pub fn u128_of(value: Option<&pb::U128>) -> u128 {
    value.map_or(0, |v| (u128::from(v.hi) << 64) | u128::from(v.lo))
}

pub fn u128_pb(value: u128) -> pb::U128 {
    pb::U128 {
        hi: (value >> 64) as u64,
        lo: value as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(parts: &[(u32, u64, u64)]) -> pb::ShardingOutput {
        pb::ShardingOutput {
            shards: parts
                .iter()
                .map(|&(node_index, start, count)| pb::Shard {
                    node_index,
                    start,
                    count,
                })
                .collect(),
        }
    }

    fn sharding_input(item_count: u64, nodes: u8) -> pb::ShardingInput {
        pb::ShardingInput {
            round: 1,
            seed: vec![0; 32],
            item_count,
            nodes: (0..nodes)
                .map(|i| pb::ShardingNode {
                    node: vec![i; 32],
                    capability: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn sharding_accepts_an_exact_cover_in_any_order() {
        let input = sharding_input(10, 2);
        assert_eq!(sharding(&input, &shards(&[(1, 4, 6), (0, 0, 4)])), Ok(()));
    }

    #[test]
    fn sharding_refuses_gaps_overlaps_overruns_and_unknown_nodes() {
        let input = sharding_input(10, 2);
        let gap = sharding(&input, &shards(&[(0, 0, 4), (1, 5, 5)]));
        assert_eq!(gap, Err("item 4 is assigned to no node".into()));
        let overlap = sharding(&input, &shards(&[(0, 0, 5), (1, 4, 6)]));
        assert_eq!(overlap, Err("item 4 is assigned twice".into()));
        let short = sharding(&input, &shards(&[(0, 0, 9)]));
        assert_eq!(short, Err("item 9 is assigned to no node".into()));
        let long = sharding(&input, &shards(&[(0, 0, 11)]));
        assert!(long.unwrap_err().contains("has 10 items"));
        let unknown = sharding(&input, &shards(&[(2, 0, 10)]));
        assert!(unknown.unwrap_err().contains("node index 2"));
        let empty = sharding(&input, &shards(&[(0, 0, 10), (1, 10, 0)]));
        assert!(empty.unwrap_err().contains("empty"));
        let overflow = sharding(&input, &shards(&[(0, 0, 10), (1, 10, u64::MAX)]));
        assert!(overflow.is_err());
    }

    #[test]
    fn scoring_wants_one_score_per_delta_in_range_and_zero_below_quorum() {
        let input = pb::ScoringInput {
            round: 1,
            quorum: 2,
            max_score: 100,
            deltas: vec![
                pb::DeltaMeasurements {
                    delta_id: vec![1],
                    measurements: vec![5, 7],
                },
                pb::DeltaMeasurements {
                    delta_id: vec![2],
                    measurements: vec![5],
                },
            ],
        };
        let out = |scores: &[u64]| pb::ScoringOutput {
            scores: scores.to_vec(),
        };
        assert_eq!(scoring(&input, &out(&[6, 0])), Ok(()));
        assert!(scoring(&input, &out(&[6])).is_err());
        assert!(
            scoring(&input, &out(&[101, 0]))
                .unwrap_err()
                .contains("above")
        );
        assert!(
            scoring(&input, &out(&[6, 5]))
                .unwrap_err()
                .contains("quorum")
        );
    }

    #[test]
    fn reward_wants_the_exact_pool_and_nothing_for_zero_scores() {
        let input = pb::RewardInput {
            round: 1,
            pool: Some(u128_pb(10)),
            nodes: vec![
                pb::NodeScore {
                    node: vec![1; 32],
                    score: 1,
                },
                pb::NodeScore {
                    node: vec![2; 32],
                    score: 0,
                },
            ],
        };
        let out = |amounts: &[u128]| pb::RewardOutput {
            amounts: amounts.iter().map(|&a| u128_pb(a)).collect(),
        };
        assert_eq!(reward(&input, &out(&[10, 0])), Ok(()));
        assert!(
            reward(&input, &out(&[9, 0]))
                .unwrap_err()
                .contains("must sum to 10")
        );
        assert!(reward(&input, &out(&[11, 0])).is_err());
        assert!(
            reward(&input, &out(&[9, 1]))
                .unwrap_err()
                .contains("scored 0")
        );
        assert!(reward(&input, &out(&[10])).is_err());
        let overflow = out(&[u128::MAX, 0]);
        let mut big = input.clone();
        big.nodes[1].score = 1;
        assert!(
            reward(
                &big,
                &pb::RewardOutput {
                    amounts: vec![u128_pb(u128::MAX), u128_pb(u128::MAX)]
                }
            )
            .is_err()
        );
        assert!(reward(&input, &overflow).is_err());
        let mut nobody = input.clone();
        nobody.nodes[0].score = 0;
        assert_eq!(reward(&nobody, &out(&[0, 0])), Ok(()));
        assert!(reward(&nobody, &out(&[10, 0])).is_err());
    }

    #[test]
    fn outputs_of_another_kind_are_refused() {
        let input = pb::PolicyInput {
            kind: Some(policy_input::Kind::Sharding(sharding_input(0, 1))),
        };
        let scoring = pb::PolicyOutput {
            kind: Some(policy_output::Kind::Scoring(pb::ScoringOutput::default())),
        };
        assert!(output(&input, &scoring).unwrap_err().contains("another"));
        assert!(output(&input, &pb::PolicyOutput::default()).is_err());
    }

    #[test]
    fn inputs_must_list_nodes_in_ascending_order() {
        let mut sharding = sharding_input(4, 3);
        let wrap = |i: pb::ShardingInput| pb::PolicyInput {
            kind: Some(policy_input::Kind::Sharding(i)),
        };
        assert_eq!(input(&wrap(sharding.clone())), Ok(()));
        sharding.nodes.swap(0, 1);
        assert!(input(&wrap(sharding)).is_err());
    }
}
