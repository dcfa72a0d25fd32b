"""`client.datasets`: upload data for training."""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import models
from ._util import query, segment

if TYPE_CHECKING:
    from .client import Client

#: Content types by file extension; anything else is sent as CSV.
_MEDIA_TYPES = {
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".parquet": "application/vnd.apache.parquet",
}
_CHUNK = 1 << 20


def _is_dataframe(value: Any) -> bool:
    # Checked by name so that pandas stays optional and is imported only by those who use it.
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_csv")


def _file_chunks(path: str | os.PathLike[str], progress: bool) -> Iterator[bytes]:
    """The file in 1 MiB pieces, with a tqdm bar when tqdm is installed and `progress`."""
    size = os.path.getsize(path)
    bar: Any = None
    if progress:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=size, unit="B", unit_scale=True, desc=os.path.basename(path))
        except ImportError:
            bar = None
    try:
        with open(path, "rb") as file:
            while piece := file.read(_CHUNK):
                if bar is not None:
                    bar.update(len(piece))
                yield piece
    finally:
        if bar is not None:
            bar.close()


class Datasets:
    """The tenant's datasets (`/v1/datasets`)."""

    def __init__(self, client: Client) -> None:
        self._t = client._transport

    def push(self, name: str, path_or_dataframe: Any, *, label: str | None = None,
             split: str | tuple[float, ...] | None = None, progress: bool = True,
             content_type: str | None = None, **options: Any) -> models.DatasetReport:
        """Uploads a file (CSV, JSON Lines, Parquet) or a pandas DataFrame as the next version of `name`.

        A DataFrame is sent as CSV without its index. A file is streamed, with a
        progress bar when tqdm is installed. `split` is `"0.8,0.1,0.1"` or a tuple;
        `options` are the other query parameters (`features`, `seed`, `stratify`,
        `missing`, `dedupe`, `normalize`, `categorical`, `preprocess`, `max_bad_rows`).
        Returns the dataset report.
        """
        params = query({"label": label, "split": split, **options})
        url = f"/v1/datasets/{segment(name)}"
        if _is_dataframe(path_or_dataframe):
            buffer = io.StringIO()
            path_or_dataframe.to_csv(buffer, index=False)
            answer = self._t.json("PUT", url, params=params, content=buffer.getvalue().encode(),
                                  headers={"content-type": "text/csv"})
        elif isinstance(path_or_dataframe, bytes):
            answer = self._t.json("PUT", url, params=params, content=path_or_dataframe,
                                  headers={"content-type": content_type or "text/csv"})
        else:
            path = os.fspath(path_or_dataframe)
            media = content_type or _MEDIA_TYPES.get(os.path.splitext(path)[1].lower(), "text/csv")
            # Streamed from disk, never held whole; read again if the upload is retried.
            answer = self._t.json("PUT", url, params=params, body=lambda: _file_chunks(path, progress),
                                  headers={"content-type": media})
        return models.DatasetReport.model_validate(answer)

    def list(self) -> builtins.list[models.DatasetSummary]:
        """The latest version of each dataset."""
        return models.DatasetList.model_validate(self._t.json("GET", "/v1/datasets")).datasets

    def get(self, name: str, version: int | None = None) -> models.DatasetReport:
        """A dataset version's report (the latest by default)."""
        answer = self._t.json("GET", f"/v1/datasets/{segment(name)}", params=query({"version": version}))
        return models.DatasetReport.model_validate(answer)

    def delete(self, name: str) -> models.Deleted:
        """Deletes every version."""
        return models.Deleted.model_validate(self._t.json("DELETE", f"/v1/datasets/{segment(name)}"))
