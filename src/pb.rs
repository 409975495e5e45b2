//! The generated protobuf and gRPC code, and the descriptor set that server reflection serves.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("controltower.v1");
include!(concat!(env!("OUT_DIR"), "/controltower.v1.serde.rs"));

/// Encoded `FileDescriptorSet` of every Control Tower proto and its imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("controltower_descriptor");
