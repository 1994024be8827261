//! The default sharding policy: splits a round's items `[0, item_count)` among the
//! eligible nodes in proportion to their capability, in a layout fixed by the round's
//! seed.
//!
//! Who uses it: the host embeds it as the `.wasm` built from this crate; tests and
//! benchmarks call [`shard`] or [`run`] natively. This documentation is the policy's
//! specification.
//!
//! # Specification
//!
//! Input: `seed` (exactly 32 bytes), `item_count`, and one `capability` of at least 1
//! per node. Nodes are known by their index; `node_keys` and `round` are not read
//! (the seed is already the round's).
//!
//! 1. **Checks.** The policy traps if the seed is not 32 bytes long, if a capability
//!    is 0, if the capabilities' sum `T` overflows a `u64`, or if there are more than
//!    `2^32 - 1` nodes. These hold for every input, even one with nothing to split.
//! 2. **Nothing to split.** With no nodes or `item_count = 0`, the output has no shards.
//! 3. **The generator.** A SplitMix64 generator with a 64-bit `state`. With
//!    `mix(z)`: `z ^= z >> 30; z *= 0xbf58476d1ce4e5b9; z ^= z >> 27;
//!    z *= 0x94d049bb133111eb; z ^= z >> 31` (wrapping), seeding is: `state = 0`, then
//!    for each of the seed's four 8-byte words `w` in order, read little-endian,
//!    `state = mix(state ^ w)`. Each draw is `state += 0x9e3779b97f4a7c15` (wrapping)
//!    and yields `mix(state)`. A number uniform in `[0, b)` is drawn by rejection: draw
//!    `x` until `x >= 2^64 mod b`, and yield `x mod b`.
//! 4. **The order.** `order` starts as `[0, 1, ..., n - 1]` (input indices). For `i`
//!    from `n - 1` down to 1: draw `j` uniform in `[0, i + 1)` and swap `order[i]` with
//!    `order[j]` (Fisher–Yates). A node's *rank* is its position in `order`.
//! 5. **Quotas.** With `N = item_count`, in 128-bit arithmetic, node `i` gets
//!    `quota_i = floor(N * capability_i / T)` and has remainder
//!    `N * capability_i mod T`. The `L = N - sum(quota_i)` items left over (`L < n`) go
//!    one each to the `L` nodes with the largest remainder; among equal remainders the
//!    lower rank goes first. So each node gets `floor` or `floor + 1` of its exact share
//!    `N * capability_i / T`.
//! 6. **Layout.** Walking `order` from rank 0, every node with a nonzero quota gets one
//!    shard (`node_index`, `start`, `count = quota`), where `start` is the sum of the
//!    counts before it, from 0. The shards thus cover `[0, N)` exactly once, in rank
//!    order.
//!
//! Every step is integer arithmetic on explicitly sized types, so the result is the
//! same natively and on `wasm32`. The cost is linear in the number of nodes (on
//! average: step 5 selects the `L` largest remainders rather than sorting), and
//! independent of `item_count`.

use blyan_plugin_pdk::{Divisor, Fixed, pb, values};

blyan_plugin_pdk::export_sharding!(shard);

/// The length of a round's seed, in bytes.
pub const SEED_LEN: usize = 32;

