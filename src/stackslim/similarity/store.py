"""`SampleStore`: every sample of the `dataset` estimator, spilled to a temporary file.

Exact Gram-space CKA and mutual kNN need all n samples (n, S, D) at the end. Holding them in
memory made `stackslim analyze`'s default mode grow with the data set (issue #9); here they are
appended to a file, chunk by chunk, and read back in row blocks by `allpairs.gram_pass`, so the
memory is bounded by the batch, the model and CHUNK_BYTES. Same interface as the other
accumulators (`update`, `merge`, `all_reduce`, `state_dict`); see `accumulators`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from .accumulators import _Accumulator
from .allpairs import CHUNK_BYTES, F64, cka_from_inner, gram_pass, knn_overlap_matrix
from .distributed import all_gather_objects, all_reduce_max_int, is_distributed
from ..results import writing
from .config import SimilarityError


class _SampleFile:
    """A growing file of float64 rows in its own temporary folder (under $TMPDIR), removed by
    `close()` or when the object is garbage-collected. Plain reads and writes at row offsets,
    not a memory map: mapped pages would count as the process's resident memory."""

    def __init__(self, row_bytes: int, source: str | os.PathLike | None = None, rows: int = 0):
        tmp = tempfile.TemporaryDirectory(prefix="stackslim-samples-")
        self.path, self.row_bytes = Path(tmp.name) / "samples.f64", row_bytes
        if source is not None:  # resume: the first `rows` rows of a saved copy
            shutil.copyfile(source, self.path)
            if self.path.stat().st_size < rows * row_bytes:
                tmp.cleanup()
                raise SimilarityError(f"saved samples {source} hold fewer than {rows} rows")
            os.truncate(self.path, rows * row_bytes)
        self.fh = open(self.path, "r+b" if source is not None else "w+b")
        self.close = weakref.finalize(self, _close_file, self.fh, tmp)

    def write(self, x: torch.Tensor, row: int) -> None:
        """Write rows x (r, ...) at row offset `row`; the file grows as needed. A full disk
        ($TMPDIR) raises OutputError naming the file, here rather than at a later read."""
        with writing(self.path):
            self.fh.seek(row * self.row_bytes)
            self.fh.write(np.ascontiguousarray(x.detach().to("cpu", F64).numpy()).data)
            self.fh.flush()

    def read_into(self, a0: int, out: np.ndarray) -> None:
        """Fill the C-contiguous float64 array out (r, ...) with rows a0..a0+r-1."""
        self.fh.seek(a0 * self.row_bytes)
        if out.size and self.fh.readinto(out.data.cast("B")) != out.nbytes:
            raise SimilarityError(f"sample file {self.path} ends before row {a0 + len(out)}")

    def export(self, path: str, done: int, rows: int) -> None:
        """Make `path` hold rows 0..rows-1: append rows done.. to it, or (done=0) copy all."""
        self.fh.flush()
        if done == 0:
            tmp = path + ".tmp"
            try:
                with writing(path):
                    shutil.copyfile(self.path, tmp)
                    os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
            return
        with writing(path), open(path, "r+b") as out:
            out.truncate(done * self.row_bytes)  # drop a partial tail of an interrupted append
            out.seek(done * self.row_bytes)
            self.fh.seek(done * self.row_bytes)
            shutil.copyfileobj(self.fh, out)


def _close_file(fh: IO[bytes], tmp: tempfile.TemporaryDirectory) -> None:
    try:
        fh.close()
    except OSError:  # rows a full disk refused are still buffered: they go with the file
        pass
    tmp.cleanup()


