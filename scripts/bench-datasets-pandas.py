"""The pandas side of scripts/bench-datasets.sh: the work a data person
would script instead of uploading to muon, on the same file and options:
read_csv, dropna, describe, a seeded 0.8/0.1/0.1 split, z-score of the
numeric features with the train split's mean and std, one-hot categorical
features, class indices for the label, to_parquet. Prints one JSON line:
seconds, MB/s and peak memory (the process's max RSS).

    bench-datasets-pandas.py CSV OUT_PARQUET
"""

import json
import os
import resource
import sys
import time

import numpy as np
import pandas as pd

path, out = sys.argv[1], sys.argv[2]
start = time.perf_counter()
frame = pd.read_csv(path)
frame = frame.dropna()
described = frame.describe(include="all")
order = np.random.default_rng(0).permutation(len(frame))
train_rows, validation_rows = int(len(frame) * 0.8), int(len(frame) * 0.1)
split = np.empty(len(frame), dtype=np.int8)
split[order[:train_rows]] = 0
split[order[train_rows : train_rows + validation_rows]] = 1
split[order[train_rows + validation_rows :]] = 2
numeric = [c for c in frame.columns if c not in ("color", "city", "label")]
train = frame.iloc[order[:train_rows]]
frame[numeric] = (frame[numeric] - train[numeric].mean()) / train[numeric].std()
frame = pd.get_dummies(frame, columns=["color", "city"], dtype="float64")
frame["label"] = frame["label"].astype("category").cat.codes.astype("int64")
frame["split"] = split
frame.sort_values("split", kind="stable").to_parquet(out, index=False, compression="snappy")
seconds = time.perf_counter() - start
megabytes = os.path.getsize(path) / 1e6
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"tool": "pandas", "rows": len(frame), "seconds": seconds, "mb_per_s": megabytes / seconds, "peak_mb": peak}))
