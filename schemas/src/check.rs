//! The host-side checks: what the host promises a plugin about its input, and what
//! every output must satisfy before anything uses it.
//!
//! These checks, not the plugins, carry the ledger's guarantees: a policy may be
//! unfair, but it can't assign an item twice, invent a score, or create or lose a
//! single base unit of the reward pool.

use crate::column::{self, Fixed, Values};

use crate::v1 as pb;
use crate::v1::NODE_KEY_LEN as KEY_LEN;
use crate::v1::{policy_input, policy_output};

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

/// The values of the column `name`, or why it does not hold whole values.
fn values<'a, T: Fixed>(name: &str, column: &'a [u8]) -> Result<Values<'a, T>, String> {
    column::values(column).map_err(|ragged| format!("the {name} column: {ragged}"))
}

/// The shards cover `[0, item_count)` exactly once, and each names an input node.
pub fn sharding(input: &pb::ShardingInput, output: &pb::ShardingOutput) -> Result<(), String> {
    let nodes = values::<u64>("capabilities", &input.capabilities)?.len();
    let node_indexes = values::<u32>("node_indexes", &output.node_indexes)?;
    let starts = values::<u64>("starts", &output.starts)?;
    let counts = values::<u64>("counts", &output.counts)?;
    let count = node_indexes.len();
    if starts.len() != count || counts.len() != count {
        return Err(format!(
            "the shard columns differ in length: {count} node indexes, {} starts, {} counts",
            starts.len(),
            counts.len()
        ));
    }
    let mut shards: Vec<(u64, u64)> = Vec::with_capacity(count);
    for ((node_index, start), count) in node_indexes.zip(starts).zip(counts) {
        if node_index as usize >= nodes {
            return Err(format!(
                "a shard goes to node index {node_index}, but only {nodes} nodes are eligible"
            ));
        }
        if count == 0 {
            return Err(format!("the shard at item {start} is empty"));
        }
        shards.push((start, count));
    }
    shards.sort_unstable();
    let mut next = 0u64;
    for (start, count) in shards {
        if start < next {
            return Err(format!("item {start} is assigned twice"));
        }
        if start > next {
            return Err(format!("item {next} is assigned to no node"));
        }
        next = start.checked_add(count).ok_or("a shard ends past 2^64")?;
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
    let measurement_counts = values::<u32>("measurement_counts", &input.measurement_counts)?;
    let scores = values::<u64>("scores", &output.scores)?;
    let deltas = measurement_counts.len();
    if scores.len() != deltas {
        return Err(format!("{} scores for {deltas} deltas", scores.len()));
    }
    let quorum = input.quorum.max(1);
    for (index, (measured, score)) in measurement_counts.zip(scores).enumerate() {
        if score > input.max_score {
            return Err(format!(
                "delta {index} scored {score}, above the maximum {}",
                input.max_score
            ));
        }
        if measured < quorum && score != 0 {
            return Err(format!(
                "delta {index} has {measured} measurements, short of the quorum of {quorum}, yet scored {score}"
            ));
        }
    }
    Ok(())
}

/// One amount per node; a zero score gets 0; the amounts sum exactly to the pool, or
/// to 0 when every score is 0 (nothing is paid; the pool stays unspent).
pub fn reward(input: &pb::RewardInput, output: &pb::RewardOutput) -> Result<(), String> {
    let scores = values::<u64>("scores", &input.scores)?;
    let high = values::<u64>("amounts_hi", &output.amounts_hi)?;
    let low = values::<u64>("amounts_lo", &output.amounts_lo)?;
    let nodes = scores.len();
    let amounts = high.len();
    if low.len() != amounts {
        return Err(format!(
            "the amount columns differ in length: {amounts} high halves, {} low halves",
            low.len()
        ));
    }
    if amounts != nodes {
        return Err(format!("{amounts} amounts for {nodes} nodes"));
    }
    let pool = u128_of(input.pool.as_ref());
    let mut total_score = 0u128;
    let mut total = 0u128;
    for (index, ((score, hi), lo)) in scores.zip(high).zip(low).enumerate() {
        let amount = (u128::from(hi) << 64) | u128::from(lo);
        if score == 0 && amount != 0 {
            return Err(format!("node {index} scored 0, yet gets {amount}"));
        }
        total_score += u128::from(score);
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
            let capabilities = values::<u64>("capabilities", &i.capabilities)?;
            if i.item_count > 0 && capabilities.len() == 0 {
                return Err("items but no eligible node".into());
            }
            if capabilities.clone().any(|capability| capability == 0) {
                return Err("a node has capability 0".into());
            }
            let total = capabilities.clone().map(u128::from).sum::<u128>();
            if total > u128::from(u64::MAX) {
                return Err("capabilities sum past 2^64".into());
            }
            keys(&i.node_keys, capabilities.len())
        }
        Some(policy_input::Kind::Scoring(i)) => {
            let measured = values::<u32>("measurement_counts", &i.measurement_counts)?
                .map(u64::from)
                .sum::<u64>();
            let measurements = values::<i64>("measurements", &i.measurements)?.len();
            if measured != measurements as u64 {
                return Err(format!(
                    "the measurement counts sum to {measured}, but there are {measurements} measurements"
                ));
            }
            Ok(())
        }
        Some(policy_input::Kind::Reward(i)) => {
            let scores = values::<u64>("scores", &i.scores)?;
            let total = scores.clone().map(u128::from).sum::<u128>();
            if total > u128::from(u64::MAX) {
                return Err("scores sum past 2^64".into());
            }
            keys(&i.node_keys, scores.len())
        }
    }
}

