"""`cdrflow submit FILE`: bulk submission of Master.csv, NDJSON or mod_json_cdr files to a
running ingest, with a progress bar, retries, resume after Ctrl-C and a table of answers.

Registered as a `cdrflow` command through the `cdrflow.commands` entry point (cdrmodel may
not import a service). Reading and batching are in `submit_files`, the resume file in
`submit_state`, the requests in `submit_client`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import aiohttp
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from cdr_ingest.submit_client import EXIT_USAGE, Fatal, Options, Outcome, Sender, Target, run
from cdr_ingest.submit_files import Batch, InputError, InputFormat, Source, batches, detect_format
from cdr_ingest.submit_state import StateError, SubmitState, default_state_path

EXIT_REFUSED, EXIT_INTERRUPTED = 1, 130

# Answers that mean "the server has the call" (or, for a B-leg, rightly does not bill it).
SUCCESS_CODES = frozenset({0, 50421, 50462})

MEANINGS = {
    0: "accepted",
    50421: "already submitted before (duplicate; stored once)",
    50462: "FreeSWITCH B-leg: not billed, its A-leg is",
    50400: "not a JSON object / unreadable document",
    50411: "OriginatingNumber missing or over 20 characters",
    50412: "DestinationNumber missing or over 20 characters",
    50413: "AccountCode over 20 characters",
    50414: "ExternalID too long",
    50416: "Duration missing, not a whole number, negative, or over 86400",
    50417: "ring_seconds / dialtime not a whole number 0..86400",
    50418: "disposition not one of the five values",
    50419: "direction not inbound or outbound",
    50420: "extra not a JSON object",
    50422: "record (recording URL) not an http(s) URL of at most 2048 characters",
    50429: "the API account's daily limit is used up",
    50460: "malformed PBX record",
    400: "request refused: unreadable body",
    413: "request refused: too large",
    422: "request refused",
}


def _password(env_name: str) -> str:
    value = os.environ.get(env_name)
    if value:
        return value
    if sys.stdin.isatty():
        entered: str = typer.prompt("API password", hide_input=True)
        return entered
    raise _usage(f"no password: set {env_name} (or name another variable with --password-env)")


def _usage(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(EXIT_USAGE)


def summary_table(counts: Counter[int], messages: dict[int, str], title: str) -> Table:
    table = Table(title=Text(title))
    table.add_column("code", justify="right")
    table.add_column("meaning")
    table.add_column("records", justify="right")
    for code in sorted(counts, key=lambda c: (c not in SUCCESS_CODES, c)):
        meaning = MEANINGS.get(code, "")
        if code in messages and code not in SUCCESS_CODES:
            meaning = f"{meaning}: {messages[code]}" if meaning else messages[code]
        table.add_row(str(code), Text(meaning), f"{counts[code]}")
    table.add_row("", "total", f"{sum(counts.values())}", style="bold")
    return table


class _Display:
    """The progress bar on a terminal (stderr); nothing otherwise."""

    def __init__(self, console: Console, source: Source, state: SubmitState, show: bool) -> None:
        self.console = console
        self._started = time.monotonic()
        self._first_records = state.records
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[records]:,} records  {task.fields[rate]:,.0f}/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not show,
        )
        self._task = self._progress.add_task(
            source.path.name,
            total=max(source.total, 1),
            completed=state.completed,
            records=state.records,
            rate=0.0,
        )
        self._state = state

    def __enter__(self) -> _Display:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def batch_done(self, _batch: Batch, _counts: Counter[int]) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._progress.update(
            self._task,
            completed=self._state.completed,
            records=self._state.records,
            rate=(self._state.records - self._first_records) / elapsed,
        )

    def retry_scheduled(self, details: RetryDetails) -> None:
        """stamina's retry hook: one line a retry, instead of its structlog warning."""
        cause = details.caused_by
        why = str(cause) or type(cause).__name__
        self.note(f"retry {details.retry_num} in {details.wait_for:.1f}s: {why}")

    def note(self, message: str) -> None:
        self.console.print(Text(message, style="yellow"))


