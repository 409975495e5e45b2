//! The Canonical Work Object Model in the database: create, read, list and update each of the seven objects, the
//! links between them, the status machines, and the task adapter that builds and drives the model for tasks.
//!
//! Scalar fields the API filters on are columns; nested structures are JSON columns holding their protobuf JSON
//! form. Every change is written with its audit entry in one transaction. Ids are UUIDv7: time-ordered like the
//! ULIDs of the original system, and the same kind of id as tasks.

pub mod artifacts;
pub mod doctrine;
pub mod enums;
pub mod issues;
pub mod links;
pub mod packets;
pub mod repos;
pub mod runs;
pub mod snapshots;
pub mod status;
pub mod task_model;
mod validate;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value as Json;

use super::audit::Actor;
use crate::{
    clock::Micros,
    error::{Error, Result},
    json::{json_to_struct, struct_to_json},
};

/// Who makes a change, when, and under which trace.
#[derive(Debug, Clone)]
pub struct Change {
    pub now: Micros,
    pub actor: Actor,
    pub trace_id: String,
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// CWOM ids are UUIDs; a malformed one is INVALID_ARGUMENT rather than NOT_FOUND.
pub fn parse_id(field: &str, id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| Error::invalid(field, format!("must be a UUID, got {id:?}")))
}

/// A message (or list of messages) as stored: its protobuf JSON form.
pub fn to_json<T: Serialize>(value: &T) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// A stored JSON column back into its message; a value that no longer parses reads as the default.
pub fn from_json<T: DeserializeOwned + Default>(value: &Json) -> T {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

pub fn meta_to_json(meta: Option<pbjson_types::Struct>) -> Json {
    meta.map_or_else(|| Json::Object(Default::default()), struct_to_json)
}

pub fn meta_from_json(meta: &Json) -> Option<pbjson_types::Struct> {
    Some(json_to_struct(meta))
}

pub fn object_ref(kind: crate::pb::ObjectKind, id: &str) -> crate::pb::Ref {
    crate::pb::Ref { kind: kind.into(), id: id.to_owned(), role: String::new() }
}

/// The audit form of an object: its full protobuf JSON.
pub fn snapshot<T: Serialize>(object: &T) -> Json {
    to_json(object)
}
