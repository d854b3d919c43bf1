"""The local labelling page: people label a store's outputs (a plan's items, or every item) one at a time, and
every answer is stored at once as ratings (harness.annotate).

`harness annotate` opens `labelling_page`, says where it is and serves it until Ctrl-C.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.annotate import AnnotateServer


@dataclass(frozen=True)
class LabellingPage:
    """A bound, not yet serving, labelling page: `server.serve_forever()` until interrupted."""

    server: AnnotateServer
    url: str
    plan_id: str
    items: int
    labelled: int | None  # by the annotator given, when one was


@contextlib.contextmanager
def labelling_page(store: str | Path | None = None, *, plan: str | Path | None = None, annotator: str | None = None,
                   task: str = "rank", host: str = "127.0.0.1", port: int = 8765, seed: int = 0,
                   on_event: Callable[[str], None] | None = None) -> Iterator[LabellingPage]:
    """Open the store and bind the page (task rank or label, shown orders seeded per annotator); closed on exit.
    The host and the plan are checked before the store is opened; `on_event` hears each answer stored."""
    from harness.annotate import Labelling, make_server
    from harness.annotate.server import check_host
    from harness.humans.plan import read_plan, whole_store_plan
    from harness.store import DEFAULT_STORE, Store

    check_host(host)  # before the store is opened
    store_path = Path(store) if store else DEFAULT_STORE
    items = read_plan(plan) if plan else None  # a bad plan fails before the store is touched
    with Store.open(store_path, create=False) as st:
        if items is None:
            items = whole_store_plan(st.generations(), seed=seed).items
        labelling = Labelling(st, items, task, seed=seed)
        server = make_server(labelling, host=host, port=port, annotator=annotator, on_event=on_event)
        try:
            progress = labelling.progress(annotator) if annotator else None
            yield LabellingPage(server, server.url, labelling.plan_id, len(items),
                                progress.labelled if progress else None)
        finally:
            server.close()
