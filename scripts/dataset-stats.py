"""The statistics of a dataset report, computed independently with pandas and
numpy from the same file, printed as JSON; the HTTP tests compare muon's
report with it (within 1e-9 relative).

    dataset-stats.py FILE [--format csv|jsonl|parquet] [--label COLUMN]
                     [--features a,b] [--categorical a,b] [--missing drop|error]
                     [--dedupe]

For a file without bad rows. Prints {"rows": kept rows, "columns": {name:
{"missing", "count", "min", "max", "mean", "std", "distinct"}}} for numeric
columns and {"missing", "categories", "distinct"} for categorical ones, with
the report's conventions: missing values as pandas' read_csv reads them,
statistics over the kept rows (after missing=drop and dedupe), the sample
standard deviation (ddof 1), distinct counts capped at 10,000, categories
in numeric order when all are numbers, else lexical. missing=mean|median fill
from the train split, which depends on the seed: compare those with split=1,0
and fill here yourself.
"""

import argparse
import json

import numpy as np
import pandas as pd

DISTINCT_BOUND = 10_000


def read(path, fmt):
    if fmt == "csv":
        return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=True)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_parquet(path)


def category_order(values):
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--format", default=None, choices=["csv", "jsonl", "parquet"])
    parser.add_argument("--label")
    parser.add_argument("--features")
    parser.add_argument("--categorical", default="")
    parser.add_argument("--missing", default="error", choices=["drop", "error"])
    parser.add_argument("--dedupe", action="store_true")
    args = parser.parse_args()
    fmt = args.format or {"jsonl": "jsonl", "ndjson": "jsonl", "parquet": "parquet"}.get(args.file.rsplit(".", 1)[-1], "csv")
    frame = read(args.file, fmt)
    categorical = [c for c in args.categorical.split(",") if c]
    features = args.features.split(",") if args.features else [c for c in frame.columns if c != args.label]
    selected = features + ([args.label] if args.label else [])
    frame = frame[selected]
    for column in selected:
        if column in categorical:
            # Categories are texts; numbers written as JSON or Parquet numbers print like muon prints them.
            frame[column] = frame[column].map(lambda v: v if pd.isna(v) else (str(v).strip() if isinstance(v, str) else ("%d" % v if float(v).is_integer() else repr(float(v)))))
        else:
            frame[column] = pd.to_numeric(frame[column], errors="raise").astype(np.float64)
    missing = {c: int(frame[c].isna().sum()) for c in selected}
    if args.missing == "drop":
        frame = frame.dropna(subset=features)
    elif any(missing[c] for c in features):
        raise SystemExit("missing values with --missing error")
    if args.dedupe:
        frame = frame.drop_duplicates(keep="first")
    columns = {}
    for column in selected:
        values = frame[column]
        if column in categorical:
            categories = category_order(values.dropna().unique().tolist())
            columns[column] = {"missing": missing[column], "categories": categories, "distinct": len(categories)}
        else:
            array = values.to_numpy(dtype=np.float64)
            distinct = min(int(np.unique(array + 0.0).size), DISTINCT_BOUND)
            columns[column] = {
                "missing": missing[column],
                "count": int(array.size),
                "min": float(array.min()),
                "max": float(array.max()),
                "mean": float(array.mean()),
                "std": float(array.std(ddof=1)) if array.size > 1 else None,
                "distinct": distinct,
            }
    print(json.dumps({"rows": int(len(frame)), "columns": columns}, indent=2))


if __name__ == "__main__":
    main()
