//! Which matrix kernels tract runs the test bundle's graphs with on this CPU.
//!
//! The goldens are only meaningful on a target if they ran the kernels that target runs: on
//! ARM64 (tests/cross/, under qemu with a NEON-only `-cpu cortex-a76`, like a Jetson Orin's
//! Cortex-A78AE) tract must pick its NEON assembly (`arm64simd_*`, or `arm64fp16_*`), never its
//! portable `generic_*` fallback (which a cross build gets when tract's build script could not
//! assemble the NEON kernels) nor an SVE kernel. The test prints the ISA tract detected, its CPU
//! model choice and the kernel of every matrix product, so a run's log says which code path the
//! goldens next to it exercised. (The int8 graphs are QDQ: tract folds the dequantised weights
//! and runs their products with the f32 kernels, on x86 as on ARM64; no i32 kernel appears.)

mod common;

use std::collections::BTreeMap;

use common::bundle_dir;
use sarm_runtime::Bundle;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
use tract_onnx::tract_core::tract_linalg;

/// Loads `path` as the runtime does (batch bound to 1, time to the window length), optimises
/// it and returns the kernel names of its matrix products, with how often each occurs.
fn kernels_of(path: &std::path::Path, time_len: usize) -> BTreeMap<String, usize> {
    let typed = tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.into_typed())
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    let mut bindings: std::collections::HashMap<Symbol, TDim> = Default::default();
    for ix in 0..typed.inputs.len() {
        let fact = typed.input_fact(ix).unwrap();
        for (axis, dim) in fact.shape.iter().enumerate() {
            if let TDim::Sym(sym) = dim {
                bindings.insert(
                    sym.clone(),
                    TDim::Val(if axis == 0 { 1 } else { time_len as i64 }),
                );
            }
        }
    }
    let plan = typed
        .set_symbols(&bindings)
        .and_then(|m| m.into_optimized())
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    let mut kernels = BTreeMap::new();
    for node in plan.nodes() {
        if let Some(op) = node.op_as::<OptMatMul>() {
            for mmm in &op.mmm {
                *kernels.entry(mmm.name().to_string()).or_insert(0) += 1;
            }
        }
    }
    kernels
}

#[test]
fn matrix_products_run_this_architectures_kernels() {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let isa = tract_linalg::isa::native();
    println!("tract ISA: {isa:?}");
    #[cfg(target_arch = "aarch64")]
    println!(
        "tract aarch64 CPU model: {:?}",
        tract_linalg::arm64::Kind::choose()
    );
    let mut files: Vec<_> = std::fs::read_dir(bundle_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    // Every graph the manifest declares (both precisions) is here and checked.
    let manifest = std::fs::read_to_string(bundle_dir().join("bundle.toml")).unwrap();
    let declared: std::collections::BTreeSet<&str> = manifest
        .split('"')
        .filter(|s| s.ends_with(".onnx") && !s.contains([' ', '/']))
        .collect();
    let present: std::collections::BTreeSet<&str> = files
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
        .collect();
    assert!(declared.len() >= 6, "fp32 and int8 graphs: {declared:?}");
    assert_eq!(present, declared, "the bundle's graphs");
    for file in &files {
        let kernels = kernels_of(file, bundle.window.len());
        println!(
            "{}: {kernels:?}",
            file.file_name().unwrap().to_string_lossy()
        );
        assert!(!kernels.is_empty(), "{}: no matrix product", file.display());
        if cfg!(target_arch = "aarch64") {
            for name in kernels.keys() {
                assert!(
                    name.starts_with("arm64simd_") || name.starts_with("arm64fp16_"),
                    "{}: {name} is not a NEON kernel",
                    file.display()
                );
                assert!(
                    !name.contains("sve"),
                    "{}: SVE kernel {name}",
                    file.display()
                );
            }
        }
    }
}
