"""Benchmark the battle-log pipeline against a bare lxml pass over the same files.

Run from the repository root, with PostgreSQL reachable:

    python bench/battlelogs.py --files 10000

In one run it generates a corpus (or reads ``--corpus DIR``), then measures,
each phase in its own process so that peak memory is its own:

* ``limit``: the least any lxml-based reader can do: read each file, parse
  it with ``lxml.etree.iterparse`` and visit every element and its
  attributes (``element.items()``), clearing elements as it goes;
* ``iterate``: the same without touching attributes, for reference;
* ``parse``: our reader and parser, shaped into frames per batch of 100;
* ``ingest-1`` and ``ingest-2``: ``run_ingest`` into a fresh database with 1
  and 2 worker processes, COPY, archive and marts included.

It prints logs/s, MB/s (uncompressed), the ratio of each rate to the limit,
and the peak resident memory of each phase's whole process tree, sampled
every 50 ms. Targets: parse >= 0.5x the limit, ingest-1 >= 0.3x, ingest-2
faster than ingest-1, and 10,000 files under 500 MB.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil


ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("TZR_BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def corpus_files(corpus: Path) -> list[Path]:
    from pipelines.battlelogs.read import discover

    return [source.path for source in discover([corpus])]


def phase_limit(corpus: Path, touch_attributes: bool) -> dict:
    from lxml import etree

    from pipelines.battlelogs.read import SourceFile, read_log

    files = corpus_files(corpus)
    started = time.perf_counter()
    size = 0
    for path in files:
        raw = read_log(SourceFile.from_path(path))
        size += raw.size
        events = etree.iterparse(
            io.BytesIO(b"<R>" + raw.data + b"</R>"), events=("end",),
            resolve_entities=False, no_network=True, load_dtd=False,
        )
        for _, element in events:
            if touch_attributes:
                element.items()
            element.clear()
    return {"files": len(files), "bytes": size, "seconds": time.perf_counter() - started}


def phase_parse(corpus: Path) -> dict:
    from pipelines.battlelogs.frames import BattleSource, build_frames
    from pipelines.battlelogs.parse import parse_log
    from pipelines.battlelogs.read import SourceFile, read_log

    files = corpus_files(corpus)
    started = time.perf_counter()
    size = 0
    rows = 0
    for begin in range(0, len(files), 100):
        battles, sources = [], []
        for path in files[begin:begin + 100]:
            source = SourceFile.from_path(path)
            raw = read_log(source)
            size += raw.size
            battles.append(parse_log(raw.data, source.name_battle_id))
            sources.append(BattleSource("main", raw.sha256, raw.size, str(path)))
        frames = build_frames(battles, sources)
        rows += len(frames.events)
    return {"files": len(files), "bytes": size, "seconds": time.perf_counter() - started, "events": rows}


def phase_ingest(corpus: Path, workers: int) -> dict:
    import psycopg

    from pipelines import db
    from pipelines.battlelogs.settings import IngestSettings
    from pipelines.battlelogs.runner import run_ingest

    name = f"tzr_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    try:
        db.migrate(dsn)
        with tempfile.TemporaryDirectory() as scratch:
            settings = IngestSettings(
                dsn=dsn,
                archive_root=Path(scratch) / "archive",
                quarantine_root=Path(scratch) / "quarantine",
            )
            started = time.perf_counter()
            result = run_ingest([corpus], settings, workers=workers)
            seconds = time.perf_counter() - started
        with psycopg.connect(dsn) as connection:
            size = connection.execute("SELECT coalesce(sum(size), 0) FROM battles").fetchone()[0]
        summary = result.summary
        return {
            "files": summary["files"], "bytes": int(size), "seconds": seconds,
            "loaded": summary["loaded"], "duplicates": summary["duplicates"],
            "quarantined": summary["quarantined"], "failed": summary["failed"],
        }
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_phase(args: list[str]) -> dict:
    """Run one phase in a child process; return its result and peak tree RSS."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--phase", *args],
        stdout=subprocess.PIPE, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    process = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    output = child.stdout.read().decode()
    if child.returncode != 0:
        raise SystemExit(f"phase {args} failed with status {child.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = peak / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="corpus size to generate (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed")
    parser.add_argument("--corpus", type=Path, help="use this folder of logs instead of generating one")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        name, corpus, *rest = args.phase
        corpus = Path(corpus)
        if name == "limit":
            result = phase_limit(corpus, touch_attributes=True)
        elif name == "iterate":
            result = phase_limit(corpus, touch_attributes=False)
        elif name == "parse":
            result = phase_parse(corpus)
        else:
            result = phase_ingest(corpus, workers=int(rest[0]))
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="tzr-bench-") as scratch:
        corpus = args.corpus
        if corpus is None:
            from pipelines.battlelogs.corpus import write_corpus

            corpus = Path(scratch) / "corpus"
            started = time.perf_counter()
            write_corpus(corpus, args.files, seed=args.seed)
            print(f"generated {args.files} logs in {time.perf_counter() - started:.1f} s", flush=True)

        phases = [
            ("limit", ["limit", str(corpus)]),
            ("iterate", ["iterate", str(corpus)]),
            ("parse", ["parse", str(corpus)]),
            ("ingest-1", ["ingest", str(corpus), "1"]),
            ("ingest-2", ["ingest", str(corpus), "2"]),
        ]
        results = {}
        for label, phase_args in phases:
            results[label] = run_phase(phase_args)
            print(f"  {label} done in {results[label]['seconds']:.1f} s", flush=True)

    limit_rate = results["limit"]["files"] / results["limit"]["seconds"]
    cpu = " ".join(os.popen("grep -m1 'model name' /proc/cpuinfo").read().split()[3:])
    print(f"\n{results['limit']['files']} logs, {results['limit']['bytes'] / 1e6:.1f} MB uncompressed; "
          f"{os.cpu_count()} cores ({cpu})")
    print(f"{'phase':<10} {'logs/s':>8} {'MB/s':>7} {'x limit':>8} {'peak RSS MB':>12}")
    for label, result in results.items():
        rate = result["files"] / result["seconds"]
        print(f"{label:<10} {rate:>8.0f} {result['bytes'] / 1e6 / result['seconds']:>7.1f} "
              f"{rate / limit_rate:>8.2f} {result['peak_rss_mb']:>12.0f}")
    for label in ("ingest-1", "ingest-2"):
        result = results[label]
        print(f"{label}: loaded {result['loaded']}, duplicates {result['duplicates']}, "
              f"quarantined {result['quarantined']}, failed {result['failed']}")
    print("targets: parse >= 0.50x, ingest-1 >= 0.30x, ingest-2 > ingest-1, 10,000 files under 500 MB")


if __name__ == "__main__":
    main()
