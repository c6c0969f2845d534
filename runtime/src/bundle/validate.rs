//! Semantic checks of a parsed manifest and the files it names.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::manifest::{FileRef, HeadSpec, Manifest, SCHEMA_VERSION};
use super::{Bundle, BundleError, Head, HeadKind, Precision};
use crate::progress::Breakpoints;
use crate::window::WindowSpec;

type Result<T> = std::result::Result<T, BundleError>;

pub(super) fn load(dir: &Path) -> Result<Bundle> {
    let dir = dir.canonicalize().map_err(|source| BundleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("bundle.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Io {
        path: path.clone(),
        source,
    })?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| BundleError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    check_manifest(&manifest)?;
    check_files(&dir, &manifest)?;
    let w = &manifest.window;
    if w.offsets.len() != w.n_obs_steps + 1 {
        return Err(BundleError::mismatch(
            "window.offsets",
            format!("n_obs_steps + 1 = {} offsets", w.n_obs_steps + 1),
            format!("{} offsets", w.offsets.len()),
        ));
    }
    let window = WindowSpec::new(w.layout, &w.offsets, w.readout, w.anchor_first)
        .and_then(|s| s.with_fps(w.fps))?;
    let mut heads = vec![head(
        HeadKind::Sparse,
        &manifest.heads.sparse,
        &manifest.tensors.stage_logits.sparse,
        &manifest.tensors.tau.sparse,
    )?];
    if let Some(dense) = &manifest.heads.dense {
        let logits = manifest.tensors.stage_logits.dense.as_ref();
        let tau = manifest.tensors.tau.dense.as_ref();
        match (logits, tau) {
            (Some(l), Some(t)) => heads.push(head(HeadKind::Dense, dense, l, t)?),
            _ => {
                return Err(BundleError::mismatch(
                    "tensors.stage_logits.dense / tensors.tau.dense",
                    "tensor names for the dense head declared in [heads.dense]",
                    "none",
                ))
            }
        }
    } else if manifest.tensors.stage_logits.dense.is_some() || manifest.tensors.tau.dense.is_some()
    {
        return Err(BundleError::mismatch(
            "heads.dense",
            "a [heads.dense] table, since tensors name dense outputs",
            "none",
        ));
    }
    Ok(Bundle {
        dir,
        manifest,
        window,
        heads,
    })
}

fn head(kind: HeadKind, spec: &HeadSpec, logits: &str, tau: &str) -> Result<Head> {
    let field = format!("heads.{kind}");
    if spec.stage_names.is_empty() {
        return Err(BundleError::mismatch(
            format!("{field}.stage_names"),
            "at least one stage",
            "an empty list",
        ));
    }
    if spec.temporal_proportions.len() != spec.stage_names.len() {
        return Err(BundleError::mismatch(
            format!("{field}.temporal_proportions"),
            format!("{} values (one per stage)", spec.stage_names.len()),
            format!("{} values", spec.temporal_proportions.len()),
        ));
    }
    let breakpoints =
        Breakpoints::from_proportions(&spec.temporal_proportions).map_err(|found| {
            BundleError::mismatch(
                format!("{field}.temporal_proportions"),
                "finite values >= 0 with a positive sum",
                found,
            )
        })?;
    Ok(Head {
        kind,
        stage_names: spec.stage_names.clone(),
        breakpoints,
        logits_tensor: logits.to_string(),
        tau_tensor: tau.to_string(),
    })
}

