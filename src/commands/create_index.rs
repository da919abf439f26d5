//! `imgvec create-index`: create the index with imgvec's mapping, sized by the model's config.
//!
//! Existing and compatible: say so and succeed. Existing and incompatible: an error naming each
//! difference. `--recreate` deletes first, asking on a terminal unless `--yes`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};

use super::{find_model, open_store, runtime};
use crate::cli::CreateIndexArgs;
use crate::store::{EnsureOutcome, IndexSpec};

pub fn run(args: &CreateIndexArgs) -> Result<ExitCode> {
    // Only config.json is read: the index's vector size is the checkpoint's projection_dim.
    let model = find_model(&args.model.location)?;
    let record = super::model_record(&model)?;
    let spec = IndexSpec {
        dims: model.dims(),
        model: Some(record.clone()),
        hnsw_m: args.hnsw_m,
        hnsw_ef_construction: args.hnsw_ef_construction,
        shards: args.shards,
        replicas: args.replicas,
    };
    if args.store.elastic_url()?.is_none() && (args.shards.is_some() || args.replicas.is_some()) {
        eprintln!("imgvec: warning: --shards/--replicas apply to Elasticsearch only; the embedded store has neither");
    }
    let index = &args.store.index;
    if args.recreate && !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("--recreate deletes index '{index}' and everything in it: add --yes to confirm (there is no terminal to ask on)");
        }
        eprint!("Delete index '{index}' and every document in it, then create it anew? [y/N] ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("imgvec: nothing changed");
            return Ok(ExitCode::FAILURE);
        }
    }
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&args.store)?;
        let what = format!(
            "{}-d int8_hnsw l2_norm vectors ({})",
            spec.dims,
            store.describe()
        );
        if args.recreate {
            store.recreate_index(&spec).await?;
            println!("recreated index '{index}': {what}");
        } else {
            match store.ensure_index(&spec).await? {
                EnsureOutcome::Created => println!("created index '{index}': {what}"),
                EnsureOutcome::AlreadyExists => {
                    let check = store.check_index(&spec).await?;
                    super::ensure_index(store.as_ref(), index, &record, true).await?;
                    println!(
                        "index '{index}' already exists with a compatible mapping: {}-d {} l2_norm vectors ({})",
                        spec.dims,
                        check.vector_index,
                        store.describe()
                    );
                    for w in check.warnings {
                        eprintln!("imgvec: warning: {w}");
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
