//! The int8 code a vector has in the HNSW graph: centred on the index's mean vector, scaled so that
//! ±[`CLIP_SIGMAS`] standard deviations of a component fill ±127, rounded to the nearest step.
//!
//! What it is for: giving the graph distances close to the exact ones. usearch's own f32 → i8
//! cast divides a vector by its norm, multiplies by 127 and truncates toward zero: a unit vector of
//! 768 dimensions has components of about ±0.036, so each became one of a dozen steps, biased toward
//! zero, and the graph (built and searched on those codes) missed true neighbours — recall@10 0.96
//! at 1,000,000 documents even after the exact re-rank. Here a component spans ±127 steps.
//! Subtracting one vector from all and multiplying all by one number keep squared-L2 order, so
//! only rounding and the clip (beyond [`CLIP_SIGMAS`] deviations) cost accuracy; CLIP embeddings
//! share a large common component, which centring removes before it could eat the range.
//!
//! What it is not for: the scores a search returns (the exact f32 re-rank gives those), or where the
//! calibration comes from (`graph` fits it on the rows a graph is built from and keeps it in the
//! graph's cache file).

/// A component this many standard deviations from the mean maps to ±127 (farther ones are clipped).
const CLIP_SIGMAS: f32 = 6.0;

/// Rows a fit looks at, at most: the mean and spread are settled long before.
pub const FIT_ROWS: usize = 8_192;

/// A graph calibrated on fewer rows than this is rebuilt (and so calibrated anew) once it holds
/// this many: a store's first graph starts empty, with a guess.
pub(super) const SETTLED_ROWS: u64 = 1_024;

/// Centre and scale of an index's int8 codes.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantizer {
    mean: Vec<f32>,
    scale: f32,
    /// Rows the centre and scale were fitted on (0: a guess for unit vectors).
    rows: u64,
}

impl Quantizer {
    /// The guess for unit vectors before any row is seen: no centre, components of 1/√dims.
    pub fn unit(dims: usize) -> Quantizer {
        let sigma = 1.0 / (dims.max(1) as f32).sqrt();
        Quantizer {
            mean: vec![0.0; dims],
            scale: 127.0 / (CLIP_SIGMAS * sigma),
            rows: 0,
        }
    }

