"""Analysis jobs in the server process: alignment and diagnostics of an adapter (asymviz.probes.alignment,
asymviz.probes.diagnostics), which load a base model and take a minute or more, too long for a script run that
any widget change interrupts.

    job = background.alignment_job(path, signature, base, task, samples, k, start=True)
    job.status(), job.fraction()         # a page polls these in an st.fragment(run_every=...)
    job.value()                          # the result frame, or raises the job's error

Each computation runs once in a server thread, one at a time, shared by every session that asks for the same
thing (same file version and settings). Finished jobs are the cache (the newest MAX_FINISHED_JOBS are kept).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from app import import_guard

MAX_FINISHED_JOBS = 64


@dataclass
class AnalysisJob:
    """One alignment or diagnostics computation in a server thread."""

    key: tuple
    label: str  # what it computes, for the progress line
    stage: str = "queued"  # queued | loading | data | subspaces | diagnostics | done | failed
    done: int = 0  # steps of the current stage done, of `total`
    total: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: object = None
    error: BaseException | None = None
    notes: list = field(default_factory=list)  # the library's warnings while it ran (e.g. a random head)
    info: dict = field(default_factory=dict)  # facts about the computation (e.g. examples used)

    @property
    def running(self) -> bool:
        return self.finished is None

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def fraction(self) -> float:
        """Rough share done: loading 0-10 %, data 10-85 %, subspaces/diagnostics 85-100 %."""
        if not self.running:
            return 1.0
        part = self.done / self.total if self.total else 0.0
        return {"queued": 0.0, "loading": 0.05, "data": 0.10 + 0.75 * part, "subspaces": 0.85 + 0.15 * part,
                "diagnostics": 0.10 + 0.90 * part}.get(self.stage, 0.0)  # fmt: skip

    def status(self) -> str:
        what = {"queued": "waiting for another computation to finish",
                "loading": "loading the base model, the adapter and the data",
                "data": f"running the sample through the model: batch {self.done} of {self.total}",
                "subspaces": f"comparing subspaces: module {self.done} of {self.total}",
                "diagnostics": f"diagnosing: module {self.done} of {self.total}",
                "done": "done", "failed": "failed"}.get(self.stage, self.stage)  # fmt: skip
        return f"{self.label}: {what} · {self.elapsed():.0f} s"

    def value(self):
        """The result; raises the job's error (show it with components.guard)."""
        if self.error is not None:
            raise self.error
        return self.result


@st.cache_resource(show_spinner=False)
def _analysis_jobs() -> dict:
    """The server's analysis jobs by key, a lock for the registry and a gate that lets one job compute."""
    return {"jobs": {}, "lock": threading.Lock(), "gate": threading.Lock()}


def _job(key: tuple, label: str, work, start: bool) -> AnalysisJob | None:
    """The job for `key` (started if `start` and it is new or failed before), or None."""
    reg = _analysis_jobs()
    with reg["lock"]:
        job = reg["jobs"].get(key)
        if not start or (job is not None and job.error is None):
            return job
        job = reg["jobs"][key] = AnalysisJob(key, label)
        finished = [k for k, j in reg["jobs"].items() if not j.running]
        for old in finished[: max(0, len(finished) - MAX_FINISHED_JOBS)]:
            del reg["jobs"][old]

    def target():
        import logging

        class Notes(logging.Handler):
            def emit(self, record):
                if record.levelno >= logging.WARNING and threading.current_thread() is worker:
                    job.notes.append(record.getMessage())

        handler = Notes()
        with reg["gate"]:
            job.started, job.stage = time.time(), "loading"
            logging.getLogger("asymviz").addHandler(handler)
            try:
                # the work imports torch; its first import must not overlap a script run (app/import_guard.py),
                # whichever page starts the job (a no-op once torch is imported, as on every page that does now)
                import_guard.import_torch()
                job.result = work(job)
                job.stage = "done"
            except BaseException as exc:  # noqa: BLE001  kept for the page to show (guard)
                job.error, job.stage = exc, "failed"
                if not isinstance(exc, Exception):
                    raise
            finally:
                job.finished = time.time()
                logging.getLogger("asymviz").removeHandler(handler)

    worker = threading.Thread(target=target, name=f"asymviz-{label}", daemon=True)
    worker.start()
    return job


def _quiet_transformers() -> None:
    from asymviz.cli.output import quiet_transformers

    quiet_transformers()


def alignment_job(path: str, signature: str, base: str, task: str, samples: int, k: int, labels: bool = True,
                  start: bool = False) -> AnalysisJob | None:  # fmt: skip
    """asymviz.probes.alignment.align on a run folder (adds its init) or a PEFT adapter folder, in the background.

    signature : the adapter file's version (uploads.choice_for), part of the key
    """
    key = ("align", path, signature, base, task, int(samples), int(k), bool(labels))

    def work(job):
        from asymviz.probes.alignment import align, load_sample

        _quiet_transformers()

        def progress(stage, done, total):
            job.stage, job.done, job.total = stage, done, total

        job.info["examples"] = len(load_sample(task, int(samples)))  # the same seeded draw as align's
        return align(path, base=base, task=task, samples=int(samples), k=int(k), labels=bool(labels),
                     progress=progress)  # fmt: skip

    return _job(key, f"alignment of {_name_of(path)}", work, start)


def diagnostics_job(path: str, signature: str, base: str, k: int = 10, eps: float = 0.5,
                    start: bool = False) -> AnalysisJob | None:  # fmt: skip
    """asymviz.probes.diagnostics.diagnose of an adapter against its base model's weights, in the background."""
    key = ("diagnose", path, signature, base, int(k), float(eps))

    def work(job):
        from asymviz.adapters import load_adapter
        from asymviz.probes.base_weights import load_base_model
        from asymviz.probes.diagnostics import diagnose

        _quiet_transformers()
        adapter = load_adapter(path)
        model = load_base_model(base, head="base")
        job.stage, job.done, job.total = "diagnostics", 0, len(adapter)

        def progress(done):
            job.done = done

        return diagnose(adapter, model, k=int(k), eps=float(eps), progress=progress)

    return _job(key, f"diagnostics of {_name_of(path)}", work, start)


def _name_of(path: str) -> str:
    """A run's or adapter's short name for progress lines: the run folder's name for a run's adapter/."""
    from asymviz.runs import run_folder_of

    run = run_folder_of(path)
    return run.name if run is not None else Path(path).name


def run_folder_of(path: str | None):
    """The run folder when `path` is a stored run's adapter/ (run.json next to it), else None."""
    from asymviz import runs

    if not path or runs.is_run_folder(path):
        return None
    return runs.run_folder_of(path)