/// `column` holds `nodes` keys of [`KEY_LEN`] bytes, in strictly ascending order.
fn keys(column: &[u8], nodes: usize) -> Result<(), String> {
    if column.len() != nodes * KEY_LEN {
        return Err(format!(
            "{} key bytes for {nodes} nodes of {KEY_LEN}-byte keys",
            column.len()
        ));
    }
    let keys = column.chunks_exact(KEY_LEN);
    if keys
        .clone()
        .zip(keys.skip(1))
        .any(|(key, next)| key >= next)
    {
        return Err("nodes are not in strictly ascending key order".into());
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
    use crate::column::to_column;

    fn shards(parts: &[(u32, u64, u64)]) -> pb::ShardingOutput {
        pb::ShardingOutput {
            node_indexes: to_column(parts.iter().map(|part| part.0)),
            starts: to_column(parts.iter().map(|part| part.1)),
            counts: to_column(parts.iter().map(|part| part.2)),
        }
    }

    fn node_keys(nodes: u8) -> prost::bytes::Bytes {
        (0..nodes)
            .flat_map(|i| [i; KEY_LEN])
            .collect::<Vec<u8>>()
            .into()
    }

    fn sharding_input(item_count: u64, nodes: u8) -> pb::ShardingInput {
        pb::ShardingInput {
            round: 1,
            seed: vec![0; 32],
            item_count,
            node_keys: node_keys(nodes),
            capabilities: to_column(std::iter::repeat_n(1u64, nodes.into())).into(),
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
        let mut short = shards(&[(0, 0, 4), (1, 4, 6)]);
        short.counts.truncate(8);
        assert!(
            sharding(&input, &short)
                .unwrap_err()
                .contains("differ in length")
        );
        let mut ragged = shards(&[(0, 0, 4), (1, 4, 6)]);
        ragged.node_indexes.pop();
        assert_eq!(
            sharding(&input, &ragged),
            Err(
                "the node_indexes column: 7 bytes is not a whole number of 4-byte u32 values"
                    .into()
            )
        );
    }

    #[test]
    fn scoring_wants_one_score_per_delta_in_range_and_zero_below_quorum() {
        let input = pb::ScoringInput {
            round: 1,
            quorum: 2,
            max_score: 100,
            measurement_counts: to_column([2u32, 1]).into(),
            measurements: to_column([5i64, 7, 5]).into(),
        };
        let out = |scores: &[u64]| pb::ScoringOutput {
            scores: to_column(scores.iter().copied()),
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
        let mut ragged = out(&[6, 0]);
        ragged.scores.push(0);
        assert!(
            scoring(&input, &ragged)
                .unwrap_err()
                .contains("the scores column: 17 bytes")
        );
    }

    #[test]
    fn reward_wants_the_exact_pool_and_nothing_for_zero_scores() {
        let input = pb::RewardInput {
            round: 1,
            pool: Some(u128_pb(10)),
            node_keys: node_keys(2),
            scores: to_column([1u64, 0]).into(),
        };
        let out = |amounts: &[u128]| pb::RewardOutput {
            amounts_hi: to_column(amounts.iter().map(|&a| (a >> 64) as u64)),
            amounts_lo: to_column(amounts.iter().map(|&a| a as u64)),
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
        let mut short = out(&[10, 0]);
        short.amounts_hi.truncate(8);
        assert!(reward(&input, &short).unwrap_err().contains("halves"));
        let mut ragged = out(&[10, 0]);
        ragged.amounts_lo.pop();
        assert!(
            reward(&input, &ragged)
                .unwrap_err()
                .contains("the amounts_lo column")
        );
        // The high halves count: 2^64 + 10 is not 10.
        let mut high = out(&[10, 0]);
        high.amounts_hi[0] = 1;
        assert!(
            reward(&input, &high)
                .unwrap_err()
                .contains("must sum to 10")
        );
        let mut big = input.clone();
        big.scores = to_column([1u64, 1]).into();
        assert!(reward(&big, &out(&[u128::MAX, u128::MAX])).is_err());
        assert!(reward(&input, &out(&[u128::MAX, 0])).is_err());
        let mut nobody = input.clone();
        nobody.scores = to_column([0u64, 0]).into();
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
    fn inputs_must_list_one_key_per_node_in_ascending_order() {
        let wrap = |i: pb::ShardingInput| pb::PolicyInput {
            kind: Some(policy_input::Kind::Sharding(i)),
        };
        let sharding = sharding_input(4, 3);
        assert_eq!(input(&wrap(sharding.clone())), Ok(()));
        let mut swapped = sharding.clone();
        let mut keys = swapped.node_keys.to_vec();
        keys.swap(0, KEY_LEN);
        swapped.node_keys = keys.into();
        assert!(input(&wrap(swapped)).unwrap_err().contains("ascending"));
        let mut short = sharding.clone();
        short.capabilities = to_column([1u64; 4]).into();
        assert!(input(&wrap(short)).unwrap_err().contains("key bytes"));
        let mut ragged = sharding;
        ragged.capabilities.truncate(20);
        assert!(
            input(&wrap(ragged))
                .unwrap_err()
                .contains("the capabilities column")
        );

        let scoring = pb::PolicyInput {
            kind: Some(policy_input::Kind::Scoring(pb::ScoringInput {
                measurement_counts: to_column([2u32, 2]).into(),
                measurements: to_column([1i64, 2, 3]).into(),
                ..Default::default()
            })),
        };
        assert!(input(&scoring).unwrap_err().contains("sum to 4"));
    }
}
