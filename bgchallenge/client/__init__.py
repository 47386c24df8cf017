"""``bgchallenge submit``: the command-line client of the API and how it draws."""

from bgchallenge.client.submit import (
    ApiClient,
    ServerRefused,
    ServerUnreachable,
    SubmitError,
    SubmitOptions,
    UsageError,
    prepare,
    read_urls,
    submit,
)

__all__ = [
    "ApiClient",
    "ServerRefused",
    "ServerUnreachable",
    "SubmitError",
    "SubmitOptions",
    "UsageError",
    "prepare",
    "read_urls",
    "submit",
]
