"""Processes the benchmarks start in a session of their own (gunicorn, a Celery worker and its pool)."""

import os
import signal
import subprocess


def stop_group(process, timeout):
    """Stop `process` and every process it started: SIGTERM, then SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
