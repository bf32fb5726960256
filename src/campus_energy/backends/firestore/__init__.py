"""The Firestore window backend: `sink` (the bridge writes windows) and `source` (the API
reads them), over one schema."""
