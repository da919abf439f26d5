//! Finding duplicates in an index: exact copies (the same bytes at several paths: one document,
//! several paths) and near duplicates (re-encoded, resized, slightly cropped, shots of one burst:
//! vectors closer than a distance), grouped, each group with a suggested keeper.
//!
//! How: every document of the index is read once (a scan, page by page) and its vector asked for
//! its nearest neighbours through the store's kNN search (the ANN graph, never all n² pairs), a
//! page's queries in one batch (`knn_batch`: the embedded store searches its graph on every core,
//! Elasticsearch answers an `_msearch`). Pairs closer than `max_distance` join their documents
//! (union-find); a group is a connected component, with each of its documents' paths a member.
//! Memory holds the documents' facts and the pairs, not the vectors: only the groups' vectors are
//! read back, to give each member its distance to the keeper.
//!
//! The keeper: most pixels, then the largest file, then the oldest (modification time), then the
//! path; it is the group's first member. Nothing here deletes or moves a file.
//!
//! Not for: printing (`commands::dupes`) or the page (`serve`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::store::{Hit, ImageDoc, KnnQuery, StoreError, VectorStore};

/// Default `--max-distance`: the L2 distance between unit vectors under which two images are
/// called near duplicates (cosine similarity ≥ 1 − d²/2 = 0.98). See docs/commands.md for how it
/// was chosen and how to tune it.
pub const DEFAULT_MAX_DISTANCE: f32 = 0.2;

/// Neighbours asked per document first; a document whose neighbours are all within the distance
/// (a long burst) is asked again for [`MAX_NEIGHBOURS`].
const NEIGHBOURS: usize = 10;
const MAX_NEIGHBOURS: usize = 100;

/// Documents read per scan page.
const PAGE: usize = 500;

/// Which paths count: `scope(path)` says.
pub type Scope = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What to look for.
#[derive(Clone)]
pub struct Options {
    pub max_distance: f32,
    /// Only documents with this label (and neighbours of the same label).
    pub label: Option<String>,
    /// Only paths for which this says yes (`None`: every path).
    pub scope: Option<Scope>,
}

impl Options {
    pub fn new(max_distance: f32) -> Self {
        Options {
            max_distance,
            label: None,
            scope: None,
        }
    }
}

/// One file of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub path: String,
    /// The content's id (SHA-256 of the bytes): members with the same id are exact copies.
    pub id: String,
    pub label: String,
    pub width: u32,
    pub height: u32,
    /// File size in bytes (read from the file now; the indexed size if it cannot be read).
    pub bytes: u64,
    /// Modification time, epoch ms (from the file now; else as indexed; `None` if unknown).
    pub mtime_ms: Option<u64>,
    /// Whether the file was there to look at (else size and time are as indexed).
    pub on_disk: bool,
    /// L2 distance of its vector to the keeper's (0 for the keeper and its exact copies).
    pub distance: f32,
    /// The suggested one to keep (the first member).
    pub keep: bool,
}

/// A group of duplicates: the keeper first, then by distance to it, then path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub members: Vec<Member>,
    /// Every member has the keeper's bytes.
    pub exact: bool,
    /// The largest distance of a member to the keeper.
    pub spread: f32,
}

/// What was looked at, for the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Documents read (in scope).
    pub documents: usize,
    /// Paths in scope.
    pub paths: usize,
    /// kNN queries made.
    pub queries: usize,
}

/// A document's facts, without its vector.
#[derive(Debug, Clone)]
struct Doc {
    id: String,
    label: String,
    paths: Vec<String>,
    width: u32,
    height: u32,
    bytes: u64,
    mtime_ms: Option<u64>,
}

