//! Search over the whole real dictionary (every source as installed): the examples of the
//! issue, ranking, patterns, anagrams, rhymes and corrections.

use std::sync::OnceLock;

use dictionary_search::dataset;
use dictionary_search::index::Index;
use dictionary_search::source::Sources;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let parsed = Sources::default()
            .read(&mut |_| {})
            .expect("the dictionary sources");
        let entries = dataset::merge(&parsed);
        let version = dataset::version(&entries);
        Index::build(&version, entries.into_values().collect())
    })
}

fn words(list: Vec<&str>) -> Vec<String> {
    list.into_iter().map(str::to_string).collect()
}

fn contains_all(list: &[String], expected: &[&str]) {
    for e in expected {
        assert!(list.iter().any(|w| w == e), "{e:?} in {list:?}");
    }
}

#[test]
fn autocomplete_ranks_common_words_first() {
    let ix = index();
    assert_eq!(ix.suggest("th", 10).unwrap()[..3], ["the", "that", "this"]);
    assert_eq!(ix.suggest("hou", 10).unwrap()[0], "house");
    assert_eq!(ix.suggest("dict", 10).unwrap()[0], "dictionary");
    contains_all(
        &words(ix.suggest("acro", 10).unwrap()),
        &["across", "acronym", "acrophobia"],
    );
    assert_eq!(
        ix.suggest("acrophob", 10).unwrap(),
        ["acrophobia", "acrophobic"]
    );
    assert!(ix.suggest("qxzv", 10).unwrap().is_empty());
}

#[test]
fn an_inflected_form_finds_its_headword() {
    let ix = index();
    for (form, lemma) in [
        ("ran", "run"),
        ("geese", "goose"),
        ("better", "good"),
        ("running", "run"),
        ("mice", "mouse"),
        ("children", "child"),
        ("cities", "city"),
    ] {
        let lemmas: Vec<&str> = ix.lemmas(form).iter().map(|e| e.word.as_str()).collect();
        assert_eq!(lemmas.first(), Some(&lemma), "{form}: {lemmas:?}");
    }
}

#[test]
fn patterns_and_anagrams_find_real_words_common_first() {
    let ix = index();
    let cat = ix.pattern("c?t", 10).unwrap().words;
    contains_all(&cat[..3], &["cat", "cut", "cot"]);
    contains_all(
        &ix.pattern("*ology", 20).unwrap().words,
        &["biology", "psychology", "technology"],
    );
    contains_all(
        &ix.pattern("un*able", 20).unwrap().words,
        &["unable", "unbelievable"],
    );
    let all_a = ix.pattern("*a*", 10).unwrap();
    assert!(
        all_a.truncated,
        "a pattern matching most of the dictionary stops at its limit"
    );
    assert_eq!(all_a.words.len(), 10);
    contains_all(
        &words(ix.anagrams("listen", 10).unwrap()),
        &["silent", "enlist", "tinsel"],
    );
    contains_all(
        &words(ix.anagrams("earth", 10).unwrap()),
        &["heart", "hater"],
    );
}

#[test]
fn rhymes_come_from_the_pronunciations() {
    let ix = index();
    let cat = ix.rhymes("cat", 30).unwrap();
    contains_all(&cat.perfect, &["hat", "bat", "fat", "flat"]);
    contains_all(&cat.near, &["fact", "act"]);
    let time = ix.rhymes("time", 30).unwrap();
    contains_all(&time.perfect, &["crime", "climb", "prime"]);
}

#[test]
fn real_misspellings_get_their_word_first() {
    let ix = index();
    // Common misspellings from Wikipedia's list, and one spelt by ear.
    for (typed, meant) in [
        ("recieve", "receive"),
        ("definately", "definitely"),
        ("accomodate", "accommodate"),
        ("seperate", "separate"),
        ("occured", "occurred"),
        ("teh", "the"),
        ("wierd", "weird"),
        ("beleive", "believe"),
        ("tommorow", "tomorrow"),
        ("neccessary", "necessary"),
        ("goverment", "government"),
        ("untill", "until"),
        ("becuase", "because"),
        ("acheive", "achieve"),
        ("fonetik", "phonetic"),
    ] {
        let got = ix.spell(typed, 5).unwrap();
        assert_eq!(
            got.first().map(|c| c.word.as_str()),
            Some(meant),
            "{typed}: {got:?}"
        );
    }
    assert_eq!(
        ix.spell("house", 1).unwrap()[0].word,
        "house",
        "a right word is its own answer"
    );
}

#[test]
fn the_reverse_dictionary_finds_a_word_by_its_meaning() {
    let ix = index();
    let hits = ix.search("a fear of heights", 10).unwrap();
    let words: Vec<&str> = hits.iter().map(|h| h.entry.word.as_str()).collect();
    assert!(words[..3].contains(&"acrophobia"), "{words:?}");
    let acro = hits.iter().find(|h| h.entry.word == "acrophobia").unwrap();
    assert!(
        acro.snippet_html.contains("<b>fear</b>"),
        "{}",
        acro.snippet_html
    );
    assert!(
        acro.snippet_html.contains("<b>heights</b>"),
        "{}",
        acro.snippet_html
    );
    // A phrase must appear as written.
    let phrase = ix.search("\"morbid fear of great heights\"", 10).unwrap();
    assert_eq!(phrase[0].entry.word, "acrophobia");
    // A headword match counts more than a mention in a definition.
    assert_eq!(ix.search("goose", 5).unwrap()[0].entry.word, "goose");
    let bad = ix.search("nosuchfield:fear", 5).unwrap_err();
    assert!(bad.to_string().contains("does not parse"), "{bad}");
    assert!(ix.search("", 5).is_err());
}

#[test]
fn real_misspellings_from_codespell_are_mostly_corrected_first() {
    use dictionary_search::eval::{codespell_pairs, Score};
    let ix = index();
    let list = "/usr/lib/python3/dist-packages/codespell_lib/data/dictionary.txt";
    let text = std::fs::read_to_string(list)
        .expect("codespell's list (scripts/install-dictionary-data.sh installs codespell)");
    // Every tenth usable pair: about 2,400 misspellings people made.
    let pairs: Vec<_> = codespell_pairs(&text, |w| ix.knows(w))
        .into_iter()
        .step_by(10)
        .collect();
    assert!(pairs.len() > 2_000, "{} pairs", pairs.len());
    let mut score = Score::default();
    for p in &pairs {
        let got: Vec<String> = ix
            .spell(&p.typed, 5)
            .unwrap()
            .into_iter()
            .map(|c| c.word)
            .collect();
        score.add(&p.meant, &got);
    }
    // Measured on the whole list: 92.2 % first (aspell: 89.1 %), 96.8 % in the first five.
    assert!(
        score.first_rate() > 0.90,
        "right first: {:.3}",
        score.first_rate()
    );
    assert!(
        score.top5_rate() > 0.95,
        "in the first five: {:.3}",
        score.top5_rate()
    );
}
