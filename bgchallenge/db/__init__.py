"""The PostgreSQL edge: the only package that imports psycopg or trio-asyncio.

`psycopg.waiting` binds `asyncio.get_running_loop` when it is imported, and trio-asyncio
replaces that function on its own import. If anything imported psycopg before trio-asyncio
(a test helper, a benchmark, a library), psycopg would keep the original and fail with
"no running event loop" under trio-asyncio; so the binding is renewed here, whatever the order.
"""

import asyncio

import psycopg.waiting
import trio_asyncio  # noqa: F401  (patches asyncio.get_running_loop)

psycopg.waiting.get_running_loop = asyncio.get_running_loop  # type: ignore[attr-defined]
