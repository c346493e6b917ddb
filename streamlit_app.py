"""Entry point of the FER web app: the sidebar's page list, in the order a visitor meets them.

The page scripts live in `app_pages/`, not `pages/`: Streamlit would otherwise also list the
`pages/` folder on a session's first run, next to this navigation. Adding a page is one line here.
"""

from __future__ import annotations

import streamlit as st

from fer.memory import return_large_blocks

return_large_blocks()  # memory comes back after many visitors at once (fer.memory)
st.set_page_config(page_icon="🙂", layout="wide")

navigation = st.navigation([
    st.Page("app_pages/0_Home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/1_Upload.py", title="Upload photos", icon=":material/upload:", url_path="Upload"),
    st.Page("app_pages/2_Live_camera.py", title="Live camera", icon=":material/videocam:", url_path="Live_camera"),
    st.Page("app_pages/4_Video.py", title="Video file", icon=":material/movie:", url_path="Video"),
    st.Page("app_pages/3_Model_report.py", title="Model report", icon=":material/monitoring:", url_path="Model_report"),
])
navigation.run()
