//! Reading the built thesaurus from the store: a word's entry (its neighbours), its vector,
//! and the similarity of two words. A word not found as given is looked up by its lemma
//! (`geese` finds `goose`). Reads are follower reads: a thesaurus changes only by a build.

use std::collections::HashMap;
use std::sync::Arc;

use kvstore::client::cluster::ClusterClient;
use kvstore::client::ClientError;
use kvstore::wire::{Consistency, ErrorCode};

use super::build::{self, BuildInfo, Entry, StoredVector, KEYSPACE};
use super::vectors::Neighbour;
use super::wordnet::WordNet;

#[derive(Clone)]
pub struct Thesaurus {
    pub client: Arc<ClusterClient>,
    pub wordnet: Option<Arc<WordNet>>,
}

/// The cosine of two stored (unit) vectors.
pub fn cosine(a: &StoredVector, b: &StoredVector) -> f64 {
    let small: HashMap<&str, f32> = a.iter().map(|(c, x)| (c.as_str(), *x)).collect();
    b.iter()
        .filter_map(|(c, y)| small.get(c.as_str()).map(|x| f64::from(x * y)))
        .sum()
}

impl Thesaurus {
    async fn get<T: for<'de> serde::Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, ClientError> {
        let found = match self
            .client
            .get(KEYSPACE, key.as_bytes(), Consistency::Follower)
            .await
        {
            // Nothing built yet: the build creates the keyspace.
            Err(ClientError::Server {
                code: ErrorCode::UnknownKeyspace,
                ..
            }) => None,
            other => other?,
        };
        match found {
            Some(v) => serde_json::from_slice(&v.value)
                .map(Some)
                .map_err(|e| ClientError::Protocol(format!("{key}: {e}"))),
            None => Ok(None),
        }
    }

    /// The forms to try for a word: as given (lowercased), then its lemma.
    fn forms(&self, word: &str) -> Vec<String> {
        let w = word.trim().to_lowercase();
        let mut forms = vec![w.clone()];
        if let Some(wn) = &self.wordnet {
            let l = wn.lemma(&w);
            if l != w {
                forms.push(l);
            }
        }
        forms
    }

    pub async fn info(&self) -> Result<Option<BuildInfo>, ClientError> {
        self.get(build::INFO_KEY).await
    }

    /// A word's entry: its count and neighbours (by the combined score).
    pub async fn entry(&self, word: &str) -> Result<Option<Entry>, ClientError> {
        for form in self.forms(word) {
            if let Some(e) = self.get::<Entry>(&build::neighbours_key(&form)).await? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// A word's vector, and the form it was found under.
    pub async fn vector(&self, word: &str) -> Result<Option<(String, StoredVector)>, ClientError> {
        for form in self.forms(word) {
            if let Some(v) = self.get::<StoredVector>(&build::vector_key(&form)).await? {
                return Ok(Some((form, v)));
            }
        }
        Ok(None)
    }

    /// The neighbours by cosine alone (the PPMI baseline).
    pub async fn baseline(&self, word: &str) -> Result<Option<Vec<String>>, ClientError> {
        self.get(&build::baseline_key(word)).await
    }

    /// The similarity of two words the thesaurus knows: the combined score if either lists
    /// the other as a neighbour, else their cosine. `None` if it does not know one of them.
    pub async fn similarity(&self, a: &str, b: &str) -> Result<Option<f64>, ClientError> {
        let (Some((fa, va)), Some((fb, vb))) = (self.vector(a).await?, self.vector(b).await?)
        else {
            return Ok(None);
        };
        if fa == fb {
            return Ok(Some(1.0));
        }
        let listed = |e: Option<Entry>, other: &str| -> Option<Neighbour> {
            e?.neighbours.into_iter().find(|n| n.word == other)
        };
        if let Some(n) = listed(self.entry(&fa).await?, &fb) {
            return Ok(Some(n.score));
        }
        if let Some(n) = listed(self.entry(&fb).await?, &fa) {
            return Ok(Some(n.score));
        }
        Ok(Some(cosine(&va, &vb)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cosine_of_stored_vectors_matches_by_context() {
        let a: StoredVector = vec![("road".into(), 0.6), ("drive".into(), 0.8)];
        let b: StoredVector = vec![("drive".into(), 1.0)];
        assert!((cosine(&a, &b) - 0.8).abs() < 1e-6);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&a, &vec![("eat".into(), 1.0)]), 0.0);
    }
}
