//! Whose money funds a grant. An amount is split over partner pots pro rata
//! to a weight (available money at award time; the unpaid, paid or remaining
//! part of each share later), rounded to the minor unit by the largest
//! remainder method, so that the parts always add up exactly.
//!
//! Tie-break: among equal remainders the pot that sorts first (partner id,
//! then unrestricted before earmarked) gets the extra minor unit. The result
//! depends on nothing but the arguments.

use super::event::{PotKey, Share};
use super::money::Amount;

/// Splits `total` over `weights` (sorted by pot, each pot once) pro rata.
///
/// Preconditions: the weights add up to at least `total`. Guarantees: the
/// parts add up to `total`, no part exceeds its weight, zero parts are left
/// out, and the result is in the order of `weights`.
pub fn split(total: Amount, weights: &[(PotKey, Amount)]) -> Vec<Share> {
    let weight_sum: i128 = weights.iter().map(|(_, w)| i128::from(w.minor())).sum();
    let total_minor = i128::from(total.minor());
    assert!(weight_sum >= total_minor, "split of {total_minor} over weights of only {weight_sum}");
    assert!(weights.windows(2).all(|w| w[0].0 < w[1].0), "weights must be sorted by pot, each pot once");
    if total_minor == 0 {
        return Vec::new();
    }

    // Exact quotas are total * w / sum; take their floors and remember the
    // remainders (all over the same denominator, so they compare directly).
    let mut parts: Vec<(i128, i128)> = weights
        .iter()
        .map(|(_, w)| {
            let product = total_minor * i128::from(w.minor());
            (product / weight_sum, product % weight_sum)
        })
        .collect();
    let floors: i128 = parts.iter().map(|(floor, _)| floor).sum();
    let leftover = usize::try_from(total_minor - floors).expect("floors never exceed the total");
    assert!(leftover <= parts.len(), "largest remainder leaves at most one unit per part");

    // Largest remainders first; the stable sort keeps pot order among ties.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[b].1.cmp(&parts[a].1));
    for &i in order.iter().take(leftover) {
        parts[i].0 += 1;
    }

    let shares: Vec<Share> = weights
        .iter()
        .zip(parts)
        .filter(|(_, (part, _))| *part > 0)
        .map(|((pot, weight), (part, _))| {
            let amount = Amount::from_minor(i64::try_from(part).expect("part below total")).expect("part >= 0");
            assert!(amount <= *weight, "a part never exceeds its weight");
            Share { pot: pot.clone(), amount }
        })
        .collect();
    debug_assert_eq!(shares.iter().map(|s| s.amount).sum::<Amount>(), total);
    shares
}

/// The sum of the parts of an attribution.
pub fn total(shares: &[Share]) -> Amount {
    shares.iter().map(|s| s.amount).sum()
}
