//! Helpers shared by the engine's integration tests: scratch directories, an engine's whole
//! contents as a map, and a directory's file names.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kvstore::storage::Engine;

/// A scratch directory, removed on drop. Unique per process and thread.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "kvstore-test-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Every live key and value of `e`, as UTF-8 strings.
pub fn contents(e: &Engine) -> BTreeMap<String, String> {
    e.scan(b"", b"", usize::MAX, false)
        .expect("scan")
        .into_iter()
        .map(|s| {
            let value = s.value.expect("values requested");
            (
                String::from_utf8(s.key.to_vec()).unwrap(),
                String::from_utf8(value.to_vec()).unwrap(),
            )
        })
        .collect()
}

/// The names of the files in `dir`, sorted.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}
