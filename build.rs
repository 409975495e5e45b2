//! Generates the gRPC code and the descriptor set that server reflection serves.
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no system protoc.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &["proto/controltower/v1/tasks.proto", "proto/controltower/v1/workers.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("controltower_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto", well_known.to_str().ok_or("non-UTF-8 protoc include path")?])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