/// Splits `[0, input.item_count)` among the nodes of `input`, as the crate documentation
/// specifies. Panics (traps, in the plugin) on an input that breaks its checks.
pub fn shard(input: &pb::ShardingInput) -> pb::ShardingOutput {
    let seed: &[u8; SEED_LEN] = input
        .seed
        .as_slice()
        .try_into()
        .expect("sharding: the seed must be 32 bytes");
    let capabilities = values::<u64>(&input.capabilities);
    let node_count = u32::try_from(capabilities.len()).expect("sharding: at most 2^32 - 1 nodes");
    let capability_total = capabilities.clone().fold(0u64, |total, capability| {
        assert!(capability > 0, "sharding: a node with capability 0");
        total
            .checked_add(capability)
            .expect("sharding: the total capability overflows a u64")
    });
    if node_count == 0 || input.item_count == 0 {
        return pb::ShardingOutput::default();
    }

    let mut generator = SplitMix64::from_seed(seed);
    let order = shuffled(node_count, &mut generator);

    // Step 5 in one pass in rank order: each quota (indexed by rank), their sum, and
    // every node with a nonzero remainder as a candidate for a leftover item. A
    // candidate is one integer that sorts in (remainder descending, rank) order: the
    // remainder's complement above the rank. Every slot is written and the count of
    // candidates advances only past nonzero remainders, so the pass has no branch on
    // the data.
    let total = Divisor::new(capability_total);
    let capabilities: &[u8] = &input.capabilities;
    let mut quotas = vec![0u64; order.len()];
    let mut by_remainder = vec![0u128; order.len()];
    let mut candidates = 0;
    let mut assigned = 0u64;
    for ((rank, &node), quota) in (0u32..).zip(&order).zip(&mut quotas) {
        let at = node as usize * u64::WIDTH;
        let capability = u64::from_le_bytes(
            capabilities[at..at + u64::WIDTH]
                .try_into()
                .expect("one 8-byte capability"),
        );
        // capability <= total: the quota is at most item_count.
        let remainder;
        (*quota, remainder) = total.mul_div_rem(capability, input.item_count);
        assigned = assigned
            .checked_add(*quota)
            .expect("sharding: the quotas sum to at most item_count");
        by_remainder[candidates] = (u128::from(!remainder) << 32) | u128::from(rank);
        candidates += usize::from(remainder > 0);
    }
    by_remainder.truncate(candidates);
    let leftover = input.item_count - assigned;
    assert!(
        leftover < u64::from(node_count),
        "sharding: fewer leftovers than nodes"
    );

    // The remainders sum to leftover * total and each is below total, so more than
    // `leftover` of them are nonzero (unless leftover is 0): no node whose share is
    // already exact gets a leftover item. The `leftover` first candidates are
    // selected as a set, without sorting the rest.
    let leftover = leftover as usize;
    if leftover > 0 {
        assert!(
            by_remainder.len() >= leftover,
            "sharding: more leftover items than inexact shares"
        );
        by_remainder.select_nth_unstable(leftover - 1);
        for &candidate in &by_remainder[..leftover] {
            quotas[candidate as u32 as usize] += 1;
        }
    }

    // Step 6, each column written as the ranks are walked: every slot is written, and
    // the shard count advances only past nonzero quotas.
    let mut node_indexes = vec![0; order.len() * u32::WIDTH];
    let mut starts = vec![0; order.len() * u64::WIDTH];
    let mut counts = vec![0; order.len() * u64::WIDTH];
    let mut shards = 0;
    let mut start = 0u64;
    for (&node, &count) in order.iter().zip(&quotas) {
        let (at, wide_at) = (shards * u32::WIDTH, shards * u64::WIDTH);
        node_indexes[at..at + u32::WIDTH].copy_from_slice(&node.to_le_bytes());
        starts[wide_at..wide_at + u64::WIDTH].copy_from_slice(&start.to_le_bytes());
        counts[wide_at..wide_at + u64::WIDTH].copy_from_slice(&count.to_le_bytes());
        start += count;
        shards += usize::from(count > 0);
    }
    node_indexes.truncate(shards * u32::WIDTH);
    starts.truncate(shards * u64::WIDTH);
    counts.truncate(shards * u64::WIDTH);
    assert_eq!(
        start, input.item_count,
        "sharding: the shards cover every item"
    );
    pb::ShardingOutput {
        node_indexes,
        starts,
        counts,
    }
}

/// `[0, count)` in the seeded Fisher–Yates order of step 4.
fn shuffled(count: u32, generator: &mut SplitMix64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..count).collect();
    for i in (1..count).rev() {
        let j = generator.below(u64::from(i) + 1) as u32;
        order.swap(i as usize, j as usize);
    }
    order
}

/// SplitMix64 (Steele, Lea and Flood, 2014), seeded from all 32 bytes of a seed.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let state = seed.chunks_exact(8).fold(0u64, |state, word| {
            let word = u64::from_le_bytes(word.try_into().expect("8-byte chunks"));
            mix(state ^ word)
        });
        Self { state }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        mix(self.state)
    }

    /// Uniform in `[0, bound)`, by rejecting the draws below `2^64 mod bound`, so that
    /// the accepted range is a whole number of `bound`-sized blocks.
    fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "sharding: an empty range");
        let rejected = bound.wrapping_neg() % bound;
        loop {
            let draw = self.next();
            if draw >= rejected {
                return draw % bound;
            }
        }
    }
}

