//! Generates etcd's v3 API from `proto/` into `OUT_DIR`: protobuf 2 messages and grpcio
//! service clients.
//!
//! protobuf-codegen-pure drops `service` definitions, so the schema goes through the vendored
//! `protoc` into a descriptor set, and both generators read that set. No system `protoc` is
//! needed.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use protobuf::descriptor::FileDescriptorSet;
use protobuf::Message;

/// The schema files, relative to `proto/`.
const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
];

/// The schema files that define services, for which grpcio clients are generated.
const SERVICES: &[&str] = &[
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }

    let descriptors = describe(&out_dir);
    let files: Vec<String> = PROTOS.iter().map(|p| p.to_string()).collect();
    let services: Vec<String> = SERVICES.iter().map(|p| p.to_string()).collect();

    let customize = protobuf_codegen::Customize::default();
    let mut generated = protobuf_codegen::gen(&descriptors.file, &files, &customize);
    generated.extend(grpcio_compiler::codegen::gen(&descriptors.file, &services));
    for file in generated {
        write_includable(&out_dir.join(&file.name), &file.content);
    }
}

/// Runs the vendored `protoc` over the schema and parses the descriptor set it writes.
fn describe(out_dir: &Path) -> FileDescriptorSet {
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("protoc-bin-vendored has a protoc");
    let set_path = out_dir.join("etcd-api.descriptor-set");
    let status = Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", set_path.display()))
        .arg("--proto_path=proto")
        .args(PROTOS)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", protoc.display()));
    assert!(status.success(), "protoc failed on proto/: {status}");
    let bytes = fs::read(&set_path).expect("protoc wrote the descriptor set");
    FileDescriptorSet::parse_from_bytes(&bytes).expect("protoc's descriptor set parses")
}

/// Writes generated code so that `include!` accepts it: inner attributes and inner doc
/// comments are only allowed at the top of a real module file, so they are dropped here and
/// the wrapping module in `src/proto.rs` carries the `allow` list instead.
fn write_includable(path: &Path, content: &[u8]) {
    let text = String::from_utf8_lossy(content);
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with("#![") || line.starts_with("//!"))
        })
        .collect();
    fs::write(path, kept.join("\n")).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
