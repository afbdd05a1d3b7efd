//! An ordered map whose clones share structure: a B+ tree of
//! reference-counted nodes that a change copies only along its path
//! ([`Arc::make_mut`]), and that is built in one pass from entries given
//! in key order.
//!
//! It replaces `imbl::OrdMap` under [`crate::domain::Applications`], and
//! holds the log's indexes in stored format v3 (`log::index`). Both clone in
//! O(1) and copy a path on change; what imbl 7 cannot do is take entries
//! that are already in order without searching and splitting its way to
//! each one, and its median splits leave an ordered build's leaves half
//! full. A start at 10 M events adds 2.5 million applications from the
//! checkpoint in id order; in a throw-away program, 2.5 million ordered
//! keys took 0.51–0.70 s to insert into an `imbl::OrdMap` and 0.18–0.19 s
//! into this map, which appends them without a search
//! (`docs/BENCHMARKS.md`, eleventh session). A node that overflows at the
//! end of the map (the new key is the greatest) keeps its left part full,
//! so ordered builds and ordered inserts leave full nodes; elsewhere it
//! splits at the middle.
//!
//! Entries are never removed: the fund's applications only grow. All
//! leaves are at the same depth, every node but the rightmost of its level
//! is at least half full, and a branch knows how many entries each child
//! holds, so that iteration and ranges walk by position
//! ([`PersistentMap::check`] states all of it for the tests).

use arrayvec::ArrayVec;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// Room in a node, a map's `ROOM` unless it says otherwise: one more than
/// the most entries a leaf keeps (and the most children a branch keeps),
/// for the entry that makes it split. So a node keeps at most 64. The unit
/// tests use small nodes, so that their maps of a few thousand entries are
/// many levels deep and split every kind of node in every way.
pub const ROOM_DEFAULT: usize = if cfg!(test) { 5 } else { 65 };
/// Most levels a path can have: every node but the rightmost of its level
/// holds at least half of what it may (at least 2), so 64 levels would take
/// more entries than memory can hold.
const DEPTH_MAX: usize = 64;

/// A node's arrays are inline, in the node's own allocation, so that a
/// lookup reads one block per level (as `imbl`'s nodes do). Branches, few
/// and near the root, are boxed so that a leaf is no larger than its
/// entries.
#[derive(Clone)]
enum Node<K, V, const ROOM: usize> {
    Leaf(ArrayVec<(K, V), ROOM>),
    Branch(Box<Branch<K, V, ROOM>>),
}

#[derive(Clone)]
struct Branch<K, V, const ROOM: usize> {
    /// `keys[i]` is the least key under `children[i + 1]`.
    keys: ArrayVec<K, ROOM>,
    children: ArrayVec<Arc<Node<K, V, ROOM>>, ROOM>,
    /// How many entries are under each child.
    sizes: ArrayVec<usize, ROOM>,
}

/// What an insert below a branch did.
enum Inserted<K, V, const ROOM: usize> {
    Replaced(V),
    Added,
    /// Added, and the node split: the separator (the least key of the new
    /// right node), that node, and how many entries it holds.
    Split(K, Arc<Node<K, V, ROOM>>, usize),
}

pub struct PersistentMap<K, V, const ROOM: usize = ROOM_DEFAULT> {
    root: Option<Arc<Node<K, V, ROOM>>>,
    len: usize,
}

impl<K, V, const ROOM: usize> Clone for PersistentMap<K, V, ROOM> {
    /// O(1): the clone shares every node until one of the two changes it.
    fn clone(&self) -> Self {
        PersistentMap { root: self.root.clone(), len: self.len }
    }
}

impl<K, V, const ROOM: usize> Default for PersistentMap<K, V, ROOM> {
    fn default() -> Self {
        // The rooms this map works with, checked at compile time: at least
        // 5, so that a split leaves both halves at least 2 and the depth
        // within `DEPTH_MAX`; at most 257, so that a child's place fits the
        // `u8` of a path.
        const { assert!(ROOM >= 5 && ROOM <= 257, "a persistent map's room is 5 to 257") };
        PersistentMap { root: None, len: 0 }
    }
}

