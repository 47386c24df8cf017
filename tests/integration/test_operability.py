"""What operators rely on: metrics that move, logs that parse and keep secrets, the Procfile
and compose.yaml."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import trio
import yaml

from bgchallenge.embedded import free_port
from bgchallenge.settings import Settings
from tests.conftest import IO_GUARD_SECONDS, RunningService
from tests.support.metrics import samples
from tests.support.origin import Origin
from tests.support.processes import ServiceProcess, service_environment
from tests.support.results import eventually, fetch_rows, wait_until_terminal

ROOT = Path(__file__).resolve().parents[2]
SECRET_QUERY = "X-Amz-Signature=SECRET0123456789"


def presigned(url: str) -> str:
    return url + ("&" if "?" in url else "?") + SECRET_QUERY


async def test_metrics_change_as_results_move(
    service: RunningService, origin: Origin, database_url: str
) -> None:
    with trio.fail_after(IO_GUARD_SECONDS):
        before = samples((await service.client.get("/metrics")).text)
        for name, knobs in [("ok.png", {"size": 3000}), ("gone.png", {"status": 404, "head": 404})]:
            await service.client.post(
                "/results/enqueue", json={"jobId": "m", "url": origin.url(name, **knobs)}
            )
        await service.client.post(
            "/results/enqueue", json={"jobId": "m", "url": origin.url("ok.png", size=3000)}
        )
        await wait_until_terminal(database_url, 2)
        response = await service.client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    after = samples(response.text)
    assert before[("bgc_results_enqueued_total", ())] == 0
    assert after[("bgc_results_enqueued_total", ())] == 2
    assert after[("bgc_results_duplicate_total", ())] == 1
    assert after[("bgc_results_succeeded_total", ())] == 1
    assert after[("bgc_results_failed_total", (("code", "not_found"),))] == 1
    assert after[("bgc_attempts_total", ())] == 2
    assert after[("bgc_stored_bytes_total", ())] == 3000
    assert after[("bgc_download_seconds_count", ())] == 1
    assert after[("bgc_upload_seconds_count", (("operation", "put_object"),))] == 1
    assert after[("bgc_queue", (("state", "queued"),))] == 0
    assert after[("bgc_queue", (("state", "running"),))] == 0
    assert after[("bgc_workers", ())] == 8 and after[("bgc_workers_busy", ())] == 0


async def test_queue_depth_counts_queued_and_due(
    service: RunningService, database_url: str
) -> None:
    import psycopg

    with psycopg.connect(database_url) as connection:
        connection.execute(
            "INSERT INTO results (job_id, host, object_path, url, status, due_at) "
            "SELECT 'q', 'e.com', '/' || n, 'https://e.com/' || n, 'queued', "
            "       now() + interval '1 hour' FROM generate_series(1, 3) AS n"
        )
    with trio.fail_after(IO_GUARD_SECONDS):
        after = samples((await service.client.get("/metrics")).text)
    assert after[("bgc_queue", (("state", "queued"),))] == 3
    assert after[("bgc_queue", (("state", "due"),))] == 0


async def test_log_lines_are_json_and_never_contain_a_query_string(
    nursery: trio.Nursery, settings: Settings, origin: Origin, database_url: str
) -> None:
    process = ServiceProcess(settings, "all")
    try:
        with trio.fail_after(IO_GUARD_SECONDS):
            base = (await process.wait_ready())["addresses"][0]
            async with httpx.AsyncClient(base_url=base) as client:
                urls = [
                    presigned(origin.url("fine.png")),
                    presigned(origin.url("missing.png", status=404, head=404)),
                    presigned(origin.url("flaky.png", fail=1)),
                    presigned(origin.url("hop", redirect="ftp://127.0.0.1/x.png")),
                ]
                for url in urls:
                    answer = await client.post("/results/enqueue", json={"jobId": "l", "url": url})
                    assert answer.status_code == 202 and SECRET_QUERY not in answer.text
                await wait_until_terminal(database_url, 4)
                listed = await client.get("/results/list")
            assert SECRET_QUERY not in listed.text
            process.send(signal.SIGTERM)
            assert await process.wait_exit() == 0
    finally:
        process.close()
    lines = process.log_path.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(SECRET_QUERY not in line for line in lines)
    about_results = [e for e in events if "id" in e]
    assert {e["event"] for e in about_results} >= {
        "enqueued",
        "attempt started",
        "succeeded",
        "failed",
        "retry scheduled",
    }
    assert all("jobId" in e for e in about_results)
    assert all({"time", "level", "event"} <= set(e) for e in events)


async def test_a_worker_process_serves_health_and_metrics_only(settings: Settings) -> None:
    process = ServiceProcess(settings, "worker")
    try:
        with trio.fail_after(IO_GUARD_SECONDS):
            base = (await process.wait_ready())["addresses"][0]
            async with httpx.AsyncClient(base_url=base) as client:
                health = await client.get("/health")
                metrics = await client.get("/metrics")
                enqueue = await client.post("/results/enqueue", json={})
    finally:
        process.close()
    assert health.status_code == 200 and metrics.status_code == 200
    assert "bgc_workers 8.0" in metrics.text
    assert enqueue.status_code == 404


def start_honcho(settings: Settings, base_port: int, **env: str) -> subprocess.Popen[str]:
    """``honcho start web worker`` on the repository's Procfile, as docs/operations.md runs it."""
    environment = service_environment(settings, **env)
    environment.pop("PORT")
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "honcho"),
            "start",
            "-p",
            str(base_port),
            "web",
            "worker",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def wait_healthy(client: httpx.AsyncClient) -> None:
    while True:
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await trio.sleep(0.1)


