//! The dictionary's sources, each read by a pure parser of its own format, and where they are
//! installed (`scripts/install-dictionary-data.sh` installs them all). [`Sources::read`] reads
//! every file and hands the parsed parts to [`crate::dataset`], which merges them.

pub mod cmudict;
pub mod freq;
pub mod gcide;
pub mod wordnet;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::entry::Pos;
use crate::error::{Result, SourceError};

/// Each source's licence and attribution, shown on the site's about page and in the API.
pub const ATTRIBUTIONS: &[(&str, &str)] = &[
    (
        "WordNet 3.0",
        "Princeton University, \"About WordNet.\" WordNet. Princeton University. 2010. \
         Licensed under the WordNet 3.0 licence (BSD-like): permission to use, copy, modify \
         and distribute, with the copyright notice kept.",
    ),
    (
        "GCIDE",
        "The GNU Collaborative International Dictionary of English, derived from Webster's \
         Revised Unabridged Dictionary (1913) and WordNet, with additions by Patrick J. Cassidy \
         and others. Free software under the GNU General Public License, version 2 or later.",
    ),
    (
        "CMUdict",
        "The Carnegie Mellon Pronouncing Dictionary (Festival's copy, Debian's festlex-cmu), \
         Carnegie Mellon University. BSD-style licence.",
    ),
    (
        "wordfreq",
        "Robyn Speer, wordfreq 3 (word frequencies from Wikipedia, subtitles, news, books, web \
         text and more). Data under CC BY-SA 4.0; code under the Apache licence 2.0.",
    ),
];

/// Where each source file is.
#[derive(Debug, Clone)]
pub struct Sources {
    /// WordNet's `dict` directory (data.*, index.*, *.exc).
    pub wordnet_dir: PathBuf,
    pub gcide_index: PathBuf,
    pub gcide_dict: PathBuf,
    pub cmudict: PathBuf,
    pub frequencies: PathBuf,
}

impl Default for Sources {
    /// Where Debian's packages and the install script put them.
    fn default() -> Sources {
        let data_dir = std::env::var_os("DICTIONARY_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home =
                    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
                home.join(".local/share/dictionary-search")
            });
        Sources {
            wordnet_dir: PathBuf::from("/usr/share/wordnet"),
            gcide_index: PathBuf::from("/usr/share/dictd/gcide.index"),
            gcide_dict: PathBuf::from("/usr/share/dictd/gcide.dict.dz"),
            cmudict: PathBuf::from("/usr/share/festival/dicts/cmu/cmudict-0.4.out"),
            frequencies: data_dir.join("wordfreq-en.tsv"),
        }
    }
}

/// Everything the sources say, parsed, not yet merged.
#[derive(Debug, Default)]
pub struct Parsed {
    pub synsets: Vec<wordnet::Synset>,
    /// Per part of speech, each lemma's synset offsets in sense order.
    pub senses: Vec<(Pos, String, Vec<u32>)>,
    /// Per part of speech, inflected form → base forms.
    pub exceptions: Vec<(Pos, std::collections::BTreeMap<String, Vec<String>>)>,
    pub gcide: HashMap<String, Vec<gcide::GcideEntry>>,
    pub pronunciations: HashMap<String, Vec<String>>,
    pub frequencies: HashMap<String, f32>,
}

/// The WordNet file suffixes of each part of speech.
pub const WORDNET_FILES: [(Pos, &str, &str); 4] = [
    (Pos::Noun, "noun", "noun"),
    (Pos::Verb, "verb", "verb"),
    (Pos::Adjective, "adj", "adj"),
    (Pos::Adverb, "adv", "adv"),
];

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(SourceError::io(path))?;
    String::from_utf8(bytes).map_err(|e| {
        let before = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        SourceError::parse(path, line, format!("invalid UTF-8: {}", e.utf8_error()))
    })
}

impl Sources {
    /// Reads and parses every source; `progress` hears the name of each as it starts.
    pub fn read(&self, progress: &mut dyn FnMut(&str)) -> Result<Parsed> {
        let mut parsed = Parsed::default();
        for (pos, data, exc) in WORDNET_FILES {
            progress(&format!("WordNet {data}"));
            let path = self.wordnet_dir.join(format!("data.{data}"));
            parsed
                .synsets
                .extend(wordnet::parse_data(&read_text(&path)?, &path)?);
            let path = self.wordnet_dir.join(format!("index.{data}"));
            for (lemma, offsets) in wordnet::parse_index(&read_text(&path)?, &path)? {
                parsed.senses.push((pos, lemma, offsets));
            }
            let path = self.wordnet_dir.join(format!("{exc}.exc"));
            parsed
                .exceptions
                .push((pos, wordnet::parse_exceptions(&read_text(&path)?, &path)?));
        }
        progress("GCIDE");
        let index = gcide::parse_index(&read_text(&self.gcide_index)?, &self.gcide_index)?;
        let dict = gcide::read_dict(&self.gcide_dict)?;
        parsed.gcide = gcide::parse_all(&index, &dict, &self.gcide_index)?;
        progress("CMUdict");
        parsed.pronunciations = cmudict::parse(&read_text(&self.cmudict)?, &self.cmudict)?;
        progress("word frequencies");
        parsed.frequencies = freq::parse(&read_text(&self.frequencies)?, &self.frequencies)?;
        Ok(parsed)
    }
}