impl<K: Ord + Clone, V: Clone, const ROOM: usize> PersistentMap<K, V, ROOM> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value under `key`, which may be given borrowed (as with a
    /// `BTreeMap`, `K`'s order must be `Q`'s).
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Leaf(entries) => {
                    return entries.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok().map(|i| &entries[i].1);
                }
                Node::Branch(branch) => node = &branch.children[branch.child_for(key)],
            }
        }
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// The value to change: the path to it is copied first where another
    /// clone shares it. A key that is not there copies nothing.
    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        // Found first, without copying, by the child taken at each level;
        // then the same path again, copying what is shared.
        let mut path = [0u8; DEPTH_MAX];
        let mut depth = 0;
        let mut node = self.root.as_deref()?;
        let found = loop {
            match node {
                Node::Leaf(entries) => break entries.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok()?,
                Node::Branch(branch) => {
                    let i = branch.child_for(key);
                    path[depth] = i as u8;
                    depth += 1;
                    node = &branch.children[i];
                }
            }
        };
        let mut node = Arc::make_mut(self.root.as_mut()?);
        for &i in &path[..depth] {
            let Node::Branch(branch) = node else { unreachable!("the path was taken through branches") };
            node = Arc::make_mut(&mut branch.children[usize::from(i)]);
        }
        let Node::Leaf(entries) = node else { unreachable!("the path ends at a leaf") };
        Some(&mut entries[found].1)
    }

    /// Inserts or replaces; answers the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if self.last_key().is_some_and(|last| *last < key) {
            self.push_last(key, value);
            return None;
        }
        let Some(root) = self.root.as_mut() else {
            self.push_last(key, value);
            return None;
        };
        match insert(Arc::make_mut(root), key, value) {
            Inserted::Replaced(old) => Some(old),
            Inserted::Added => {
                self.len += 1;
                None
            }
            Inserted::Split(separator, right, right_len) => {
                self.len += 1;
                self.grow(separator, right, right_len);
                None
            }
        }
    }

    /// The greatest key.
    pub fn last_key(&self) -> Option<&K> {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Leaf(entries) => return entries.last().map(|(k, _)| k),
                Node::Branch(branch) => node = branch.children.last().expect("a branch has children"),
            }
        }
    }

    /// Adds an entry after all others: no search, and a node that fills up
    /// stays full. The caller knows `key` is greater than every key here.
    fn push_last(&mut self, key: K, value: V) {
        debug_assert!(self.last_key().is_none_or(|last| *last < key));
        self.len += 1;
        let Some(root) = self.root.as_mut() else {
            let mut entries = ArrayVec::new();
            entries.push((key, value));
            self.root = Some(Arc::new(Node::Leaf(entries)));
            return;
        };
        if let Inserted::Split(separator, right, right_len) = push_last(Arc::make_mut(root), key, value) {
            self.grow(separator, right, right_len);
        }
    }

    /// A new root over the old one and the node it split off.
    fn grow(&mut self, separator: K, right: Arc<Node<K, V, ROOM>>, right_len: usize) {
        let left = self.root.take().expect("a root split");
        self.root = Some(Arc::new(Node::Branch(Box::new(Branch {
            keys: [separator].into_iter().collect(),
            children: [left, right].into_iter().collect(),
            sizes: [self.len - right_len, right_len].into_iter().collect(),
        }))));
    }

    /// In key order.
    pub fn iter(&self) -> Iter<'_, K, V, ROOM> {
        Iter::new(self.root.as_deref(), 0, self.len)
    }

    /// In key order, from the entry at `position` (0 for the first) on.
    pub fn iter_from(&self, position: usize) -> Iter<'_, K, V, ROOM> {
        Iter::new(self.root.as_deref(), position.min(self.len), self.len)
    }

    /// The entries whose keys are in `range`, in key order. A range whose
    /// start is past its end is empty.
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Iter<'_, K, V, ROOM> {
        let front = match range.start_bound() {
            Bound::Included(key) => self.rank(key, false),
            Bound::Excluded(key) => self.rank(key, true),
            Bound::Unbounded => 0,
        };
        let back = match range.end_bound() {
            Bound::Included(key) => self.rank(key, true),
            Bound::Excluded(key) => self.rank(key, false),
            Bound::Unbounded => self.len,
        };
        Iter::new(self.root.as_deref(), front, back.max(front))
    }

    /// The least key that is not less than `key`, if any: one walk down
    /// the tree, without the counting a [`range`](Self::range) does to
    /// place its ends. Where the leaf holds no such key, it is the
    /// separator of the nearest branch that has a child to the right of
    /// the path, the least key under that child.
    pub fn first_key_from(&self, key: &K) -> Option<&K> {
        let mut node = self.root.as_deref()?;
        let mut right_of_path = None;
        loop {
            match node {
                Node::Leaf(entries) => {
                    let at = entries.partition_point(|(k, _)| k < key);
                    return entries.get(at).map(|(k, _)| k).or(right_of_path);
                }
                Node::Branch(branch) => {
                    let i = branch.child_for(key);
                    if let Some(separator) = branch.keys.get(i) {
                        right_of_path = Some(separator);
                    }
                    node = &branch.children[i];
                }
            }
        }
    }

    /// How many keys are less than `key` (or equal to it, with `equal`).
    fn rank(&self, key: &K, equal: bool) -> usize {
        let before = |k: &K| match k.cmp(key) {
            Ordering::Less => true,
            Ordering::Equal => equal,
            Ordering::Greater => false,
        };
        let Some(mut node) = self.root.as_deref() else { return 0 };
        let mut rank = 0;
        loop {
            match node {
                Node::Leaf(entries) => return rank + entries.partition_point(|(k, _)| before(k)),
                Node::Branch(branch) => {
                    let i = branch.child_for(key);
                    rank += branch.sizes[..i].iter().sum::<usize>();
                    node = &branch.children[i];
                }
            }
        }
    }

    /// Checks the tree's shape (tests): keys strictly ascending across
    /// leaves, separators the least key of their right child, sizes right,
    /// all leaves at one depth, no node over full, and none but the
    /// rightmost of its level less than half full (the root branch has at
    /// least two children).
    #[doc(hidden)]
    pub fn check(&self) -> Result<(), String> {
        fn walk<K: Ord, V, const ROOM: usize>(
            node: &Node<K, V, ROOM>,
            depth: usize,
            rightmost: bool,
            leaves: &mut Vec<usize>,
        ) -> Result<usize, String> {
            let least_len = if rightmost { 1 } else { (ROOM - 1) / 2 };
            match node {
                Node::Leaf(entries) => {
                    if entries.len() < least_len || entries.len() >= ROOM {
                        return Err(format!("a leaf of {} entries at depth {depth}", entries.len()));
                    }
                    leaves.push(depth);
                    Ok(entries.len())
                }
                Node::Branch(branch) => {
                    let n = branch.children.len();
                    let least_len = if depth == 0 { 2 } else { least_len };
                    if n < least_len || n >= ROOM || branch.keys.len() + 1 != n || branch.sizes.len() != n {
                        return Err(format!("a branch of {n} children, {} keys, at depth {depth}", branch.keys.len()));
                    }
                    let mut total = 0;
                    for (i, child) in branch.children.iter().enumerate() {
                        let size = walk(child, depth + 1, rightmost && i + 1 == n, leaves)?;
                        if size != branch.sizes[i] {
                            return Err(format!("child {i} holds {size} entries, its branch says {}", branch.sizes[i]));
                        }
                        if i > 0 && least(child) != &branch.keys[i - 1] {
                            return Err(format!("separator {} is not its child's least key", i - 1));
                        }
                        total += size;
                    }
                    Ok(total)
                }
            }
        }
        fn least<K, V, const ROOM: usize>(node: &Node<K, V, ROOM>) -> &K {
            match node {
                Node::Leaf(entries) => &entries[0].0,
                Node::Branch(branch) => least(&branch.children[0]),
            }
        }
        let Some(root) = self.root.as_deref() else {
            return if self.len == 0 { Ok(()) } else { Err(format!("no root, but {} entries", self.len)) };
        };
        let mut leaves = Vec::new();
        let total = walk(root, 0, true, &mut leaves)?;
        if total != self.len {
            return Err(format!("{total} entries, the map says {}", self.len));
        }
        if leaves.iter().any(|&depth| depth != leaves[0]) {
            return Err("leaves at different depths".into());
        }
        if !self.iter().zip(self.iter().skip(1)).all(|((a, _), (b, _))| a < b) {
            return Err("keys not strictly ascending".into());
        }
        Ok(())
    }
}

