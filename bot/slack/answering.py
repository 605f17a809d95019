"""Answers worked out in processes of their own, so the Slack front only acknowledges.

Slack waits on the acknowledgement (3 s at most), and it is what a person waits on
before anything shows. An answer (``status`` over 200 connections, a month's report)
is Python work that holds the interpreter: worked out in the serving process, answers
took the GIL from the acks, and under a flood of heavy commands ``./run bench slack``
measured the ack p99 at 3-4x an app that only acks. So ``serve`` hands each command's
words (typed, or carried by a button) to an answer process over a pipe
(``XAI_USAGE_ANSWER_PROCESSES``, 1 by default; 0 keeps the answers in the serving
process), and that process works the answer out exactly as the serving process
would: the same dispatcher (``bot.slack.dispatch``), its own service, store
connections and Slack client. Everything they share (Home tab viewers, replays,
ledgers, refused blocks) is in the store already, for replicas.

An answer process that dies (killed, out of memory) loses no command silently: the
front knows which ones it had taken and not finished, tells each person through
the command's response URL (or a DM) that the answer was interrupted and to ask
again, and starts another process. Nothing is sent again blind: an answer that was
half posted must not post twice. A process that cannot start, three times running,
leaves the answers to the serving process, said once in the log.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from slack_sdk import WebClient

from bot.config import Settings
from bot.runtime import Runtime, configure_logging
from bot.slack import blocks
from bot.slack.service import COMMAND_WORKERS, Invocation, SlackService, log_failed_request
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)
SPAWN = multiprocessing.get_context("spawn")
"""A fresh interpreter for each answer process: the serving process has threads, which
a fork would copy mid-step."""

STARTS_BEFORE_GIVING_UP = 3
"""An answer process that dies before it is ready this many times running is not
started again: the serving process answers from then on."""
NICENESS = 5
"""How much an answer process gives way (``nice``) to the serving process: an ack is
waited on by a person and Slack's 3 seconds, an answer is seconds of work either way,
so when the two want the same core, the ack goes first."""
STOP_WAIT = 10.0
"""Seconds an answer process has to finish the answers it holds when serve stops."""
INTERRUPTED = (
    "Sorry, the answer to `{command}` was interrupted: the process working it out "
    "stopped before it finished. Nothing was changed by it that is not already saved; "
    "ask again."
)


@dataclass(frozen=True)
class Job:
    """Words to answer: who asked where, the words, and how they were asked (typed as a
    command, clicked, or sent by DM: bot.slack.dispatch.replier), which is how the answer
    goes back; or a Home tab opened, whose dashboard is built and published."""

    id: int
    invocation: Invocation
    text: str
    how: str


# -- the serving process's side ---------------------------------------------------


class _Answerer:
    """One answer process, the pipe to it, and the jobs it has taken and not finished."""

    def __init__(self, start: Callable[[Connection], multiprocessing.process.BaseProcess]):
        ours, theirs = SPAWN.Pipe()
        self.process = start(theirs)
        theirs.close()  # the child holds its end: when it dies, ours reads EOF
        self.pipe = ours
        self.lock = threading.Lock()
        self.sending = threading.Lock()
        """One message at a time on the pipe; apart from ``lock``, which the reader
        needs while a send may wait for the process to read."""
        self.taken: dict[int, tuple[Job, WebClient]] = {}
        self.ready = False
        self.dead = False

    def take(self, job: Job, client: WebClient) -> bool:
        with self.lock:
            if self.dead:
                return False
            self.taken[job.id] = (job, client)
        try:
            with self.sending:
                self.pipe.send(job)
        except (OSError, ValueError):  # died a moment ago
            with self.lock:
                # Still ours: answered elsewhere. Else its reader took it with the rest,
                # and its person is told to ask again: answering it too would say both.
                return self.taken.pop(job.id, None) is None
        return True

    def orphans(self) -> list[tuple[Job, WebClient]]:
        """It died: what it had taken and not finished (from now on it takes nothing)."""
        with self.lock:
            self.dead = True
            left, self.taken = list(self.taken.values()), {}
        return left


class AnswerProcesses:
    """Hands commands to answer processes; watches them, and replaces one that dies."""

    def __init__(
        self,
        service: SlackService,
        count: int,
        *,
        log_level: str = "INFO",
        target: Callable[..., None] | None = None,
    ) -> None:
        self.service = service
        self.log_level = log_level
        self.target = target or answer_forever
        """What each process runs (a test's stand-in for one that cannot start)."""
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.closing = False
        self.failed_starts = 0
        self.given_up = False
        self.answerers: list[_Answerer] = []
        self.wanted = count
        for _ in range(count):
            self._start()

    def submit(self, client: WebClient, invocation: Invocation, text: str, *, how: str) -> bool:
        """Hand a command to the least busy answer process. False when none can take it:
        the caller answers it in this process."""
        with self.lock:
            alive = [a for a in self.answerers if not a.dead]
        if not alive:
            return False
        job = Job(next(self.ids), invocation, text, how)
        for answerer in sorted(alive, key=lambda a: len(a.taken)):
            if answerer.take(job, client):
                return True
        return False

    def health(self) -> dict[str, Any]:
        """For /healthz: how many answer processes run of how many asked for."""
        with self.lock:
            running = sum(1 for a in self.answerers if a.ready and not a.dead)
        health: dict[str, Any] = {"running": running, "wanted": self.wanted}
        if self.given_up:
            health["warning"] = (
                f"answer processes failed to start {STARTS_BEFORE_GIVING_UP} times running: "
                "commands are answered in the serving process (see its log)"
            )
        return health

    def close(self, wait: float = STOP_WAIT) -> None:
        """Stop taking commands; let each process finish what it holds (up to ``wait``)."""
        with self.lock:
            self.closing = True
            answerers = list(self.answerers)
        for answerer in answerers:
            with answerer.sending, contextlib.suppress(OSError, ValueError):
                answerer.pipe.send(None)
        for answerer in answerers:
            answerer.process.join(wait)
            if answerer.process.is_alive():
                log.warning("an answer process did not stop within %ss; stopping it", wait)
                answerer.process.terminate()
                answerer.process.join(2)

    def _start(self) -> None:
        service = self.service
        runtime = service.runtime

        def spawn(pipe: Connection) -> multiprocessing.process.BaseProcess:
            process = SPAWN.Process(
                target=self.target,
                args=(pipe, runtime.settings, service.settings, service.home_team, self.log_level),
                name="xai-usage-answers",
                daemon=True,
            )
            process.start()
            return process

        answerer = _Answerer(spawn)
        with self.lock:
            self.answerers.append(answerer)
        threading.Thread(
            target=self._listen, args=(answerer,), name="xai-usage-answers-reader", daemon=True
        ).start()

    def _listen(self, answerer: _Answerer) -> None:
        """Read what an answer process says until it ends; then see to what it held."""
        while True:
            try:
                said = answerer.pipe.recv()
            except (EOFError, OSError):
                break
            if said == "ready":
                answerer.ready = True
                with self.lock:
                    self.failed_starts = 0
            elif isinstance(said, int):  # a job finished
                with answerer.lock:
                    answerer.taken.pop(said, None)
        answerer.process.join(5)
        orphans = answerer.orphans()
        with self.lock:
            self.answerers.remove(answerer)
            if self.closing:
                return
            if not answerer.ready:
                self.failed_starts += 1
            self.given_up = self.failed_starts >= STARTS_BEFORE_GIVING_UP
        code = answerer.process.exitcode
        for job, client in orphans:
            self.service.after_ack(tell_interrupted, self.service, client, job)
        if self.given_up:
            log.error(
                "answer processes keep failing to start (exit code %s): commands are "
                "answered in the serving process from now on",
                code,
            )
            return
        unfinished = (
            f"with {len(orphans)} answer(s) unfinished, whose people are told to ask again"
            if orphans
            else "between answers"
        )
        log.warning(
            "an answer process stopped (exit code %s) %s; another takes its place",
            code,
            unfinished,
        )
        self._start()


def tell_interrupted(service: SlackService, client: WebClient, job: Job) -> None:
    """An answer lost with its process: its person is told to ask again; a Home tab is
    published from here instead (sending a tab twice shows it once)."""
    from bot.slack import home
    from bot.slack.dispatch import HOME_OPENED

    if job.how == HOME_OPENED:
        home.opened(service, client, job.invocation)
        return
    words = job.text.strip().split()
    command = "/xai-usage " + (words[0] if words else "help")
    service.reply(
        client,
        job.invocation,
        blocks.notice(INTERRUPTED.format(command=command)),
        response_type="ephemeral",
        replace_original=False,
    )


# -- the answer process's side ----------------------------------------------------


def answer_forever(
    pipe: Connection,
    settings: Settings,
    slack_settings: SlackSettings,
    home_team: str | None,
    log_level: str,
) -> None:
    """An answer process: take jobs from the pipe until told to stop (``None``) or the
    serving process is gone (end of file); finish what was taken; then end."""
    from bot.slack import home
    from bot.slack.app import answering_service
    from bot.slack.client import web_client
    from bot.slack.dispatch import HOME_OPENED, opens_a_form, replier, run_command

    configure_logging(log_level)
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no nice() here
        os.nice(NICENESS)
    runtime = Runtime(settings)
    service = answering_service(runtime, slack_settings, home_team=home_team)
    clients: dict[str | None, WebClient] = {}
    clients_lock = threading.Lock()
    said = threading.Lock()

    def tell(message: Any) -> None:
        with said, contextlib.suppress(OSError, ValueError):  # else the front is gone
            pipe.send(message)

    def client_for(team_id: str) -> WebClient:
        assert service.tokens is not None
        token = service.tokens(team_id)
        with clients_lock:
            if token not in clients:
                clients[token] = web_client(slack_settings, token)
            return clients[token]

    def answer(job: Job) -> None:
        later = False
        try:
            client = client_for(job.invocation.team_id)
            if job.how == HOME_OPENED:  # on Home's own pool: finished once the tab is sent
                home.opened(service, client, job.invocation, lambda: tell(job.id))
                later = True
            else:
                respond = replier(service, client, job.invocation, job.how)
                run_command(service, client, job.invocation, job.text, respond, log)
        except Exception as error:
            log_failed_request(error)
        finally:
            if not later:
                tell(job.id)

    answers = ThreadPoolExecutor(
        max_workers=COMMAND_WORKERS, thread_name_prefix="xai-usage-command"
    )
    # A form must open within the 3 seconds Slack gives its trigger: not behind answers.
    forms = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xai-usage-form")
    tell("ready")
    try:
        while True:
            try:
                job = pipe.recv()
            except (EOFError, OSError):
                break
            if job is None:
                break
            form = job.how != HOME_OPENED and job.invocation.trigger_id and opens_a_form(job.text)
            (forms if form else answers).submit(answer, job)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: serve stops us
        pass
    finally:
        forms.shutdown(wait=True)
        answers.shutdown(wait=True)
        service.background.shutdown(wait=True)
        if service.live_home is not None:
            service.live_home.close()