class SampleStore(_Accumulator):
    """Every sample (n, S, D) float64 in a temporary file; exact Gram-space CKA and mutual kNN at
    the end, from the file read back in row blocks (`allpairs.gram_pass`).

    The file (row-major (n, S, D) float64, `_SampleFile`) is created on the first sample, grows
    by one append per chunk and is removed by `close()` or garbage collection; it never lies in
    the output folder. Memory: nothing per sample; the final pass works within CHUNK_BYTES plus
    (S, n, k) neighbour indices. `store[a0:a1]` reads rows a0..a1-1, an (r, S, D) tensor on the
    device of the samples given.
    """

    def __init__(self, num_states: int):
        super().__init__(num_states)
        self.dim: int | None = None
        self.device = torch.device("cpu")  # where the final pass runs: the samples' device
        self._file: _SampleFile | None = None
        self._exported: tuple[str, int] | None = None  # (path, rows) of the last `state_dict` file

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.n, self.num_states, self.dim or 0

    def _row_bytes(self) -> int:
        return 8 * self.num_states * (self.dim or 0)

    def __getitem__(self, rows: slice) -> torch.Tensor:
        a0, a1, stride = rows.indices(self.n)
        if stride != 1:
            raise SimilarityError("a sample store is read in contiguous row ranges")
        out = torch.empty(max(0, a1 - a0), self.num_states, self.dim or 0, dtype=F64)
        return self.read_into(a0, out).to(self.device)

    def read_into(self, a0: int, out: torch.Tensor) -> torch.Tensor:
        """Fill out (r, S, D) float64 with rows a0..a0+r-1 and return it (no allocation when
        out is a contiguous CPU tensor: `gram_pass` reuses one buffer for every block)."""
        if self._file is None:
            raise SimilarityError("no samples seen (or the store was closed)")
        if out.device.type == "cpu" and out.is_contiguous():
            self._file.read_into(a0, out.numpy())
        else:
            out.copy_(self[a0:a0 + out.shape[0]])
        return out

    def _spans(self) -> list[tuple[int, int]]:
        """Row ranges of about CHUNK_BYTES each, covering the store."""
        step = max(1, CHUNK_BYTES // max(1, self._row_bytes()))
        return [(a, min(self.n, a + step)) for a in range(0, self.n, step)]

    def update(self, x: torch.Tensor) -> None:
        self._check_chunk(x)
        if self.dim is not None and x.shape[2] != self.dim:
            raise SimilarityError(f"feature size changed from {self.dim} to {x.shape[2]}")
        if self.dim is None:
            self.dim, self.device = int(x.shape[2]), x.device
        if self._file is None:
            self._file = _SampleFile(self._row_bytes())
        self._file.write(x, self.n)
        self.n += x.shape[0]

    def merge(self, other: "SampleStore") -> None:
        self._check_other(other)
        for a0, a1 in other._spans():
            self.update(other[a0:a1])

    def all_reduce(self) -> None:
        """Every process ends with all samples in its file, rank 0's rows first.

        Rows travel in rounds of one block per process (about CHUNK_BYTES in all), each written
        at its final row offset, so no process holds the whole data set in memory.
        """
        self._check_open("all_reduce")
        if is_distributed():
            counts = [int(c) for c in all_gather_objects(self.n)]
            self.dim = all_reduce_max_int(self.dim or 0)
            new = _SampleFile(self._row_bytes())
            starts = [sum(counts[:p]) for p in range(len(counts))]
            step = max(1, CHUNK_BYTES // max(1, self._row_bytes() * len(counts)))
            for a0 in range(0, max(counts), step):
                mine = self[a0:a0 + step].cpu() if a0 < self.n else None
                for p, part in enumerate(all_gather_objects(mine)):
                    if part is not None:
                        new.write(part, starts[p] + a0)
            self.close()
            self._file, self.n = new, sum(counts)
        self.reduced = True

    def compute(self, cka: bool = True, k: int | None = None, weights: torch.Tensor | None = None,
                knn_center: bool = False) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """CKA matrix (S, S) and/or mutual-kNN overlap counts (S, S), from one blocked Gram pass.

        Args:
            cka: compute the biased linear CKA matrix.
            k: if given, the summed kNN overlaps sum_a |N_i(a) ∩ N_j(a)| (divide by n k).
            weights: optional (S, D) per-channel factors applied to the samples as they are read.
            knn_center: kNN of column-centred rows instead of the raw rows (the reference).
        """
        if not self.n:
            raise SimilarityError("no samples seen: call update() first")
        if cka and self.n < 2:
            raise SimilarityError(f"linear CKA needs at least 2 samples, got {self.n}")
        A, idx = gram_pass(self, cka=cka, k=k, weights=weights, knn_center=knn_center)
        return (cka_from_inner(A) if cka else None), (knn_overlap_matrix(idx) if k else None)

    def close(self) -> None:
        """Remove the sample file (the store is empty afterwards)."""
        if self._file is not None:
            self._file.close()
        self._file, self._exported = None, None

    def state_dict(self, samples_file: str | os.PathLike | None = None) -> dict[str, Any]:
        """Everything to resume. The samples are in it as one (n, S, D) tensor (memory n S D), or,
        with `samples_file`, copied to that file, which the dict names: a later call with the
        same file only appends the rows added since (checkpoints stay O(new rows))."""
        sd = {"num_states": self.num_states, "n": self.n, "reduced": self.reduced, "dim": self.dim,
              "data": None, "file": None}
        if samples_file is None:
            sd["data"] = self[:].cpu() if self.n else None
        elif self.n:
            path = str(samples_file)
            last = self._exported
            same = last and last[0] == path and os.path.exists(path)
            done = last[1] if same and os.path.getsize(path) >= last[1] * self._row_bytes() else 0
            self._file.export(path, done, self.n)
            self._exported, sd["file"] = (path, self.n), path
        return sd

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.close()
        self.num_states, self.n, self.reduced, self.dim = sd["num_states"], sd["n"], sd["reduced"], sd["dim"]
        self.device = torch.device("cpu")
        if sd.get("file"):
            self._file = _SampleFile(self._row_bytes(), source=sd["file"], rows=self.n)
            self._exported = (sd["file"], self.n)  # the next checkpoint appends to it
        elif sd["data"] is not None:
            self._file = _SampleFile(self._row_bytes())
            self._file.write(sd["data"], 0)
