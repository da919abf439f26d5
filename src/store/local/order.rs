//! The order a graph built from all rows takes them in: a chunk at a time, each chunk sorted by
//! the cell its codes lie in, so that a run of inserts reads one part of the graph, which is then
//! in the cache, instead of a random part each.
//!
//! What it is for: `graph::build_graph`. An insert into a graph of a million 768-byte codes spends
//! most of its time waiting on memory for the nodes and codes its search reads; the rows come in
//! key order (the content hash: random), so each insert read a different part of the graph. Sorted
//! by cell (the nearest of 256 of the chunk's own codes), the inserts of one cell read much the same
//! nodes one after the other. The chunks stay in random order, so the graph still grows everywhere
//! at once, as it does from random rows. Measured at a million documents (docs/performance.md,
//! "A rebuild's rows sorted by cell"): the build 1.2 times as fast, recall the same. Sorted more
//! finely (1,024 cells, chunks of 262,144) it was faster still but lost recall (0.985 at ef 1,024
//! against 0.990), so the cells stay coarse and the chunks moderate.
//!
//! What it is not for: anything a search sees, or the graph's tail (`follow` takes in chunks of
//! 2,048 rows, too few to sort into runs). Order changes which links a build makes; recall after a
//! rebuild is measured by `benches/local_store_recall.rs` (`IMGVEC_BENCH_REBUILD`).

use rayon::prelude::*;

use super::codes;

/// Rows sorted at a time: enough that each of the [`CELLS`] cells holds a run of
/// inserts (about 256 a chunk), few enough that the chunk's codes stay small beside the graph (48
/// MiB at 768-d).
pub(super) const ORDER_CHUNK: usize = 65_536;

/// Cells a chunk is sorted into: a code's cell costs as many int8 distances. Two levels of 16 (32
/// distances) were tried first: on data of many small clusters, a code's nearest of 16 centres is
/// nearly chance, and the build gained half as much.
const CELLS: usize = 256;

/// Sorts `items` (codes of `dims` components, `code_of` each; in random order) by cell: the cell
/// of a code is its nearest of up to [`CELLS`] centres, codes of the items spread over them
/// ([`centres`]). Cells are computed on every core; items of one cell keep their order.
pub fn sort_by_cell<T: Send + Sync>(
    dims: usize,
    items: &mut Vec<T>,
    code_of: impl Fn(&T) -> &[i8] + Sync,
) {
    let centres = centres(items, &code_of);
    let cells: Vec<usize> = items
        .par_iter()
        .map(|t| cell(&centres, dims, code_of(t)))
        .collect();
    let mut keyed: Vec<(usize, T)> = cells.into_iter().zip(items.drain(..)).collect();
    keyed.sort_by_key(|(cell, _)| *cell);
    items.extend(keyed.into_iter().map(|(_, t)| t));
}

/// Up to [`CELLS`] codes of `items`, spread over them, one after another.
fn centres<T>(items: &[T], code_of: impl Fn(&T) -> &[i8]) -> Vec<i8> {
    let step = items.len().div_ceil(CELLS).max(1);
    items
        .iter()
        .step_by(step)
        .flat_map(|t| code_of(t).iter().copied())
        .collect()
}

/// The cell of `code`: the position of its nearest code in `centres` ([`codes::nearest`]; 0 if
/// there is none, or `code` is not of `dims` components).
fn cell(centres: &[i8], dims: usize, code: &[i8]) -> usize {
    if code.len() != dims {
        return 0;
    }
    codes::nearest(code, centres, 1)
        .first()
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` codes of `clusters` well-separated clusters in random order, each with its cluster.
    fn clustered(dims: usize, clusters: usize, count: usize) -> Vec<(usize, Vec<i8>)> {
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 33
        };
        (0..count)
            .map(|_| {
                let c = next() as usize % clusters;
                let code = (0..dims)
                    .map(|d| {
                        let centre = if d % clusters == c { 100 } else { -20 };
                        centre + (next() % 21) as i8 - 10
                    })
                    .collect();
                (c, code)
            })
            .collect()
    }

    #[test]
    fn a_cell_holds_one_cluster_and_a_sort_makes_each_cell_one_run() {
        let (dims, clusters) = (64, 8);
        let codes = clustered(dims, clusters, 2_000);
        let sample: Vec<&[i8]> = codes.iter().map(|(_, c)| &c[..]).collect();
        let centres = centres(&sample, |c| c);
        let mut cluster_of_cell = std::collections::HashMap::new();
        for (cluster, code) in &codes {
            let cell = cell(&centres, dims, code);
            assert!(cell < CELLS);
            let seen = *cluster_of_cell.entry(cell).or_insert(*cluster);
            assert_eq!(seen, *cluster, "cell {cell} mixes clusters");
        }
        assert!(cluster_of_cell.len() >= clusters);

        // Sorted: each cell one run, in ascending cell order, each run in its first order.
        let mut items: Vec<(usize, &[i8])> = sample.iter().copied().enumerate().collect();
        sort_by_cell(dims, &mut items, |t| t.1);
        assert_eq!(items.len(), codes.len());
        for w in items.windows(2) {
            let (a, b) = (cell(&centres, dims, w[0].1), cell(&centres, dims, w[1].1));
            assert!(a < b || (a == b && w[0].0 < w[1].0), "{a} {b}");
        }
    }

    #[test]
    fn odd_inputs_give_a_cell_and_lose_nothing() {
        let no_centres = centres::<&[i8]>(&[], |c| c);
        assert_eq!(cell(&no_centres, 4, &[1, 2, 3, 4]), 0);
        let one = [5i8, 5, 5, 5];
        let one_centre = centres(&[&one[..]], |c| c);
        assert_eq!(cell(&one_centre, 4, &[1, 2, 3, 4]), 0);
        assert_eq!(
            cell(&one_centre, 4, &[1, 2]),
            0,
            "a code of the wrong length"
        );
        let mut items = vec![vec![1i8, 1, 1, 1], vec![9, 9, 9, 9]];
        sort_by_cell(4, &mut items, |t| &t[..]);
        assert_eq!(items, vec![vec![1i8, 1, 1, 1], vec![9, 9, 9, 9]]);
    }
}
