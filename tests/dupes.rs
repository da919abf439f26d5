//! `imgvec::dupes::find` on synthetic vectors placed at known distances, on both backends: the
//! groups are exactly the connected components of the pairs within the distance, exact copies
//! (one document, several paths) are groups of their own, the keeper is the one with most
//! pixels, then the largest file, and the label and path scopes hold.
//!
//! The Elasticsearch half needs the server at `IMGVEC_TEST_ES_URL` (see `.ci/es-server.sh`);
//! marked ignored when built with `IMGVEC_SKIP_ES_TESTS=1`.

#[path = "common/docs.rs"]
mod docs;

use std::sync::Arc;
use std::time::Duration;

use docs::{spec, Rng};
use imgvec::dupes::{find, id_sets, Group, Options};
use imgvec::store::elastic::{ElasticConfig, ElasticStore};
use imgvec::store::local::{LocalConfig, LocalStore};
use imgvec::store::{ImageDoc, VectorStore};

const DIMS: usize = 64;

/// `base` turned towards a random direction until it is `d` away (both unit vectors).
fn moved(rng: &mut Rng, base: &[f32], d: f32) -> Vec<f32> {
    let mut u = rng.unit_vector(base.len());
    let dot: f32 = u.iter().zip(base).map(|(a, b)| a * b).sum();
    u.iter_mut().zip(base).for_each(|(x, b)| *x -= dot * b);
    let norm = u.iter().map(|x| x * x).sum::<f32>().sqrt();
    let theta = 2.0 * (d / 2.0).asin();
    base.iter()
        .zip(&u)
        .map(|(b, x)| theta.cos() * b + theta.sin() * x / norm)
        .collect()
}

fn doc(name: &str, label: &str, vector: Vec<f32>, pixels: (u32, u32), bytes: u64) -> ImageDoc {
    ImageDoc {
        id: format!(
            "{:0>64}",
            name.bytes().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        label: label.into(),
        path: format!("/photos/{label}/{name}.jpg"),
        other_paths: Vec::new(),
        vector,
        bytes,
        width: pixels.0,
        height: pixels.1,
        model: "test".into(),
        indexed_at_ms: 1,
        mtime_ms: Some(1_000),
    }
}

/// The corpus, and the groups expected within 0.2 (as names).
fn corpus() -> (Vec<ImageDoc>, Vec<Vec<&'static str>>) {
    let mut rng = Rng(41);
    let mut docs = Vec::new();
    // A: an original and two re-encodes, all within 0.06 of it; the original has most pixels.
    let a = rng.unit_vector(DIMS);
    docs.push(doc("a0", "cat", a.clone(), (4000, 3000), 2_000_000));
    docs.push(doc(
        "a1",
        "cat",
        moved(&mut rng, &a, 0.05),
        (4000, 3000),
        900_000,
    ));
    docs.push(doc(
        "a2",
        "cat",
        moved(&mut rng, &a, 0.06),
        (2000, 1500),
        400_000,
    ));
    // B: a pair 0.15 apart, same pixels: the larger file keeps.
    let b = rng.unit_vector(DIMS);
    docs.push(doc("b0", "dog", b.clone(), (800, 600), 100_000));
    docs.push(doc(
        "b1",
        "dog",
        moved(&mut rng, &b, 0.15),
        (800, 600),
        150_000,
    ));
    // C: a chain, c0–c1 and c1–c2 0.15 apart, c0–c2 about 0.3: one group through c1.
    let c0 = rng.unit_vector(DIMS);
    let c1 = moved(&mut rng, &c0, 0.15);
    let mut c2 = c1.clone();
    // Further along the same arc: c1 + (c1 − c0), renormalized.
    c2.iter_mut()
        .zip(&c0)
        .zip(&c1)
        .for_each(|((x, p), q)| *x = 2.0 * q - p);
    let n = c2.iter().map(|x| x * x).sum::<f32>().sqrt();
    c2.iter_mut().for_each(|x| *x /= n);
    docs.push(doc("c0", "cat", c0, (640, 480), 50_000));
    docs.push(doc("c1", "cat", c1, (640, 480), 50_000));
    docs.push(doc("c2", "cat", c2, (640, 480), 50_000));
    // D: a near miss, 0.25 from its neighbour: no group.
    let d = rng.unit_vector(DIMS);
    docs.push(doc("d0", "cat", d.clone(), (640, 480), 50_000));
    docs.push(doc(
        "d1",
        "cat",
        moved(&mut rng, &d, 0.25),
        (640, 480),
        50_000,
    ));
    // E: one content at two paths (exact copies), alone.
    let mut e = doc("e0", "dog", rng.unit_vector(DIMS), (640, 480), 50_000);
    e.other_paths = vec!["/backup/e0.jpg".into()];
    docs.push(e);
    // Strangers.
    for i in 0..40 {
        let label = if i % 2 == 0 { "cat" } else { "dog" };
        docs.push(doc(
            &format!("x{i}"),
            label,
            rng.unit_vector(DIMS),
            (640, 480),
            1,
        ));
    }
    let groups = vec![
        vec!["a0", "a1", "a2"],
        vec!["b0", "b1"],
        vec!["c0", "c1", "c2"],
        vec!["e0"],
    ];
    (docs, groups)
}

fn ids_of(docs: &[ImageDoc], groups: &[Vec<&str>]) -> Vec<Vec<String>> {
    let id = |name: &str| {
        docs.iter()
            .find(|d| d.path.ends_with(&format!("/{name}.jpg")))
            .map(|d| d.id.clone())
            .expect("a document of the corpus")
    };
    let mut out: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut ids: Vec<String> = g.iter().map(|n| id(n)).collect();
            ids.sort();
            ids
        })
        .collect();
    out.sort();
    out
}

