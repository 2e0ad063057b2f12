//! Pareto marking: a design is on the front when no other is at least as good in every
//! objective and better in one. All objectives are minimized.

/// For each point, whether it is Pareto-optimal. Sorting first means a point's dominators
/// all come before it, and checking it against the front found so far suffices (whatever
/// dominates it is itself dominated by a front point, which then dominates it too), so a
/// sweep of a million designs costs n·|front|, not n².
pub fn front<const D: usize>(points: &[[f64; D]]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&points[a], &points[b]);
        (0..D).map(|d| pa[d].total_cmp(&pb[d])).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
    });
    let dominates = |q: &[f64; D], p: &[f64; D]| (0..D).all(|d| q[d] <= p[d]) && (0..D).any(|d| q[d] < p[d]);
    let mut on_front = vec![false; points.len()];
    let mut found: Vec<usize> = Vec::new();
    for i in order {
        if !found.iter().any(|&f| dominates(&points[f], &points[i])) {
            on_front[i] = true;
            found.push(i);
        }
    }
    on_front
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made table: (latency, energy, area).
    #[test]
    fn marks_exactly_the_undominated_rows() {
        let rows = [
            [10.0, 5.0, 1.0], // on: fastest
            [12.0, 4.0, 1.0], // on: less energy than the fastest
            [12.0, 4.0, 2.0], // off: row 1 is as good and smaller
            [20.0, 6.0, 0.5], // on: smallest
            [15.0, 5.0, 1.0], // off: row 0 beats it everywhere
            [10.0, 5.0, 1.0], // on: a tie with row 0 dominates neither
            [30.0, 9.0, 0.5], // off: row 3
        ];
        assert_eq!(front(&rows), [true, true, false, true, false, true, false]);
    }

    #[test]
    fn agrees_with_the_quadratic_definition() {
        let mut x = 12345u64;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % 20) as f64
        };
        let points: Vec<[f64; 3]> = (0..300).map(|_| [next(), next(), next()]).collect();
        let want: Vec<bool> = points.iter().map(|p| !points.iter().any(|q| (0..3).all(|d| q[d] <= p[d]) && (0..3).any(|d| q[d] < p[d]))).collect();
        assert_eq!(front(&points), want);
    }
}
