//! Drills `reclab bisect` needs to find the newest good of N restore points, counted by running
//! the real search (`reclab::drill::bisect::search`) over every monotonic sequence of N points
//! (good up to a point, bad after: N + 1 of them), next to a linear newest-first scan (drill
//! the newest, then the next older, until one passes). Prints one JSON object per N.
//!
//! Usage: bench_bisect N...

use std::convert::Infallible;

use reclab::drill::bisect;

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("N: a number of points"))
        .collect();
    for n in ns {
        let (mut ours, mut linear) = (Vec::new(), Vec::new());
        for good in 0..=n {
            let mut drills = 0;
            let out = bisect::search::<Infallible>(n, 1, &mut |points| {
                drills += points.len();
                Ok(points.iter().map(|p| *p < good).collect())
            })
            .unwrap();
            assert_eq!(out.newest_good, good.checked_sub(1));
            ours.push(drills);
            // Newest first: the bad ones, then the newest good one (all n when none is good).
            linear.push(if good == 0 { n } else { n - good + 1 });
        }
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        println!(
            "{{\"n\": {n}, \"bisect_max\": {}, \"bisect_mean\": {:.2}, \"linear_max\": {}, \
             \"linear_mean\": {:.2}, \"budget\": {}}}",
            ours.iter().max().unwrap(),
            mean(&ours),
            linear.iter().max().unwrap(),
            mean(&linear),
            bisect::budget(n)
        );
    }
}
