//! The web pages, rendered on the server (no build step; every page works without
//! JavaScript, which only adds suggestions as you type). Everything that came from a user
//! or from the data is escaped with [`escape`]; the only HTML not made here is the snippets,
//! which tantivy escapes around its `<b>` marks.

use crate::entry::{Entry, Source};
use crate::fulltext::escape;
use crate::index::{Rhymes, SearchHit};
use crate::source::ATTRIBUTIONS;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:1rem;line-height:1.5;color:#1b1b1b}
header form{display:flex;gap:.5rem;position:relative}input[type=search]{flex:1;font-size:1.1rem;padding:.4rem}
button{font-size:1rem;padding:.4rem .8rem}#suggestions{position:absolute;top:2.4rem;left:0;right:0;background:#fff;border:1px solid #999;list-style:none;margin:0;padding:0;z-index:1}
#suggestions:empty{display:none}#suggestions a{display:block;padding:.2rem .5rem;text-decoration:none}#suggestions a:focus,#suggestions a:hover{background:#e8eefc}
.pos{font-style:italic;color:#555}.src{font-size:.8rem;color:#666}.ex{color:#444}nav a{margin-right:.8rem}
footer{margin-top:3rem;font-size:.85rem;color:#555}b{background:#fff3b0}";

const SCRIPT: &str = "const q=document.getElementById('q'),list=document.getElementById('suggestions');let n=0;
q.addEventListener('input',async()=>{const v=q.value.trim(),m=++n;if(!v){list.replaceChildren();return}
try{const r=await fetch('/api/suggest?q='+encodeURIComponent(v));if(!r.ok||m!==n)return;const j=await r.json();
list.replaceChildren(...j.suggestions.map(s=>{const li=document.createElement('li'),a=document.createElement('a');
a.href='/entry/'+encodeURIComponent(s.word);a.textContent=s.word;a.setAttribute('role','option');li.append(a);return li}))}catch(e){}});
q.addEventListener('keydown',e=>{if(e.key==='ArrowDown'&&list.firstChild){e.preventDefault();list.querySelector('a').focus()}});
list.addEventListener('keydown',e=>{const a=document.activeElement,li=a.parentElement;
if(e.key==='ArrowDown'&&li.nextSibling){e.preventDefault();li.nextSibling.firstChild.focus()}
if(e.key==='ArrowUp'){e.preventDefault();(li.previousSibling?li.previousSibling.firstChild:q).focus()}
if(e.key==='Escape'){list.replaceChildren();q.focus()}});";

/// A whole page around `body`.
pub fn layout(title: &str, query: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{title} – dictionary</title><style>{STYLE}</style></head><body>\
<header><p><a href=\"/\">dictionary</a></p>\
<form action=\"/go\" method=\"get\" role=\"search\">\
<label for=\"q\" class=\"visually-hidden\" style=\"position:absolute;left:-9999px\">Look up a word</label>\
<input type=\"search\" id=\"q\" name=\"q\" value=\"{query}\" autocomplete=\"off\" \
aria-autocomplete=\"list\" aria-controls=\"suggestions\" placeholder=\"Type a word, or describe it\" autofocus>\
<button type=\"submit\" name=\"kind\" value=\"entry\">Look up</button>\
<button type=\"submit\" name=\"kind\" value=\"search\">Search definitions</button>\
<ul id=\"suggestions\" role=\"listbox\" aria-label=\"Suggestions\"></ul></form>\
<nav aria-label=\"More searches\"><a href=\"/find?kind=pattern\">Patterns</a><a href=\"/find?kind=anagram\">Anagrams</a>\
<a href=\"/find?kind=rhymes\">Rhymes</a><a href=\"/about\">About the data</a></nav></header>\
<main>{body}</main><footer>Definitions from WordNet 3.0 (Princeton University) and GCIDE \
(GNU GPL); pronunciations from CMUdict; frequencies from wordfreq. <a href=\"/about\">Licences</a>.</footer>\
<script>{SCRIPT}</script></body></html>",
        title = escape(title),
        query = escape(query),
    )
}

fn word_links(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("<a href=\"/entry/{}\">{}</a>", url_path(w), escape(w)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A word as a path segment: percent-encoded except letters, digits and `-._~`.
pub fn url_path(word: &str) -> String {
    let mut out = String::new();
    for b in word.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn home(entries: usize, version: &str) -> String {
    layout(
        "Search",
        "",
        &format!(
            "<h1>An English dictionary</h1><p>{entries} headwords from WordNet and GCIDE \
(dataset {}). Type a word to see suggestions, or describe a word (\"a fear of heights\") \
and search the definitions.</p>",
            escape(version)
        ),
    )
}

pub fn entry(e: &Entry, found_as: Option<&str>) -> String {
    let mut body = format!("<article><h1>{}</h1>", escape(&e.word));
    if let Some(form) = found_as {
        body.push_str(&format!(
            "<p><em>{}</em> is a form of <strong>{}</strong>.</p>",
            escape(form),
            escape(&e.word)
        ));
    }
    if !e.pronunciations.is_empty() {
        let p: Vec<String> = e.pronunciations.iter().map(|p| escape(p)).collect();
        body.push_str(&format!("<p>Pronunciation (ARPAbet): {}</p>", p.join("; ")));
    }
    for pos in e.parts_of_speech() {
        body.push_str(&format!(
            "<section><h2 class=\"pos\">{}</h2><ol>",
            pos.name()
        ));
        for s in e.senses.iter().filter(|s| s.pos == pos) {
            let source = match s.source {
                Source::WordNet => "WordNet",
                Source::Gcide => "GCIDE",
            };
            body.push_str(&format!(
                "<li>{} <span class=\"src\">({source})</span>",
                escape(&s.definition)
            ));
            for x in &s.examples {
                body.push_str(&format!("<br><span class=\"ex\">“{}”</span>", escape(x)));
            }
            body.push_str("</li>");
        }
        body.push_str("</ol></section>");
    }
    for (title, words) in [
        ("Synonyms", &e.synonyms),
        ("Antonyms", &e.antonyms),
        ("Related words", &e.related),
        ("Forms", &e.forms),
    ] {
        if !words.is_empty() {
            body.push_str(&format!(
                "<section><h2>{title}</h2><p>{}</p></section>",
                word_links(words)
            ));
        }
    }
    if !e.etymology.is_empty() {
        body.push_str("<section><h2>Etymology</h2>");
        for x in &e.etymology {
            body.push_str(&format!(
                "<p>{} <span class=\"src\">(GCIDE)</span></p>",
                escape(x)
            ));
        }
        body.push_str("</section>");
    }
    if e.frequency > 0.0 {
        body.push_str(&format!(
            "<p class=\"src\">Frequency: {:.2} on the Zipf scale.</p>",
            e.frequency
        ));
    }
    body.push_str(&format!(
        "<p><a href=\"/find?kind=rhymes&amp;q={w}\">Rhymes</a> · <a href=\"/find?kind=anagram&amp;q={w}\">Anagrams</a></p></article>",
        w = url_path(&e.word)
    ));
    layout(&e.word, &e.word, &body)
}

pub fn not_found(word: &str, suggestions: &[String]) -> String {
    let mut body = format!("<h1>No entry for “{}”</h1>", escape(word));
    if !suggestions.is_empty() {
        body.push_str(&format!(
            "<p>Did you mean: {}?</p>",
            word_links(suggestions)
        ));
    }
    body.push_str(&format!(
        "<p><a href=\"/search?q={}\">Search the definitions for it</a></p>",
        url_path(word)
    ));
    layout("Not found", word, &body)
}

pub fn search(q: &str, hits: &[SearchHit<'_>]) -> String {
    let mut body = format!("<h1>Definitions matching “{}”</h1>", escape(q));
    if hits.is_empty() {
        body.push_str("<p>Nothing matched.</p>");
    }
    body.push_str("<ol>");
    for h in hits {
        body.push_str(&format!(
            "<li><a href=\"/entry/{}\">{}</a>: {}</li>",
            url_path(&h.entry.word),
            escape(&h.entry.word),
            h.snippet_html
        ));
    }
    body.push_str("</ol>");
    layout(q, q, &body)
}

pub fn find(kind: &str, q: &str, result: Result<(Vec<String>, Option<Rhymes>), String>) -> String {
    let (title, help) = match kind {
        "anagram" => ("Anagrams", "Words with the same letters."),
        "rhymes" => (
            "Rhymes",
            "Perfect rhymes, then near ones, from the pronunciations.",
        ),
        _ => (
            "Patterns",
            "? stands for one letter, * for any run: c?t, *ology, un*able.",
        ),
    };
    let mut body = format!(
        "<h1>{title}</h1><p>{help}</p><form action=\"/find\" method=\"get\">\
<input type=\"hidden\" name=\"kind\" value=\"{kind}\"><label for=\"fq\">{title} of</label> \
<input id=\"fq\" name=\"q\" value=\"{q}\"> <button type=\"submit\">Find</button></form>",
        kind = escape(kind),
        q = escape(q)
    );
    match result {
        Err(message) => body.push_str(&format!("<p role=\"alert\">{}</p>", escape(&message))),
        Ok((words, rhymes)) if !q.is_empty() => match rhymes {
            Some(r) => {
                body.push_str(&format!(
                    "<h2>Perfect rhymes</h2><p>{}</p>",
                    word_links(&r.perfect)
                ));
                body.push_str(&format!(
                    "<h2>Near rhymes</h2><p>{}</p>",
                    word_links(&r.near)
                ));
            }
            None if words.is_empty() => body.push_str("<p>None found.</p>"),
            None => body.push_str(&format!("<p>{}</p>", word_links(&words))),
        },
        Ok(_) => {}
    }
    layout(title, "", &body)
}

pub fn about(version: &str, entries: usize) -> String {
    let mut body = format!(
        "<h1>About the data</h1><p>Dataset {}: {entries} headwords.</p><dl>",
        escape(version)
    );
    for (name, text) in ATTRIBUTIONS {
        body.push_str(&format!(
            "<dt>{}</dt><dd>{}</dd>",
            escape(name),
            escape(text)
        ));
    }
    body.push_str("</dl>");
    layout("About", "", &body)
}

pub fn message(title: &str, text: &str) -> String {
    layout(
        title,
        "",
        &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text)),
    )
}
