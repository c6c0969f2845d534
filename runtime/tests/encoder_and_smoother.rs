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
    let mut exact = 0;
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
        if (img.width, img.height) == (m_w, m_h) {
            // No resampling: same pixels in, so only float accumulation order differs.
            assert!(max_abs <= 1e-3 * scale.max(1.0), "{}: {max_abs}", img.file);
            exact += 1;
        } else {
            // Resampling differs slightly (u8 rounding after the filter).
            assert!(cos >= 0.995, "{}: cosine {cos}", img.file);
        }
    }
    assert!(
        exact >= 1,
        "golden set needs an image at the encoder's input size"
    );
}

#[derive(Deserialize)]
struct SmootherGolden {
    window: usize,
    beta: f64,
    eps: f64,
    min_confidence: f64,
    values: Vec<f64>,
    confidences: Vec<f64>,
    expected: Vec<f64>,
}

#[test]
fn smoother_matches_reference_algorithm() {
    let path = bundle_dir().join("golden/smoother.json");
    let g: SmootherGolden = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cfg = SmootherConfig {
        window: g.window,
        beta: g.beta,
        eps: g.eps,
        min_confidence: g.min_confidence,
    };
    assert_eq!(
        cfg,
        SmootherConfig::default(),
        "golden uses the paper's settings"
    );
    let mut s = ConfidenceSmoother::new(cfg).unwrap();
    let skipped = g
        .confidences
        .iter()
        .filter(|c| **c < g.min_confidence)
        .count();
    assert!(skipped > 10 && g.values.len() >= 100);
    for (i, ((v, c), e)) in g
        .values
        .iter()
        .zip(&g.confidences)
        .zip(&g.expected)
        .enumerate()
    {
        let out = s.update(*v, *c);
        assert!((out - e).abs() < 1e-9, "step {i}: {out} vs {e}");
    }
}
