//! Merging the parsed sources into one [`Entry`] per headword, and the dataset's version.
//!
//! A headword is keyed by its lowercase form. WordNet gives senses in its own frequency order
//! with synonyms (the synset's other words), antonyms and related words (similar, see also,
//! derivations); GCIDE adds its senses with their quotations, etymologies, inflected forms and
//! synonyms; WordNet's exception lists add irregular forms (`goose` gets `geese`); CMUdict
//! the pronunciations, wordfreq the frequency. Pure: no IO.

use std::collections::{BTreeMap, HashMap};

use crate::entry::{Entry, Pos, Sense, Source};
use crate::source::wordnet::Synset;
use crate::source::Parsed;

/// At most this many words in each of an entry's word lists (synonyms, antonyms, related,
/// forms): a few headwords (`run`, `break`) would otherwise list hundreds.
pub const WORD_LIST_MAX: usize = 60;

/// Merged entries by key (lowercase headword), in key order.
pub fn merge(parsed: &Parsed) -> BTreeMap<String, Entry> {
    let synsets: HashMap<(Pos, u32), &Synset> = parsed
        .synsets
        .iter()
        .map(|s| ((s.pos, s.offset), s))
        .collect();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for (pos, lemma, offsets) in &parsed.senses {
        let key = Entry::key_of(lemma);
        let entry = entries.entry(key.clone()).or_default();
        for offset in offsets {
            let Some(synset) = synsets.get(&(*pos, *offset)) else {
                continue; // an index naming a synset the data lacks: skip the sense
            };
            let me = synset.words.iter().position(|w| Entry::key_of(w) == key);
            // The lowercase form if any sense writes it so (`weird`, not the Fates' `Weird`).
            let written = me.map_or_else(|| lemma.clone(), |i| synset.words[i].clone());
            if entry.word.is_empty() || written == key {
                entry.word = written;
            }
            entry.senses.push(Sense {
                pos: *pos,
                definition: synset.definition.clone(),
                examples: synset.examples.clone(),
                source: Source::WordNet,
            });
            for (i, w) in synset.words.iter().enumerate() {
                if Some(i) != me {
                    entry.synonyms.push(w.clone());
                }
            }
            let number = me.map_or(0, |i| i as u16 + 1);
            for p in &synset.pointers {
                let Some(target) = synsets.get(&(p.pos, p.offset)) else {
                    continue;
                };
                // A lexical pointer relates one word to one word; a semantic one (0000) the
                // whole synsets.
                if p.source != 0 && p.source != number {
                    continue;
                }
                let word = match p.target {
                    0 => target.words.first(),
                    t => target.words.get(usize::from(t) - 1),
                };
                let Some(word) = word.cloned() else { continue };
                match p.symbol.as_str() {
                    "!" => entry.antonyms.push(word),
                    "&" | "^" | "+" | "=" => entry.related.push(word),
                    _ => {}
                }
            }
        }
    }
    for (key, gcide_entries) in &parsed.gcide {
        let entry = entries.entry(key.clone()).or_default();
        for g in gcide_entries {
            if entry.word.is_empty() {
                // GCIDE capitalises every headword (`Goose`): a dictionary shows `goose`.
                let mut chars = g.headword.chars();
                let title_case = chars.next().is_some_and(char::is_uppercase)
                    && chars.all(|c| !c.is_uppercase());
                entry.word = if title_case {
                    key.clone()
                } else {
                    g.headword.clone()
                };
            }
            for s in &g.senses {
                entry.senses.push(Sense {
                    pos: g.pos.unwrap_or(Pos::Other),
                    definition: s.definition.clone(),
                    examples: s.examples.clone(),
                    source: Source::Gcide,
                });
            }
            if let Some(e) = &g.etymology {
                entry.etymology.push(e.clone());
            }
            entry.forms.extend(g.forms.iter().map(|f| f.to_lowercase()));
            entry.synonyms.extend(g.synonyms.iter().cloned());
        }
    }
    for (_, exceptions) in &parsed.exceptions {
        for (form, bases) in exceptions {
            for base in bases {
                if let Some(entry) = entries.get_mut(&Entry::key_of(base)) {
                    entry.forms.push(form.clone());
                }
            }
        }
    }
    for (key, entry) in entries.iter_mut() {
        if let Some(p) = parsed.pronunciations.get(key) {
            entry.pronunciations = p.clone();
        }
        entry.frequency = parsed.frequencies.get(key).copied().unwrap_or(0.0);
        for list in [
            &mut entry.synonyms,
            &mut entry.antonyms,
            &mut entry.related,
            &mut entry.forms,
        ] {
            tidy(list, key);
        }
        entry.etymology.dedup();
        entry.form_frequencies = entry
            .forms
            .iter()
            .map(|f| parsed.frequencies.get(f).copied().unwrap_or(0.0))
            .collect();
    }
    entries.retain(|_, e| !e.senses.is_empty());
    entries
}