impl<K: Ord, V, const ROOM: usize> Branch<K, V, ROOM> {
    /// The child whose keys include `key`'s place.
    fn child_for<Q: Ord + ?Sized>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
    {
        self.keys.partition_point(|k| k.borrow() <= key)
    }
}

fn insert<K: Ord + Clone, V: Clone, const ROOM: usize>(
    node: &mut Node<K, V, ROOM>,
    key: K,
    value: V,
) -> Inserted<K, V, ROOM> {
    match node {
        Node::Leaf(entries) => match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => Inserted::Replaced(std::mem::replace(&mut entries[i].1, value)),
            Err(i) => {
                entries.insert(i, (key, value));
                split_leaf(entries, false)
            }
        },
        Node::Branch(branch) => {
            let i = branch.child_for(&key);
            let below = insert(Arc::make_mut(&mut branch.children[i]), key, value);
            branch.absorb(i, below, false)
        }
    }
}

fn push_last<K: Ord + Clone, V: Clone, const ROOM: usize>(
    node: &mut Node<K, V, ROOM>,
    key: K,
    value: V,
) -> Inserted<K, V, ROOM> {
    match node {
        Node::Leaf(entries) => {
            entries.push((key, value));
            split_leaf(entries, true)
        }
        Node::Branch(branch) => {
            let i = branch.children.len() - 1;
            let below = push_last(Arc::make_mut(&mut branch.children[i]), key, value);
            branch.absorb(i, below, true)
        }
    }
}

