"""The quickstart of clients/python/README.md, as a script (MUON_URL, MUON_API_KEY, MUON_GUESTS)."""

import os
import muon, pandas as pd

client = muon.Client(os.environ.get("MUON_URL", "http://127.0.0.1:8080"))  # the key from MUON_API_KEY
guests = os.environ.get("MUON_GUESTS", "target/wasm32-wasip2/guest")
client.functions.deploy("hello", f"{guests}/hello.wasm")
print(client.functions.call("hello", params={"name": "muon"}).text, end="")  # hello, muon!
client.functions.deploy("train-linear", f"{guests}/train_linear.wasm")
data = pd.DataFrame({"x": [i / 100 for i in range(200)], "y": [3 * i / 100 + 1 for i in range(200)]})
client.datasets.push("line", data, label="y", split="0.8,0.1,0.1")
job = client.jobs.run({"function": "train-linear", "dataset": "line", "epochs": 20, "config": {"features": 1}})
print(job.wait().state.value, job.report().tail(1), sep="\n")  # succeeded, then the last epoch
