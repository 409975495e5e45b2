//! Validation shared by the CWOM objects: actors, sources, references and enum fields.

use super::enums::DbEnum;
use crate::{error::Violations, pb};

pub fn actor(v: &mut Violations, field: &str, actor: Option<&pb::Actor>) {
    let Some(actor) = actor else {
        v.push(field, "is required");
        return;
    };
    if actor.actor_kind() == pb::ActorKind::Unspecified {
        v.push(&format!("{field}.actor_kind"), "is required (ACTOR_KIND_HUMAN, ACTOR_KIND_AGENT or ACTOR_KIND_SYSTEM)");
    }
    v.length(&format!("{field}.actor_id"), &actor.actor_id, 1, 128);
    v.length(&format!("{field}.display"), &actor.display, 0, 256);
}

pub fn actors(v: &mut Violations, field: &str, actors: &[pb::Actor]) {
    for (i, a) in actors.iter().enumerate() {
        actor(v, &format!("{field}[{i}]"), Some(a));
    }
}

pub fn source(v: &mut Violations, field: &str, source: Option<&pb::Source>) {
    if let Some(source) = source {
        v.length(&format!("{field}.system"), &source.system, 1, 64);
        v.length(&format!("{field}.external_id"), &source.external_id, 0, 256);
        v.length(&format!("{field}.url"), &source.url, 0, 2000);
    }
}

/// Checks a reference to an object of `kind` and returns the referenced id, normalised.
pub fn reference(v: &mut Violations, field: &str, r: Option<&pb::Ref>, kind: pb::ObjectKind) -> Option<String> {
    let Some(r) = r else {
        v.push(field, format!("is required (a reference to a {})", kind.to_db()));
        return None;
    };
    let given = r.kind();
    if given != pb::ObjectKind::Unspecified && given != kind {
        v.push(&format!("{field}.kind"), format!("must be {}, got {}", kind.as_str_name(), given.as_str_name()));
    }
    v.length(&format!("{field}.role"), &r.role, 0, 64);
    match uuid::Uuid::parse_str(&r.id) {
        Ok(id) => Some(id.hyphenated().to_string()),
        Err(_) => {
            v.push(&format!("{field}.id"), format!("must be the UUID of a {}, got {:?}", kind.to_db(), r.id));
            None
        }
    }
}

pub fn optional_reference(
    v: &mut Violations,
    field: &str,
    r: Option<&pb::Ref>,
    kind: pb::ObjectKind,
) -> Option<String> {
    r.and_then(|r| reference(v, field, Some(r), kind))
}

pub fn references(v: &mut Violations, field: &str, refs: &[pb::Ref], kind: pb::ObjectKind) -> Vec<String> {
    let mut ids: Vec<String> =
        refs.iter().enumerate().filter_map(|(i, r)| reference(v, &format!("{field}[{i}]"), Some(r), kind)).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// An enum field: UNSPECIFIED takes `default`, or is a violation when there is none.
pub fn enumeration<E>(v: &mut Violations, field: &str, raw: i32, default: Option<E>) -> Option<E>
where
    E: DbEnum + TryFrom<i32> + PartialEq,
{
    if raw == 0 {
        if default.is_none() {
            v.push(field, format!("is required (one of {})", E::names()));
        }
        return default;
    }
    match E::try_from(raw) {
        Ok(value) => Some(value),
        Err(_) => {
            v.push(field, format!("unknown value {raw}"));
            None
        }
    }
}

pub fn strings(v: &mut Violations, field: &str, items: &[String], max: usize) {
    for (i, item) in items.iter().enumerate() {
        v.length(&format!("{field}[{i}]"), item, 1, max);
    }
}
