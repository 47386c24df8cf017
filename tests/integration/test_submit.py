"""``bgchallenge submit`` as a user runs it: a child process against the real service.

The service runs in the test's own Trio loop, so the command runs in a thread
(`trio.to_thread.run_sync`) and never blocks it. Its environment has no DATABASE_URL:
the command is a client and must not need one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import os
import pty
import socket
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import trio

from bgchallenge.client import ApiClient
from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService, start_service
from tests.support.origin import Origin
from tests.support.results import fetch_rows, wait_until_terminal

Completed = subprocess.CompletedProcess[str]


def _run(args: list[str], stdin: str | None, env: dict[str, str]) -> Completed:
    return subprocess.run(
        [sys.executable, "-m", "bgchallenge", "submit", *args],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        env=env,
        capture_output=True,
        text=True,
        timeout=IO_GUARD_SECONDS,
    )


async def submit(*args: str, stdin: str | None = None, **env: str) -> Completed:
    clean = {
        k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("BGC_")
    }
    run = functools.partial(_run, list(args), stdin, {**clean, **env})
    return await trio.to_thread.run_sync(run)


def url_file(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def progress_lines(completed: Completed) -> list[str]:
    return [line for line in completed.stderr.splitlines() if "%" in line]


async def test_failures_are_tabled_and_exit_1_after_a_final_100_percent_line(
    service: RunningService, origin: Origin, tmp_path: Path
) -> None:
    urls = url_file(
        tmp_path,
        "# two cats and two that cannot be copied",
        origin.url("a.png"),
        "",
        "  " + origin.url("b.png", status=404, head=404) + "  ",
        origin.url("c.png", size=3000),
        origin.url("d.html", type="text/html"),
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit("--job-id", "mixed", "--wait", urls, BGC_SERVER=service.base_url)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "job mixed: 4 enqueued, 0 already enqueued, 0 rejected"
    assert out[1] == "job mixed: 2 succeeded, 2 failed, 0 canceled"
    assert out[2].split() == ["id", "url", "code", "message"]
    failed = {line.split()[1]: line.split()[2] for line in out[3:]}
    assert failed == {
        origin.url("b.png"): "not_found",
        origin.url("d.html"): "not_an_image",
    }
    bars = progress_lines(done)
    assert bars, done.stderr
    assert "100%" in bars[-1] and "4/4" in bars[-1]
    assert "succeeded 2  failed 2  running 0  queued 0" in bars[-1]
    assert done.stderr.splitlines()[-1] == bars[-1]  # the bar ends, nothing after it
    assert "\r" not in done.stderr  # not a terminal: whole lines, readable in logs
    assert all("100%" not in line for line in bars[:-1])


async def test_all_succeeding_exits_0_and_a_second_run_finds_them_already_enqueued(
    service: RunningService, origin: Origin, tmp_path: Path, database_url: str
) -> None:
    urls = url_file(tmp_path, *(origin.url(f"cat{n}.png", sig="presigned") for n in range(5)))
    with trio.fail_after(IO_GUARD_SECONDS):
        first = await submit("--job-id", "cats", "--wait", urls, BGC_SERVER=service.base_url)
        again = await submit("--job-id", "cats", "--wait", urls, BGC_SERVER=service.base_url)
    assert first.returncode == 0, first
    assert first.stdout.splitlines() == [
        "job cats: 5 enqueued, 0 already enqueued, 0 rejected",
        "job cats: 5 succeeded, 0 failed, 0 canceled",
    ]
    assert "100%" in progress_lines(first)[-1]
    assert again.returncode == 0, again
    assert again.stdout.splitlines() == [
        "job cats: 0 enqueued, 5 already enqueued, 0 rejected",
        "job cats: 5 succeeded, 0 failed, 0 canceled",
    ]
    assert "100%" in progress_lines(again)[-1] and "5/5" in progress_lines(again)[-1]
    assert len(fetch_rows(database_url)) == 5
    assert "presigned" not in first.stdout + first.stderr + again.stdout + again.stderr


@pytest.mark.parametrize("file_args", [["-"], []], ids=["dash", "no-file"])
async def test_reads_stdin_and_a_rejected_line_is_named_while_the_rest_go(
    service: RunningService, origin: Origin, database_url: str, file_args: list[str]
) -> None:
    text = (
        f"{origin.url('a.png')}\n#\nftp://h/x.png?X-Amz-Signature=secret\n{origin.url('b.png')}\n"
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit(
            "--job-id", "piped", *file_args, stdin=text, BGC_SERVER=service.base_url
        )
    assert done.returncode == 1, done
    assert done.stdout.splitlines() == ["job piped: 2 enqueued, 0 already enqueued, 1 rejected"]
    assert done.stderr.splitlines() == [
        "bgchallenge: line 3: ftp://h/x.png: url must be an absolute http or https URL"
    ]
    rows = fetch_rows(database_url, "job_id = 'piped'")
    assert [row["object_path"] for row in rows] == ["/files/a.png", "/files/b.png"]


async def test_the_default_server_is_127_0_0_1_on_port(
    service: RunningService, origin: Origin
) -> None:
    port = service.base_url.rsplit(":", 1)[1]
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit("--job-id", "j", stdin=origin.url("a.png"), PORT=port)
    assert done.returncode == 0, done
    assert done.stdout == "job j: 1 enqueued, 0 already enqueued, 0 rejected\n"


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["-"], {}, "bgchallenge submit: the following arguments are required: --job-id"),
        (["--job-id", "j", "/no/such/file"], {}, "bgchallenge: /no/such/file: cannot read it"),
        (["--job-id", "j" * 201, "-"], {}, "bgchallenge: --job-id: must be 1 to 200 characters"),
        (["--job-id", "j", "-"], {"BGC_SERVER": "ftp://h"}, "bgchallenge: BGC_SERVER: not an"),
        (["--job-id", "j", "--server", "h:80", "-"], {}, "bgchallenge: --server: not an"),
        (["--job-id", "j", "a", "b"], {}, "bgchallenge: unrecognized arguments: b"),
        (["--job-id", "j", "--server", "http://[::1"], {}, "bgchallenge: --server: not a valid"),
        (["--job-id", "j", "--server", "http://h:abc"], {}, "bgchallenge: --server: not a valid"),
        (["--job-id", "j"], {"BGC_SERVER": "http://h:99999"}, "bgchallenge: BGC_SERVER: not a"),
    ],
)
async def test_bad_arguments_are_exit_2_and_one_clear_line(
    args: list[str], env: dict[str, str], line: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit(*args, stdin="", **env)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(line), done.stderr
    assert done.stdout == ""


async def test_an_unreachable_server_is_exit_1_and_one_clear_line() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit(
            "--job-id", "j", stdin="http://h/a.png\n", BGC_SERVER=f"http://127.0.0.1:{port}"
        )
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"bgchallenge: cannot reach http://127.0.0.1:{port}: [Errno 111] Connection refused"
        " (is the service running? see --server)"
    ]


async def test_signs_every_request_when_the_secret_is_set(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    job = "signed job & ü/?=x"  # the list target carries it encoded: signed exactly as sent
    with trio.fail_after(IO_GUARD_SECONDS):
        service = await start_service(nursery, dataclasses.replace(settings, signing_secret="s"))
        signed = await submit(
            "--job-id",
            job,
            "--wait",
            stdin=origin.url("a.png"),
            BGC_SERVER=service.base_url,
            BGC_SIGNING_SECRET="s",
        )
        unsigned_one = await submit(
            "--job-id", job, stdin=origin.url("b.png"), BGC_SERVER=service.base_url
        )
        wrong = await submit(
            "--job-id",
            job,
            stdin=origin.url("b.png"),
            BGC_SERVER=service.base_url,
            BGC_SIGNING_SECRET="not s",
        )
        service.shutdown.set()
    assert signed.returncode == 0, signed
    assert signed.stdout.splitlines()[-1] == f"job {job}: 1 succeeded, 0 failed, 0 canceled"
    for refused in (unsigned_one, wrong):
        assert refused.returncode == 1, refused
        assert "Traceback" not in refused.stderr
        (line,) = refused.stderr.splitlines()
        assert line.startswith("bgchallenge: POST /results/enqueue answered 401 Unauthorized: ")
        assert "BGC_SIGNING_SECRET" in line
    assert [row["job_id"] for row in fetch_rows(database_url)] == [job]


async def test_the_list_walks_every_page_and_a_304_means_unchanged(
    service: RunningService, origin: Origin, database_url: str
) -> None:
    text = "\n".join(origin.url(f"p{n}.png") for n in range(5))
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit("--job-id", "pages", stdin=text, BGC_SERVER=service.base_url)
        await wait_until_terminal(database_url, 5)
        with ApiClient(service.base_url, None, page_limit=2) as api:
            first = await trio.to_thread.run_sync(api.list_job, "pages", None)
            assert first is not None and first.etag
            unchanged = await trio.to_thread.run_sync(api.list_job, "pages", first.etag)
            more = origin.url("p5.png")
            await submit("--job-id", "pages", stdin=more, BGC_SERVER=service.base_url)
            changed = await trio.to_thread.run_sync(api.list_job, "pages", first.etag)
    assert done.returncode == 0, done
    assert [item["url"] for item in first.items] == [origin.url(f"p{n}.png") for n in range(5)]
    assert unchanged is None
    assert changed is not None and len(changed.items) == 6 and changed.etag != first.etag


async def test_wait_shows_the_running_downloads_bytes(
    nursery: trio.Nursery, settings: Settings, origin: Origin, tmp_path: Path
) -> None:
    # 8 chunks of 64 KiB, one every 0.5 s; lines are printed every 2 s when not on a terminal
    service = await start_service(nursery, dataclasses.replace(settings, progress_seconds=0.2))
    urls = url_file(tmp_path, origin.url("slow.png", size=8 * 64 * 1024, slow=0.5))
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit("--job-id", "slow", "--wait", urls, BGC_SERVER=service.base_url)
    service.shutdown.set()
    assert done.returncode == 0, done
    moving = [line for line in progress_lines(done) if " of 512.0 KiB" in line]
    assert moving and "running 1  queued 0  received " in moving[0], done.stderr


async def test_wait_ends_correctly_against_the_real_service_with_or_without_its_stream(
    service: RunningService, origin: Origin, tmp_path: Path
) -> None:
    # Whether this service streams: without `GET /results/stream` (404/405) the command polls
    # the list; with it, the same run checks following the real stream.
    async with service.client.stream("GET", "/results/stream", params={"jobId": "x"}) as probe:
        streams = probe.status_code == 200
    urls = url_file(
        tmp_path,
        origin.url("a.png"),
        origin.url("b.png", size=4 * 64 * 1024, slow=0.2),
        origin.url("c.png", status=404, head=404),
    )
    with trio.fail_after(IO_GUARD_SECONDS):
        done = await submit("--job-id", "either", "--wait", urls, BGC_SERVER=service.base_url)
    assert streams or probe.status_code in (404, 405), probe
    assert done.returncode == 1, done
    assert done.stdout.splitlines()[:2] == [
        "job either: 3 enqueued, 0 already enqueued, 0 rejected",
        "job either: 2 succeeded, 1 failed, 0 canceled",
    ]
    assert progress_lines(done)[-1].startswith("100%  3/3  succeeded 2  failed 1  running 0")


def _run_in_a_pty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``submit`` with a terminal as its stdout and stderr; answer its status and every
    byte it drew there."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))
    with subprocess.Popen(
        [sys.executable, "-m", "bgchallenge", "submit", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env=env,
    ) as child:
        os.close(terminal)
        screen = bytearray()
        try:
            while chunk := os.read(controller, 65536):
                screen += chunk
        except OSError:
            pass  # EIO: the child closed the terminal
        finally:
            os.close(controller)
        status = child.wait(timeout=IO_GUARD_SECONDS)
    return status, screen.decode("utf-8", "replace")


async def test_on_a_terminal_wait_draws_rich_s_live_bar_and_a_table_of_failures(
    nursery: trio.Nursery, settings: Settings, origin: Origin, tmp_path: Path
) -> None:
    service = await start_service(nursery, dataclasses.replace(settings, progress_seconds=0.2))
    urls = url_file(
        tmp_path,
        origin.url("slow.png", size=8 * 64 * 1024, slow=0.3),
        origin.url("gone.png", status=404, head=404),
    )
    # COLUMNS and LINES (pytest-xdist's workers have them) would override the pty's 160 columns.
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BGC_", "FORCE_", "NO_")) and k not in ("COLUMNS", "LINES")
    }
    env = {**clean, "BGC_SERVER": service.base_url, "TERM": "xterm-256color"}
    args = ["--job-id", "tty", "--wait", urls]
    with trio.fail_after(IO_GUARD_SECONDS):
        status, screen = await trio.to_thread.run_sync(_run_in_a_pty, args, env)
    service.shutdown.set()
    assert status == 1, screen
    assert "\x1b[" in screen and "━" in screen  # redrawn in place with rich's bar
    assert "received " in screen and " of 512.0 KiB" in screen  # the bytes while the slow one runs
    assert "100%" in screen and "2/2" in screen
    assert "Traceback" not in screen
    table = screen[screen.index("job tty: 1 succeeded, 1 failed, 0 canceled") :]
    assert "┃" in table and "not_found" in table and origin.url("gone.png") in table
