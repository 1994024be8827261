//! The default reward policy: splits the round's pool among the nodes in proportion to
//! their scores, exactly, by the largest-remainder method.
//!
//! Who uses it: the host embeds it as the `.wasm` built from this crate; tests and
//! benchmarks call [`reward`] or [`run`] natively. This documentation is the policy's
//! specification.
//!
//! # Specification
//!
//! Input: `pool` (`P`, a 128-bit amount; absent means 0) and, per node, its key (in
//! `node_keys`) and its `score`. `round` is not read. The output holds exactly one
//! amount per node, in input order:
//!
//! 1. **Total.** `S` is the sum of the scores; the policy traps if it overflows a
//!    `u64`, or if `node_keys` does not hold exactly one 32-byte key per score.
//! 2. **Nothing earned.** If `S = 0` (no nodes, or all scores 0), every amount is 0 and
//!    nothing of the pool is paid: it stays unspent.
//! 3. **Base amounts.** Otherwise, with `q = P / S` and `r = P mod S`, node `i` with
//!    score `s_i` gets `base_i = q * s_i + floor(r * s_i / S)`, which is
//!    `floor(P * s_i / S)`, and has remainder `frac_i = (r * s_i) mod S`. All of this is
//!    exact in 128 bits: `q * s_i <= P`, and `r * s_i < 2^128` as `r < S < 2^64`.
//! 4. **Leftover.** `L = P - sum(base_i)` units are left, and `L * S = sum(frac_i)`, so
//!    `L` is below the number of nodes with a nonzero `frac_i`, or 0. They go one each
//!    to the `L` nodes with the largest `frac_i`; among equal remainders, the node
//!    whose key bytes are lower (compared lexicographically) goes first, then the node
//!    earlier in the input.
//!
//! So the amounts sum to exactly `P`, each is `floor` or `ceil` of its exact share
//! `P * s_i / S`, and a node with score 0 gets 0 (its base and remainder are both 0).

use blyan_plugin_pdk::{
    Divisor, Fixed, KEY_LEN, Values, node_keys, pb, reward_output, u128_from_pb, values,
};

blyan_plugin_pdk::export_reward!(reward);

/// Splits `input.pool` among the nodes, as the crate documentation specifies.
/// Panics (traps, in the plugin) if the scores overflow a `u64` or the keys don't
/// match the scores.
pub fn reward(input: &pb::RewardInput) -> pb::RewardOutput {
    let scores = values::<u64>(&input.scores);
    assert_eq!(
        node_keys(&input.node_keys).len(),
        scores.len(),
        "reward: one key per score"
    );
    let score_total = scores.clone().fold(0u64, |total, score| {
        total
            .checked_add(score)
            .expect("reward: the scores overflow a u64")
    });
    let pool = input.pool.as_ref().map_or(0, u128_from_pb);
    split(pool, score_total, &input.node_keys, scores)
}