/// SplitMix64's output function: a bijection on `u64`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blyan_plugin_pdk::to_column;
    use prost::Message;

    fn input(seed: [u8; 32], item_count: u64, capabilities: &[u64]) -> pb::ShardingInput {
        pb::ShardingInput {
            round: 1,
            seed: seed.to_vec(),
            item_count,
            // Ascending keys: the index, big-endian, then zeros.
            node_keys: (0u32..)
                .take(capabilities.len())
                .flat_map(|key| {
                    let mut bytes = [0u8; 32];
                    bytes[..4].copy_from_slice(&key.to_be_bytes());
                    bytes
                })
                .collect::<Vec<u8>>()
                .into(),
            capabilities: to_column(capabilities.iter().copied()).into(),
        }
    }

    /// The output's shards as (node_index, start, count), after checking its columns
    /// have the same length.
    fn shards(output: &pb::ShardingOutput) -> Vec<(u32, u64, u64)> {
        let node_indexes = values::<u32>(&output.node_indexes);
        let starts = values::<u64>(&output.starts);
        let counts = values::<u64>(&output.counts);
        assert_eq!(node_indexes.len(), starts.len());
        assert_eq!(node_indexes.len(), counts.len());
        node_indexes
            .zip(starts)
            .zip(counts)
            .map(|((node_index, start), count)| (node_index, start, count))
            .collect()
    }

    /// Checks the output covers `[0, item_count)` exactly once, in order, with one
    /// nonempty shard per node at most, and returns each node's count.
    fn counts_checked(input: &pb::ShardingInput, output: &pb::ShardingOutput) -> Vec<u64> {
        let nodes = values::<u64>(&input.capabilities).len();
        let mut counts = vec![0u64; nodes];
        let mut seen = vec![false; nodes];
        let mut next = 0u64;
        for shard @ (node_index, start, count) in shards(output) {
            let index = node_index as usize;
            assert!(index < nodes, "node_index out of range: {shard:?}");
            assert!(!seen[index], "two shards for node {index}");
            seen[index] = true;
            assert!(count > 0, "an empty shard: {shard:?}");
            assert_eq!(start, next, "a gap or an overlap at {shard:?}");
            next += count;
            counts[index] = count;
        }
        assert_eq!(next, input.item_count, "the shards do not reach item_count");
        counts
    }

    /// Checks each node's count is the floor or the ceiling of its exact share.
    fn assert_balanced(input: &pb::ShardingInput, counts: &[u64]) {
        let capabilities = values::<u64>(&input.capabilities);
        let total: u128 = capabilities.clone().map(u128::from).sum();
        for (capability, &count) in capabilities.zip(counts) {
            let product = u128::from(input.item_count) * u128::from(capability);
            let floor = product / total;
            let ceiling = floor + u128::from(product % total != 0);
            assert!(
                (floor..=ceiling).contains(&u128::from(count)),
                "{count} items for an exact share of {product}/{total}"
            );
        }
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The reference implementation's first outputs from state 0.
        let mut generator = SplitMix64 { state: 0 };
        assert_eq!(generator.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(generator.next(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(generator.next(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn seeding_reads_the_four_words_little_endian() {
        let mut seed = [0u8; 32];
        seed[0] = 1;
        seed[31] = 0x80;
        let expected = mix(mix(mix(mix(1))) ^ (0x80 << 56));
        assert_eq!(SplitMix64::from_seed(&seed).state, expected);
    }

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut generator = SplitMix64::from_seed(&[7; 32]);
        let mut hits = [0u32; 7];
        for _ in 0..7_000 {
            hits[generator.below(7) as usize] += 1;
        }
        assert!(
            hits.iter().all(|&hits| (800..1200).contains(&hits)),
            "{hits:?}"
        );
        assert_eq!(generator.below(1), 0);
    }

    fn layout(input: &pb::ShardingInput) -> Vec<(u32, u64, u64)> {
        shards(&shard(input))
    }

    #[test]
    fn known_inputs_give_known_layouts() {
        // Computed independently from the specification above.
        let exact = input([42; 32], 100, &[1, 2, 3, 4]);
        assert_eq!(
            layout(&exact),
            [(1, 0, 20), (3, 20, 40), (2, 60, 30), (0, 90, 10)]
        );
        // Shares of 10 items in 23rds: 30, 10, 40, 10, 50, 90. The three leftovers go
        // to remainders 21 and 17, then to node 1 over node 3 (both 10) by rank.
        let mut seed = [0u8; 32];
        for (byte, value) in seed.iter_mut().zip(0u8..) {
            *byte = value;
        }
        let leftovers = input(seed, 10, &[3, 1, 4, 1, 5, 9]);
        assert_eq!(
            layout(&leftovers),
            [(1, 0, 1), (5, 1, 4), (2, 5, 2), (0, 7, 1), (4, 8, 2)]
        );
    }

    #[test]
    fn leftovers_go_to_the_largest_remainders() {
        // Exact shares 0.9, 1.8 and 6.3 of 9 items: quotas 0, 1, 6, leftover 2, which
        // go to remainders 9 and 8 (of 10), not 3.
        for seed in 0..20u8 {
            let input = input([seed; 32], 9, &[1, 2, 7]);
            let counts = counts_checked(&input, &shard(&input));
            assert_eq!(counts, [1, 2, 6], "seed {seed}");
        }
    }

    #[test]
    fn equal_remainders_go_in_rank_order() {
        // Three equal shares of 4 items: one leftover, all remainders equal, so the
        // node laid out first gets it.
        for seed in 0..20u8 {
            let input = input([seed; 32], 4, &[5, 5, 5]);
            let output = shard(&input);
            counts_checked(&input, &output);
            assert_eq!(
                values::<u64>(&output.counts).collect::<Vec<_>>(),
                [2, 1, 1],
                "seed {seed}"
            );
        }
    }

    #[test]
    fn many_inputs_are_covered_exactly_and_balanced() {
        let mut generator = SplitMix64::from_seed(&[3; 32]);
        for case in 0..300 {
            let node_count = 1 + generator.below(40) as usize;
            let item_count = match case % 3 {
                0 => generator.below(50),
                1 => generator.below(10_000),
                _ => u64::MAX - generator.below(1000),
            };
            let capability_max = if case % 2 == 0 { 10 } else { u64::MAX / 64 };
            let capabilities: Vec<u64> = (0..node_count)
                .map(|_| 1 + generator.below(capability_max))
                .collect();
            let mut seed = [0u8; 32];
            for chunk in seed.chunks_exact_mut(8) {
                chunk.copy_from_slice(&generator.next().to_le_bytes());
            }
            let input = input(seed, item_count, &capabilities);
            let output = shard(&input);
            let counts = counts_checked(&input, &output);
            assert_balanced(&input, &counts);
            assert_eq!(shard(&input), output, "case {case} is not deterministic");
        }
    }

    #[test]
    fn a_million_items_over_ten_thousand_nodes() {
        let capabilities: Vec<u64> = (0..10_000u64).map(|i| 1 + i % 97).collect();
        let input = input([9; 32], 1_000_000, &capabilities);
        let output = shard(&input);
        let counts = counts_checked(&input, &output);
        assert_balanced(&input, &counts);
        assert_eq!(shards(&output).len(), 10_000);
    }

    #[test]
    fn every_seed_byte_changes_the_layout() {
        let base = input([0; 32], 1000, &[1, 1, 2, 3, 5, 8, 13, 21]);
        let base_output = shard(&base);
        for byte in 0..32 {
            let mut changed = base.clone();
            changed.seed[byte] ^= 1;
            let output = shard(&changed);
            counts_checked(&changed, &output);
            assert_ne!(
                output, base_output,
                "flipping seed byte {byte} changed nothing"
            );
        }
    }

    #[test]
    fn nothing_to_split_gives_no_shards() {
        assert_eq!(shard(&input([1; 32], 0, &[1, 2, 3])), Default::default());
        assert_eq!(shard(&input([1; 32], 1000, &[])), Default::default());
    }

    #[test]
    fn fewer_items_than_nodes() {
        let input = input([5; 32], 3, &[1; 10]);
        let counts = counts_checked(&input, &shard(&input));
        assert_eq!(counts.iter().filter(|&&count| count == 1).count(), 3);
        assert_eq!(counts.iter().sum::<u64>(), 3);
    }

    #[test]
    #[should_panic(expected = "capability 0")]
    fn a_zero_capability_traps() {
        shard(&input([1; 32], 10, &[1, 0, 2]));
    }

    #[test]
    #[should_panic(expected = "capability 0")]
    fn a_zero_capability_traps_even_with_no_items() {
        shard(&input([1; 32], 0, &[0]));
    }

    #[test]
    #[should_panic(expected = "overflows")]
    fn a_total_capability_overflow_traps() {
        shard(&input([1; 32], 10, &[u64::MAX, 1]));
    }

    #[test]
    #[should_panic(expected = "32 bytes")]
    fn a_short_seed_traps() {
        let mut input = input([1; 32], 10, &[1]);
        input.seed.pop();
        shard(&input);
    }

    #[test]
    fn run_round_trips_encoded_bytes() {
        let input = input([42; 32], 100, &[1, 2, 3, 4]);
        let encoded = pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Sharding(input.clone())),
        }
        .encode_to_vec();
        let output = pb::PolicyOutput::decode(&run(&encoded).unwrap()[..]).unwrap();
        assert_eq!(
            output.kind,
            Some(pb::policy_output::Kind::Sharding(shard(&input)))
        );
    }

    #[test]
    fn run_rejects_another_kind() {
        let encoded = pb::PolicyInput {
            kind: Some(pb::policy_input::Kind::Scoring(pb::ScoringInput::default())),
        }
        .encode_to_vec();
        assert_eq!(
            run(&encoded),
            Err(blyan_plugin_pdk::PolicyError::WrongKind {
                expected: "sharding",
                found: "scoring"
            })
        );
    }
}