async def _submit(
    source: Source,
    state: SubmitState,
    target: Target,
    options: Options,
    display: _Display,
    *,
    batch_size: int,
) -> Outcome:
    connector = aiohttp.TCPConnector(limit=options.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        sender = Sender(session, target, options)
        return await run(
            batches(source.records(state.watermark), start=state.watermark, size=batch_size),
            state,
            sender,
            options,
            on_batch=display.batch_done,
            on_stop=lambda: display.note(
                "stopping: no new batches; waiting for the answers in flight "
                "(Ctrl-C again to stop now)"
            ),
        )


def submit(
    file: Annotated[
        Path,
        typer.Argument(
            help="A Master.csv (cdr_csv), an NDJSON file (.ndjson/.jsonl) of /v1/cdrs records, "
            "a mod_json_cdr file (.json: one document, several, or an array) or a directory "
            "of them.",
            show_default=False,
        ),
    ],
    database: Annotated[
        str,
        typer.Option(
            "--database",
            envvar="CDR_SUBMIT_DATABASE",
            help="DatabaseID of the tenant.",
            show_default=False,
        ),
    ],
    account: Annotated[
        str,
        typer.Option(
            "--account",
            envvar="CDR_SUBMIT_ACCOUNT",
            help="APIAccountID (HTTP Basic user is DATABASE/ACCOUNT).",
            show_default=False,
        ),
    ],
    url: Annotated[
        str, typer.Option("--url", envvar="CDR_SUBMIT_URL", help="Base URL of the ingest service.")
    ] = "http://127.0.0.1:8081",
    password_env: Annotated[
        str,
        typer.Option(
            "--password-env",
            help="Environment variable holding the APIPassword. When it is unset the password "
            "is asked for on a terminal. (There is no --password flag: a password on the "
            "command line is visible to every user in `ps`.)",
        ),
    ] = "CDR_SUBMIT_PASSWORD",
    input_format: Annotated[
        InputFormat | None,
        typer.Option(
            "--format",
            help="asterisk (Master.csv, POST /v1/pbx/asterisk), ndjson (POST /v1/cdrs) or "
            "freeswitch (mod_json_cdr, POST /v1/pbx/freeswitch). Default: from the name "
            "(.csv, .ndjson/.jsonl, .json, a directory).",
            show_default=False,
        ),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            help="Asterisk only: IANA time zone of the PBX's local times (default: the tenant's).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            max=10_000,
            help="Records per request (also kept under the 10 MiB body limit).",
        ),
    ] = 1000,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=64, help="Requests in flight at once.")
    ] = 4,
    state_file: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Resume file (default: FILE.cdrflow-state beside the input). It records the "
            "finished batches; running the same command again sends only the rest, and after "
            "a complete run only lines appended since.",
            show_default=False,
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Ignore the resume file and send everything again (records the server "
            "already has are answered 50421, not stored twice).",
        ),
    ] = False,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            min=0,
            help="Retries of a request answered 503/50503 or lost to a connection error or "
            "timeout, with exponential backoff and jitter (or the server's Retry-After). When "
            "they run out the command stops, progress saved, exit 3.",
        ),
    ] = 8,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for one answer.")
    ] = 60.0,
    no_progress: Annotated[
        bool,
        typer.Option("--no-progress", help="No progress bar (there is none off a terminal)."),
    ] = False,
) -> None:
    """Send a file of CDRs to a running ingest, in concurrent batches.

    Resumable: Ctrl-C stops sending, waits briefly for the answers in flight, saves and exits 130; the same command resumes. A batch in flight when interrupted is sent again: records with an identity (ExternalID, an Asterisk line, a FreeSWITCH uuid, or a start time) are answered 50421 the second time, never stored twice; an NDJSON record with neither external_id nor start_time has no identity and could be stored twice.

    Ends with a table of answer codes and counts (all runs on this file). Exit 0 when every record was accepted or already there, 1 when some were refused, 2 for a usage error or wrong credentials, 3 when the server stayed unreachable or unavailable, 130 on Ctrl-C.
    """
    try:
        fmt = detect_format(file, input_format)
        source = Source(file, fmt)
        state = SubmitState.open(state_file or default_state_path(file), source, restart=restart)
        state.save()  # a state file that cannot be written is found now, not after a batch
    except (InputError, StateError, OSError) as exc:
        raise _usage(str(exc)) from None
    if tz and fmt is not InputFormat.ASTERISK:
        raise _usage("--tz applies to Asterisk input only")
    target = Target(url, database, account, _password(password_env), fmt, tz)
    options = Options(concurrency=concurrency, retries=retries, timeout=timeout)
    # Paths and server messages are printed as they are: markup off, so a `[` in them is text.
    console = Console(stderr=True, markup=False, highlight=False)
    if state.resumed:
        console.print(
            f"resuming {file.name} from {state.path.name}: {state.records:,} records done"
        )
    with _Display(console, source, state, show=console.is_terminal and not no_progress) as display:
        set_on_retry_hooks([display.retry_scheduled])
        outcome = asyncio.run(
            _submit(source, state, target, options, display, batch_size=batch_size)
        )
    state.save()
    Console(markup=False, highlight=False).print(
        summary_table(state.counts, outcome.messages, f"cdrflow submit {file.name}")
    )
    raise typer.Exit(_finish(console, outcome, state))


def _finish(console: Console, outcome: Outcome, state: SubmitState) -> int:
    fatal: Fatal | None = outcome.fatal
    if fatal is not None:
        console.print(Text("error: ", style="red") + Text(str(fatal)))
        console.print(f"progress saved in {state.path}; run the same command to resume")
        return fatal.exit_code
    if outcome.interrupted:
        console.print(
            f"interrupted: progress saved in {state.path}; run the same command to resume "
            "(--restart to start over)"
        )
        return EXIT_INTERRUPTED
    return 0 if set(state.counts) <= SUCCESS_CODES else EXIT_REFUSED
