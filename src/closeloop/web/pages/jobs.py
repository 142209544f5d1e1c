"""Long actions (bill run, reconciliation run, CRM import) run in the background with a progress page.

A page starts one with :func:`start_job` from its form POST (CSRF already checked) and redirects to
``/jobs/{id}``: the page shows what runs, since when, the expected amount of work when a preview
knows it, and the result or the refusal once done. Without JavaScript it refreshes itself every
second (``<noscript>`` meta refresh); with it, ``app.js`` polls ``/jobs/{id}.json`` and reloads
when the job ends. The command runs as the signed-in user (same roles, scope and audit as any
other command). Jobs live in the server process (the last 200), visible only to the user who
started them. They run on a small fixed pool of worker threads (queued when both are busy), so
the database connections they use (one per thread) stay bounded.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from closeloop.auth.authorizer import current_principal
from closeloop.core.errors import CloseloopError, NotFoundError
from closeloop.web.kit import closeloop, page, render, require

nav: list[Any] = []
router = APIRouter()
KEEP = 200
WORKERS = 2


@dataclass
class Job:
    id: str
    owner: str
    title: str
    operation: str
    payload: dict[str, Any]
    back: str
    expected: str = ""  # what the preview says will be done ("12 invoices to issue")
    status: str = "queued"  # queued, running, done, failed
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def elapsed(self) -> float:
        return round((self.finished or time.monotonic()) - self.started, 1)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "operation": self.operation, "status": self.status,
                "started_at": self.started_at, "elapsed_seconds": self.elapsed, "expected": self.expected,
                "result": self.result, "error": self.error}


_SETUP = threading.Lock()


def _jobs(request: Request) -> tuple[OrderedDict[str, Job], threading.Lock]:
    state = request.app.state
    with _SETUP:
        if not hasattr(state, "web_jobs"):
            state.web_jobs_lock = threading.Lock()
            state.web_jobs_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="web-job")
            state.web_jobs = OrderedDict()
    return state.web_jobs, state.web_jobs_lock


def start_job(request: Request, title: str, operation: str, payload: dict[str, Any], *, back: str,
              expected: str = "") -> RedirectResponse:
    """Run ``operation`` with ``payload`` as the signed-in user in a background thread; go to its page.
    A user without a role for it is refused at once (through the command itself, so the denial is audited)."""
    user = request.state.user
    require(request, operation, payload)
    cl = closeloop(request)
    job = Job(id=secrets.token_urlsafe(12), owner=user.name, title=title, operation=operation, payload=payload,
              back=back, expected=expected)
    jobs, lock = _jobs(request)
    with lock:
        jobs[job.id] = job
        while len(jobs) > KEEP:
            jobs.popitem(last=False)

    def work() -> None:
        token = current_principal.set(user)
        job.status, job.started = "running", time.monotonic()
        try:
            job.result = cl.do(operation, payload, actor=user.name)
            job.status = "done"
        except CloseloopError as err:
            job.error, job.status = err.to_dict(), "failed"
        except Exception as exc:  # noqa: BLE001 - shown on the job page instead of vanishing with the thread
            job.error, job.status = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}",
                                     "details": {}}, "failed"
        finally:
            job.finished = time.monotonic()
            current_principal.reset(token)

    request.app.state.web_jobs_pool.submit(work)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def _job(request: Request, job_id: str) -> Job:
    jobs, lock = _jobs(request)
    with lock:
        job = jobs.get(job_id)
    if job is None or job.owner != request.state.user.name:
        raise NotFoundError(f"job {job_id} does not exist (or was started by someone else)", field="job",
                            record=job_id)
    return job


@router.get("/jobs/{job_id}.json")
@page
def job_status(request: Request, job_id: str) -> Response:
    return JSONResponse(_job(request, job_id).public())


@router.get("/jobs/{job_id}")
@page
def job_page(request: Request, job_id: str) -> Response:
    return render(request, "job.html", job=_job(request, job_id))
