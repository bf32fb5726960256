"""The local high-resolution dashboard (Streamlit) on the logger's SQLite store."""