/// Finds the groups of duplicates in `store`, calling `progress(documents read)` as it goes.
pub async fn find(
    store: Arc<dyn VectorStore>,
    opts: &Options,
    mut progress: impl FnMut(usize),
) -> Result<(Vec<Group>, Stats), StoreError> {
    let mut docs: Vec<Doc> = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut stats = Stats::default();
    let mut scan = store.scan(PAGE, None).await?;
    let result = async {
        loop {
            let page = scan.next_page().await?;
            if page.is_empty() {
                return Ok(());
            }
            let page: Vec<ImageDoc> = page.into_iter().filter_map(|d| in_scope(d, opts)).collect();
            let found = neighbours(&store, &page, opts).await?;
            stats.queries += found.queries;
            pairs.extend(found.pairs);
            for d in page {
                stats.paths += 1 + d.other_paths.len();
                docs.push(facts(d));
            }
            stats.documents = docs.len();
            progress(docs.len());
        }
    }
    .await;
    let closed = scan.close().await;
    result?;
    closed?;
    let groups = group(&docs, &pairs);
    // The groups' vectors, read back in a few large calls rather than one per group.
    let ids: Vec<String> = groups
        .iter()
        .flatten()
        .map(|&i| docs[i].id.clone())
        .collect();
    let mut vectors: HashMap<String, Vec<f32>> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(PAGE) {
        vectors.extend(
            store
                .get(chunk)
                .await?
                .into_iter()
                .map(|d| (d.id, d.vector)),
        );
    }
    let mut out: Vec<Group> = groups
        .iter()
        .map(|members| describe(&docs, members, &vectors))
        .collect();
    out.sort_by(|a, b| a.members[0].path.cmp(&b.members[0].path));
    Ok((out, stats))
}

/// The document with only its paths in scope, if it is in scope at all (label, paths).
fn in_scope(mut d: ImageDoc, opts: &Options) -> Option<ImageDoc> {
    if opts.label.as_ref().is_some_and(|l| *l != d.label) {
        return None;
    }
    if let Some(scope) = &opts.scope {
        let mut paths: Vec<String> = std::iter::once(std::mem::take(&mut d.path))
            .chain(std::mem::take(&mut d.other_paths))
            .filter(|p| scope(p))
            .collect();
        if paths.is_empty() {
            return None;
        }
        d.path = paths.remove(0);
        d.other_paths = paths;
    }
    Some(d)
}

fn facts(d: ImageDoc) -> Doc {
    let mut paths = vec![d.path];
    paths.extend(d.other_paths);
    Doc {
        id: d.id,
        label: d.label,
        paths,
        width: d.width,
        height: d.height,
        bytes: d.bytes,
        mtime_ms: d.mtime_ms,
    }
}

/// The pairs found for one page, and how many queries it took.
struct Found {
    pairs: Vec<(String, String)>,
    queries: usize,
}

/// Each document's neighbours within the distance: one batch of queries for the page (the store
/// runs them together), then a wider one for the documents whose every neighbour was within it.
async fn neighbours(
    store: &Arc<dyn VectorStore>,
    page: &[ImageDoc],
    opts: &Options,
) -> Result<Found, StoreError> {
    let mut found = Found {
        pairs: Vec::new(),
        queries: 0,
    };
    let mut k = NEIGHBOURS + 1;
    let mut todo: Vec<&ImageDoc> = page.iter().collect();
    while !todo.is_empty() {
        let queries: Vec<KnnQuery> = todo
            .iter()
            .map(|d| KnnQuery {
                vector: d.vector.clone(),
                k,
                num_candidates: candidates(k),
                label: opts.label.clone(),
            })
            .collect();
        let answers = store.knn_batch(&queries).await?;
        found.queries += queries.len();
        let mut wider = Vec::new();
        for (d, hits) in todo.into_iter().zip(answers) {
            let near = |h: &Hit| h.distance() <= opts.max_distance;
            if k < MAX_NEIGHBOURS && hits.len() == k && hits.iter().all(near) {
                wider.push(d);
                continue;
            }
            for h in hits.into_iter().filter(|h| near(h) && h.id != d.id) {
                found.pairs.push((d.id.clone(), h.id));
            }
        }
        todo = wider;
        k = MAX_NEIGHBOURS;
    }
    Ok(found)
}

/// Candidates per query: near duplicates are the closest of neighbours, which a graph search
/// finds first, so a narrow search does (and the embedded store re-ranks fewer vectors).
fn candidates(k: usize) -> usize {
    (3 * k).max(32)
}

