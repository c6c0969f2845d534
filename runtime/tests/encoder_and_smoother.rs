//! The image encoder end to end (PNG -> preprocessing -> each backend, each
//! precision) against PyTorch's EfficientNet-lite0 features, batches
//! against single images, and the smoother against an independent Python
//! implementation of the SARM reference algorithm.

mod common;

use common::backends::{self, tolerance, Tolerance};
use common::bundle_dir;
use sarm_runtime::backend::BackendKind;
use sarm_runtime::encoder::ImageEncoder;
use sarm_runtime::smoothing::{ConfidenceSmoother, SmootherConfig};
use sarm_runtime::{Bundle, Precision};
use serde::Deserialize;

/// Encoder features against PyTorch fp32, per backend x precision:
/// `value` bounds max |diff| relative to the largest feature (fp32: the
/// same float pipeline, only the order of accumulation differs), and
/// `agreement` is the smallest cosine similarity accepted. int8 (QDQ,
/// per-channel, stem and blocks 0-2 float, calibrated on the bundle's
/// frames): cosine 0.982-0.994 on the golden images with onnxruntime 1.32 in
/// Python, optimised and exact QDQ (models/tools/tests/test_encoder_int8.py).
const TOLERANCES: &[Tolerance] = &[
    Tolerance {
        backend: BackendKind::Tract,
        precision: Precision::Fp32,
        value: 1e-4,
        agreement: 0.99999,
    },
    Tolerance {
        backend: BackendKind::Ort,
        precision: Precision::Fp32,
        value: 1e-4,
        agreement: 0.99999,
    },
    Tolerance {
        backend: BackendKind::Tract,
        precision: Precision::Int8,
        value: 1.0,
        agreement: 0.97,
    },
    Tolerance {
        backend: BackendKind::Ort,
        precision: Precision::Int8,
        value: 1.0,
        agreement: 0.97,
    },
];

#[derive(Deserialize)]
struct EncoderGolden {
    images: Vec<ImageGolden>,
}

#[derive(Deserialize)]
struct ImageGolden {
    file: String,
    width: u32,
    height: u32,
    features: Vec<f32>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn encoder_golden() -> (EncoderGolden, Vec<image::RgbImage>) {
    let dir = bundle_dir().join("golden");
    let g: EncoderGolden =
        serde_json::from_str(&std::fs::read_to_string(dir.join("encoder.json")).unwrap()).unwrap();
    let images = g
        .images
        .iter()
        .map(|img| image::open(dir.join(&img.file)).unwrap().to_rgb8())
        .collect();
    (g, images)
}

#[test]
fn encoder_matches_pytorch_features_per_backend_and_precision() {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let (g, images) = encoder_golden();
    assert!(g.images.len() >= 4);
    let (m_w, m_h) = (
        bundle.manifest.image_encoder.width,
        bundle.manifest.image_encoder.height,
    );
    let resized = g
        .images
        .iter()
        .filter(|i| (i.width, i.height) != (m_w, m_h))
        .count();
    assert!(
        resized >= 2,
        "golden set needs camera-sized images (resize + crop)"
    );
    for (backend, precision) in backends::pairs() {
        let tol = tolerance(TOLERANCES, &backend, precision);
        let mut encoder = ImageEncoder::load_with(&bundle, &backend, precision, 1).unwrap();
        let mut feats = vec![0.0; encoder.output_dim()];
        let mut worst_cos = 1.0f64;
        for (img, rgb) in g.images.iter().zip(&images) {
            assert_eq!(rgb.dimensions(), (img.width, img.height));
            encoder.encode(rgb, &mut feats).unwrap();
            let max_abs = feats
                .iter()
                .zip(&img.features)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = img.features.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            let cos = cosine(&feats, &img.features);
            worst_cos = worst_cos.min(cos);
            println!(
                "{} {precision} ({}) {}: {}x{} cosine {cos:.6} max|diff| {max_abs:.2e} (max |feature| {scale:.2})",
                backend.kind(),
                encoder.graph().path().file_name().unwrap().to_string_lossy(),
                img.file,
                img.width,
                img.height
            );
            assert!(
                max_abs <= tol.value * scale.max(1.0),
                "{} {precision} {}: max |diff| {max_abs}",
                backend.kind(),
                img.file
            );
            assert!(
                cos >= tol.agreement,
                "{} {precision} {}: cosine {cos}",
                backend.kind(),
                img.file
            );
        }
        println!(
            "{} {precision}: worst cosine {worst_cos:.5}",
            backend.kind()
        );
    }
}

/// A batch of N images in one call gives each image's single-image
/// features, on every backend and precision (a partial batch too).
#[test]
fn batch_encoding_equals_single_images() {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let (_, images) = encoder_golden();
    const N: usize = 4;
    for (backend, precision) in backends::pairs() {
        let mut single = ImageEncoder::load_with(&bundle, &backend, precision, 1).unwrap();
        let mut batched = ImageEncoder::load_with(&bundle, &backend, precision, N).unwrap();
        assert_eq!(batched.batch(), N);
        let d = single.output_dim();
        let mut one = vec![0.0; d];
        // A full batch, then a partial one.
        for chunk in images.chunks(N) {
            let mut out = vec![0.0; chunk.len() * d];
            batched.encode_batch(chunk, &mut out).unwrap();
            for (i, img) in chunk.iter().enumerate() {
                single.encode(img, &mut one).unwrap();
                let got = &out[i * d..(i + 1) * d];
                let scale = one.iter().map(|v| v.abs()).fold(1.0f32, f32::max);
                let max_abs = got
                    .iter()
                    .zip(&one)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                // Batched kernels may sum in another order; nothing more.
                assert!(
                    max_abs <= 1e-5 * scale,
                    "{} {precision}: image {i} of a batch of {}: max |diff| {max_abs}",
                    backend.kind(),
                    chunk.len()
                );
            }
        }
        let too_many: Vec<_> = images.iter().cycle().take(N + 1).collect();
        let mut out = vec![0.0; (N + 1) * d];
        assert!(batched.encode_batch(too_many, &mut out).is_err());
    }
}

#[derive(Deserialize)]
struct SmootherGolden {
    params: SmootherParams,
    steps: Vec<SmootherStep>,
}

#[derive(Deserialize)]
struct SmootherParams {
    window: usize,
    beta: f64,
    eps: f64,
    threshold: f64,
}

#[derive(Deserialize)]
struct SmootherStep {
    value: f64,
    confidence: f64,
    expected: f64,
}

#[test]
fn smoother_matches_reference_algorithm() {
    let path = bundle_dir().join("golden/smoother.json");
    let g: SmootherGolden = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let p = &g.params;
    let cfg = SmootherConfig {
        window: p.window,
        beta: p.beta,
        eps: p.eps,
        min_confidence: p.threshold,
    };
    assert_eq!(
        cfg,
        SmootherConfig::default(),
        "golden uses the paper's settings"
    );
    let mut s = ConfidenceSmoother::new(cfg).unwrap();
    let skipped = g
        .steps
        .iter()
        .filter(|st| st.confidence < p.threshold)
        .count();
    assert!(skipped > 10 && g.steps.len() >= 100);
    for (i, st) in g.steps.iter().enumerate() {
        let out = s.update(st.value, st.confidence);
        assert!(
            (out - st.expected).abs() < 1e-9,
            "step {i}: {out} vs {}",
            st.expected
        );
    }
}
