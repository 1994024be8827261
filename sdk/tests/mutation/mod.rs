//! Byte mutations of a valid seed, for the decoder fuzz tests of the sdk and of the
//! plugin host (which includes this file by path).

use proptest::prelude::*;

/// `short` cases in the suite; `PROPTEST_CASES` in the environment makes a long run.
pub fn config(short: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(short);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// One edit of a seed: flip a byte, insert one, cut the rest, or splice a run of one
/// byte value.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Truncate(usize),
    Splice(usize, usize, u8),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..64, any::<u8>())
            .prop_map(|(at, len, byte)| Mutation::Splice(at, len, byte)),
    ]
}

pub fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for mutation in mutations {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::Flip(at, bits) => {
                if !bytes.is_empty() {
                    bytes[at % len] ^= bits;
                }
            }
            Mutation::Insert(at, byte) => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Truncate(at) => bytes.truncate(at % len),
            Mutation::Splice(at, run, byte) => {
                let at = at % len;
                let end = (at + run).min(bytes.len());
                bytes.splice(at.min(end)..end, std::iter::repeat_n(byte, run));
            }
        }
    }
    bytes
}