/// Steps 2 to 4: `pool` split among the nodes with `keys` (one per score) and
/// `scores`, which sum to `score_total`. One pass computes every base amount; only
/// the leftover units need a second look, at the nodes they go to.
fn split(pool: u128, score_total: u64, keys: &[u8], scores: Values<'_, u64>) -> pb::RewardOutput {
    let nodes = scores.len();
    if score_total == 0 {
        return reward_output(std::iter::repeat_n(0, nodes));
    }
    let total = u128::from(score_total);
    // r < S < 2^64, so r and every r * s_i / S (< s_i) fit a u64.
    let (quotient, remainder) = (pool / total, (pool % total) as u64);
    let divisor = Divisor::new(score_total);

    // The amounts go straight into the output's two columns (high and low halves).
    let mut amounts_hi = vec![0; nodes * u64::WIDTH];
    let mut amounts_lo = vec![0; nodes * u64::WIDTH];
    // Every node with a nonzero remainder, a candidate for a leftover unit, as one
    // integer: the remainder above the index (see `pack`). Every slot is written and
    // the count of candidates advances only past nonzero remainders, so the pass has
    // no branch on the data.
    let mut inexact = vec![0u128; nodes];
    let mut candidates = 0;
    // The sum of the partial amounts: sum(floor(r * s_i / S)) <= r, a u64.
    let mut partials = 0u64;
    for (((index, score), hi), lo) in (0u32..)
        .zip(scores)
        .zip(amounts_hi.chunks_exact_mut(u64::WIDTH))
        .zip(amounts_lo.chunks_exact_mut(u64::WIDTH))
    {
        // q * s_i <= q * S <= P, so the product fits a u128 (the plugin is built
        // without overflow checks; tests are not).
        let whole = quotient * u128::from(score);
        let (partial, fraction) = divisor.mul_div_rem(remainder, score);
        let amount = whole + u128::from(partial);
        partials = partials
            .checked_add(partial)
            .expect("reward: the partial amounts sum to at most r");
        hi.copy_from_slice(&((amount >> 64) as u64).to_le_bytes());
        lo.copy_from_slice(&(amount as u64).to_le_bytes());
        inexact[candidates] = pack(fraction, index);
        candidates += usize::from(fraction > 0);
    }
    inexact.truncate(candidates);
    // The base amounts sum to q * S + partials = P - r + partials, so r - partials
    // units are left.
    let leftover = remainder
        .checked_sub(partials)
        .expect("reward: the partial amounts sum to at most r");
    assert!(
        leftover <= inexact.len() as u64,
        "reward: more leftover units than nonzero remainders"
    );

    // The `leftover` first nodes in the tie-break order: every node whose remainder
    // is above the `leftover`-th largest gets a unit, and the rest of the units go to
    // the first, by key then index, of the nodes whose remainder equals it.
    let leftover = leftover as usize;
    if leftover > 0 {
        let last = nth_largest(&inexact, leftover, score_total);
        let mut given = 0;
        let mut tied = Vec::new();
        for &candidate in &inexact {
            let above = fraction(candidate) > last;
            add_units(
                &mut amounts_hi,
                &mut amounts_lo,
                node(candidate),
                u64::from(above),
            );
            given += usize::from(above);
            if fraction(candidate) == last {
                tied.push(node(candidate));
            }
        }
        let key = |i: usize| &keys[i * KEY_LEN..(i + 1) * KEY_LEN];
        tied.sort_unstable_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
        for &index in &tied[..leftover - given] {
            add_units(&mut amounts_hi, &mut amounts_lo, index, 1);
        }
    }
    // The amounts sum to P - leftover + leftover = P by construction; the host checks
    // it again.
    pb::RewardOutput {
        amounts_hi,
        amounts_lo,
    }
}

/// A candidate for a leftover unit, node `index` with remainder `fraction`, as one
/// integer.
fn pack(fraction: u64, index: u32) -> u128 {
    (u128::from(fraction) << 64) | u128::from(index)
}

/// The remainder of a candidate [`pack`]ed.
fn fraction(candidate: u128) -> u64 {
    (candidate >> 64) as u64
}

/// The node index of a candidate [`pack`]ed.
fn node(candidate: u128) -> usize {
    candidate as u32 as usize
}

/// Adds `units` (0 or 1) to the amount of node `index` in the two amount columns,
/// carrying into the high half, without a branch on `units`.
fn add_units(high: &mut [u8], low: &mut [u8], index: usize, units: u64) {
    let at = index * u64::WIDTH..(index + 1) * u64::WIDTH;
    let read =
        |column: &[u8]| u64::from_le_bytes(column.try_into().expect("an 8-byte amount half"));
    let (sum, carry) = read(&low[at.clone()]).overflowing_add(units);
    low[at.clone()].copy_from_slice(&sum.to_le_bytes());
    let carried = read(&high[at.clone()]) + u64::from(carry);
    high[at].copy_from_slice(&carried.to_le_bytes());
}

