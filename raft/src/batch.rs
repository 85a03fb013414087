//! `Batch`: the writes one applied entry makes to the catalogue, applied atomically.
//!
//! sled's own batch hides its keys. This one keeps them, so that while a snapshot is being
//! written out the state machine can save what each write replaces first
//! (`snapshot::Undo`) and the snapshot still shows the catalogue as it was when it began.

use sled::IVec;

#[derive(Default)]
pub(crate) struct Batch {
    writes: Vec<(IVec, Option<IVec>)>,
}

impl Batch {
    pub fn insert<K: Into<IVec>, V: Into<IVec>>(&mut self, key: K, value: V) {
        self.writes.push((key.into(), Some(value.into())));
    }

    pub fn remove<K: Into<IVec>>(&mut self, key: K) {
        self.writes.push((key.into(), None));
    }

    /// Every key the batch writes or removes (a key may appear more than once).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.writes.iter().map(|(k, _)| k.as_ref())
    }

    /// The same writes as one sled batch; later writes to a key win, as in sled's.
    pub fn into_sled(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        batch
    }
}