    /// Fitted on `rows` (vectors of `dims` components): their mean, and the root-mean-square
    /// deviation of a component from it. The guess for unit vectors if there are none (and its
    /// scale if they are all alike).
    pub fn fit<'a>(dims: usize, rows: impl IntoIterator<Item = &'a [f32]>) -> Quantizer {
        let rows: Vec<&[f32]> = rows.into_iter().filter(|r| r.len() == dims).collect();
        if rows.is_empty() {
            return Quantizer::unit(dims);
        }
        let n = rows.len() as f64;
        let mut sum = vec![0f64; dims];
        for r in &rows {
            sum.iter_mut()
                .zip(r.iter())
                .for_each(|(s, &x)| *s += f64::from(x));
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let squares: f64 = rows
            .iter()
            .flat_map(|r| r.iter().zip(&mean).map(|(&x, &m)| f64::from(x - m).powi(2)))
            .sum();
        let sigma = (squares / (n * dims.max(1) as f64)).sqrt() as f32;
        if !(sigma.is_finite() && sigma > 0.0) {
            return Quantizer {
                mean,
                scale: Quantizer::unit(dims).scale,
                rows: rows.len() as u64,
            };
        }
        Quantizer {
            mean,
            scale: 127.0 / (CLIP_SIGMAS * sigma),
            rows: rows.len() as u64,
        }
    }

    /// Rows the calibration was fitted on.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// The code of `v` (of [`Quantizer::dims`] components).
    pub fn code(&self, v: &[f32]) -> Vec<i8> {
        v.iter()
            .zip(&self.mean)
            .map(|(&x, &m)| ((x - m) * self.scale).round().clamp(-127.0, 127.0) as i8)
            .collect()
    }

    /// Bytes for the cache file: rows (u64), scale (f32), dims (u32), mean (f32 each), little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * self.mean.len());
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&(self.mean.len() as u32).to_le_bytes());
        self.mean
            .iter()
            .for_each(|m| out.extend_from_slice(&m.to_le_bytes()));
        out
    }

    /// Reads what [`Quantizer::to_bytes`] wrote at the start of `bytes`; the rest after it.
    pub fn from_bytes(bytes: &[u8]) -> Option<(Quantizer, &[u8])> {
        let rows = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
        let scale = f32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
        let dims = u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?) as usize;
        let end = dims.checked_mul(4)?.checked_add(16)?;
        let mean = bytes
            .get(16..end)?
            .chunks_exact(4)
            .map(|c| c.try_into().ok().map(f32::from_le_bytes))
            .collect::<Option<Vec<f32>>>()?;
        if !(scale.is_finite() && scale > 0.0) || mean.iter().any(|m| !m.is_finite()) {
            return None;
        }
        Some((Quantizer { mean, scale, rows }, &bytes[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn codes_of_unit_vectors_use_the_range_and_round() {
        let q = Quantizer::unit(768);
        let sigma = 1.0 / 768f32.sqrt();
        let mut v = vec![0.0f32; 768];
        v[0] = sigma; // one deviation: 127 / 6 = 21.17 steps, rounded
        v[1] = -sigma * 0.5;
        v[2] = sigma * 100.0; // clipped
        let c = q.code(&v);
        assert_eq!((c[0], c[1], c[2], c[3]), (21, -11, 127, 0));
    }

    #[test]
    fn a_fit_centres_on_the_mean_and_keeps_the_order_of_distances() {
        // Vectors sharing a large common component, as CLIP's do.
        let dims = 64;
        let rows: Vec<Vec<f32>> = (0..200)
            .map(|i| {
                unit(
                    (0..dims)
                        .map(|d| {
                            if d == 0 {
                                4.0
                            } else {
                                ((i * 7 + d * 13) % 17) as f32 / 17.0 - 0.5
                            }
                        })
                        .collect(),
                )
            })
            .collect();
        let q = Quantizer::fit(dims, rows.iter().map(Vec::as_slice));
        assert_eq!(q.rows(), 200);
        let codes: Vec<Vec<i8>> = rows.iter().map(|r| q.code(r)).collect();
        // The common component is gone from the codes: component 0 is near 0 for all.
        assert!(codes.iter().all(|c| c[0].unsigned_abs() < 40));
        let d2 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>();
        let c2 = |a: &[i8], b: &[i8]| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| (i32::from(x) - i32::from(y)).pow(2))
                .sum::<i32>()
        };
        // The nearest of the others to row 0 is the same by exact and by code distance.
        let exact = (1..rows.len())
            .min_by(|&a, &b| d2(&rows[0], &rows[a]).total_cmp(&d2(&rows[0], &rows[b])));
        let coded = (1..rows.len()).min_by_key(|&a| c2(&codes[0], &codes[a]));
        assert_eq!(exact, coded);
    }

    #[test]
    fn bytes_round_trip_and_damage_is_refused() {
        let q = Quantizer::fit(
            4,
            [[0.1f32, 0.2, 0.3, 0.4].as_slice(), &[0.4, 0.3, 0.2, 0.1]],
        );
        let mut bytes = q.to_bytes();
        bytes.extend_from_slice(b"rest");
        let (back, rest) = Quantizer::from_bytes(&bytes).unwrap();
        assert_eq!((back, rest), (q, b"rest".as_slice()));
        assert!(Quantizer::from_bytes(&bytes[..20]).is_none());
        let mut nan = bytes.clone();
        nan[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(Quantizer::from_bytes(&nan).is_none());
    }

    #[test]
    fn no_rows_or_identical_rows_give_the_unit_guess() {
        assert_eq!(Quantizer::fit(8, std::iter::empty()), Quantizer::unit(8));
        let same = [0.5f32; 8];
        let q = Quantizer::fit(8, [same.as_slice(), &same]);
        assert_eq!((q.rows(), q.code(&same)), (2, vec![0; 8]));
    }
}
