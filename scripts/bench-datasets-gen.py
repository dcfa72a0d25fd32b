"""Writes the benchmark's CSV: numeric and categorical columns with some
missing values, seeded, at least MB megabytes (default 100).

    bench-datasets-gen.py OUT [MB]

Columns: f0..f7 (floats, 1% missing in f0 and f1), n (whole numbers),
color (5 categories, 1% missing), city (50 categories), label (3 classes).
"""

import sys

import numpy as np
import pandas as pd

out, megabytes = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 100.0
rng = np.random.default_rng(0)
chunk = 200_000
written, first = 0, True
colors = np.array(["red", "green", "blue", "black", "white"])
cities = np.array([f"city{i:02d}" for i in range(50)])
with open(out, "w", newline="") as f:
    while written < megabytes * 1e6:
        frame = pd.DataFrame({f"f{i}": np.round(rng.normal(i, 1 + i, chunk), 4) for i in range(8)})
        frame["n"] = rng.integers(0, 1000, chunk)
        frame["color"] = colors[rng.integers(0, 5, chunk)]
        frame["city"] = cities[rng.integers(0, 50, chunk)]
        frame["label"] = np.array(["a", "b", "c"])[rng.integers(0, 3, chunk)]
        for column in ["f0", "f1", "color"]:
            frame.loc[rng.random(chunk) < 0.01, column] = None
        text = frame.to_csv(index=False, header=first)
        f.write(text)
        written += len(text)
        first = False
print(f"{out}: {written / 1e6:.1f} MB")