/// A leaf that has just grown by one: split if it is over full, in the
/// middle, or after a full left part when the entry went to the end of the
/// map (only the rightmost node of a level is then left less than half
/// full, which bounds the depth as in any B-tree).
fn split_leaf<K: Clone, V, const ROOM: usize>(
    entries: &mut ArrayVec<(K, V), ROOM>,
    at_end: bool,
) -> Inserted<K, V, ROOM> {
    if entries.len() < ROOM {
        return Inserted::Added;
    }
    let at = if at_end { ROOM - 1 } else { entries.len() / 2 };
    let right: ArrayVec<_, ROOM> = entries.drain(at..).collect();
    let separator = right[0].0.clone();
    let right_len = right.len();
    Inserted::Split(separator, Arc::new(Node::Leaf(right)), right_len)
}

impl<K: Ord + Clone, V: Clone, const ROOM: usize> Branch<K, V, ROOM> {
    /// Takes in what an insert under child `i` did (at the end of the map,
    /// with `at_end`: see [`split_leaf`]).
    fn absorb(&mut self, i: usize, below: Inserted<K, V, ROOM>, at_end: bool) -> Inserted<K, V, ROOM> {
        match below {
            Inserted::Replaced(old) => Inserted::Replaced(old),
            Inserted::Added => {
                self.sizes[i] += 1;
                Inserted::Added
            }
            Inserted::Split(separator, right, right_len) => {
                self.sizes[i] = self.sizes[i] + 1 - right_len;
                self.keys.insert(i, separator);
                self.children.insert(i + 1, right);
                self.sizes.insert(i + 1, right_len);
                let n = self.children.len();
                if n < ROOM {
                    return Inserted::Added;
                }
                let at = if at_end { ROOM - 1 } else { n / 2 };
                let children: ArrayVec<_, ROOM> = self.children.drain(at..).collect();
                let sizes: ArrayVec<_, ROOM> = self.sizes.drain(at..).collect();
                let separator = self.keys.remove(at - 1);
                let keys: ArrayVec<_, ROOM> = self.keys.drain(at - 1..).collect();
                let right_len = sizes.iter().sum();
                let right = Branch { keys, children, sizes };
                Inserted::Split(separator, Arc::new(Node::Branch(Box::new(right))), right_len)
            }
        }
    }
}

impl<K: Ord + Clone, V: Clone, const ROOM: usize> Extend<(K, V)> for PersistentMap<K, V, ROOM> {
    /// Entries in key order and greater than all here are added without a
    /// search ([`PersistentMap::push_last`]); any other is inserted. As
    /// with a `BTreeMap`, a repeated key keeps the last value.
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }
}

impl<K: Ord + Clone, V: Clone, const ROOM: usize> FromIterator<(K, V)> for PersistentMap<K, V, ROOM> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut map = PersistentMap::new();
        map.extend(entries);
        map
    }
}

impl<K: Ord + Clone + std::fmt::Debug, V: Clone + std::fmt::Debug, const ROOM: usize> std::fmt::Debug
    for PersistentMap<K, V, ROOM>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone + PartialEq, V: Clone + PartialEq, const ROOM: usize> PartialEq for PersistentMap<K, V, ROOM> {
    fn eq(&self, other: &Self) -> bool {
        let same_root = match (&self.root, &other.root) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        same_root || (self.len == other.len && self.iter().eq(other.iter()))
    }
}

