"""SetFit (Tunstall et al. 2022, the `setfit` package) on the few-shot rows that `lorafuse
bench-fewshot` writes, as the reference side of that benchmark (scripts/bench-setfit runs it).

    python bench_setfit.py MODEL_DIR ROWS [--threads 2] [--targets a,b] [--k 4,8] [--seeds 1,2]
                           [--pairs 20] [--json FILE] [--dry-run]

ROWS holds, for each target, `ROWS/<target>/test.csv` and `ROWS/<target>/k<K>-seed<S>.csv` (CSV
with the header `text,label`). For every training file kept by the filters:
- the body is all-MiniLM-L6-v2 as a SentenceTransformer built from MODEL_DIR's files:
  Transformer (max_seq_length from tokenizer.json's truncation, else 256) + mean pooling +
  Normalize, built anew for each run;
- SetFit's training with the paper's settings for this setting: `--pairs` iterations of pair
  generation (one same-label and one other-label pair per row and iteration), 1 epoch,
  batch size 16, CosineSimilarityLoss, body learning rate 2e-5 (setfit's default), then a
  scikit-learn LogisticRegression head (its defaults) on the body's vectors, seed S;
- prediction of the target's test.csv, timed apart from training (training seconds: the pairs'
  epoch and the head's fit, the model's loading left out; prediction seconds: encoding test.csv
  and the head's prediction).
Prints one line per run, then a markdown table of the runs and one of the mean per (target, K);
`--json FILE` writes {"results": [...], "versions": {...}, "threads": N, "pairs": P}.
`--dry-run` lists the runs that the filters keep and exits (standard library only, so any
python3 can run it); it and a full run exit with status 1 when no file matches.
"""
import argparse
import csv
import json
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

TRAIN_FILE = re.compile(r"^k(\d+)-seed(\d+)\.csv$")


def int_list(s):
    return [int(x) for x in s.split(",") if x] if s else None


def find_runs(rows_dir, targets, ks, seeds):
    """(target, k, seed, train path, test path) of every training file the filters keep, sorted."""
    runs = []
    for target_dir in sorted(p for p in rows_dir.iterdir() if p.is_dir()):
        target = target_dir.name
        if targets is not None and target not in targets:
            continue
        for f in target_dir.iterdir():
            m = TRAIN_FILE.match(f.name)
            if not m:
                continue
            k, seed = int(m.group(1)), int(m.group(2))
            if (ks is not None and k not in ks) or (seeds is not None and seed not in seeds):
                continue
            runs.append((target, k, seed, f, target_dir / "test.csv"))
    return sorted(runs, key=lambda r: r[:3])


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"text", "label"} <= set(reader.fieldnames):
            sys.exit(f"error: {path}: the header must be text,label (found {reader.fieldnames})")
        rows = [(r["text"], r["label"]) for r in reader]
    if not rows:
        sys.exit(f"error: {path} has no rows")
    return rows


def max_seq_length(model_dir):
    """The truncation length of MODEL_DIR's tokenizer.json (the length the project's tokenizer
    uses), else 256 (the all-MiniLM-L6-v2 sentence-transformers model's)."""
    with open(model_dir / "tokenizer.json", encoding="utf-8") as f:
        trunc = json.load(f).get("truncation") or {}
    return int(trunc.get("max_length") or 256)


def run_one(model_dir, max_len, train_rows, test_rows, seed, pairs, out_dir):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.linear_model import LogisticRegression
    from transformers import set_seed

    set_seed(seed)
    # MODEL_DIR holds config.json, model.safetensors and tokenizer.json; transformers' AutoTokenizer
    # reads tokenizer.json with BertTokenizer (config.json's model_type) without a tokenizer_config.json.
    transformer = Transformer(str(model_dir), max_seq_length=max_len)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    body = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    model = SetFitModel(model_body=body, model_head=LogisticRegression())

    classes = sorted({label for _, label in train_rows})
    index = {label: i for i, label in enumerate(classes)}
    train = Dataset.from_dict({"text": [t for t, _ in train_rows],
                               "label": [index[label] for _, label in train_rows]})
    # out_dir: a temporary folder for the trainer's output_dir (no checkpoint is saved).
    args = TrainingArguments(output_dir=str(out_dir), batch_size=16, num_epochs=1,
                             num_iterations=pairs, seed=seed, save_strategy="no",
                             logging_strategy="no", report_to="none", show_progress_bar=False)
    trainer = Trainer(model=model, args=args, train_dataset=train)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0

    texts = [t for t, _ in test_rows]
    t0 = time.perf_counter()
    pred = model.predict(texts, batch_size=32, as_numpy=True, show_progress_bar=False)
    predict_s = time.perf_counter() - t0
    # A test label absent from the training rows counts as a miss (index -1 is never predicted).
    gold = [index.get(label, -1) for _, label in test_rows]
    correct = sum(int(p) == g for p, g in zip(pred, gold))
    return correct / len(test_rows), train_s, predict_s


