//! `VectorStore::labels` and `VectorStore::get` on both backends: the same documents in, the same
//! answers out (what `imgvec serve` builds its label filter, "more like this" and thumbnails on).

mod common;
#[path = "common/docs.rs"]
mod docs;

use common::TestIndex;
use docs::{docs, spec, Rng};
use imgvec::store::{ImageDoc, LabelCount, StoreError};

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    imgvec::commands::runtime().unwrap().block_on(f)
}

fn counts(labels: &[LabelCount]) -> Vec<(&str, u64)> {
    labels.iter().map(|l| (l.label.as_str(), l.count)).collect()
}

fn same_doc(got: &ImageDoc, want: &ImageDoc) {
    assert_eq!(
        (&got.id, &got.label, &got.path, got.bytes, got.width, got.height, &got.model),
        (
            &want.id,
            &want.label,
            &want.path,
            want.bytes,
            want.width,
            want.height,
            &want.model
        )
    );
    assert_eq!(got.indexed_at_ms, want.indexed_at_ms);
    assert_eq!(got.vector.len(), want.vector.len());
    for (a, b) in got.vector.iter().zip(&want.vector) {
        assert!(
            (a - b).abs() < 1e-6,
            "vector of {} changed: {a} vs {b}",
            got.id
        );
    }
}

backend_test! {
    fn labels_are_counted_most_first(idx) {
        let store = idx.store();
        block_on(async {
            store.ensure_index(&spec(8)).await.unwrap();
            assert_eq!(store.labels().await.unwrap(), vec![], "[{}] empty index", idx.kind());
            let labels = ["cats", "dogs", "birds", "<img src=x onerror=alert(1)>"];
            // In turn: cats 3, dogs 2, birds 2, <img…> 2; then one <img…> becomes a cat.
            let mut all = docs(&mut Rng(7), 9, 8, &labels, "a");
            all[7].label = "cats".into();
            store.upsert(&all, false).await.unwrap();
            store.refresh().await.unwrap();
            let got = store.labels().await.unwrap();
            assert_eq!(
                counts(&got),
                [("cats", 4), ("birds", 2), ("dogs", 2), ("<img src=x onerror=alert(1)>", 1)],
                "[{}]",
                idx.kind()
            );
        });
    }
}

backend_test! {
    fn documents_come_back_by_id_with_their_vectors(idx) {
        let store = idx.store();
        block_on(async {
            store.ensure_index(&spec(16)).await.unwrap();
            let all = docs(&mut Rng(11), 5, 16, &["x", "y"], "b");
            store.upsert(&all, false).await.unwrap();
            let unknown = "f".repeat(64);
            let asked = [all[3].id.clone(), unknown, all[0].id.clone(), all[3].id.clone()];
            // Real-time: no refresh needed to read a document back by id.
            let got = store.get(&asked).await.unwrap();
            assert_eq!(got.len(), 2, "[{}] each known id once, in the order asked", idx.kind());
            same_doc(&got[0], &all[3]);
            same_doc(&got[1], &all[0]);
            assert!(store.get(&[]).await.unwrap().is_empty());
        });
    }
}

backend_test! {
    fn a_missing_index_is_said_to_be_missing(idx) {
        let store = idx.store();
        block_on(async {
            let labels = store.labels().await;
            assert!(matches!(labels, Err(StoreError::IndexMissing { .. })), "[{}] {labels:?}", idx.kind());
            let got = store.get(&["a".repeat(64)]).await;
            assert!(matches!(got, Err(StoreError::IndexMissing { .. })), "[{}] {got:?}", idx.kind());
        });
    }
}
