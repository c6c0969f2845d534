//! The image encoder end to end (PNG -> preprocessing -> tract) against
//! PyTorch's EfficientNet-lite0 features, and the smoother against an
//! independent Python implementation of the SARM reference algorithm.

mod common;

use common::bundle_dir;
use sarm_runtime::encoder::ImageEncoder;
use sarm_runtime::smoothing::{ConfidenceSmoother, SmootherConfig};
use sarm_runtime::Bundle;
use serde::Deserialize;

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

#[test]
fn encoder_matches_pytorch_features() {
    let bundle = Bundle::load(bundle_dir()).unwrap();
    let dir = bundle_dir().join("golden");
    let g: EncoderGolden =
        serde_json::from_str(&std::fs::read_to_string(dir.join("encoder.json")).unwrap()).unwrap();
    assert!(g.images.len() >= 4);
    let mut encoder = ImageEncoder::load(&bundle).unwrap();
    let mut feats = vec![0.0; encoder.output_dim()];
    let (m_w, m_h) = (
        bundle.manifest.image_encoder.width,
        bundle.manifest.image_encoder.height,
    );
    let mut resized = 0;
    for img in &g.images {
        let rgb = image::open(dir.join(&img.file)).unwrap().to_rgb8();
        assert_eq!(rgb.dimensions(), (img.width, img.height));
        encoder.encode(&rgb, &mut feats).unwrap();
        let max_abs = feats
            .iter()
            .zip(&img.features)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = img.features.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        let cos = cosine(&feats, &img.features);
        println!(
            "{}: {}x{} cosine {cos:.6} max|diff| {max_abs:.2e} (max |feature| {scale:.2})",
            img.file, img.width, img.height
        );
        // The same float pipeline as the reference (resampling included):
        // only the order of float accumulation differs.
        assert!(
            max_abs <= 1e-4 * scale.max(1.0),
            "{}: max |diff| {max_abs}",
            img.file
        );
        assert!(cos >= 0.99999, "{}: cosine {cos}", img.file);
        if (img.width, img.height) != (m_w, m_h) {
            resized += 1;
        }
    }
    assert!(
        resized >= 2,
        "golden set needs camera-sized images (resize + crop)"
    );
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