impl<K: Ord + Clone + Eq, V: Clone + Eq, const ROOM: usize> Eq for PersistentMap<K, V, ROOM> {}

/// The entries of a [`PersistentMap`] between two positions, from either
/// end. Each end finds its next leaf by position (a walk from the root,
/// once per leaf), then reads the leaf in place.
pub struct Iter<'a, K, V, const ROOM: usize = ROOM_DEFAULT> {
    root: Option<&'a Node<K, V, ROOM>>,
    /// Positions still to yield: `front..back`.
    front: usize,
    back: usize,
    /// What is left of the leaves each end is in (the leaf's own entries
    /// may run past the other end: the positions bound what is yielded).
    front_leaf: std::slice::Iter<'a, (K, V)>,
    back_leaf: std::slice::Iter<'a, (K, V)>,
}

impl<'a, K, V, const ROOM: usize> Iter<'a, K, V, ROOM> {
    fn new(root: Option<&'a Node<K, V, ROOM>>, front: usize, back: usize) -> Self {
        Iter { root, front, back, front_leaf: [].iter(), back_leaf: [].iter() }
    }

    /// The leaf holding position `at`, and `at`'s place in it.
    fn leaf_at(&self, mut at: usize) -> (&'a [(K, V)], usize) {
        let mut node = self.root.expect("a position in an empty map");
        loop {
            match node {
                Node::Leaf(entries) => return (entries, at),
                Node::Branch(branch) => {
                    let mut i = 0;
                    while at >= branch.sizes[i] {
                        at -= branch.sizes[i];
                        i += 1;
                    }
                    node = &branch.children[i];
                }
            }
        }
    }
}

impl<'a, K, V, const ROOM: usize> Iterator for Iter<'a, K, V, ROOM> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        if self.front_leaf.len() == 0 {
            let (leaf, at) = self.leaf_at(self.front);
            self.front_leaf = leaf[at..].iter();
        }
        self.front += 1;
        self.front_leaf.next().map(|(k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.back - self.front, Some(self.back - self.front))
    }
}

impl<K, V, const ROOM: usize> DoubleEndedIterator for Iter<'_, K, V, ROOM> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        if self.back_leaf.len() == 0 {
            let (leaf, at) = self.leaf_at(self.back - 1);
            self.back_leaf = leaf[..=at].iter();
        }
        self.back -= 1;
        self.back_leaf.next_back().map(|(k, v)| (k, v))
    }
}

