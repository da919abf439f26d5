//! `imgvec info`: which store and index the flags point at, its vector size and how many images it
//! holds.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::{open_store, runtime};
use crate::cli::InfoArgs;

pub fn run(args: &InfoArgs) -> Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_store(&args.store)?;
        let dims = store.index_dims().await?;
        let count = store.count().await?;
        if args.json {
            println!(
                "{}",
                json!({"store": store.describe(), "index": args.store.index, "dims": dims, "documents": count})
            );
        } else {
            println!("{}", store.describe());
            println!("index '{}': {count} image(s), {dims}-d vectors", args.store.index);
        }
        Ok(ExitCode::SUCCESS)
    })
}
