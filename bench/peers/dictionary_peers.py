#!/usr/bin/env python3
"""The dictionary benchmark's peers, on the same data and the same seeded queries as
dictionary-search: SQLite FTS5 and (when Debian's python3-xapian is installed) Xapian.

  /usr/bin/python3 bench/peers/dictionary_peers.py --entries entries.jsonl --queries q.tsv

entries.jsonl is `dictionary-search export` (one merged entry per line); q.tsv is
`dictionary-search bench-queries` (kind<TAB>query[<TAB>expected]). Each system is built in a
temporary directory, warmed up, then every query is timed in this process (perf_counter
around the query and the fetch of its top 10: the peers' "server side"). Prints one JSON
line per system and kind, as `dictionary-search bench` does.

  prefix  SQLite: the ten most frequent headwords in the prefix's B-tree range (the index an
          SQLite dictionary would have); Xapian: a partial (prefix) query on the headword
          field, sorted by the frequency value.
  spell   Xapian's spelling suggestion (headwords and their forms, weighted by frequency);
          SQLite has none in Debian (spellfix1 is not packaged).
  search  SQLite: FTS5 (porter stemmer) over definitions and examples, bm25 with the
          headword weighted, top 10 with a snippet; Xapian: the English stemmer, BM25, top 10.
"""
import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time


def report(system, kind, micros, seconds, right_first=None):
    micros.sort()
    at = lambda q: micros[round((len(micros) - 1) * q)] if micros else 0.0
    line = {"system": system, "mode": "in-process", "kind": kind, "queries": len(micros),
            "p50_us": round(at(0.5), 1), "p99_us": round(at(0.99), 1),
            "qps": round(len(micros) / seconds) if seconds else 0}
    if right_first is not None:
        line["right_first"] = round(right_first, 3)
    print(json.dumps(line), flush=True)


def body(e):
    text = [s["definition"] for s in e["senses"]]
    for s in e["senses"]:
        text.extend(s.get("examples", []))
    return ". ".join(text)


def timed(items, run, rounds):
    for it in items[:100]:
        run(it)
    micros = []
    start = time.perf_counter()
    for _ in range(rounds):
        for it in items:
            t = time.perf_counter_ns()
            run(it)
            micros.append((time.perf_counter_ns() - t) / 1000.0)
    return micros, time.perf_counter() - start


def sqlite_peer(entries, queries, rounds, tmp):
    t0 = time.perf_counter()
    con = sqlite3.connect(os.path.join(tmp, "dict.sqlite"))
    con.executescript("""
        PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
        CREATE TABLE words(word TEXT PRIMARY KEY, freq REAL) WITHOUT ROWID;
        CREATE VIRTUAL TABLE defs USING fts5(headword, body, tokenize='porter unicode61');
    """)
    con.executemany("INSERT OR IGNORE INTO words VALUES (?, ?)",
                    ((e["word"].lower(), e.get("frequency", 0.0)) for e in entries))
    con.executemany("INSERT INTO defs VALUES (?, ?)", ((e["word"], body(e)) for e in entries))
    con.commit()
    print(json.dumps({"system": "sqlite-fts5", "sqlite": sqlite3.sqlite_version,
                      "build_s": round(time.perf_counter() - t0, 1)}), flush=True)

    def prefix(p):
        upper = p[:-1] + chr(ord(p[-1]) + 1)
        return con.execute("SELECT word FROM words WHERE word >= ? AND word < ? "
                           "ORDER BY freq DESC LIMIT 10", (p, upper)).fetchall()

    def search(q):
        return con.execute("SELECT headword, snippet(defs, 1, '<b>', '</b>', '...', 16) FROM defs "
                           "WHERE defs MATCH ? ORDER BY bm25(defs, 1.5, 1.0) LIMIT 10",
                           (q,)).fetchall()

    report("sqlite-fts5", "prefix", *timed([q for k, q, _ in queries if k == "prefix"], prefix, rounds))
    report("sqlite-fts5", "search", *timed([q for k, q, _ in queries if k == "search"], search, rounds))


def xapian_peer(entries, queries, rounds, tmp):
    try:
        import xapian
    except ImportError:
        print(json.dumps({"system": "xapian", "skipped": "python3-xapian is not installed"}))
        return
    t0 = time.perf_counter()
    path = os.path.join(tmp, "xap")
    db = xapian.WritableDatabase(path, xapian.DB_CREATE_OR_OVERWRITE)
    tg = xapian.TermGenerator()
    tg.set_stemmer(xapian.Stem("english"))
    tg.set_database(db)
    for e in entries:
        doc = xapian.Document()
        tg.set_document(doc)
        tg.index_text(e["word"], 1, "H")
        tg.increase_termpos()
        tg.index_text(e["word"])
        tg.index_text(body(e))
        doc.set_data(e["word"])
        doc.add_value(0, xapian.sortable_serialise(e.get("frequency", 0.0)))
        db.add_document(doc)
        weight = max(1, int(e.get("frequency", 0.0) * 100))
        if " " not in e["word"]:
            db.add_spelling(e["word"].lower(), weight)
        for i, form in enumerate(e.get("forms", [])):
            freqs = e.get("form_frequencies", [])
            db.add_spelling(form, max(1, int((freqs[i] if i < len(freqs) else 0.0) * 100)))
    db.commit()
    db.close()
    print(json.dumps({"system": "xapian", "xapian": xapian.version_string(),
                      "build_s": round(time.perf_counter() - t0, 1)}), flush=True)
    rdb = xapian.Database(path)
    qp = xapian.QueryParser()
    qp.set_database(rdb)
    qp.set_stemmer(xapian.Stem("english"))
    qp.set_stemming_strategy(xapian.QueryParser.STEM_SOME)
    qp.add_prefix("head", "H")
    by_freq = xapian.Enquire(rdb)
    by_freq.set_sort_by_value(0, True)
    bm25 = xapian.Enquire(rdb)

    def prefix(p):
        by_freq.set_query(qp.parse_query("head:" + p, xapian.QueryParser.FLAG_PARTIAL))
        return [m.document.get_data() for m in by_freq.get_mset(0, 10)]

    def search(q):
        bm25.set_query(qp.parse_query(q, xapian.QueryParser.FLAG_DEFAULT))
        return [m.document.get_data() for m in bm25.get_mset(0, 10)]

    report("xapian", "prefix", *timed([q for k, q, _ in queries if k == "prefix"], prefix, rounds))
    spells = [(q, e) for k, q, e in queries if k == "spell"]
    right = sum(rdb.get_spelling_suggestion(q, 2).decode("utf-8", "replace") == e for q, e in spells)
    micros, seconds = timed([q for q, _ in spells], lambda q: rdb.get_spelling_suggestion(q, 2), rounds)
    report("xapian", "spell", micros, seconds, right / max(1, len(spells)))
    report("xapian", "search", *timed([q for k, q, _ in queries if k == "search"], search, rounds))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with open(args.entries, encoding="utf-8") as f:
        entries = [json.loads(line) for line in f]
    with open(args.queries, encoding="utf-8") as f:
        queries = [(l.split("\t") + ["", ""])[:3] for l in f.read().splitlines() if l]
    with tempfile.TemporaryDirectory(prefix="dictionary-peers-") as tmp:
        sqlite_peer(entries, queries, args.rounds, tmp)
        xapian_peer(entries, queries, args.rounds, tmp)


if __name__ == "__main__":
    main()
