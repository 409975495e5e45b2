//! Generates the gRPC code, serde support for every message, and the descriptor set that server reflection serves.
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no system protoc.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/controltower/v1/tasks.proto",
    "proto/controltower/v1/workers.proto",
    "proto/controltower/v1/cwom.proto",
    "proto/controltower/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // Well-known types with serde support, so that every message has a JSON form (see below).
    config.compile_well_known_types().extern_path(".google.protobuf", "::pbjson_types");

    let descriptor_path = out_dir.join("controltower_descriptor.bin");
    tonic_prost_build::configure().file_descriptor_set_path(&descriptor_path).compile_with_config(
        config,
        PROTOS,
        &["proto", well_known.to_str().ok_or("non-UTF-8 protoc include path")?],
    )?;

    // serde for every message, in the canonical protobuf JSON mapping with the proto field names: nested CWOM
    // structures are stored and audited in this form.
    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        .build(&[".controltower"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
