"""What ``bgchallenge submit`` reads and shows, without a network: the pure parts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bgchallenge.client import SubmitOptions, UsageError, prepare, read_urls
from bgchallenge.client.display import (
    Counts,
    Tally,
    Transfer,
    UrlLine,
    WaitDisplay,
    enqueue_summary,
    failure_table,
    field_problems,
    final_report,
    format_bytes,
    parse_url_lines,
    print_report,
    rejection_line,
)


def test_url_lines_skip_blanks_and_comments_and_keep_file_line_numbers() -> None:
    text = "# the cats\n\n  https://a.example/1.png  \n\t\n#https://skipped/\nhttp://b/2.png\r\n"
    assert parse_url_lines(text) == [
        UrlLine(3, "https://a.example/1.png"),
        UrlLine(6, "http://b/2.png"),
    ]
    assert parse_url_lines("") == []


def test_reads_stdin_for_dash_or_no_file_and_a_file_otherwise(tmp_path: Path) -> None:
    stdin = io.StringIO("http://a/1.png\n")
    assert read_urls("-", stdin) == [UrlLine(1, "http://a/1.png")]
    assert read_urls(None, io.StringIO("\nhttp://a/2.png")) == [UrlLine(2, "http://a/2.png")]
    path = tmp_path / "urls.txt"
    path.write_text("# x\nhttp://a/3.png\n")
    assert read_urls(str(path), io.StringIO("ignored")) == [UrlLine(2, "http://a/3.png")]
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UsageError, match="not UTF-8 text"):
        read_urls(str(binary), io.StringIO())
    with pytest.raises(UsageError, match="cannot read it: No such file"):
        read_urls(str(tmp_path / "missing"), io.StringIO())


def _prepare(**overrides: object) -> SubmitOptions:
    args: dict[str, object] = {
        "job_id": "job",
        "server": None,
        "source": "-",
        "wait": False,
        "env": {},
        "port": 8000,
        "secret": None,
        "stdin": io.StringIO(""),
    }
    args.update(overrides)
    return prepare(**args)  # type: ignore[arg-type]


def test_server_comes_from_the_option_then_bgc_server_then_port() -> None:
    env = {"BGC_SERVER": "https://bgc.example/"}
    assert _prepare().server == "http://127.0.0.1:8000"
    assert _prepare(port=9001).server == "http://127.0.0.1:9001"
    assert _prepare(env=env).server == "https://bgc.example"
    chosen = _prepare(env=env, server="http://h:1")
    assert chosen.server == "http://h:1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"job_id": "j" * 201}, "--job-id: must be 1 to 200 characters, not 201"),
        ({"job_id": ""}, "--job-id: must be 1 to 200 characters, not 0"),
        ({"env": {"BGC_SERVER": "ftp://x"}}, "BGC_SERVER: not an http:// or https:// URL"),
        ({"env": {"BGC_SERVER": "localhost:8000"}}, "BGC_SERVER: not an http"),
        ({"server": "http://"}, "--server: not an http:// or https:// URL"),
        ({"server": "http://[::1"}, "--server: not a valid URL: 'http://[::1' (Invalid IPv6"),
        ({"server": "http://h:abc"}, "--server: not a valid URL: 'http://h:abc' (Port could"),
        ({"env": {"BGC_SERVER": "http://h:99999"}}, "BGC_SERVER: not a valid URL"),
    ],
)
def test_bad_arguments_are_usage_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        _prepare(**overrides)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_a_job_id_of_exactly_200_characters_is_fine() -> None:
    assert _prepare(job_id="j" * 200).job_id == "j" * 200


def test_counts_by_status() -> None:
    counts = Counts.of(["succeeded", "failed", "canceled", "running", "queued", "queued"])
    assert counts == Counts(succeeded=1, failed=1, canceled=1, running=1, queued=2)
    assert (counts.done, counts.remaining, counts.total) == (3, 3, 6)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _items(**statuses: int) -> list[dict[str, object]]:
    return [{"status": status} for status, n in statuses.items() for _ in range(n)]


def test_plain_lines_show_counts_rate_and_eta_and_reach_100_only_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    with WaitDisplay(out, 200, clock=clock, interval=2.0) as display:
        assert not display.live  # a StringIO is no terminal
        display.show(_items(succeeded=40, queued=160))  # done before the wait: not in the rate
        clock.now = 102.0
        display.show(_items(succeeded=44, failed=0, running=1, queued=155))
        clock.now = 104.0
        display.show(_items(succeeded=49, failed=1, running=1, queued=149))
        clock.now = 104.5
        display.show(_items(succeeded=198, failed=1, queued=1))  # within the interval: no line
        clock.now = 106.5
        display.show(_items(succeeded=198, canceled=1, running=1))
        clock.now = 107.0
        display.show(_items(succeeded=199, canceled=1), final=True)
    lines = out.getvalue().splitlines()
    # the rate counts from the wait's start: 4 in 2 s, then 10 in 4 s, ...
    assert lines == [
        "20%  40/200  succeeded 40  failed 0  running 0  queued 160  --/s  ETA -:--:--",
        "22%  44/200  succeeded 44  failed 0  running 1  queued 155  2.0/s  ETA 0:01:18",
        "25%  50/200  succeeded 49  failed 1  running 1  queued 149  2.5/s  ETA 0:01:00",
        "99%  199/200  succeeded 198  failed 0  running 1  queued 0  canceled 1  35.3/s"
        "  ETA 0:00:01",
        "100%  200/200  succeeded 199  failed 0  running 0  queued 0  canceled 1  22.9/s"
        "  ETA 0:00:00",
    ]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_terminal_gets_rich_s_live_bar() -> None:
    out = io.StringIO()
    with WaitDisplay(out, 4, force_terminal=True) as display:
        assert display.live
        display.show(_items(succeeded=2, running=1, queued=1))
        display.show(_items(succeeded=4), final=True)
    screen = out.getvalue()
    assert "\x1b[" in screen and "━" in screen  # rich's bar, redrawn in place
    assert "100%" in screen and "4/4" in screen and "succeeded 4" in screen


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (12_897_485, "12.3 MiB"),
        (3 << 30, "3.0 GiB"),
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_transfer_sums_the_running_results_bytes_of_the_known_sizes() -> None:
    mib = 1024 * 1024
    items: list[dict[str, object]] = [
        {"status": "running", "progress": {"receivedBytes": 2 * mib, "totalBytes": 10 * mib}},
        {"status": "running", "progress": {"receivedBytes": 3 * mib, "totalBytes": 10 * mib}},
        {"status": "running", "progress": None},  # no byte yet
        {"status": "succeeded", "progress": {"receivedBytes": mib, "totalBytes": mib}},
        {"status": "queued", "progress": {"receivedBytes": 5, "totalBytes": 9}},  # a past attempt
    ]
    transfer = Transfer.of(items)
    assert transfer == Transfer(5 * mib, 20 * mib, False)
    assert transfer is not None and transfer.text() == "5.0 MiB of 20.0 MiB"
    out = io.StringIO()
    with WaitDisplay(out, 5) as display:
        display.show(items)
    assert "running 3  queued 1  received 5.0 MiB of 20.0 MiB  --/s" in out.getvalue()
    # a chunked body: what arrived counts, and the size shown is a lower bound
    chunked: list[dict[str, object]] = [
        {"status": "running", "progress": {"receivedBytes": 1536, "totalBytes": None}}
    ]
    assert Transfer.of(items + chunked) == Transfer(5 * mib + 1536, 20 * mib + 1536, True)
    only_chunked = Transfer.of(chunked)
    assert only_chunked is not None and only_chunked.text() == "1.5 KiB of 1.5 KiB+"
    assert Transfer.of(items[2:]) is None


def test_rejections_name_the_line_and_hide_the_query() -> None:
    problem = {
        "detail": "the body is not a valid enqueue request",
        "errors": [{"pointer": "#/url", "detail": "must be an absolute http or https URL"}],
    }
    reason = field_problems(problem)
    assert reason == "url must be an absolute http or https URL"
    line = rejection_line(UrlLine(7, "ftp://h/x.png?X-Amz-Signature=secret#f"), reason)
    assert line == "bgchallenge: line 7: ftp://h/x.png: url must be an absolute http or https URL"
    assert field_problems({"detail": "a single JSON object is required"}) == (
        "a single JSON object is required"
    )


def _item(result_id: int, status: str, code: str = "", message: str = "") -> dict[str, object]:
    error = {"code": code, "message": message} if code else None
    return {"id": result_id, "url": f"http://o/{result_id}.png", "status": status, "error": error}


def test_failure_table_lists_only_the_failed_in_aligned_columns() -> None:
    items = [
        _item(1, "succeeded"),
        _item(2, "failed", "not_found", "HEAD answered\n404"),
        _item(13, "canceled"),
        _item(140, "failed", "exhausted", "x" * 300),
    ]
    table = failure_table(items)
    assert table[0].split() == ["id", "url", "code", "message"]
    assert table[1] == "2    http://o/2.png    not_found  HEAD answered 404"
    assert table[2].startswith("140  http://o/140.png  exhausted  xxx")
    assert len(table[2]) < 160 and table[2].endswith("…")
    assert len(table) == 3
    assert failure_table([_item(1, "succeeded"), _item(2, "canceled")]) == []


def test_final_report_fails_on_failed_or_rejected_but_not_on_canceled() -> None:
    ok, canceled = _item(1, "succeeded"), _item(2, "canceled")
    lines, failing = final_report("j", Tally(2, 0, 0), [ok, canceled])
    assert lines == ["job j: 1 succeeded, 0 failed, 1 canceled"] and not failing
    assert final_report("j", Tally(1, 0, 1), [ok])[1]
    lines, failing = final_report("j", Tally(0, 2, 0), [ok, _item(3, "failed", "not_found")])
    assert failing and lines[0] == "job j: 1 succeeded, 1 failed, 0 canceled"
    assert "not_found" in lines[-1]


def test_the_report_s_failures_are_a_rich_table_on_a_terminal_and_plain_columns_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = [_item(1, "succeeded"), _item(2, "failed", "not_found", "HEAD answered 404")]
    plain = io.StringIO()
    assert print_report(plain, "j", Tally(2, 0, 0), items)
    assert plain.getvalue().splitlines() == [
        "job j: 1 succeeded, 1 failed, 0 canceled",
        *failure_table(items),
    ]
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich's own switch: treat the file as a terminal
    boxed = io.StringIO()
    assert print_report(boxed, "j", Tally(2, 0, 0), items)
    text = boxed.getvalue()
    assert text.startswith("job j: 1 succeeded, 1 failed, 0 canceled\n")
    assert "┃" in text and "not_found" in text and "http://o/2.png" in text


def test_enqueue_summary() -> None:
    assert enqueue_summary("j", Tally(3, 2, 1)) == (
        "job j: 3 enqueued, 2 already enqueued, 1 rejected"
    )
