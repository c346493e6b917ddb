"""Entry point of the FER web app: the sidebar's page list (`app_pages.ui.PAGES`), and the process-wide
settings that must come before anything else is imported.

The page scripts live in `app_pages/`, not `pages/`: Streamlit would otherwise also list the
`pages/` folder on a session's first run, next to this navigation. Adding a page is one line in `PAGES`.
"""

from __future__ import annotations

import sys

# aiortc's SRTP bindings (loaded by streamlit-webrtc on the live page) segfault when imported after
# TensorFlow, whose bundled BoringSSL clashes with OpenSSL, and so does importing them here once TF
# is in: load them first, before any page runs (the app itself never imports TensorFlow).
if "tensorflow" not in sys.modules:
    try:  # noqa: SIM105
        import pylibsrtp  # noqa: F401
    except ImportError:
        pass

import streamlit as st  # noqa: E402

from app_pages.ui import PAGES  # noqa: E402
from app_pages.uploads import share_uploaded_bytes  # noqa: E402
from ferlens.core.memory import return_large_blocks  # noqa: E402

return_large_blocks()  # memory comes back after many visitors at once (ferlens.core.memory)
share_uploaded_bytes()  # an upload's bytes are held once, not once more per page run (app_pages.uploads)
st.set_page_config(page_icon="🙂", layout="wide")

navigation = st.navigation([
    st.Page(page.script, title=page.title, icon=page.icon, url_path=page.url_path, default=page.url_path is None)
    for page in PAGES
])
navigation.run()
