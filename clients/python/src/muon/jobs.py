"""`client.jobs`: training jobs, their event stream and their report."""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from . import models
from ._util import segment

if TYPE_CHECKING:
    from .client import Client

#: A job in one of these states is over.
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

#: An event of the stream: an epoch of a trial, a trial's state or the job's state.
Event = models.JobEvent1 | models.JobEvent2 | models.JobEvent3


def _sse_messages(response: httpx.Response) -> Iterator[tuple[int | None, str]]:
    """`(id, data)` of each Server-Sent Event (https://html.spec.whatwg.org/#event-stream-interpretation)."""
    event_id: int | None = None
    data: builtins.list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event_id, "\n".join(data)
            data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "id" and value.isdigit():
            event_id = int(value)
    if data:
        yield event_id, "\n".join(data)


class Job:
    """A submitted job: follow its events, wait for it, read its report and model."""

    def __init__(self, client: Client, id: str) -> None:
        self._t = client._transport
        self.id = id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def get(self) -> models.Job:
        """The job now: its state, its trials and the best so far."""
        return models.Job.model_validate(self._t.json("GET", f"/v1/jobs/{segment(self.id)}"))

    @property
    def state(self) -> str:
        return str(self.get().state.value)

    def follow(self, *, progress: bool = False, reconnects: int = 5) -> Iterator[Event]:
        """Yields the job's events from the start until it is over.

        A dropped stream is resumed with `Last-Event-ID`, so no event is missed or
        repeated (up to `reconnects` times). With `progress` and tqdm installed, a
        bar counts the epochs of every trial.
        """
        bar: Any = None
        if progress:
            try:
                from tqdm.auto import tqdm
                spec = self.get().spec
                bar = tqdm(unit="epoch", desc=f"job {self.id}", total=spec.epochs)
            except ImportError:
                bar = None
        last: int | None = None
        try:
            for _ in range(reconnects + 1):
                headers = {} if last is None else {"last-event-id": str(last)}
                try:
                    with self._t.stream("GET", f"/v1/jobs/{segment(self.id)}/events", headers=headers,
                                        timeout=httpx.Timeout(30.0, read=None)) as response:
                        for event_id, data in _sse_messages(response):
                            last = event_id if event_id is not None else last
                            event = models.JobEvent.model_validate(json.loads(data)).root
                            if bar is not None and isinstance(event, models.JobEvent1):
                                bar.update(1)
                            yield event
                            if isinstance(event, models.JobEvent3) and event.state.value in FINAL_STATES:
                                return
                except httpx.TransportError:
                    pass
                # The stream ends with the job; make sure before giving up.
                if self.state in FINAL_STATES:
                    return
        finally:
            if bar is not None:
                bar.close()

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> models.Job:
        """Waits until the job is over and returns it; `TimeoutError` after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get()
            if job.state.value in FINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {job.state.value} after {timeout} s")
            time.sleep(poll)

    def report_model(self) -> models.JobReport:
        """The report as the generated model: curves, best hyper-parameters, test figures, cost."""
        return models.JobReport.model_validate(self._t.json("GET", f"/v1/jobs/{segment(self.id)}/report"))

    def report(self) -> Any:
        """The curves as a pandas DataFrame (a row per trial and epoch, a column per metric)
        when pandas is installed, else the report as JSON (a dict)."""
        report = self.report_model()
        try:
            import pandas as pd
        except ImportError:
            return report.model_dump(mode="json")
        rows: builtins.list[dict[str, Any]] = []
        for trial in report.trials:
            epochs = max((len(v) for v in trial.curves.values()), default=0)
            for epoch in range(epochs):
                row: dict[str, Any] = {"trial": trial.trial, "epoch": epoch + 1}
                for metric, values in trial.curves.items():
                    row[metric] = values[epoch] if epoch < len(values) else None
                rows.append(row)
        return pd.DataFrame(rows)

    @property
    def model(self) -> models.ExportedModel | None:
        """The model version the job exported (its spec's `export`), once it succeeded."""
        return self.report_model().exported

    def cancel(self) -> models.Job:
        return models.Job.model_validate(self._t.json("POST", f"/v1/jobs/{segment(self.id)}/cancel"))


class Jobs:
    """The tenant's training jobs (`/v1/jobs`)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._t = client._transport

    def run(self, spec: Mapping[str, Any] | models.JobSpec) -> Job:
        """Submits a job (the spec as a dict or a `models.JobSpec`) and returns it without waiting."""
        body = spec.model_dump(mode="json", exclude_none=True) if isinstance(spec, models.JobSpec) else dict(spec)
        created = models.JobCreated.model_validate(self._t.json("POST", "/v1/jobs", json=body))
        return Job(self._client, created.id)

    def get(self, id: str) -> Job:
        """A handle on an existing job."""
        return Job(self._client, id)

    def list(self) -> builtins.list[models.JobSummary]:
        return models.JobList.model_validate(self._t.json("GET", "/v1/jobs")).jobs
