"""The Streamlit entry point: `streamlit run kbit/dashboard/app.py` (or `python -m kbit.dashboard`).

Picks the page from the sidebar (or `?page=`), draws it, and writes the view back into the URL.
"""

from __future__ import annotations

import streamlit as st

from kbit.dashboard.ui import common, compare_page, frontier_page, queue_page, run_page, scaling_page
from kbit.errors import DatabaseError, DatabaseUnreachable, TooManyRuns

PAGES = {
    # Short names: the sidebar's page picker cuts longer ones.
    "frontier": ("Frontier", frontier_page), "scaling": ("Scaling", scaling_page),
    "queue": ("Queue", queue_page), "compare": ("Compare", compare_page), "run": ("Run", run_page),
}


def main() -> None:
    st.set_page_config(page_title="kbit", page_icon="📉", layout="wide")
    st.sidebar.title("kbit")
    page = common.pick_one("page", "page", list(PAGES), fallback="frontier", fmt=lambda p: PAGES[p][0])
    for problem in common.url_problems():
        st.warning(f"Link: {problem}")
    url = common.database_url()
    try:
        common.warming(url)
        opts = common.cached_options(url)
        current = PAGES[page][1].render(url, opts)
    except DatabaseError as exc:
        hint = ("\n\nStart the database, or point the dashboard at one with `kbit dashboard --database-url URL` "
                "(or KBIT_DATABASE_URL).") if isinstance(exc, DatabaseUnreachable) else ""
        st.error(f"{exc}{hint}")
        return
    except TooManyRuns as exc:
        st.info(str(exc))
        return
    for problem in common.unused_url_params(current):
        st.warning(f"Link: {problem}")
    common.publish({"page": page, **current})


main()
