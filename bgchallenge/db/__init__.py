"""The PostgreSQL edge: the only package that imports psycopg or trio-asyncio.

trio_asyncio must be imported before psycopg (psycopg.waiting binds asyncio.get_running_loop
at import; trio-asyncio patches it on its own import), so this package imports it first.
"""

import trio_asyncio  # noqa: F401  (import order matters, see above)