async def stop_honcho(honcho: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM, as a terminal's Ctrl-C or a platform would; the status and honcho's output."""
    try:
        honcho.send_signal(signal.SIGTERM)
        status = await trio.to_thread.run_sync(honcho.wait, abandon_on_cancel=True)
    finally:
        if honcho.poll() is None:
            honcho.kill()
        output = honcho.communicate()[0]
    print(output)
    return status, output


async def test_procfile_runs_under_honcho_and_stops_cleanly(
    settings: Settings, origin: Origin, database_url: str
) -> None:
    base_port = free_port()
    honcho = start_honcho(settings, base_port)
    try:
        with trio.fail_after(IO_GUARD_SECONDS * 2):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{base_port}") as client:
                await wait_healthy(client)
                answer = await client.post(
                    "/results/enqueue", json={"jobId": "p", "url": origin.url("procfile.png")}
                )
                assert answer.status_code == 202
                (row,) = await wait_until_terminal(database_url, 1)
                assert row["status"] == "succeeded"
            status, output = await stop_honcho(honcho)
    finally:
        if honcho.poll() is None:
            honcho.kill()
    # honcho answers a SIGTERM with 143 itself; what counts is how each process ended
    assert status in (0, 143), output
    assert "web.1 stopped (rc=0)" in output and "worker.1 stopped (rc=0)" in output
    assert "Traceback" not in output


async def test_under_honcho_a_short_grace_hands_a_running_download_back(
    settings: Settings, origin: Origin, database_url: str
) -> None:
    """honcho SIGKILLs what still runs 5 s after the first process exits (the web one, at once):
    with BGC_GRACE_SECONDS=2 (docs/operations.md) the worker stops on its own, handing back."""
    base_port = free_port()
    honcho = start_honcho(settings, base_port, BGC_GRACE_SECONDS="2")
    try:
        with trio.fail_after(IO_GUARD_SECONDS * 2):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{base_port}") as client:
                await wait_healthy(client)
                slow = origin.url("slow.png", size=8 * 1024 * 1024, slow=0.2)  # ~25 s
                answer = await client.post("/results/enqueue", json={"jobId": "p", "url": slow})
                assert answer.status_code == 202
                await eventually(lambda: origin.gets("slow.png") == 1)
            _, output = await stop_honcho(honcho)
    finally:
        if honcho.poll() is None:
            honcho.kill()
    assert "web.1 stopped (rc=0)" in output and "worker.1 stopped (rc=0)" in output, output
    (row,) = fetch_rows(database_url)
    assert (row["status"], row["attempts"]) == ("queued", 0)


def test_compose_file_describes_a_working_stack() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "healthcheck" in services["postgres"]
    assert services["localstack"]["image"].startswith("localstack/localstack")
    assert services["localstack"]["environment"]["SERVICES"] == "s3,sqs"
    assert "healthcheck" in services["localstack"]
    assert "healthcheck" in services["rabbitmq"]
    app = services["app"]
    assert app["build"] == "." and (ROOT / "Dockerfile").exists()
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in app and any(p.endswith(":8000") for p in app["ports"])
    # the app's environment is one the service accepts, pointing at the compose services
    # (${NAME:-default} as compose reads it when NAME is not set)
    environment = {
        k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in app["environment"].items()
    }
    settings = Settings.from_env(environment)
    assert settings.database_url and "@postgres:5432/" in settings.database_url
    assert settings.s3_endpoint_url == "http://localstack:4566"
    setup = " ".join(services["create-bucket"]["command"])
    assert settings.s3_bucket in setup
    # every transport's settings are there: BGC_QUEUE=sqs or rabbitmq switches
    assert settings.queue == "postgres"
    for queue in ("sqs", "rabbitmq"):
        Settings.from_env({**environment, "BGC_QUEUE": queue}).require_queue()
    assert settings.sqs_queue_url and settings.sqs_queue_url.rsplit("/", 1)[1] in setup
    assert settings.rabbitmq_url and "@rabbitmq:5672/" in settings.rabbitmq_url
    # SIGKILL only after the grace period, the hand-back (5 s at most) and closing
    assert app["stop_grace_period"].endswith("s")
    assert float(app["stop_grace_period"][:-1]) >= settings.grace_seconds + 15
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "bgchallenge" in dockerfile and "serve" in dockerfile
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        checked = subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config", "-q"],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr
