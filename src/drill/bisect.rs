//! The search of `reclab bisect`, pure: over `n` restore points (oldest first), with a `drill`
//! that answers good or bad for a batch of point indexes, find the newest good point.
//!
//! The assumption is that the points are good up to some moment and bad after it: the
//! unknown is `b`, the number of good points (`0..=n`). Each round drills up to `jobs` points
//! that split the values `b` can still take into equal parts (with one job: bisection, a
//! point `p` that passes says `b > p`, one that fails says `b <= p`), until `b` is known. The
//! newest good point `b - 1` and the first bad one `b` have then both been drilled.
//!
//! Then the boundary is confirmed at the far end: if the newest point was not drilled, it is
//! drilled now (when the budget of `ceil(log2 n) + 1` drills allows, always with several jobs),
//! and it must fail too. A result that contradicts the assumption (an older point failed and a
//! newer one passed, here or inside a parallel round) is reported with the points involved, and
//! the answer is then the newest point that passed, never a guess between them.
//!
//! [`all`] drills every point instead (a full timeline) in batches of `jobs`.

use std::collections::BTreeMap;

/// An older point that failed while a newer one passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contradiction {
    pub older_bad: usize,
    pub newer_good: usize,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every drilled point and whether it passed, in the order drilled (a round's points in
    /// index order).
    pub drilled: Vec<(usize, bool)>,
    /// The newest point that passed (of those drilled), if any did.
    pub newest_good: Option<usize>,
    /// The oldest point newer than `newest_good` that was drilled and failed (the oldest
    /// drilled failure when nothing passed).
    pub first_bad: Option<usize>,
    pub contradictions: Vec<Contradiction>,
}

impl Outcome {
    fn from_results(drilled: Vec<(usize, bool)>) -> Outcome {
        let results: BTreeMap<usize, bool> = drilled.iter().copied().collect();
        let newest_good = results.iter().rev().find(|(_, ok)| **ok).map(|(p, _)| *p);
        let first_bad = results
            .iter()
            .find(|(p, ok)| !**ok && newest_good.is_none_or(|g| **p > g))
            .map(|(p, _)| *p);
        // Every turn from bad back to good, in time order, between neighbours among the
        // drilled points.
        let mut contradictions = Vec::new();
        let mut last_bad = None;
        for (&p, &ok) in &results {
            match (ok, last_bad) {
                (false, _) => last_bad = Some(p),
                (true, Some(bad)) => {
                    contradictions.push(Contradiction {
                        older_bad: bad,
                        newer_good: p,
                    });
                    last_bad = None;
                }
                (true, None) => {}
            }
        }
        Outcome {
            drilled,
            newest_good,
            first_bad,
            contradictions,
        }
    }
}

/// A round's drills: the indexes of its points → whether each passed.
pub type Drill<'a, E> = dyn FnMut(&[usize]) -> Result<Vec<bool>, E> + 'a;

/// The most drills a search with one job makes over `n` points: `ceil(log2 n) + 1`.
pub fn budget(n: usize) -> usize {
    if n <= 1 {
        return n;
    }
    (usize::BITS - (n - 1).leading_zeros()) as usize + 1
}

/// The points of a round: `k` points splitting the values `lo..=hi` of `b` evenly.
fn split(lo: usize, hi: usize, jobs: usize) -> Vec<usize> {
    let values = hi - lo + 1;
    let k = jobs.min(hi - lo);
    let mut points: Vec<usize> = (1..=k)
        .map(|j| lo + (j * values).div_ceil(k + 1) - 1)
        .map(|p| p.clamp(lo, hi - 1))
        .collect();
    points.dedup();
    points
}

/// Binary (with `jobs > 1`: `jobs + 1`-ary) search for the newest good of `n` points, then the
/// confirmation at the newest point; see the module documentation. `drill` gets the indexes of
/// one round and returns whether each passed; an `Err` stops the search.
pub fn search<E>(n: usize, jobs: usize, drill: &mut Drill<'_, E>) -> Result<Outcome, E> {
    let jobs = jobs.max(1);
    let mut drilled: Vec<(usize, bool)> = Vec::new();
    let (mut lo, mut hi) = (0, n);
    let mut contradicted = false;
    while lo < hi {
        let points = split(lo, hi, jobs);
        let results = drill(&points)?;
        for (&p, &ok) in points.iter().zip(&results) {
            drilled.push((p, ok));
            if ok {
                lo = lo.max(p + 1);
            } else {
                hi = hi.min(p);
            }
        }
        if lo > hi {
            // A parallel round disagreed with itself: stop and report it.
            contradicted = true;
            break;
        }
    }
    let newest = n.checked_sub(1);
    if let Some(newest) = newest
        && !contradicted
        && lo < n
        && !drilled.iter().any(|(p, _)| *p == newest)
        && (jobs > 1 || drilled.len() < budget(n))
    {
        let ok = drill(&[newest])?;
        drilled.push((newest, ok[0]));
    }
    Ok(Outcome::from_results(drilled))
}

