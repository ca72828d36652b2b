"""The digest job run inline, as `senddigests` and the benchmark run it: plan, then send every chunk here.

With `processes` > 1 the chunks are shared among that many forked processes, each with its own database connection,
pool and renderer: on one small server that is what a Celery worker's concurrency would give, without a broker.
"""

import multiprocessing

from django.db import connections

from digest import compose, planning, recovery, sending
from digest.rendering import DigestRenderer

_process_state = {}


def run_digests(now, *, day=None, ignore_hour=False, processes=1, on_progress=None):
    """Send again what earlier runs left behind (recovery.recover), then plan and send everyone due.

    Returns (run, planned ids, Outcome of the run, Outcome of what was sent again for earlier runs)."""
    pool, renderer = compose.get_pool(now), DigestRenderer()
    recovered = sending.Outcome()
    for run_id, chunk in recovery.recover(now):
        recovered.add(sending.send_with_retries(chunk, run_id=run_id, now=now, pool=pool, renderer=renderer))
    run = planning.start_run(now)
    ids = planning.plan_deliveries(now, run, day=day, ignore_hour=ignore_hour)
    chunks = planning.chunks(ids)
    total = sending.Outcome()
    progress = on_progress or (lambda count: None)
    if processes <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            total.add(sending.send_with_retries(chunk, run_id=run.id, now=now, pool=pool, renderer=renderer))
            progress(len(chunk))
        return run, ids, total, recovered
    # The pool's embeddings, loaded (or computed and stored) once here rather than in every forked process.
    pool.warm()
    # A forked process must not reuse its parent's database connection: close them so each opens its own.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    with context.Pool(processes, initializer=_start_process, initargs=(now,)) as workers:
        for size, outcome in workers.imap_unordered(_send_chunk, [(chunk, run.id, now) for chunk in chunks]):
            total.add(outcome)
            progress(size)
    return run, ids, total, recovered


def _start_process(now):
    _process_state["pool"] = compose.get_pool(now)
    _process_state["renderer"] = DigestRenderer()


def _send_chunk(arguments):
    chunk, run_id, now = arguments
    state = _process_state
    outcome = sending.send_with_retries(chunk, run_id=run_id, now=now, pool=state["pool"], renderer=state["renderer"])
    return len(chunk), outcome
