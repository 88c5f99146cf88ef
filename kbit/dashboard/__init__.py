"""The Streamlit dashboard and its pure Altair chart functions. Reads the database only."""
