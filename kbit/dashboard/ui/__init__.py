"""The dashboard's Streamlit pages: one module per page, each a `render(url, options) -> url view`."""