fn group_with<'a>(groups: &'a [Group], path_end: &str) -> &'a Group {
    groups
        .iter()
        .find(|g| g.members.iter().any(|m| m.path.ends_with(path_end)))
        .unwrap_or_else(|| panic!("no group holds {path_end}: {groups:#?}"))
}

async fn check(store: Arc<dyn VectorStore>) {
    let what = store.describe();
    let (docs, expected) = corpus();
    store.recreate_index(&spec(DIMS)).await.expect("recreate");
    let report = store.upsert(&docs, false).await.expect("upsert");
    assert_eq!(report.indexed.len(), docs.len(), "{what}");
    store.refresh().await.expect("refresh");

    let (groups, stats) = find(Arc::clone(&store), &Options::new(0.2), |_| {})
        .await
        .expect("find");
    assert_eq!(id_sets(&groups), ids_of(&docs, &expected), "{what}");
    assert_eq!(
        (stats.documents, stats.paths),
        (docs.len(), docs.len() + 1),
        "{what}"
    );

    // Keepers: most pixels (a0), then the largest file (b1); the keeper is first, at 0.
    let a = group_with(&groups, "/a2.jpg");
    assert!(
        a.members[0].keep && a.members[0].path.ends_with("/a0.jpg"),
        "{what}: {a:#?}"
    );
    assert_eq!(a.members.iter().filter(|m| m.keep).count(), 1, "{what}");
    assert!(
        (a.members[1].distance - 0.05).abs() < 1e-3,
        "{what}: {a:#?}"
    );
    assert!(!a.exact && (a.spread - 0.06).abs() < 1e-3, "{what}: {a:#?}");
    let b = group_with(&groups, "/b0.jpg");
    assert!(b.members[0].path.ends_with("/b1.jpg"), "{what}: {b:#?}");
    // The chain's ends are further apart than the distance, and still in one group.
    let c = group_with(&groups, "/c0.jpg");
    assert!(c.spread > 0.2, "{what}: {c:#?}");
    // The exact copies: both paths, distance 0, marked exact.
    let e = group_with(&groups, "/e0.jpg");
    assert!(
        e.exact && e.members.len() == 2 && e.spread == 0.0,
        "{what}: {e:#?}"
    );
    assert!(
        e.members.iter().any(|m| m.path == "/backup/e0.jpg"),
        "{what}"
    );

    // A smaller distance splits what it should: B (0.15) and the chain go, A and E stay.
    let (tight, _) = find(Arc::clone(&store), &Options::new(0.1), |_| {})
        .await
        .expect("find");
    assert_eq!(
        id_sets(&tight),
        ids_of(&docs, &[vec!["a0", "a1", "a2"], vec!["e0"]]),
        "{what}"
    );

    // Scopes: one label; one folder (the exact copy's second path is outside it).
    let mut dogs = Options::new(0.2);
    dogs.label = Some("dog".into());
    let (by_label, _) = find(Arc::clone(&store), &dogs, |_| {}).await.expect("find");
    assert_eq!(
        id_sets(&by_label),
        ids_of(&docs, &[vec!["b0", "b1"], vec!["e0"]]),
        "{what}"
    );
    let mut photos = Options::new(0.2);
    photos.scope = Some(Arc::new(|p: &str| p.starts_with("/photos/")));
    let (in_photos, _) = find(Arc::clone(&store), &photos, |_| {})
        .await
        .expect("find");
    assert_eq!(
        id_sets(&in_photos),
        ids_of(
            &docs,
            &[
                vec!["a0", "a1", "a2"],
                vec!["b0", "b1"],
                vec!["c0", "c1", "c2"]
            ]
        ),
        "{what}: a content at one path in scope is no group"
    );
}

#[tokio::test]
async fn groups_on_the_embedded_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = LocalConfig::new(tmp.path(), "dupes");
    cfg.exact_scan_rows = 0; // through the graph, as on a big store
    check(Arc::new(LocalStore::open_with(cfg).expect("open"))).await;
}

#[tokio::test]
#[cfg_attr(skip_es, ignore = "IMGVEC_SKIP_ES_TESTS=1")]
async fn groups_on_elasticsearch() {
    let url = std::env::var("IMGVEC_TEST_ES_URL")
        .expect("IMGVEC_TEST_ES_URL: start the test server with .ci/es-server.sh");
    let mut cfg = ElasticConfig::new(url, format!("imgvec-test-dupes-{}", std::process::id()));
    cfg.request_timeout = Duration::from_secs(30);
    cfg.username = std::env::var("IMGVEC_TEST_ES_USERNAME").ok();
    cfg.password = std::env::var("IMGVEC_TEST_ES_PASSWORD").ok();
    cfg.ca_cert = std::env::var_os("IMGVEC_TEST_ES_CA_CERT").map(Into::into);
    let store = Arc::new(ElasticStore::connect(cfg).expect("connect"));
    check(store.clone()).await;
    store.delete_index().await.expect("clean up");
}
