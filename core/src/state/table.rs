//! A persistent map: cheap to clone, copy-on-write per leaf.
//!
//! Schedulers work on immutable snapshots while the state machine keeps applying log
//! entries, so cloning state must cost O(1) and a write after a clone must not copy a
//! whole table. A [`Table`] hashes each key (FNV-1a, fixed across builds) into one of
//! `FANOUT × FANOUT` leaves, each an `Arc<BTreeMap>`; a write copies the root array,
//! one middle array and one leaf, and only when a snapshot still shares them. With a
//! million allocations a leaf holds about 250 entries, so a write under a live snapshot
//! copies a few hundred pointers, not a million. This is a fixed-depth hash trie, chosen
//! over a persistent-map crate to keep the dependency list short; iteration order is a
//! fixed function of the keys (hash, then key), and readers that show lists sort them.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Children per trie level; two levels give 4096 leaves.
const FANOUT: usize = 64;

/// A key that can place itself in the trie: a hash that is the same on every build.
pub trait TableKey: Ord + Clone {
    fn table_hash(&self) -> u64;
}

/// FNV-1a over bytes: tiny and platform-independent.
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

impl TableKey for String {
    fn table_hash(&self) -> u64 {
        fnv1a(FNV_OFFSET_BASIS, self.as_bytes())
    }
}

/// An ID as an ordered-map key. It orders exactly like the string, but holds the first
/// 16 bytes inline and compares them first: searching a map of string keys dereferenced
/// every key it passed, and those cache misses were most of the cost of storing an
/// allocation. The string is shared, so the three allocation indexes hold one copy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdKey {
    /// The first 16 bytes, big-endian, zero-padded: `a < b` implies `head(a) <= head(b)`,
    /// and equal heads fall back to the whole string.
    head: u128,
    id: Arc<str>,
}

impl IdKey {
    pub fn new(id: &str) -> IdKey {
        let mut head = [0u8; 16];
        let len = id.len().min(16);
        head[..len].copy_from_slice(&id.as_bytes()[..len]);
        IdKey { head: u128::from_be_bytes(head), id: id.into() }
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }
}

/// Lookups by `&str` agree with the key's order, since it is the string's order.
impl Borrow<str> for IdKey {
    fn borrow(&self) -> &str {
        &self.id
    }
}

impl TableKey for IdKey {
    fn table_hash(&self) -> u64 {
        str::key_hash(&self.id)
    }
}

/// Borrowed lookups (`table.get("id")`) hash like the owned key.
pub trait KeyHash {
    fn key_hash(&self) -> u64;
}

impl KeyHash for str {
    fn key_hash(&self) -> u64 {
        fnv1a(FNV_OFFSET_BASIS, self.as_bytes())
    }
}

impl<K: TableKey> KeyHash for K {
    fn key_hash(&self) -> u64 {
        self.table_hash()
    }
}

type Leaf<K, V> = Arc<BTreeMap<K, V>>;
type Middle<K, V> = Arc<Vec<Option<Leaf<K, V>>>>;

/// A persistent map from `K` to `V`; `V` should be cheap to clone (an `Arc`).
#[derive(Clone, Debug)]
pub struct Table<K, V> {
    root: Arc<Vec<Option<Middle<K, V>>>>,
    len: usize,
}

impl<K: TableKey, V: Clone> Default for Table<K, V> {
    fn default() -> Self {
        Table { root: Arc::new(vec![None; FANOUT]), len: 0 }
    }
}

/// The (middle, leaf) slot of a key: the low 12 bits of its hash.
fn slots<Q: KeyHash + ?Sized>(key: &Q) -> (usize, usize) {
    let hash = key.key_hash() as usize;
    (hash % FANOUT, (hash / FANOUT) % FANOUT)
}

impl<K: TableKey, V: Clone> Table<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: KeyHash + Ord + ?Sized,
    {
        let (m, l) = slots(key);
        self.root[m].as_ref()?[l].as_ref()?.get(key)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: KeyHash + Ord + ?Sized,
    {
        self.get(key).is_some()
    }

    /// The leaf for `key`, made unique (copied if a snapshot shares it).
    fn leaf_mut<Q: KeyHash + ?Sized>(&mut self, key: &Q) -> &mut BTreeMap<K, V> {
        let (m, l) = slots(key);
        let root = Arc::make_mut(&mut self.root);
        let middle = Arc::make_mut(root[m].get_or_insert_with(|| Arc::new(vec![None; FANOUT])));
        Arc::make_mut(middle[l].get_or_insert_with(Default::default))
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.leaf_mut(&key).insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Mutable access to an existing value; its leaf is copied first if shared.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: KeyHash + Ord + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        self.leaf_mut(key).get_mut(key)
    }

    /// Inserts `make(old)` under `key` in one walk of the trie, returning the old value.
    pub fn upsert_with(&mut self, key: K, make: impl FnOnce(Option<&V>) -> V) -> Option<V> {
        use std::collections::btree_map::Entry;
        let old = match self.leaf_mut(&key).entry(key) {
            Entry::Occupied(mut entry) => {
                let value = make(Some(entry.get()));
                Some(entry.insert(value))
            }
            Entry::Vacant(entry) => {
                entry.insert(make(None));
                None
            }
        };
        self.len += usize::from(old.is_none());
        old
    }

    /// Mutable access to the value for `key`, inserting `make()` first if absent.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.contains_key(&key) {
            self.len += 1;
        }
        self.leaf_mut(&key).entry(key).or_insert_with(make)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        if !self.contains_key(key) {
            return None;
        }
        let old = self.leaf_mut(key).remove(key);
        self.len -= usize::from(old.is_some());
        old
    }

    /// Every entry, in the table's fixed order (hash slot, then key).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.root
            .iter()
            .flatten()
            .flat_map(|middle| middle.iter().flatten())
            .flat_map(|leaf| leaf.iter())
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Every entry sorted by key: for listings and for byte snapshots.
    pub fn sorted(&self) -> Vec<(&K, &V)> {
        let mut entries: Vec<_> = self.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }
}

impl<K: TableKey, V: Clone + PartialEq> PartialEq for Table<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_do_not_see_later_writes() {
        let mut table: Table<String, u32> = Table::default();
        for i in 0..1000 {
            table.insert(format!("k{i}"), i);
        }
        let snapshot = table.clone();
        table.insert("k1".into(), 99);
        table.remove(&"k2".to_string());
        assert_eq!(snapshot.get(&"k1".to_string()), Some(&1));
        assert_eq!(snapshot.get(&"k2".to_string()), Some(&2));
        assert_eq!(table.get(&"k1".to_string()), Some(&99));
        assert_eq!((table.len(), snapshot.len()), (999, 1000));
        assert_eq!(table.sorted().len(), 999);
        assert_ne!(table, snapshot);
    }
}
