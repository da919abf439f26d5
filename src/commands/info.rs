//! `imgvec info`: which model and store the flags and environment point at (and why), the index's
//! vector size, how many images it holds and the model that filled it, what the CPU runs the model's layers on, and which
//! image formats are read.
//!
//! A model that cannot be found, or an index not created yet, is reported in its line, not as an
//! error: `info` is where a user looks to find out what is missing.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value};

use super::{locate_model, open_store, runtime};
use crate::cli::InfoArgs;
use crate::image::{heif, FORMATS, HEIF_FORMATS, RAW_FORMATS};
use crate::store::StoreError;

pub fn run(args: &InfoArgs) -> Result<ExitCode> {
    let (model_line, model_json) = match locate_model(&args.model) {
        Ok(found) => {
            // The family and embedding size from config.json (a file that cannot be read says
            // so in the line; the commands that load the model give the full error).
            let (shape, family, dims) = match crate::clip::ModelDir::open(&found.dir) {
                Ok(m) => (
                    format!(" ({}, {}-d)", m.family(), m.dims()),
                    Value::from(m.family()),
                    Value::from(m.dims()),
                ),
                Err(e) => (format!(" ({e})"), Value::Null, Value::Null),
            };
            (
                format!("model {} from {}{shape}", found.dir.display(), found.source),
                json!({"found": true, "dir": found.dir, "source": found.source.kind(),
                       "name": found.name, "from": found.source.to_string(),
                       "family": family, "dims": dims}),
            )
        }
        Err(e) => (
            format!("model: {e:#}"),
            json!({"found": false, "error": format!("{e:#}")}),
        ),
    };
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&args.store)?;
        let index = &args.store.index;
        let (index_line, dims, count, index_model) = match store.index_dims().await {
            Ok(dims) => {
                let count = store.count().await?;
                let model = store.index_model().await?;
                let filled_by = match &model {
                    Some(m) => format!(
                        "filled by model {}, vectors in {}",
                        m.describe(),
                        m.describe_precisions()
                    ),
                    None => "no model recorded (made by an older imgvec)".to_string(),
                };
                (
                    format!("index '{index}': {count} image(s), {dims}-d vectors, {filled_by}"),
                    Value::from(dims),
                    Value::from(count),
                    serde_json::to_value(&model)?,
                )
            }
            Err(StoreError::IndexMissing { .. }) => (
                format!("index '{index}': not created yet (ingest or create-index creates it)"),
                Value::Null,
                Value::from(0),
                Value::Null,
            ),
            Err(e) => return Err(e.into()),
        };
        let (linear, threads, precisions) = (
            crate::clip::dense::linear_kernels(),
            rayon::current_num_threads(),
            crate::clip::dense::cpu_precisions(),
        );
        let libheif = heif::libheif_version();
        let heif_line = match &libheif {
            Some(v) => format!("{} through libheif {v}", HEIF_FORMATS.join(", ")),
            None => format!(
                "{}: not in this build (rebuild with `--features heif`, docs/formats.md)",
                HEIF_FORMATS.join(", ")
            ),
        };
        if args.json {
            println!(
                "{}",
                json!({"store": store.describe(), "index": index, "dims": dims,
                       "documents": count, "model": model_json, "index_model": index_model,
                       "cpu": {"linear_layers": linear, "threads": threads, "precisions": precisions},
                       "formats": FORMATS, "raw_formats": RAW_FORMATS,
                       "heif": {"formats": HEIF_FORMATS, "supported": heif::SUPPORTED,
                                "libheif": libheif}})
            );
        } else {
            println!("{model_line}");
            println!("{}", store.describe());
            println!("{index_line}");
            println!(
                "cpu: linear layers on {linear}, {threads} thread(s); --precision {}",
                precisions.join(", ")
            );
            println!(
                "formats: {}; {heif_line}; camera RAW by its embedded preview: {}",
                FORMATS.join(", "),
                RAW_FORMATS.join(", ")
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
