//! Loading a checkpoint that is missing, damaged or not CLIP fails with an error naming the file
//! and the reason, never a panic and never invented weights.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use common::*;
use imgvec::clip::{ClipError, ImageEncoder, ModelDir, TextEncoder};

/// A copy of the tiny model directory that a test may damage.
fn scratch_model() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(tiny_model_dir()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    (tmp, dir)
}

fn load_image_encoder(dir: &Path) -> Result<ImageEncoder, ClipError> {
    let model = ModelDir::open(dir)?;
    ImageEncoder::load(&model, &Device::Cpu)
}

fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

#[test]
fn missing_directory() {
    let err = load_image_encoder(Path::new("/no/such/model-dir"))
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, ClipError::ModelDirMissing { .. }), "{msg}");
    assert!(
        msg.contains("/no/such/model-dir") && msg.contains("models/README.md"),
        "{msg}"
    );
}

#[test]
fn missing_safetensors() {
    let (_t, dir) = scratch_model();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let msg = load_image_encoder(&dir).err().unwrap().to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn truncated_safetensors() {
    let (_t, dir) = scratch_model();
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_image_encoder(&dir).err().unwrap().to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated or corrupt"),
        "{msg}"
    );
}

#[test]
fn corrupt_safetensors() {
    let (_t, dir) = scratch_model();
    std::fs::write(
        dir.join("model.safetensors"),
        b"this is not a safetensors file at all",
    )
    .unwrap();
    let msg = load_image_encoder(&dir).err().unwrap().to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated or corrupt"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let (_t, dir) = scratch_model();
    let name = "vision_model.encoder.layers.1.mlp.fc2.weight";
    rewrite_weights(&dir, |t| {
        t.remove(name);
    });
    let err = load_image_encoder(&dir).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, ClipError::MissingTensor { .. }), "{msg}");
    assert!(
        msg.contains(name) && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let (_t, dir) = scratch_model();
    let name = "visual_projection.weight";
    rewrite_weights(&dir, |t| {
        t.insert(
            name.into(),
            Tensor::zeros((16, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = load_image_encoder(&dir).err().unwrap().to_string();
    assert!(
        msg.contains(name) && msg.contains("[16, 64]") && msg.contains("[32, 64]"),
        "{msg}"
    );
}

#[test]
fn config_that_is_not_clip() {
    let (_t, dir) = scratch_model();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "bert", "hidden_size": 768}"#,
    )
    .unwrap();
    let msg = load_image_encoder(&dir).err().unwrap().to_string();
    assert!(msg.contains("config.json") && msg.contains("bert"), "{msg}");
}

#[test]
fn image_encoder_needs_no_text_weights() {
    // Load only the tower a command needs: the vision tower loads with every text tensor gone,
    // and the text tower then fails naming one of them.
    let (_t, dir) = scratch_model();
    rewrite_weights(&dir, |t| {
        t.retain(|k, _| !k.starts_with("text_model.") && k != "text_projection.weight")
    });
    let enc = load_image_encoder(&dir).unwrap();
    assert_eq!(enc.dims(), 32);
    let model = ModelDir::open(&dir).unwrap();
    let err = TextEncoder::load(&model, &Device::Cpu).err().unwrap();
    assert!(matches!(err, ClipError::MissingTensor { .. }), "{err}");
}
