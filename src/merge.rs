//! Two iterators, each in ascending order by `cmp`, as one in that order: on
//! items that compare equal, the second's is kept and the first's skipped
//! (a base of loaded or stored items, and what changed since). Each side's
//! items must be distinct.

use std::cmp::Ordering;

pub(crate) fn merge_sorted<T>(
    first: impl Iterator<Item = T>,
    second: impl Iterator<Item = T>,
    cmp: impl Fn(&T, &T) -> Ordering,
) -> impl Iterator<Item = T> {
    let (mut first, mut second) = (first.peekable(), second.peekable());
    std::iter::from_fn(move || {
        let order = match (first.peek(), second.peek()) {
            (Some(a), Some(b)) => cmp(a, b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return None,
        };
        match order {
            Ordering::Less => first.next(),
            Ordering::Equal => {
                first.next();
                second.next()
            }
            Ordering::Greater => second.next(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::merge_sorted;

    #[test]
    fn merges_in_order_and_the_second_wins_on_equal_items() {
        let first = [(1, 'a'), (3, 'a'), (5, 'a'), (6, 'a')];
        let second = [(2, 'b'), (3, 'b'), (6, 'b'), (9, 'b')];
        let merged: Vec<_> = merge_sorted(first.into_iter(), second.into_iter(), |x, y| x.0.cmp(&y.0)).collect();
        assert_eq!(merged, [(1, 'a'), (2, 'b'), (3, 'b'), (5, 'a'), (6, 'b'), (9, 'b')]);
        let empty: [(i32, char); 0] = [];
        assert_eq!(merge_sorted(empty.into_iter(), second.into_iter(), |x, y| x.0.cmp(&y.0)).count(), 4);
        assert_eq!(merge_sorted(first.into_iter(), empty.into_iter(), |x, y| x.0.cmp(&y.0)).count(), 4);
    }
}