def versions():
    import sentence_transformers
    import setfit
    import sklearn
    import torch
    import transformers

    return {"setfit": setfit.__version__, "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit_learn": sklearn.__version__, "python": platform.python_version()}


def print_tables(results):
    print("\n| target | K | seed | accuracy % | train s | predict s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['target']} | {r['k']} | {r['seed']} | {100 * r['test']['accuracy']:.2f} "
              f"| {r['seconds']:.1f} | {r['predict_seconds']:.1f} |")
    groups = {}
    for r in results:
        groups.setdefault((r["target"], r["k"]), []).append(r)
    print("\n| target | K | seeds | mean accuracy % | sd | mean train s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for (target, k), rs in groups.items():
        acc = [100 * r["test"]["accuracy"] for r in rs]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        print(f"| {target} | {k} | {len(rs)} | {statistics.mean(acc):.2f} | {sd:.2f} "
              f"| {statistics.mean(r['seconds'] for r in rs):.1f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", type=Path)
    p.add_argument("rows", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--targets")
    p.add_argument("--k")
    p.add_argument("--seeds")
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--json")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args()

    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (args.model_dir / name).is_file():
            sys.exit(f"error: {args.model_dir / name} missing: run ./scripts/setup")
    if not args.rows.is_dir():
        sys.exit(f"error: {args.rows} is not a directory")
    targets = set(args.targets.split(",")) if args.targets else None
    runs = find_runs(args.rows, targets, int_list(args.k), int_list(args.seeds))
    if not runs:
        sys.exit(f"error: no ROWS/<target>/k<K>-seed<S>.csv in {args.rows} matches "
                 f"(targets {args.targets or 'all'}, k {args.k or 'all'}, seeds {args.seeds or 'all'})")
    missing = sorted({str(test) for *_, test in runs if not test.is_file()})
    if missing:
        sys.exit(f"error: test rows missing: {', '.join(missing)}")
    if args.dry_run:
        for target, k, seed, train, _ in runs:
            print(f"{target} k={k} seed={seed}: {train}")
        return

    import torch
    from setfit import logging as setfit_logging
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    setfit_logging.set_verbosity_error()
    hf_logging.set_verbosity_error()

    max_len = max_seq_length(args.model_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-setfit-"))
    try:
        results, tests = [], {}
        for target, k, seed, train_path, test_path in runs:
            train_rows = read_rows(train_path)
            if test_path not in tests:
                tests[test_path] = read_rows(test_path)
            test_rows = tests[test_path]
            acc, train_s, predict_s = run_one(args.model_dir, max_len, train_rows, test_rows, seed,
                                              args.pairs, work)
            print(f"== {target} K={k} seed {seed}: {len(train_rows)} training rows, accuracy "
                  f"{100 * acc:.2f} % on {len(test_rows)} test rows; train {train_s:.1f} s, "
                  f"predict {predict_s:.1f} s", flush=True)
            results.append({"target": target, "k": k, "seed": seed, "method": "setfit",
                            "test": {"accuracy": acc, "rows": len(test_rows)},
                            "train_rows": len(train_rows), "seconds": train_s,
                            "predict_seconds": predict_s})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print_tables(results)
    meta = versions()
    print(f"\n{meta}; {args.threads} threads; {args.pairs} pair iterations; max_seq_length {max_len}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "versions": meta, "threads": args.threads,
                       "pairs": args.pairs}, f, indent=2)


if __name__ == "__main__":
    main()
