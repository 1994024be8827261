//! PROTOCOL.md is what a client in another language builds on: every signing domain
//! and hash context the code uses must be spelled there exactly as the code spells it.

use blyan_sdk::core::{governance, hashed, pools, rounds, validators};
use blyan_sdk::{crypto, genesis, merkle, record};

#[test]
fn the_protocol_names_every_domain_and_context_the_code_uses() {
    let protocol = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md"))
        .expect("PROTOCOL.md at the repository root");
    let domains = [crypto::COMMAND_DOMAIN, crypto::CHECKPOINT_DOMAIN]
        .map(|domain| std::str::from_utf8(domain).unwrap());
    let contexts = [
        record::RECORD_CONTEXT,
        rounds::COMMITMENT_CONTEXT,
        rounds::SEED_CONTEXT,
        rounds::SHARD_LEAF_CONTEXT,
        rounds::SCORE_LEAF_CONTEXT,
        rounds::PAYOUT_LEAF_CONTEXT,
        pools::ITEM_LEAF_CONTEXT,
        validators::DRAW_CONTEXT,
        governance::PROPOSAL_CONTEXT,
        blyan_sdk::core::STATE_ROOT_CONTEXT,
        hashed::ENTRY_CONTEXT,
        genesis::DEV_NETWORK_ID,
    ];
    for name in domains.iter().chain(&contexts) {
        assert!(
            protocol.contains(&format!("\"{name}\"")) || protocol.contains(&format!("`{name}`")),
            "PROTOCOL.md does not name {name:?}"
        );
    }
    // The empty tree's root and the record chain's first link.
    assert_eq!(merkle::EMPTY_ROOT, [0; 32]);
    assert_eq!(record::GENESIS_PREV_HASH, [0; 32]);
    assert!(protocol.contains("32 zero bytes"));
}