impl<K, V, const ROOM: usize> ExactSizeIterator for Iter<'_, K, V, ROOM> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u32),
        Change(u16, u32),
        Snapshot,
        Extend(Vec<u16>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 2048, v)),
            2 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Change(k % 2048, v)),
            1 => Just(Op::Snapshot),
            1 => proptest::collection::vec(any::<u16>(), 0..300).prop_map(Op::Extend),
        ]
    }

    fn same<const ROOM: usize>(map: &PersistentMap<u16, u32, ROOM>, model: &BTreeMap<u16, u32>) {
        map.check().unwrap();
        assert_eq!(map.len(), model.len());
        assert!(map.iter().eq(model.iter()));
        assert!(map.iter().rev().eq(model.iter().rev()));
    }

    /// Every operation does to `map` (empty, of nodes with `ROOM`) what it
    /// does to a `BTreeMap`, and snapshots taken along the way never change.
    fn behaves_as_a_btreemap_with<const ROOM: usize>(
        ops: &[Op],
        mut map: PersistentMap<u16, u32, ROOM>,
    ) -> Result<(), TestCaseError> {
        let mut model = BTreeMap::new();
        let mut snapshots = Vec::new();
        for op in ops.iter().cloned() {
            match op {
                Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                Op::Change(k, v) => match (map.get_mut(&k), model.get_mut(&k)) {
                    (Some(a), Some(b)) => {
                        *a = v;
                        *b = v;
                    }
                    (None, None) => {}
                    (a, b) => prop_assert!(false, "get_mut {k}: {a:?} against {b:?}"),
                },
                Op::Snapshot => snapshots.push((map.clone(), model.clone())),
                Op::Extend(mut keys) => {
                    // Mostly in order, from the greatest key on, as a
                    // checkpoint's chunks come; sometimes not.
                    if keys.len() % 3 != 0 {
                        keys.sort_unstable();
                    }
                    let base = model.keys().next_back().map_or(0, |&k| k);
                    let entries: Vec<(u16, u32)> =
                        keys.iter().map(|&k| (base.wrapping_add(k % 512), u32::from(k))).collect();
                    map.extend(entries.iter().copied());
                    model.extend(entries);
                }
            }
            prop_assert_eq!(map.get(&7), model.get(&7));
        }
        same(&map, &model);
        for k in 0..2048 {
            prop_assert_eq!(map.get(&k), model.get(&k));
        }
        for (snapshot, model) in &snapshots {
            same(snapshot, model);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// With the unit tests' nodes of 4, of 7 (an odd size splits
        /// unevenly), and of 16 (the applications').
        #[test]
        fn behaves_as_a_btreemap(ops in proptest::collection::vec(op(), 1..200)) {
            behaves_as_a_btreemap_with(&ops, PersistentMap::<_, _, ROOM_DEFAULT>::new())?;
            behaves_as_a_btreemap_with(&ops, PersistentMap::<_, _, 8>::new())?;
            behaves_as_a_btreemap_with(&ops, PersistentMap::<_, _, 17>::new())?;
        }

        /// Ranges, from both ends and interleaved, yield what a
        /// `BTreeMap`'s do, for every pair of bounds; a range that a
        /// `BTreeMap` refuses (its start past its end) is empty.
        #[test]
        fn ranges_as_a_btreemap(
            keys in proptest::collection::btree_set(any::<u16>(), 0..3000),
            shuffled in any::<bool>(),
            a in any::<u16>(),
            b in any::<u16>(),
            turns in proptest::collection::vec(any::<bool>(), 0..64),
        ) {
            let mut entries: Vec<(u16, ())> = keys.iter().map(|&k| (k, ())).collect();
            if shuffled {
                // Built by inserts in a scrambled order, not appends.
                entries.sort_by_key(|&(k, _)| k.wrapping_mul(40_503).rotate_left(7));
            }
            let map: PersistentMap<u16, ()> = entries.into_iter().collect();
            let model: BTreeMap<u16, ()> = keys.iter().map(|&k| (k, ())).collect();
            map.check().unwrap();
            let bound = |k: Option<u16>, included: bool| match k {
                None => Bound::Unbounded,
                Some(k) if included => Bound::Included(k),
                Some(k) => Bound::Excluded(k),
            };
            for (start, end) in [(a, b), (b, a)] {
                for (s, e) in [(Some(start), Some(end)), (Some(start), None), (None, Some(end)), (None, None)] {
                    for (s_in, e_in) in [(true, true), (true, false), (false, true), (false, false)] {
                        let range = (bound(s, s_in), bound(e, e_in));
                        let refused = match range {
                            (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
                                x > y || (x == y && matches!(range, (Bound::Excluded(_), Bound::Excluded(_))))
                            }
                            _ => false,
                        };
                        if refused {
                            prop_assert_eq!(map.range(range).count(), 0);
                            continue;
                        }
                        prop_assert!(map.range(range).eq(model.range(range)));
                        let position = usize::from(start) % (keys.len() + 2);
                        prop_assert!(map.iter_from(position).eq(model.iter().skip(position)));
                        if let Bound::Included(from) = range.0 {
                            prop_assert_eq!(map.first_key_from(&from), model.range(from..).next().map(|(k, _)| k));
                        }
                        prop_assert!(map.range(range).rev().eq(model.range(range).rev()));
                        prop_assert_eq!(map.range(range).len(), model.range(range).count());
                        let mut mine = map.range(range);
                        let mut theirs = model.range(range);
                        for &back in &turns {
                            if back {
                                prop_assert_eq!(mine.next_back(), theirs.next_back());
                            } else {
                                prop_assert_eq!(mine.next(), theirs.next());
                            }
                        }
                        prop_assert!(mine.eq(theirs));
                    }
                }
            }
        }
    }

    /// Many entries in a scrambled order, with snapshots taken along the
    /// way and changed after: a deep tree (small nodes in the unit tests)
    /// whose branches split in the middle, and paths copied across many
    /// shared levels.
    #[test]
    fn scrambled_inserts_and_changes_behave_as_a_btreemap() {
        let mut map: PersistentMap<u32, u32> = PersistentMap::new();
        let mut model = BTreeMap::new();
        let mut snapshots = Vec::new();
        for i in 0..20_000u32 {
            let key = i.wrapping_mul(2_654_435_761) % 50_000;
            assert_eq!(map.insert(key, i), model.insert(key, i));
            if i % 997 == 0 {
                snapshots.push((map.clone(), model.clone()));
            }
            if i % 3 == 0 {
                let changed = key / 2;
                match (map.get_mut(&changed), model.get_mut(&changed)) {
                    (Some(a), Some(b)) => {
                        *a += 1;
                        *b += 1;
                    }
                    (None, None) => {}
                    (a, b) => panic!("get_mut {changed}: {a:?} against {b:?}"),
                }
            }
        }
        map.check().unwrap();
        let Some(Node::Branch(_)) = map.root.as_deref() else { panic!("a deep tree") };
        assert!(map.iter().eq(model.iter()));
        assert!(map.iter().rev().eq(model.iter().rev()));
        for (snapshot, model) in &snapshots {
            snapshot.check().unwrap();
            assert!(snapshot.iter().eq(model.iter()), "a snapshot changed after it was taken");
        }
    }

    /// An ordered build fills every node but the last at each level.
    #[test]
    fn ordered_build_leaves_full_nodes() {
        let map: PersistentMap<u32, ()> = (0..100_000).map(|k| (k, ())).collect();
        map.check().unwrap();
        fn full<K, V>(node: &Node<K, V, ROOM_DEFAULT>, last: bool) -> bool {
            match node {
                Node::Leaf(entries) => last || entries.len() == ROOM_DEFAULT - 1,
                Node::Branch(branch) => {
                    (last || branch.children.len() == ROOM_DEFAULT - 1)
                        && branch
                            .children
                            .iter()
                            .enumerate()
                            .all(|(i, c)| full(c, last && i + 1 == branch.children.len()))
                }
            }
        }
        assert!(full(map.root.as_deref().unwrap(), true));
        assert_eq!(map.len(), 100_000);
        assert_eq!(map.range(500..=563).count(), 64);
    }

    /// A change to a clone copies its path only: the other clone keeps
    /// every node, and what neither changed stays shared.
    #[test]
    fn clones_share_what_neither_changed() {
        let mut a: PersistentMap<u32, u32> = (0..10_000).map(|k| (k, k)).collect();
        let b = a.clone();
        *a.get_mut(&5).unwrap() = 99;
        assert_eq!(b.get(&5), Some(&5));
        assert_eq!(a.get(&5), Some(&99));
        let (Some(Node::Branch(x)), Some(Node::Branch(y))) = (a.root.as_deref(), b.root.as_deref()) else {
            panic!("10,000 entries make branches")
        };
        assert!(!Arc::ptr_eq(&x.children[0], &y.children[0]), "the changed path is copied");
        assert!(x.children[1..].iter().zip(&y.children[1..]).all(|(p, q)| Arc::ptr_eq(p, q)));
        assert!(a.get_mut(&20_000).is_none());
    }

    /// The least key at or after every stored key, its neighbours, and the
    /// ends, in maps of every size up to a few levels of small nodes (so
    /// that many keys are separators): as a `BTreeMap` answers.
    #[test]
    fn first_key_from_as_a_btreemap() {
        let empty: PersistentMap<u16, ()> = PersistentMap::new();
        assert_eq!(empty.first_key_from(&0), None);
        for len in 0..200u16 {
            for scrambled in [false, true] {
                let keys: Vec<u16> = (0..len).map(|k| k * 3 + 1).collect();
                let mut entries: Vec<(u16, ())> = keys.iter().map(|&k| (k, ())).collect();
                if scrambled {
                    entries.sort_by_key(|&(k, _)| k.wrapping_mul(40_503).rotate_left(7));
                }
                let map: PersistentMap<u16, ()> = entries.into_iter().collect();
                map.check().unwrap();
                let model: BTreeMap<u16, ()> = keys.iter().map(|&k| (k, ())).collect();
                let probes = keys.iter().flat_map(|&k| [k - 1, k, k + 1]).chain([0, u16::MAX]);
                for probe in probes {
                    let expected = model.range(probe..).next().map(|(k, _)| k);
                    assert_eq!(map.first_key_from(&probe), expected, "{len} keys, from {probe}");
                }
            }
        }
    }
}
