//! The parts of the store contract both backends meet to the letter, checked by one function each
//! that `store_local.rs` and `store_elastic.rs` call on a store of their own (what only one
//! backend can promise, such as exact kNN results, stays in its file).
#![allow(dead_code)]

use std::collections::HashSet;

use imgvec::store::{ImageDoc, StoreError, VectorStore};

use super::docs::{docs, ids, spec, Rng};

/// Every other one of 2,500 documents stored: `existing_ids` names exactly those, in one call,
/// without a refresh (Elasticsearch's `_mget` is real-time), and nothing for no ids.
pub async fn existing_ids_over_several_batches(store: &dyn VectorStore) {
    store.ensure_index(&spec(8)).await.unwrap();
    let mut rng = Rng(4);
    let all = docs(&mut rng, 2_500, 8, &["cat", "dog", "fox"], "d");
    let stored: Vec<ImageDoc> = all.iter().step_by(2).cloned().collect();
    let report = store.upsert(&stored, false).await.unwrap();
    assert_eq!(report.indexed.len(), 1_250, "failed: {:?}", report.failed);

    let found = store.existing_ids(&ids(&all)).await.unwrap();
    let expected: HashSet<String> = ids(&stored).into_iter().collect();
    assert_eq!(found.len(), 1_250);
    assert_eq!(found, expected);
    assert!(store.existing_ids(&[]).await.unwrap().is_empty());
}

/// An index of 16 dims asked for as 32: `Incompatible`, naming the index and both sizes, and the
/// index left as it was.
pub async fn incompatible_dims_are_named(store: &dyn VectorStore, index_name: &str) {
    store.ensure_index(&spec(16)).await.unwrap();
    match store.ensure_index(&spec(32)).await {
        Err(StoreError::Incompatible { index, differences }) => {
            assert_eq!(index, index_name);
            assert!(
                differences
                    .iter()
                    .any(|d| d.contains("dims") && d.contains("16") && d.contains("32")),
                "{differences:?}"
            );
            let message = StoreError::Incompatible { index, differences }.to_string();
            assert!(
                message.contains("IFV dims: index has 16, model makes 32"),
                "{message}"
            );
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    assert_eq!(store.index_dims().await.unwrap(), 16);
}
