"""The web dashboard: plain JS pages served by the gradekit app at `/`, reading only the public API.

```
GET /                    the dashboard's page (jobs, a job, eval runs, grader playground; routed by the URL's #)
GET /dashboard/<file>    its scripts, styles and the bundled uPlot (static/vendor/uplot: version and license)
```

Both are answered without an API key (they hold no data); every request the page makes sends the key the user
typed (kept in sessionStorage) as `Authorization: Bearer`. The files are package data of this package, so an
installed wheel serves them without a build step or network access.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

__all__ = ["CSP", "PREFIX", "STATIC", "mount"]

#: Where the page's files are on disk (inside the installed package).
STATIC = Path(__file__).resolve().parent / "static"
#: URL prefix of the page's files.
PREFIX = "/dashboard/"
#: The page runs only our own scripts, even if some text were ever inserted as markup (it never is).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def mount(app: FastAPI) -> None:
    """Serve the dashboard page at `/` and its files under `PREFIX`."""
    app.mount(PREFIX.rstrip("/"), StaticFiles(directory=STATIC), name="dashboard")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        """The dashboard's page."""
        headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP}
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=headers)
