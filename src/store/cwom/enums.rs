//! How CWOM enums are stored: the seed system's lower-case names ("planned", "feature", "P2", ...), readable in SQL
//! and stable across proto renumbering. UNSPECIFIED has no stored form.

use crate::pb;

/// A protobuf enum with a stored string form.
pub trait DbEnum: Sized + Copy + 'static {
    const FIELD_VALUES: &'static [(Self, &'static str)];

    fn to_db(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::FIELD_VALUES.iter().find(|(v, _)| *v == self).map_or("", |(_, s)| s)
    }

    fn from_db(s: &str) -> Option<Self> {
        Self::FIELD_VALUES.iter().find(|(_, name)| *name == s).map(|(v, _)| *v)
    }

    /// The stored names, for error messages.
    fn names() -> String {
        Self::FIELD_VALUES.iter().map(|(_, s)| *s).collect::<Vec<_>>().join(", ")
    }
}

macro_rules! db_enum {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl DbEnum for pb::$ty {
            const FIELD_VALUES: &'static [(Self, &'static str)] = &[$((pb::$ty::$variant, $name)),+];
        }
    };
}

db_enum!(WorkStatus {
    Planned => "planned", Ready => "ready", Running => "running", Blocked => "blocked", Done => "done",
    Failed => "failed", Canceled => "canceled", UnderReview => "under_review",
});
db_enum!(IssueType {
    Feature => "feature", Bug => "bug", Chore => "chore", Research => "research", Ops => "ops", Doc => "doc",
    Incident => "incident",
});
db_enum!(Priority { P0 => "P0", P1 => "P1", P2 => "P2", P3 => "P3", P4 => "P4" });
db_enum!(RunMode { Human => "human", Agent => "agent", Hybrid => "hybrid", System => "system" });
db_enum!(ArtifactType {
    CodePatch => "code_patch", Commit => "commit", Pr => "pr", Build => "build", ContainerImage => "container_image",
    Doc => "doc", Report => "report", Dataset => "dataset", Log => "log", Trace => "trace", Binary => "binary",
    Link => "link",
});
db_enum!(DoctrineType {
    Principle => "principle", Policy => "policy", Procedure => "procedure", Heuristic => "heuristic",
    Pattern => "pattern",
});
db_enum!(DoctrinePriority { Must => "must", Should => "should", May => "may" });
db_enum!(Visibility { Public => "public", Private => "private", Internal => "internal" });
db_enum!(ConstraintScope {
    Personal => "personal", Repo => "repo", Org => "org", System => "system", Run => "run",
});
db_enum!(ObjectKind {
    Repo => "Repo", Issue => "Issue", ContextPacket => "ContextPacket", Run => "Run", Artifact => "Artifact",
    ConstraintSnapshot => "ConstraintSnapshot", DoctrineRef => "DoctrineRef",
});

db_enum!(FailureCategory {
    Policy => "policy", Build => "build", Test => "test", Runtime => "runtime", Dependency => "dependency",
    Unknown => "unknown",
});

/// Reads a stored enum column; a value the code does not know maps to UNSPECIFIED rather than failing the read.
pub fn stored<E: DbEnum + Into<i32>>(s: &str) -> i32 {
    E::from_db(s).map_or(0, Into::into)
}