/// Drops the headword itself, repeats (case-insensitively) and anything past the limit, in
/// order of first appearance.
fn tidy(list: &mut Vec<String>, key: &str) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|w| {
        let k = Entry::key_of(w);
        k != key && !k.is_empty() && seen.insert(k)
    });
    list.truncate(WORD_LIST_MAX);
}

/// The dataset's version: a hash of every entry in key order (64-bit FNV-1a of the JSON), so
/// the same sources always give the same version and any change gives another.
pub fn version(entries: &BTreeMap<String, Entry>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (key, entry) in entries {
        let json = serde_json::to_vec(entry).expect("an entry serialises");
        for byte in key.bytes().chain([0]).chain(json) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::gcide::{GcideEntry, GcideSense};
    use crate::source::wordnet;
    use std::path::Path;

    fn parsed() -> Parsed {
        // Real WordNet 3.0 lines: good (adj.) with its antonym bad.
        let data = "01123148 00 a 01 good 0 001 ! 01125429 a 0101 | having desirable or positive qualities; \"good news\"\n01125429 00 a 01 bad 0 001 ! 01123148 a 0101 | having undesirable or negative qualities; \"a bad report card\"\n";
        let mut p = Parsed {
            synsets: wordnet::parse_data(data, Path::new("data.adj")).unwrap(),
            ..Parsed::default()
        };
        p.senses
            .push((Pos::Adjective, "good".into(), vec![1123148]));
        p.senses.push((Pos::Adjective, "bad".into(), vec![1125429]));
        let exc = wordnet::parse_exceptions("better good well\nworse bad\n", Path::new("adj.exc"));
        p.exceptions.push((Pos::Adjective, exc.unwrap()));
        p.gcide.insert(
            "good".into(),
            vec![GcideEntry {
                headword: "Good".into(),
                pos: Some(Pos::Adjective),
                senses: vec![GcideSense {
                    definition: "Possessing desirable qualities.".into(),
                    examples: vec![],
                }],
                etymology: Some("AS. g\u{6f}\u{304}d".into()),
                forms: vec!["Better".into(), "Best".into()],
                synonyms: vec![],
            }],
        );
        p.pronunciations
            .insert("good".into(), vec!["G UH1 D".into()]);
        p.frequencies.insert("good".into(), 6.4);
        p
    }

    #[test]
    fn sources_merge_into_one_entry_per_headword() {
        let entries = merge(&parsed());
        let good = &entries["good"];
        assert_eq!(good.word, "good");
        assert_eq!(good.senses.len(), 2);
        assert_eq!(good.senses[0].source, Source::WordNet);
        assert_eq!(good.senses[0].examples, ["good news"]);
        assert_eq!(good.senses[1].source, Source::Gcide);
        assert_eq!(good.antonyms, ["bad"]);
        assert_eq!(
            good.forms,
            ["better", "best"],
            "GCIDE's forms, then the exceptions' once"
        );
        assert_eq!(good.pronunciations, ["G UH1 D"]);
        assert_eq!(good.frequency, 6.4);
        assert_eq!(entries["bad"].forms, ["worse"]);
        assert_eq!(entries["bad"].frequency, 0.0);
    }

    #[test]
    fn the_same_sources_merge_the_same_way_every_time() {
        // Many forms of one base: the order they come out in must not depend on a hash map's.
        let exc: String = (0..20).map(|i| format!("good{i} good\n")).collect();
        let merged = || {
            let mut p = parsed();
            let exceptions = wordnet::parse_exceptions(&exc, Path::new("adj.exc")).unwrap();
            p.exceptions.push((Pos::Adjective, exceptions));
            merge(&p)
        };
        let first = merged();
        for _ in 0..3 {
            assert_eq!(merged()["good"].forms, first["good"].forms);
        }
        assert_eq!(version(&first), version(&merged()));
    }

    #[test]
    fn the_version_changes_with_the_data_and_only_with_it() {
        let a = merge(&parsed());
        assert_eq!(version(&a), version(&merge(&parsed())));
        let mut b = a.clone();
        b.get_mut("bad").unwrap().frequency = 5.0;
        assert_ne!(version(&a), version(&b));
    }
}
