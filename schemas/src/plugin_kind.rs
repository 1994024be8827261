//! The three policies governance can replace, as one type for the sdk's domain model,
//! the plugin host and the wire.

use crate::v1 as pb;

/// The three policies governance can replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PluginKind {
    Sharding,
    Scoring,
    Reward,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [
        PluginKind::Sharding,
        PluginKind::Scoring,
        PluginKind::Reward,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Sharding => "sharding",
            PluginKind::Scoring => "scoring",
            PluginKind::Reward => "reward",
        }
    }

    pub fn from_name(name: &str) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub fn to_pb(self) -> pb::PluginKind {
        match self {
            PluginKind::Sharding => pb::PluginKind::Sharding,
            PluginKind::Scoring => pb::PluginKind::Scoring,
            PluginKind::Reward => pb::PluginKind::Reward,
        }
    }

    pub fn from_pb(kind: pb::PluginKind) -> Option<PluginKind> {
        match kind {
            pb::PluginKind::Unspecified => None,
            pb::PluginKind::Sharding => Some(PluginKind::Sharding),
            pb::PluginKind::Scoring => Some(PluginKind::Scoring),
            pb::PluginKind::Reward => Some(PluginKind::Reward),
        }
    }

    /// The kind of a policy input.
    pub fn of_input(input: &pb::PolicyInput) -> Option<PluginKind> {
        match input.kind.as_ref()? {
            pb::policy_input::Kind::Sharding(_) => Some(PluginKind::Sharding),
            pb::policy_input::Kind::Scoring(_) => Some(PluginKind::Scoring),
            pb::policy_input::Kind::Reward(_) => Some(PluginKind::Reward),
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_wire_values_round_trip() {
        for kind in PluginKind::ALL {
            assert_eq!(PluginKind::from_name(kind.name()), Some(kind));
            assert_eq!(PluginKind::from_pb(kind.to_pb()), Some(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!(PluginKind::from_name("Scoring"), None);
        assert_eq!(PluginKind::from_pb(pb::PluginKind::Unspecified), None);
        assert_eq!(PluginKind::Reward.to_pb() as i32, 3);
    }
}
