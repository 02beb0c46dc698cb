//! The parsers and the merge over the real, whole sources as Debian and PyPI install them
//! (`scripts/install-dictionary-data.sh`, which the test command runs first): every file
//! parses, and what comes out is what a reader of the dictionary expects.

use std::sync::OnceLock;

use dictionary_search::entry::{Entry, Pos, Source};
use dictionary_search::source::Sources;
use dictionary_search::{dataset, source};

fn entries() -> &'static std::collections::BTreeMap<String, Entry> {
    static ENTRIES: OnceLock<std::collections::BTreeMap<String, Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| {
        let parsed = Sources::default().read(&mut |_| {}).unwrap_or_else(|e| {
            panic!("{e}\n(scripts/install-dictionary-data.sh installs every source)")
        });
        dataset::merge(&parsed)
    })
}

#[test]
fn every_source_parses_into_a_dictionary_of_both_wordnet_and_gcide() {
    let entries = entries();
    // WordNet 3.0 has 147,306 lemmas; GCIDE adds headwords WordNet lacks.
    assert!(entries.len() > 150_000, "{} entries", entries.len());
    let from = |source| {
        entries
            .values()
            .filter(|e| e.senses.iter().any(|s| s.source == source))
            .count()
    };
    assert!(from(Source::WordNet) > 140_000, "{}", from(Source::WordNet));
    assert!(from(Source::Gcide) > 80_000, "{}", from(Source::Gcide));
    let pronounced = entries
        .values()
        .filter(|e| !e.pronunciations.is_empty())
        .count();
    // (CMUdict 0.4 has 105,000 words, many of them names; the entries are 200,000 headwords,
    // many of several words.)
    assert!(
        pronounced > 30_000,
        "{pronounced} entries with a pronunciation"
    );
    let ranked = entries.values().filter(|e| e.frequency > 0.0).count();
    assert!(ranked > 50_000, "{ranked} entries with a frequency");
}

#[test]
fn no_markup_of_the_sources_is_left_in_the_text() {
    for (key, e) in entries() {
        for s in &e.senses {
            for text in std::iter::once(&s.definition).chain(&s.examples) {
                assert!(!text.is_empty(), "{key}: an empty definition or example");
                // (WordNet's own text may hold braces: "({ or })".)
                assert!(
                    s.source == Source::WordNet || !text.contains('{') && !text.contains('}'),
                    "{key}: cross-reference braces in {text:?}"
                );
                assert!(
                    !text.contains("1913 Webster") && !text.contains("[PJC]"),
                    "{key}: a source marker in {text:?}"
                );
                assert!(
                    !text.contains('\n') && !text.contains("  "),
                    "{key}: {text:?}"
                );
            }
        }
    }
}

#[test]
fn well_known_entries_say_what_a_dictionary_says() {
    let e = entries();
    let acrophobia = &e["acrophobia"];
    assert_eq!(
        acrophobia.senses[0].definition,
        "a morbid fear of great heights"
    );
    assert_eq!(acrophobia.senses[0].pos, Pos::Noun);

    let goose = &e["goose"];
    assert!(
        goose.forms.contains(&"geese".to_string()),
        "{:?}",
        goose.forms
    );
    assert_eq!(goose.pronunciations[0], "G UW1 S");
    assert!(
        goose.etymology[0].starts_with("OE. gos"),
        "{:?}",
        goose.etymology
    );

    let good = &e["good"];
    assert!(
        good.antonyms.contains(&"bad".to_string()),
        "{:?}",
        good.antonyms
    );
    assert!(
        good.forms.contains(&"better".to_string()),
        "{:?}",
        good.forms
    );
    assert!(good.frequency > 6.0);
    let pos = good.parts_of_speech();
    for p in [Pos::Adjective, Pos::Noun, Pos::Adverb] {
        assert!(pos.contains(&p), "{pos:?}");
    }

    let run = &e["run"];
    assert!(run.forms.contains(&"ran".to_string()), "{:?}", run.forms);
    assert_eq!(run.pronunciations, ["R AH1 N"]);
    // GCIDE's senses keep their quotations (its first verb sense has none, the second does).
    let quoted = run
        .senses
        .iter()
        .filter(|s| s.source == Source::Gcide && !s.examples.is_empty());
    assert!(quoted.count() > 5);

    // A GCIDE-only headword, and a WordNet multi-word lemma.
    assert!(e.contains_key("aardvark"));
    assert!(e["ice cream"]
        .senses
        .iter()
        .any(|s| s.definition.contains("frozen dessert")));
    // Common words rank above rare ones.
    assert!(e["house"].frequency > e["domicile"].frequency);
}

#[test]
fn a_missing_source_names_the_file_and_the_remedy() {
    let sources = Sources {
        cmudict: "/nonexistent/cmudict-0.4.out".into(),
        ..Sources::default()
    };
    let err = sources.read(&mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("reading /nonexistent/cmudict-0.4.out"),
        "{err}"
    );
    assert!(err.contains("scripts/install-dictionary-data.sh"), "{err}");
    assert!(source::ATTRIBUTIONS.len() >= 4);
}
