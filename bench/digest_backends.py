"""Mail ends for bench/digest_bench.py: a counting Django backend and a counting in-process SMTP server.

`CountingBackend` pays what a real backend pays to turn an EmailMessage into bytes (`message().as_bytes()`), counts,
and throws the bytes away, so memory does not grow with the number of messages (unlike locmem's outbox).
`start_smtp_server` runs aiosmtpd's Controller on 127.0.0.1 in a thread of this process with a handler that counts
messages and discards them. The thread shares the GIL (and the machine's cores) with the code being measured;
`start_smtp_process` runs the same server in a child process instead (its own GIL, the same two cores).
"""

import multiprocessing
import socket
import threading
import time

from django.core.mail.backends.base import BaseEmailBackend


class _SharedTotals:
    """Totals in shared memory, so processes forked for `--processes` add to the same counts as the parent."""

    def __init__(self):
        self.lock = multiprocessing.Lock()
        self._messages = multiprocessing.Value("q", 0, lock=False)
        self._bytes = multiprocessing.Value("q", 0, lock=False)
        self._seconds = multiprocessing.Value("d", 0.0, lock=False)

    def add(self, messages, size, seconds):
        with self.lock:
            self._messages.value += messages
            self._bytes.value += size
            self._seconds.value += seconds

    def reset(self):
        with self.lock:
            self._messages.value, self._bytes.value, self._seconds.value = 0, 0, 0.0

    def snapshot(self):
        with self.lock:
            return {"messages": self._messages.value, "bytes": self._bytes.value, "seconds": self._seconds.value}


# Totals shared by every counting backend instance (send_deliveries makes a new connection per chunk).
Counter = _SharedTotals()


class CountingBackend(BaseEmailBackend):
    """Serialises every message as a real backend would (`message().as_bytes()`), counts it, discards it."""

    def send_messages(self, email_messages):
        started = time.perf_counter()
        count = size = 0
        for message in email_messages:
            if not message.recipients():
                continue
            size += len(message.message().as_bytes(linesep="\r\n"))
            count += 1
        Counter.add(count, size, time.perf_counter() - started)
        return count


class CountingHandler:
    """aiosmtpd handler: accept every message, count it and its size, keep nothing."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = 0
        self.bytes = 0

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages += 1
            self.bytes += len(envelope.original_content or envelope.content or b"")
        return "250 OK"

    def snapshot(self):
        with self.lock:
            return {"messages": self.messages, "bytes": self.bytes}

    def reset(self):
        with self.lock:
            self.messages = self.bytes = 0


class SharedCountingHandler:
    """The same, counting into shared memory, for a server in another process."""

    def __init__(self, messages, size):
        self.messages, self.size = messages, size

    async def handle_DATA(self, server, session, envelope):
        with self.messages.get_lock():
            self.messages.value += 1
            self.size.value += len(envelope.original_content or envelope.content or b"")
        return "250 OK"


class ProcessServer:
    """A counting aiosmtpd server in a child process (its own GIL; the machine's cores are still shared)."""

    def __init__(self):
        import multiprocessing

        context = multiprocessing.get_context("fork")  # before Django is set up: nothing to inherit but this module
        self.messages, self.size = context.Value("q", 0), context.Value("q", 0)
        self.ready, self.stopping = context.Event(), context.Event()
        self.port = free_port()
        self.process = context.Process(
            target=_serve, args=(self.port, self.messages, self.size, self.ready, self.stopping), daemon=True
        )
        self.process.start()
        if not self.ready.wait(30):
            raise RuntimeError("the SMTP server process did not start")

    def stop(self):
        self.stopping.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()

    def snapshot(self):
        return {"messages": self.messages.value, "bytes": self.size.value}

    def reset(self):
        with self.messages.get_lock():
            self.messages.value = self.size.value = 0


def _serve(port, messages, size, ready, stopping):
    from aiosmtpd.controller import Controller

    controller = Controller(
        SharedCountingHandler(messages, size), hostname="127.0.0.1", port=port, data_size_limit=64 * 1024 * 1024
    )
    controller.start()
    ready.set()
    stopping.wait()
    controller.stop()


def start_smtp_process():
    """(server, server) for a counting SMTP server in a child process; server.port is where it listens."""
    server = ProcessServer()
    return server, server


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_smtp_server():
    """(controller, handler) for a running counting SMTP server on 127.0.0.1; controller.port is where it listens."""
    from aiosmtpd.controller import Controller

    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), data_size_limit=64 * 1024 * 1024)
    controller.start()
    return controller, handler


def _esp_backend_class():
    from anymail.backends.test import EmailBackend as AnymailTestBackend
    from django.core import mail

    class CountingEspBackend(AnymailTestBackend):
        """Anymail's test backend (an ESP without the network: it builds the provider's payload, no MIME), counting
        and then forgetting what it was given so memory does not grow."""

        def send_messages(self, email_messages):
            started = time.perf_counter()
            sent = super().send_messages(email_messages)
            size = sum(
                len(message.body) + sum(len(part) for part, _type in message.alternatives) for message in email_messages
            )
            mail.outbox.clear()
            Counter.add(sent, size, time.perf_counter() - started)
            return sent

    return CountingEspBackend


def __getattr__(name):
    # Defined lazily: Anymail's backend needs Django's settings, which are configured after this module is imported.
    if name == "CountingEspBackend":
        return _esp_backend_class()
    raise AttributeError(name)