/// Every point, oldest first, `jobs` at a time.
pub fn all<E>(n: usize, jobs: usize, drill: &mut Drill<'_, E>) -> Result<Outcome, E> {
    let mut drilled = Vec::new();
    let indexes: Vec<usize> = (0..n).collect();
    for batch in indexes.chunks(jobs.max(1)) {
        let results = drill(batch)?;
        drilled.extend(batch.iter().copied().zip(results));
    }
    Ok(Outcome::from_results(drilled))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// Searches `verdicts` (oldest first) with a fake drill that answers from them; returns the
    /// outcome and the rounds.
    fn run(verdicts: &[bool], jobs: usize) -> (Outcome, Vec<Vec<usize>>) {
        let mut rounds = Vec::new();
        let out = search::<Infallible>(verdicts.len(), jobs, &mut |points| {
            rounds.push(points.to_vec());
            Ok(points.iter().map(|p| verdicts[*p]).collect())
        })
        .unwrap();
        (out, rounds)
    }

    /// Good up to `good` points, bad after.
    fn monotonic(n: usize, good: usize) -> Vec<bool> {
        (0..n).map(|i| i < good).collect()
    }

    #[test]
    fn the_budget_is_ceil_log2_n_plus_one() {
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 8, 9, 24, 168].map(budget),
            [0, 1, 2, 3, 3, 4, 4, 5, 6, 9]
        );
    }

    #[test]
    fn every_boundary_of_every_size_is_found_within_the_budget() {
        for n in 1..=70 {
            for good in 0..=n {
                let (out, rounds) = run(&monotonic(n, good), 1);
                let what = format!("n={n} good={good}: {out:?}");
                assert_eq!(out.newest_good, good.checked_sub(1), "{what}");
                assert_eq!(out.first_bad, (good < n).then_some(good), "{what}");
                assert!(out.contradictions.is_empty(), "{what}");
                assert!(out.drilled.len() <= budget(n), "{what}");
                assert!(rounds.iter().all(|r| r.len() == 1), "{what}");
                // No point is drilled twice.
                let mut seen: Vec<usize> = out.drilled.iter().map(|d| d.0).collect();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), out.drilled.len(), "{what}");
            }
        }
    }

    #[test]
    fn twenty_four_hourly_points_bad_for_the_last_six_take_five_drills() {
        // The e2e case: the dump of 6 hours ago (index 17) is the newest good one.
        let (out, rounds) = run(&monotonic(24, 18), 1);
        assert_eq!((out.newest_good, out.first_bad), (Some(17), Some(18)));
        assert_eq!(rounds, [[12], [18], [15], [17], [23]]);
        assert!(out.drilled.len() <= 6);
    }

    #[test]
    fn all_good_all_bad_and_one_point() {
        let (out, _) = run(&[true; 24], 1);
        assert_eq!((out.newest_good, out.first_bad), (Some(23), None));
        let (out, rounds) = run(&[false; 24], 1);
        assert_eq!((out.newest_good, out.first_bad), (None, Some(0)));
        // The oldest failed; the newest is drilled to confirm it fails too.
        assert_eq!(rounds.last().unwrap(), &[23]);
        assert!(out.drilled.len() <= budget(24));
        let (out, rounds) = run(&[true], 1);
        assert_eq!(
            (out.newest_good, out.first_bad, rounds.len()),
            (Some(0), None, 1)
        );
        let (out, rounds) = run(&[false], 1);
        assert_eq!(
            (out.newest_good, out.first_bad, rounds.len()),
            (None, Some(0), 1)
        );
        let (out, rounds) = run(&[], 1);
        assert_eq!(
            (out.newest_good, out.first_bad, rounds.len()),
            (None, None, 0)
        );
    }

    #[test]
    fn a_newest_point_that_passes_after_older_ones_failed_is_a_contradiction() {
        // Bad from index 18 through 20, good again after (the rows came back).
        let mut verdicts = vec![true; 24];
        verdicts[18..=20].fill(false);
        let (out, _) = run(&verdicts, 1);
        assert_eq!(
            out.contradictions,
            [Contradiction {
                older_bad: 18,
                newer_good: 23
            }]
        );
        // The answer is the newest point that passed, not the boundary the search found.
        assert_eq!((out.newest_good, out.first_bad), (Some(23), None));
        // Nothing passed up to the newest, which does: a contradiction too.
        let mut verdicts = vec![false; 24];
        verdicts[23] = true;
        let (out, _) = run(&verdicts, 1);
        assert_eq!(out.newest_good, Some(23));
        assert_eq!(
            out.contradictions,
            [Contradiction {
                older_bad: 12,
                newer_good: 23
            }]
        );
    }

    #[test]
    fn a_contradiction_the_search_does_not_touch_goes_unseen_but_the_answer_is_drilled() {
        // A single bad dump in the middle of good ones: the search never drills it, and its
        // answer (the newest) is a point that passed.
        let mut verdicts = vec![true; 24];
        verdicts[21] = false;
        let (out, _) = run(&verdicts, 1);
        assert_eq!(out.newest_good, Some(23));
        assert!(out.drilled.iter().any(|(p, ok)| *p == 23 && *ok));
    }

    #[test]
    fn several_jobs_take_fewer_rounds_and_find_the_same_boundary() {
        for n in 1..=50 {
            for good in 0..=n {
                let (one, _) = run(&monotonic(n, good), 1);
                let (three, rounds) = run(&monotonic(n, good), 3);
                assert_eq!(
                    (one.newest_good, one.first_bad),
                    (three.newest_good, three.first_bad),
                    "n={n} good={good}"
                );
                assert!(rounds.iter().all(|r| r.len() <= 3));
                // log4 of the n + 1 values, plus the confirmation.
                let mut bound = 1;
                while 4usize.pow(bound) < n + 1 {
                    bound += 1;
                }
                assert!(
                    rounds.len() as u32 <= bound + 1,
                    "n={n} good={good}: {rounds:?}"
                );
            }
        }
    }

    #[test]
    fn a_parallel_round_that_disagrees_with_itself_is_reported() {
        let mut verdicts = [true; 10];
        verdicts[2] = false;
        let (out, rounds) = run(&verdicts, 3);
        assert_eq!(rounds[0], [2, 5, 8]);
        assert_eq!(rounds.len(), 1);
        assert_eq!(
            out.contradictions,
            [Contradiction {
                older_bad: 2,
                newer_good: 5
            }]
        );
        assert_eq!(out.newest_good, Some(8));
    }

    #[test]
    fn all_drills_every_point_in_batches() {
        let mut verdicts = [true; 7];
        verdicts[4] = false;
        let mut rounds = Vec::new();
        let out = all::<Infallible>(7, 3, &mut |points| {
            rounds.push(points.to_vec());
            Ok(points.iter().map(|p| verdicts[*p]).collect())
        })
        .unwrap();
        assert_eq!(rounds, [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(out.drilled.len(), 7);
        assert_eq!(out.newest_good, Some(6));
        assert_eq!(
            out.contradictions,
            [Contradiction {
                older_bad: 4,
                newer_good: 5
            }]
        );
    }

    #[test]
    fn an_error_of_the_drill_stops_the_search() {
        let mut calls = 0;
        let out = search(24, 1, &mut |_| {
            calls += 1;
            Err::<Vec<bool>, _>("interrupted")
        });
        assert_eq!((out, calls), (Err("interrupted"), 1));
    }
}
