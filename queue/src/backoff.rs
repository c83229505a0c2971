//! Exponential backoff with jitter, computed here and stored in `apalis.jobs.run_at`, so a
//! retry survives a restart and every worker process agrees on when it is due.

use rand::Rng;
use std::time::Duration;

/// First retry after about this long.
pub const BASE: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
pub const CAP: Duration = Duration::from_secs(600);

/// The delay before the next run after `attempt` failed runs (1-based): between half and all
/// of `BASE * 2^(attempt-1)`, capped. A server's `Retry-After` wins when it asks for longer.
pub fn delay(attempt: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
    let exp = BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = exp.min(CAP);
    let half = full / 2;
    let jittered = half + Duration::from_millis(rng.random_range(0..=half.as_millis() as u64));
    match retry_after {
        Some(ra) if ra > jittered => ra.min(Duration::from_secs(3600)),
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 1..=30u32 {
            let full = BASE.saturating_mul(1u32 << (attempt - 1).min(20)).min(CAP);
            for _ in 0..50 {
                let d = delay(attempt, None, &mut rng);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_when_longer() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let d = delay(1, Some(Duration::from_secs(30)), &mut rng);
        assert_eq!(d, Duration::from_secs(30));
        let d = delay(12, Some(Duration::from_millis(10)), &mut rng);
        assert!(d >= CAP / 2);
    }
}