/// The groups: connected components of `pairs` over `docs` (pairs naming a document out of scope
/// are ignored), plus every document with several paths; each as indices into `docs`, in order.
fn group(docs: &[Doc], pairs: &[(String, String)]) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.as_str(), i))
        .collect();
    let mut sets = UnionFind::new(docs.len());
    for (a, b) in pairs {
        if let (Some(&a), Some(&b)) = (index.get(a.as_str()), index.get(b.as_str())) {
            sets.union(a, b);
        }
    }
    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..docs.len() {
        by_root.entry(sets.find(i)).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by_root
        .into_values()
        .filter(|m| m.len() > 1 || docs[m[0]].paths.len() > 1)
        .collect();
    groups.sort();
    groups
}

/// Disjoint sets with path halving and union by size.
pub struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    pub fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a;
        self.size[a] += self.size[b];
    }
}

/// A group's members (every path of its documents) looked at on disk, the keeper chosen, and each
/// one's distance to the keeper from the documents' `vectors`.
fn describe(docs: &[Doc], members: &[usize], vectors: &HashMap<String, Vec<f32>>) -> Group {
    let mut list: Vec<Member> = members
        .iter()
        .flat_map(|&i| {
            let d = &docs[i];
            d.paths.iter().map(move |p| on_disk(d, p))
        })
        .collect();
    let keeper = (0..list.len())
        .min_by(|&a, &b| keeper_order(&list[a], &list[b]))
        .unwrap_or(0);
    list.swap(0, keeper);
    list[0].keep = true;
    let keeper_vector = vectors.get(&list[0].id);
    for m in &mut list {
        m.distance = match (keeper_vector, vectors.get(&m.id)) {
            (Some(k), Some(v)) => l2(k, v),
            // Deleted meanwhile: no distance to tell.
            _ => f32::NAN,
        };
    }
    finish(list)
}

/// Sorts the members after the keeper by distance then path (the keeper's exact copies at 0),
/// and sums up.
fn finish(mut list: Vec<Member>) -> Group {
    let keeper_id = list[0].id.clone();
    for m in &mut list {
        if m.id == keeper_id {
            m.distance = 0.0;
        }
    }
    list[1..].sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then_with(|| a.path.cmp(&b.path))
    });
    let exact = list.iter().all(|m| m.id == keeper_id);
    let spread = list.iter().map(|m| m.distance).fold(0.0, f32::max);
    Group {
        members: list,
        exact,
        spread,
    }
}

/// A member as the file is now (size and time from disk), or as indexed if it cannot be read.
fn on_disk(d: &Doc, path: &str) -> Member {
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file());
    let mtime = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|t| t.as_millis() as u64);
    let first = d.paths.first().is_some_and(|p| p == path);
    Member {
        path: path.to_string(),
        id: d.id.clone(),
        label: d.label.clone(),
        width: d.width,
        height: d.height,
        bytes: meta.as_ref().map_or(d.bytes, |m| m.len()),
        mtime_ms: mtime.or(if first { d.mtime_ms } else { None }),
        on_disk: meta.is_some(),
        distance: 0.0,
        keep: false,
    }
}

/// The keeper comes first: most pixels, then largest file, then oldest (unknown times last),
/// then path.
pub fn keeper_order(a: &Member, b: &Member) -> std::cmp::Ordering {
    let pixels = |m: &Member| u64::from(m.width) * u64::from(m.height);
    pixels(b)
        .cmp(&pixels(a))
        .then_with(|| b.bytes.cmp(&a.bytes))
        .then_with(|| {
            a.mtime_ms
                .unwrap_or(u64::MAX)
                .cmp(&b.mtime_ms.unwrap_or(u64::MAX))
        })
        .then_with(|| a.path.cmp(&b.path))
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// The set of ids in `groups`, for tests and benchmarks that compare groupings.
pub fn id_sets(groups: &[Group]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let set: HashSet<&str> = g.members.iter().map(|m| m.id.as_str()).collect();
            let mut ids: Vec<String> = set.into_iter().map(str::to_string).collect();
            ids.sort();
            ids
        })
        .collect();
    out.sort();
    out
}
