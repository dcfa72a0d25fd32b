"""Writes the example datasets under examples/datasets/ (run by make-datasets.sh).

- wine.csv, wine.parquet, digits.csv, digits.parquet: scikit-learn's wine
  (178 rows, 13 features, 3 classes) and digits (1797 rows, 64 pixels, 10
  classes), which ship inside the sklearn package: nothing is downloaded.
- dirty.csv: a deliberately dirty CSV (a BOM, quoted fields with commas,
  newlines and doubled quotes, missing values, a repeated row, and one bad
  row of each kind a CSV can have), and dirty.expected.json: the report muon
  must answer for it with the options in its "query", computed here from the
  rows as this script wrote them (the statistics with pandas), not by muon.
  The unit test `datasets::tests::the_dirty_csv_gives_its_expected_report`
  reads both.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits, load_wine

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/datasets")

# Every row of dirty.csv: (raw text, what muon must make of it). A kept row
# gives its values; a bad row its kind. Line numbers follow from the text.
GOOD = "good"
ROWS = [
    ("5.1,3.5,red,setosa,plain", (5.1, 3.5, "red", "setosa")),
    ('4.9,3.0,blue,setosa,"has, a comma"', (4.9, 3.0, "blue", "setosa")),
    ('6.2,,red,versicolor,"spans\ntwo lines"', (6.2, None, "red", "versicolor")),
    ("5.9,3.0,green,virginica,ok", (5.9, 3.0, "green", "virginica")),
    ("5.1,3.5,red,setosa,again", (5.1, 3.5, "red", "setosa")),  # a repeat (notes are not selected)
    ("6.3,2.9,blue", "ragged"),
    ("abc,3.1,red,setosa,x", "unparsable_number"),
    (b"5.0,3.4,\xff\xfe,setosa,x", "invalid_utf8"),
    ("5.5,2.4,red,,x", "missing_label"),
    ("6.0,NA,green,versicolor,x", (6.0, None, "green", "versicolor")),
    ('7.2,3.6,blue,virginica,"say ""hi"""', (7.2, 3.6, "blue", "virginica")),
    ("6.7,3.1,,versicolor,x", (6.7, 3.1, None, "versicolor")),
    ('5.6,2.8",red,virginica,x', "broken_quoting"),
    ("5.8,2.7,red,virginica,x", (5.8, 2.7, "red", "virginica")),
    ("1e999,2.7,red,virginica,x", "unparsable_number"),
    ('  6.4 ,"3.2",blue,setosa,spaces', (6.4, 3.2, "blue", "setosa")),
    ("4.8,3.4,green,setosa,x", (4.8, 3.4, "green", "setosa")),
    ("6.9,3.1,red,virginica,x", (6.9, 3.1, "red", "virginica")),
    # Last: an unclosed quote swallows the rest of the file.
    ('4.4,"2.9,blue,setosa,x\n6.1,2.8,red,versicolor,x', "broken_quoting"),
]
QUERY = "label=species&features=length,width,color&categorical=color,species&missing=mean&dedupe=true&max_bad_rows=10&split=1,0"


def dirty():
    data = b"\xef\xbb\xbflength,width,color,species,notes\n"
    line = 2
    bad, kept = [], []
    for text, outcome in ROWS:
        raw = text if isinstance(text, bytes) else text.encode()
        if isinstance(outcome, str):
            bad.append({"line": line, "kind": outcome})
        else:
            kept.append(outcome)
        data += raw + b"\n"
        line += raw.count(b"\n") + 1
    (OUT / "dirty.csv").write_bytes(data)

    frame = pd.DataFrame(kept, columns=["length", "width", "color", "species"])
    missing = {c: int(frame[c].isna().sum()) for c in ["length", "width", "color"]}
    before = len(frame)
    frame = frame.drop_duplicates(keep="first").reset_index(drop=True)
    deduplicated = before - len(frame)
    # missing=mean with split=1,0: the train split is every kept row.
    imputed = {c: float(frame[c].mean()) for c in ["length", "width"] if missing[c]}
    counts = frame["color"].value_counts()
    mode = sorted(counts[counts == counts.max()].index)[0]
    frame = frame.fillna({**imputed, "color": mode})
    columns = {}
    for c in ["length", "width"]:
        values = frame[c].to_numpy(dtype=np.float64)
        columns[c] = {
            "missing": missing[c],
            "count": int(values.size),
            "min": float(values.min()),
            "max": float(values.max()),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)),
            "distinct": int(np.unique(values).size),
        }
        if c in imputed:
            columns[c]["imputed"] = imputed[c]
    columns["color"] = {"missing": missing["color"], "imputed_category": mode, "categories": sorted(frame["color"].unique())}
    expected = {
        "query": QUERY,
        "rows": {
            "read": len(ROWS),
            "kept": len(frame),
            "dropped_bad": len(bad),
            "dropped_missing": 0,
            "deduplicated": deduplicated,
        },
        "bad_rows": bad,
        "columns": columns,
        "label": {k: int(v) for k, v in sorted(frame["species"].value_counts().items())},
    }
    (OUT / "dirty.expected.json").write_text(json.dumps(expected, indent=2) + "\n")


def examples():
    for name, loader in [("wine", load_wine), ("digits", load_digits)]:
        frame = loader(as_frame=True).frame
        frame.to_csv(OUT / f"{name}.csv", index=False)
        frame.to_parquet(OUT / f"{name}.parquet", index=False, compression="snappy")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    dirty()
    examples()
    for path in sorted(OUT.iterdir()):
        print(f"{path} {path.stat().st_size} bytes")