fn check_manifest(m: &Manifest) -> Result<()> {
    if m.schema_version != SCHEMA_VERSION {
        return Err(BundleError::mismatch(
            "schema_version",
            SCHEMA_VERSION,
            m.schema_version,
        ));
    }
    let enc = &m.image_encoder;
    expect_eq("image_encoder.layout", "NCHW", enc.layout.as_str())?;
    expect_eq("image_encoder.precision", "fp32", enc.precision.as_str())?;
    expect_eq(
        "image_encoder.output_dim",
        m.model.image_dim,
        enc.output_dim,
    )?;
    expect_len("image_encoder.mean", 3, enc.mean.len())?;
    expect_len("image_encoder.std", 3, enc.std.len())?;
    if enc.cameras.is_empty() {
        return Err(BundleError::mismatch(
            "image_encoder.cameras",
            "at least one camera name",
            "an empty list",
        ));
    }
    if enc.height == 0 || enc.width == 0 {
        return Err(BundleError::mismatch(
            "image_encoder.height/width",
            "positive sizes",
            format!("{}x{}", enc.width, enc.height),
        ));
    }
    if let Some(s) = enc.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(BundleError::mismatch(
            "image_encoder.std",
            "finite values > 0",
            s,
        ));
    }
    if !(enc.scale.is_finite() && enc.scale > 0.0) || enc.mean.iter().any(|v| !v.is_finite()) {
        return Err(BundleError::mismatch(
            "image_encoder.scale/mean",
            "finite values, scale > 0",
            format!("scale {} mean {:?}", enc.scale, enc.mean),
        ));
    }

    let text = &m.text;
    expect_eq("text.source", "precomputed", text.source.as_str())?;
    expect_eq("text.dim", m.model.text_dim, text.dim)?;
    if text.tasks.is_empty() {
        return Err(BundleError::mismatch(
            "text.tasks",
            "at least one task embedding",
            "none",
        ));
    }
    for (i, t) in text.tasks.iter().enumerate() {
        expect_len(
            &format!("text.tasks[{i}].embedding"),
            text.dim,
            t.embedding.len(),
        )?;
        if t.embedding.iter().any(|v| !v.is_finite()) {
            return Err(BundleError::mismatch(
                format!("text.tasks[{i}].embedding"),
                "finite values",
                "NaN or infinity",
            ));
        }
    }
    if !text.tasks.iter().any(|t| t.text == text.default_task) {
        return Err(BundleError::mismatch(
            "text.default_task",
            "one of the task texts in [[text.tasks]]",
            format!("{:?}", text.default_task),
        ));
    }

    let st = &m.state;
    if st.joint_names.is_empty() {
        return Err(BundleError::mismatch(
            "state.joint_names",
            "at least one joint",
            "an empty list",
        ));
    }
    let mut seen = HashSet::new();
    if let Some(dup) = st.joint_names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(BundleError::mismatch(
            "state.joint_names",
            "unique names",
            format!("{dup:?} twice"),
        ));
    }
    expect_len("state.mean", st.joint_names.len(), st.mean.len())?;
    expect_len("state.std", st.joint_names.len(), st.std.len())?;
    expect_eq("state.model_dim", m.model.state_dim, st.model_dim)?;
    if st.joint_names.len() > st.model_dim {
        return Err(BundleError::mismatch(
            "state.joint_names",
            format!("at most state.model_dim = {} joints", st.model_dim),
            st.joint_names.len(),
        ));
    }
    if st.mean.iter().chain(&st.std).any(|v| !v.is_finite())
        || st.std.iter().any(|s| *s + st.eps <= 0.0)
    {
        return Err(BundleError::mismatch(
            "state.mean/std",
            "finite values with std + eps > 0",
            format!("mean {:?} std {:?}", st.mean, st.std),
        ));
    }

    if m.precision.is_empty() {
        return Err(BundleError::mismatch(
            "precision",
            "at least one of [precision.fp32], [precision.int8]",
            "none",
        ));
    }
    for key in m.precision.keys() {
        if Precision::parse(key).is_none() {
            return Err(BundleError::mismatch(
                format!("precision.{key}"),
                "fp32 or int8",
                key,
            ));
        }
    }
    Ok(())
}

fn check_files(dir: &Path, m: &Manifest) -> Result<()> {
    check_file(dir, "image_encoder.file", &m.image_encoder.file)?;
    for (precision, files) in &m.precision {
        check_file(dir, &format!("precision.{precision}.stage"), &files.stage)?;
        check_file(
            dir,
            &format!("precision.{precision}.subtask"),
            &files.subtask,
        )?;
        if let Some(enc) = &files.image_encoder {
            check_file(dir, &format!("precision.{precision}.image_encoder"), enc)?;
        }
    }
    Ok(())
}

/// The file exists inside the bundle, has the declared size and SHA-256.
fn check_file(dir: &Path, field: &str, file: &FileRef) -> Result<()> {
    let rel = Path::new(&file.path);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(BundleError::mismatch(
            format!("{field}.path"),
            "a path inside the bundle folder",
            &file.path,
        ));
    }
    let path = dir.join(rel);
    let meta = std::fs::metadata(&path).map_err(|e| {
        BundleError::mismatch(
            format!("{field}.path"),
            "an existing file",
            format!("{} ({e})", path.display()),
        )
    })?;
    if meta.len() != file.bytes {
        return Err(BundleError::mismatch(
            format!("{field}.bytes"),
            file.bytes,
            format!("{} bytes in {}", meta.len(), path.display()),
        ));
    }
    let found = sha256_file(&path)?;
    if !found.eq_ignore_ascii_case(&file.sha256) {
        return Err(BundleError::mismatch(
            format!("{field}.sha256"),
            &file.sha256,
            format!("{found} ({})", path.display()),
        ));
    }
    Ok(())
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn expect_eq<T: PartialEq + std::fmt::Display>(field: &str, expected: T, found: T) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(BundleError::mismatch(field, expected, found))
    }
}

fn expect_len(field: &str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(BundleError::mismatch(
            field,
            format!("{expected} values"),
            format!("{found} values"),
        ))
    }
}
