//! The tail's bookkeeping: rows leave it a whole generation at a time, oldest first; a replaced or
//! deleted row is never a candidate; its scan is the exact nearest of its live codes.

use super::Tail;

const DIMS: usize = 8;

fn code(seed: u64) -> Vec<i8> {
    crate::store::local::test_code(seed, DIMS)
}

fn distance(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (i32::from(x) - i32::from(y)).pow(2))
        .sum()
}

/// Keys 0..n, generation `1 + key / per_generation`, label "even" or "odd".
fn filled(n: u64, per_generation: u64) -> Tail {
    let mut tail = Tail::new(DIMS, 0);
    for key in 0..n {
        let label = if key % 2 == 0 { "even" } else { "odd" };
        tail.put(
            key,
            1 + (key / per_generation) as i64,
            label.into(),
            &code(key),
        );
    }
    tail.generation = 1 + ((n - 1) / per_generation) as i64;
    tail
}

#[test]
fn a_chunk_is_whole_generations_oldest_first_and_stays_until_done() {
    let mut tail = filled(100, 10);
    let chunk = tail.chunk(25).expect("rows");
    // 25 rows reach into generation 3: all of it is taken.
    assert_eq!(chunk.through, 3);
    let keys: Vec<u64> = chunk.rows.iter().map(|r| r.0).collect();
    assert_eq!(keys, (0..30).collect::<Vec<_>>());
    assert_eq!(tail.rows(), 100, "searches still see the chunk's rows");
    tail.done_through(chunk.through);
    assert_eq!(tail.rows(), 70);
    let rest = tail.chunk(usize::MAX).expect("rows");
    assert_eq!(rest.through, 10);
    assert_eq!(rest.rows.len(), 70);
    tail.done_through(rest.through);
    assert!(tail.is_empty());
    assert!(tail.chunk(10).is_none());
}

#[test]
fn a_replaced_or_deleted_row_is_no_candidate_and_deletions_go_with_their_generation() {
    let mut tail = filled(40, 10);
    // Key 3 rewritten in generation 5 with another code and label; key 4 deleted in 5.
    tail.kill(4);
    tail.removed.push_back((5, 4));
    tail.put(3, 5, "even".into(), &code(1_000));
    tail.generation = 5;
    assert_eq!(tail.rows(), 39);
    assert_eq!(tail.rows_of("odd"), 19);
    assert_eq!(tail.rows_of("even"), 20);
    let found = tail.nearest(&code(1_000), 3, None);
    assert_eq!(found[0], 3);
    assert_eq!(found.iter().filter(|&&k| k == 3).count(), 1);
    assert!(!tail.nearest(&code(4), 40, None).contains(&4));
    let first = tail.chunk(10).expect("rows");
    // Generation 1 has 8 live rows left: generation 2 is taken whole to make 10.
    assert_eq!((first.through, first.rows.len()), (2, 18));
    assert!(
        first.removed.is_empty(),
        "deleted in generation 5, not 1 or 2"
    );
    assert!(!first.rows.iter().any(|r| r.0 == 3 || r.0 == 4));
    tail.done_through(first.through);
    let rest = tail.chunk(usize::MAX).expect("rows");
    assert_eq!((rest.through, rest.removed.clone()), (5, vec![4]));
    let three: Vec<_> = rest.rows.iter().filter(|r| r.0 == 3).collect();
    assert_eq!(three.len(), 1);
    assert_eq!((three[0].1.as_str(), &three[0].2), ("even", &code(1_000)));
    tail.done_through(rest.through);
    assert!(tail.is_empty());
}

#[test]
fn the_scan_is_the_exact_nearest_of_the_live_codes_of_a_label() {
    let mut tail = filled(20_000, 100);
    // Drain past the compaction point, so positions move.
    let chunk = tail.chunk(12_000).expect("rows");
    tail.done_through(chunk.through);
    let query = code(77_777);
    for label in [None, Some("odd")] {
        let mut want: Vec<(i32, u64)> = (12_000..20_000u64)
            .filter(|k| label.is_none() || k % 2 == 1)
            .map(|k| (distance(&query, &code(k)), k))
            .collect();
        want.sort();
        let found = tail.nearest(&query, 25, label);
        let got: Vec<i32> = found.iter().map(|&k| distance(&query, &code(k))).collect();
        let expected: Vec<i32> = want.iter().take(25).map(|w| w.0).collect();
        assert_eq!(got, expected, "label {label:?}");
        assert!(found.iter().all(|&k| k >= 12_000));
    }
    assert!(tail.nearest(&query, 5, Some("none")).is_empty());
}