/// The `rank`-th largest (from 1) of the candidates' fractions, each below `bound`,
/// by a radix selection: one pass counts the fractions by their top 11 bits, the
/// counts find the bucket that holds the one sought, and only that bucket's fractions
/// are selected among. Counting is a plain pass, where selecting among all of them
/// moves every candidate a few times.
fn nth_largest(candidates: &[u128], rank: usize, bound: u64) -> u64 {
    const BUCKET_BITS: u32 = 11;
    assert!(
        (1..=candidates.len()).contains(&rank),
        "reward: rank {rank} of {} candidates",
        candidates.len()
    );
    // Every fraction is below bound < 2^(64 - leading zeros), so shifting it right by
    // `shift` leaves at most BUCKET_BITS bits.
    let shift = (u64::BITS - bound.leading_zeros()).saturating_sub(BUCKET_BITS);
    let bucket = |candidate: u128| (fraction(candidate) >> shift) as usize;
    let mut counts = [0usize; 1 << BUCKET_BITS];
    for &candidate in candidates {
        counts[bucket(candidate)] += 1;
    }
    // From the top bucket down, until the buckets passed and this one hold `rank`.
    let mut above = 0;
    let mut sought = counts.len() - 1;
    while above + counts[sought] < rank {
        above += counts[sought];
        sought -= 1;
    }
    let mut in_bucket: Vec<u64> = candidates
        .iter()
        .filter(|&&candidate| bucket(candidate) == sought)
        .map(|&candidate| fraction(candidate))
        .collect();
    let (_, &mut nth, _) = in_bucket.select_nth_unstable_by(rank - above - 1, |a, b| b.cmp(a));
    nth
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    use blyan_plugin_pdk::{reward_amounts, to_column, u128_to_pb};

    #[derive(Clone, Copy)]
    struct Node {
        key: [u8; KEY_LEN],
        score: u64,
    }

    fn node(key: u8, score: u64) -> Node {
        Node {
            key: [key; KEY_LEN],
            score,
        }
    }

    fn input(pool: Option<u128>, nodes: &[Node]) -> pb::RewardInput {
        pb::RewardInput {
            round: 1,
            pool: pool.map(u128_to_pb),
            node_keys: nodes
                .iter()
                .flat_map(|node| node.key)
                .collect::<Vec<u8>>()
                .into(),
            scores: to_column(nodes.iter().map(|node| node.score)).into(),
        }
    }

    fn amounts(pool: u128, nodes: &[Node]) -> Vec<u128> {
        let amounts = reward_amounts(&reward(&input(Some(pool), nodes)));
        assert_eq!(amounts.len(), nodes.len());
        amounts
    }

    fn scored(scores: &[u64]) -> Vec<Node> {
        (0u8..)
            .zip(scores)
            .map(|(key, &score)| node(key, score))
            .collect()
    }

    /// `a * b` as 192 bits: (the top 64 bits, the low 128 bits).
    fn wide_product(a: u128, b: u64) -> (u64, u128) {
        let low = (a as u64 as u128) * u128::from(b);
        let high = (a >> 64) * u128::from(b);
        let (bottom, carry) = low.overflowing_add(high << 64);
        ((high >> 64) as u64 + u64::from(carry), bottom)
    }

    /// Checks `amount` is within 1 of the exact share `pool * score / total`:
    /// `(amount - 1) * total <= pool * score < (amount + 1) * total`.
    fn assert_within_one(amount: u128, pool: u128, score: u64, total: u64) {
        let exact = wide_product(pool, score);
        if amount > 0 {
            assert!(
                wide_product(amount - 1, total) <= exact,
                "{amount} is above the share"
            );
        }
        if let Some(next) = amount.checked_add(1) {
            assert!(
                exact < wide_product(next, total),
                "{amount} is below the share"
            );
        }
    }

    #[test]
    fn wide_product_is_exact() {
        assert_eq!(wide_product(3, 5), (0, 15));
        assert_eq!(wide_product(1 << 64, 1 << 63), (0, 1 << 127));
        assert_eq!(wide_product(u128::MAX, 2), (1, u128::MAX - 1));
        assert_eq!(
            wide_product(u128::MAX, u64::MAX),
            (u64::MAX - 1, (u128::MAX - u128::from(u64::MAX)) + 1)
        );
    }

    #[test]
    fn leftovers_go_to_the_largest_remainders() {
        // Exact shares 0.7, 1.4, 2.1 and 2.8 of 7.
        assert_eq!(amounts(7, &scored(&[1, 2, 3, 4])), [1, 1, 2, 3]);
        // Exact shares 3.33.. each of 10.
        assert_eq!(amounts(10, &scored(&[5, 5, 5])), [4, 3, 3]);
    }

    #[test]
    fn equal_remainders_go_to_the_lower_key_then_the_earlier_node() {
        let nodes = [node(3, 1), node(1, 1), node(2, 1)];
        assert_eq!(amounts(1, &nodes), [0, 1, 0]);
        assert_eq!(amounts(2, &nodes), [0, 1, 1]);
        assert_eq!(amounts(4, &nodes), [1, 2, 1]);
        // Keys compare byte by byte: [1, 9, ..] is below [2, 0, ..].
        let (mut high, mut low) = (node(0, 1), node(0, 1));
        (high.key[0], high.key[1]) = (2, 0);
        (low.key[0], low.key[1]) = (1, 9);
        let nodes = [high, low];
        assert_eq!(amounts(1, &nodes), [0, 1]);
        // Equal keys: input order.
        assert_eq!(amounts(1, &[node(5, 1), node(5, 1)]), [1, 0]);
        let nodes = [node(5, 1), node(5, 1), node(4, 2)];
        assert_eq!(amounts(1, &nodes), [0, 0, 1]);
        assert_eq!(amounts(3, &nodes), [1, 1, 1]);
        // Pool 4 over scores summing to 10: remainders 8, 4, 4, 4 and 0, two units
        // left. The larger remainder gets one; of the three tied, the lowest key (3)
        // gets the other, though it is neither the first nor the last of them.
        let nodes = [node(1, 2), node(9, 1), node(3, 1), node(5, 1), node(2, 5)];
        assert_eq!(amounts(4, &nodes), [1, 0, 1, 0, 2]);
    }

    /// Candidate fractions as a node's remainders lie, in `[1, bound)`, with their
    /// bound: small, large, full-width and power-of-two bounds, and all fractions
    /// tied at the top.
    fn fractions() -> impl proptest::strategy::Strategy<Value = (Vec<u64>, u64)> {
        use proptest::collection::vec;
        use proptest::prelude::*;
        prop_oneof![
            2..7u64,
            2..5_002u64,
            Just(u64::MAX),
            (1..64u32).prop_map(|shift| 1u64 << shift),
        ]
        .prop_flat_map(|bound| {
            (
                prop_oneof![
                    3 => vec(1..bound, 1..=300),
                    1 => vec(Just(bound - 1), 1..=300),
                ],
                Just(bound),
            )
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn the_radix_selection_finds_the_nth_largest(
            (fractions, bound) in fractions(),
            rank in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let candidates: Vec<u128> = fractions
                .iter()
                .zip(0u32..)
                .map(|(&fraction, index)| pack(fraction, index))
                .collect();
            let mut sorted = fractions.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let rank = 1 + rank.index(fractions.len());
            proptest::prop_assert_eq!(nth_largest(&candidates, rank, bound), sorted[rank - 1]);
        }
    }

    #[test]
    fn a_zero_score_gets_nothing() {
        assert_eq!(amounts(1000, &scored(&[0, 3, 0, 1])), [0, 750, 0, 250]);
        // Even when every other node is already paid exactly and units are left.
        assert_eq!(amounts(5, &scored(&[0, 1, 1])), [0, 3, 2]);
        assert_eq!(amounts(u128::MAX, &scored(&[0, 1, 0])), [0, u128::MAX, 0]);
    }

    #[test]
    fn all_zero_scores_leave_the_pool_unspent() {
        assert_eq!(amounts(1000, &scored(&[0, 0, 0])), [0, 0, 0]);
        assert!(amounts(1000, &[]).is_empty());
        let output = reward(&input(None, &scored(&[2, 3])));
        assert_eq!(reward_amounts(&output), [0, 0]);
    }

    /// Up to 30 scores, a fifth of them 0, under one of a few maxima (the largest
    /// keeps their sum within a u64).
    fn scores() -> impl proptest::strategy::Strategy<Value = Vec<u64>> {
        use proptest::prelude::*;
        prop_oneof![Just(2u64), Just(10), Just(1_000_000), Just(u64::MAX / 30)].prop_flat_map(
            |max| proptest::collection::vec(prop_oneof![1 => Just(0u64), 4 => 0..=max], 1..=30),
        )
    }

    /// Pools near the top of a u128, tiny ones, and any.
    fn pool() -> impl proptest::strategy::Strategy<Value = u128> {
        use proptest::prelude::*;
        prop_oneof![
            (0..1_000u128).prop_map(|k| u128::MAX - k),
            0..100u128,
            any::<u64>().prop_map(u128::from),
            any::<u128>(),
            Just(u128::MAX),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        #[test]
        fn many_pools_are_split_exactly_and_proportionally(scores in scores(), pool in pool()) {
            let split = amounts(pool, &scored(&scores));
            let total: u64 = scores.iter().sum();
            if total == 0 {
                proptest::prop_assert!(split.iter().all(|&amount| amount == 0));
            } else {
                proptest::prop_assert_eq!(split.iter().sum::<u128>(), pool);
                for (&amount, &score) in split.iter().zip(&scores) {
                    if score == 0 {
                        proptest::prop_assert_eq!(amount, 0);
                    }
                    assert_within_one(amount, pool, score, total);
                }
            }
        }
    }

    #[test]
    fn a_huge_pool_over_tiny_scores_is_spent_exactly() {
        let split = amounts(u128::MAX, &scored(&[1, 1, 1]));
        // u128::MAX is divisible by 3.
        assert_eq!(split, [u128::MAX / 3; 3]);
        let split = amounts(u128::MAX, &scored(&[1, 2]));
        assert_eq!(split, [u128::MAX / 3, u128::MAX / 3 * 2]);
        let split = amounts(u128::MAX - 1, &scored(&[1, 1]));
        assert_eq!(split, [u128::MAX / 2, u128::MAX / 2]);
        let split = amounts(u128::MAX, &scored(&[1, 1]));
        assert_eq!(split, [u128::MAX / 2 + 1, u128::MAX / 2]);
    }

    #[test]
    fn scores_summing_to_u64_max_are_accepted() {
        let split = amounts(u128::MAX, &scored(&[u64::MAX - 1, 1]));
        assert_eq!(split.iter().sum::<u128>(), u128::MAX);
        assert_within_one(split[0], u128::MAX, u64::MAX - 1, u64::MAX);
        assert_within_one(split[1], u128::MAX, 1, u64::MAX);
    }

    #[test]
    #[should_panic(expected = "one key per score")]
    fn a_missing_key_traps() {
        let mut input = input(Some(10), &scored(&[1, 2]));
        input.node_keys.truncate(KEY_LEN);
        reward(&input);
    }

    #[test]
    #[should_panic(expected = "overflow a u64")]
    fn a_score_total_overflow_traps() {
        amounts(10, &scored(&[u64::MAX, 1]));
    }

    #[test]
    fn run_round_trips_encoded_bytes() {
        let input = input(Some((5 << 64) | 7), &scored(&[1, 0, 1]));
        let encoded = pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Reward(input)),
        }
        .encode_to_vec();
        let output = pb::PolicyOutput::decode(&run(&encoded).unwrap()[..]).unwrap();
        let half = ((5u128 << 64) | 7) / 2;
        let Some(pb::policy_output::Kind::Reward(output)) = output.kind else {
            panic!("not a reward output: {output:?}");
        };
        assert_eq!(reward_amounts(&output), [half + 1, 0, half]);
    }

    #[test]
    fn run_rejects_another_kind() {
        let encoded = pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Sharding(
                pb::ShardingInput::default(),
            )),
        }
        .encode_to_vec();
        assert_eq!(
            run(&encoded),
            Err(blyan_plugin_pdk::PolicyError::WrongKind {
                expected: "reward",
                found: "sharding"
            })
        );
    }
}
